#!/usr/bin/env python3
"""1000 concurrent sleeping Python requests on one core (issue 10): `ab -c1000 -n2000` against
benches/wsgi_sleep_app.py (`yield uwsgi.async_sleep(1)`) on ringsgi
`--async 1000 --greenlet`, the Rust `sleep` app on the same ringsgi, and uWSGI
`--async 1000 --greenlet` (Debian's uwsgi with its python3 and greenlet_python3 plugins),
in the same run.

Every server has one worker pinned to CPU 0 (ab is not pinned: it needs a core of its own
at 1000 connections). Servers:

- ringsgi-python: ringsgi --cores 1 --http ADDR --wsgi-file wsgi_sleep_app.py --async 1000
                  --greenlet --virtualenv target/pyvenv --listen L --disable-logging; URL /?1
- ringsgi-rust:   ringsgi --cores 1 --http ADDR --app sleep --async 1000 --listen L
                  --disable-logging; URL / (sleeps 1 s)
- uwsgi:          uwsgi --http-socket ADDR --processes 1 --plugins python3,greenlet_python3
                  --async 1000 --greenlet --wsgi-file wsgi_sleep_app.py --listen L
                  --disable-logging --pythonpath <venv site-packages>; URL /?1

For each run: ab's "Time taken for tests" and failures; memory per in-flight request = (peak
RSS during the load - RSS when idle just before it) / concurrency, RSS summed over the
server's processes (VmRSS, sampled every 20 ms); server CPU per request. Target: ringsgi's
Python time within 0.05 s of its Rust time (medians).

    tests/python/setup-venv.sh
    cargo build --release --features python
    python3 benches/wsgi_sleep.py                      # 3 rounds
    python3 benches/wsgi_sleep.py --rounds 1 --only uwsgi

Needs: ab (apache2-utils), taskset; ringsgi built with --features python; uwsgi with the
python3 and greenlet_python3 plugins.
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from sleep_ab import parse_ab, somaxconn  # noqa: E402

SERVERS = ("ringsgi-python", "ringsgi-rust", "uwsgi")
TARGET_S = 0.05  # ringsgi-python - ringsgi-rust, ab time
APP = os.path.join(bl.REPO, "benches", "wsgi_sleep_app.py")


def server(name, args, port):
    pin = ["taskset", "-c", str(args.server_cpu)]
    listen = str(args.listen)
    conc = str(args.concurrency)
    if name == "ringsgi-python":
        argv = [
            args.ringsgi, "--cores", "1", "--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--async", conc,
            "--greenlet", "--virtualenv", args.venv, "--listen", listen, "--disable-logging",
        ]
        return pin + argv, "/?1", "/?0"
    if name == "ringsgi-rust":
        argv = [
            args.ringsgi, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "sleep", "--async", conc,
            "--listen", listen, "--disable-logging",
        ]
        return pin + argv, "/", "/?ms=0"
    site = glob.glob(os.path.join(args.venv, "lib", "python3*", "site-packages"))
    argv = [
        args.uwsgi, "--http-socket", f"127.0.0.1:{port}", "--processes", "1",
        "--plugins", "python3,greenlet_python3", "--async", conc, "--greenlet", "--wsgi-file", APP,
        "--listen", listen, "--disable-logging", "--die-on-term",
    ] + (["--pythonpath", site[0]] if site else [])
    # uWSGI's async_sleep has whole-second resolution: 0 is no sleep at all.
    return pin + argv, "/?1", "/?0"


def one_run(procs, name, args, tmp):
    port = bl.free_port()
    argv, path, ready_path = server(name, args, port)
    p = procs.start(argv, os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(p, "127.0.0.1", port, path=ready_path, timeout=30.0)
        # Warm-up: one round of the sleeping request, so that lazily built state (imports,
        # the first greenlets, the slots' buffers) is there before the idle sample.
        bl.wait_ready(p, "127.0.0.1", port, path=path, timeout=30.0)
        time.sleep(0.5)
        rss_idle = bl.group_rss_kb(p.pid)
        nprocs = len(bl.group_pids(p.pid))
        cpu0 = bl.group_cpu_seconds(p.pid)
        load = [args.ab, "-c", str(args.concurrency), "-n", str(args.requests), f"http://127.0.0.1:{port}{path}"]
        with bl.RssSampler(p.pid, 0.02) as rss:
            out = procs.run(load, timeout=120)
        cpu = bl.group_cpu_seconds(p.pid) - cpu0
        if p.poll() is not None:
            raise RuntimeError(f"{name} died during the run:\n{bl.log_tail(p)}")
    finally:
        procs.stop(p)
    res = parse_ab(out)
    res.update(
        server=name,
        cpu_s=cpu,
        cpu_ms_per_req=cpu / res["complete"] * 1e3 if res["complete"] else float("nan"),
        rss_idle_kb=rss_idle,
        rss_peak_kb=rss.peak_kb,
        rss_growth_per_req_b=(rss.peak_kb - rss_idle) * 1024 / args.concurrency,
        procs=nprocs,
        loadavg=os.getloadavg()[0],
    )
    if args.verbose:
        print(out, file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--listen", type=int, default=min(4096, somaxconn()))
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SERVERS)}")
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi, built with --features python)")
    ap.add_argument("--venv", default=os.path.join(bl.REPO, "target", "pyvenv"))
    ap.add_argument("--uwsgi", default="uwsgi")
    ap.add_argument("--ab", default="ab")
    ap.add_argument("--json")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(SERVERS)
    for n in names:
        if n not in SERVERS:
            bl.die(f"unknown server {n}")
    if any(n.startswith("ringsgi") for n in names):
        args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    if "uwsgi" in names:
        args.uwsgi = bl.need(args.uwsgi)
    args.ab = bl.need(args.ab)
    bl.need("taskset")
    nofile = bl.raise_nofile()
    if nofile < args.concurrency + 100:
        bl.die(f"open-files limit {nofile} is too low for {args.concurrency} connections")
    bl.on_signal_raise()

    binary = bl.describe_binary(args.ringsgi) if args.ringsgi else "-"
    print(f"# wsgi_sleep: {bl.machine()}; ringsgi {binary}")
    print(
        f"# 1 worker on CPU {args.server_cpu}, --async {args.concurrency}; load: ab -c {args.concurrency} "
        f"-n {args.requests}; listen {args.listen}; {args.rounds} rounds; servers: {', '.join(names)}"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                order = names[r % len(names):] + names[: r % len(names)]
                for name in order:
                    res = one_run(procs, name, args, tmp)
                    res["round"] = r + 1
                    results.append(res)
                    print(
                        f"round {r + 1} {name:15} {res['seconds']:6.3f} s  complete {res['complete']}  "
                        f"failed {res['failed']}  non-2xx {res['non2xx']}  p50 {res['p50_ms']} ms  "
                        f"max {res['p100_ms']} ms  | RSS idle {res['rss_idle_kb'] / 1024:.1f} MiB  peak "
                        f"{res['rss_peak_kb'] / 1024:.1f} MiB  growth {res['rss_growth_per_req_b'] / 1024:.1f} KiB/req  "
                        f"cpu {res['cpu_ms_per_req']:.3f} ms/req  procs {res['procs']}  load {res['loadavg']:.2f}",
                        flush=True,
                    )
        finally:
            procs.close()

    print()
    print("| server | ab time (median) | failed + non-2xx (all runs) | RSS growth per in-flight request (median) | peak RSS | CPU per request |")
    print("|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name in names:
        rs = [x for x in results if x["server"] == name]
        s = summary[name] = {
            "seconds_median": bl.median([x["seconds"] for x in rs]),
            "failed": sum(x["failed"] + x["non2xx"] + args.requests - x["complete"] for x in rs),
            "growth_b_median": bl.median([x["rss_growth_per_req_b"] for x in rs]),
            "peak_mib_median": bl.median([x["rss_peak_kb"] for x in rs]) / 1024,
            "cpu_ms_median": bl.median([x["cpu_ms_per_req"] for x in rs]),
        }
        print(
            f"| {name} | {s['seconds_median']:.3f} s | {s['failed']} | {s['growth_b_median'] / 1024:.1f} KiB | "
            f"{s['peak_mib_median']:.1f} MiB | {s['cpu_ms_median']:.3f} ms |"
        )
    ok = all(summary[n]["failed"] == 0 for n in names)
    if "ringsgi-python" in names and "ringsgi-rust" in names:
        d = summary["ringsgi-python"]["seconds_median"] - summary["ringsgi-rust"]["seconds_median"]
        verdict = "met" if d <= TARGET_S else f"MISSED by {d - TARGET_S:.3f} s"
        print(f"\nringsgi-python - ringsgi-rust, ab time: {d:+.3f} s; target <= {TARGET_S} s: {verdict}")
        summary["python_minus_rust_s"] = d
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": bl.machine(), "binary": binary, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                 "args": vars(args), "runs": results, "summary": summary},
                f,
                indent=2,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
