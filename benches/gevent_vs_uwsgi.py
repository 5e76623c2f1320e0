#!/usr/bin/env python3
"""gevent servers side by side (issue 11): ringsgi `--gevent`, uWSGI `--gevent` (PyPI's uwsgi,
compiled into the bench venv, its gevent plugin built in) and gunicorn `-k gevent`, the same
app files, 2 workers each, in the same run.

Scenarios (`--scenarios`, default all three):

- sleep:    the article's test: examples/python/flask_sleep.py (Flask, `time.sleep(1)` made
            cooperative by monkey patching), `ab -c1000 -n2000`, 1000 slots per worker.
- upstream: examples/python/flask_upstream.py: a Flask view calling, with `requests`, a local
            upstream that answers after 1 s (ringsgi's Rust `sleep` app, another process group
            whose CPU is not counted), `ab -c1000 -n2000`, 1000 slots per worker.
- 10k:      flask_sleep.py again with 10,000 concurrent requests: `ab -c10000 -n10000`,
            5000 slots per worker (`--gevent 5000`, gunicorn `--worker-connections 5000`).
            Needs a listen backlog of 10,000: as root the run raises net.core.somaxconn to
            16384 for its duration (and restores it), as benches/sleep_10k.py does.

Servers (PORT and N filled in, L = the listen backlog):

- ringsgi:  ringsgi --cores 2 --http 127.0.0.1:PORT --gevent N --gevent-monkey-patch
            --virtualenv VENV --pythonpath examples/python --module APP:app --listen L
            --disable-logging
- uwsgi:    VENV/bin/uwsgi --master --processes 2 --http-socket 127.0.0.1:PORT --gevent N
            --gevent-monkey-patch --virtualenv VENV --pythonpath examples/python
            --module APP:app --listen L --disable-logging --die-on-term
- gunicorn: VENV/bin/gunicorn -w 2 -k gevent --worker-connections N -b 127.0.0.1:PORT
            --backlog L --chdir examples/python APP:app

For each run: ab's time, failures, p50/p99/max; the server's CPU-seconds (all its processes)
during the load and per request; peak RSS of all its processes (VmRSS summed, sampled every
20 ms), peak PSS (smaps_rollup, every 100 ms: pages a forking master shares with its workers
counted once) and memory per in-flight request = (peak RSS - idle RSS) / concurrency. The machine is shared:
compare within a round; CPU-seconds and memory are the trustworthy figures.

    tests/python/setup-venv.sh --bench
    cargo build --release --features python
    python3 benches/gevent_vs_uwsgi.py                        # 2 rounds, all scenarios
    python3 benches/gevent_vs_uwsgi.py --rounds 1 --scenarios sleep --only ringsgi,uwsgi

    python3 benches/gevent_vs_uwsgi.py --ringsgi NEW --ringsgi-b OLD --only ringsgi,ringsgi-b,uwsgi \
        --rounds 5 --scenarios sleep                          # an A/B of two builds, same run

Exits non-zero if ringsgi failed a request (the peers' failures are reported only).
Needs: ab (apache2-utils); the bench venv (gevent, Flask, requests, gunicorn, uwsgi).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from sleep_ab import parse_ab, somaxconn  # noqa: E402

SERVERS = ("ringsgi", "uwsgi", "gunicorn", "ringsgi-b")
EXAMPLES = os.path.join(bl.REPO, "examples", "python")
# name: (module, ab concurrency, ab requests, slots per worker, path)
SCENARIOS = {
    "sleep": ("flask_sleep", 1000, 2000, 1000, "/"),
    "upstream": ("flask_upstream", 1000, 2000, 1000, "/"),
    "10k": ("flask_sleep", 10000, 10000, 5000, "/"),
}


def server_argv(name, args, module, slots, port, listen):
    app = f"{module}:app"
    if name in ("ringsgi", "ringsgi-b"):
        return [
            args.ringsgi if name == "ringsgi" else args.ringsgi_b, "--cores", "2", "--http", f"127.0.0.1:{port}", "--gevent", str(slots),
            "--gevent-monkey-patch", "--virtualenv", args.venv, "--pythonpath", EXAMPLES, "--module", app,
            "--listen", str(listen), "--disable-logging",
        ]
    if name == "uwsgi":
        return [
            os.path.join(args.venv, "bin", "uwsgi"), "--master", "--processes", "2",
            "--http-socket", f"127.0.0.1:{port}", "--gevent", str(slots), "--gevent-monkey-patch",
            "--virtualenv", args.venv, "--pythonpath", EXAMPLES, "--module", app, "--listen", str(listen),
            "--disable-logging", "--die-on-term",
        ]
    return [
        os.path.join(args.venv, "bin", "gunicorn"), "-w", "2", "-k", "gevent", "--worker-connections", str(slots),
        "-b", f"127.0.0.1:{port}", "--backlog", str(listen), "--chdir", EXAMPLES, app,
    ]


def parse_p99(text):
    import re

    m = re.search(r"\n\s+99%\s+(\d+)", text)
    return int(m.group(1)) if m else -1


def group_pss_kb(pgid):
    """Summed PSS of the group (shared pages split among their users: uWSGI's workers share
    the app its master imported before forking; summed RSS counts those pages once per process)."""
    total = 0
    for pid in bl.group_pids(pgid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class PssSampler(bl.RssSampler):
    def _run(self):
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, group_pss_kb(self.pgid))
            self.samples += 1
            self._stop.wait(self.interval)


def one_run(procs, name, scenario, args, tmp, upstream_url):
    module, conc, nreq, slots, path = SCENARIOS[scenario]
    port = bl.free_port()
    listen = min(somaxconn(), 16384)
    env = dict(os.environ, UPSTREAM=upstream_url or "")
    argv = server_argv(name, args, module, slots, port, listen)
    log = os.path.join(tmp, f"{name}-{scenario}-{port}.log")
    out = open(log, "wb")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
    finally:
        out.close()
    p.log_path = log
    procs.procs.append(p)
    try:
        ready = "/inflight"
        bl.wait_ready(p, "127.0.0.1", port, path=ready, timeout=60.0)
        # Warm-up: a few real requests (both workers), so that imports done at the first
        # request are in the idle sample.
        for _ in range(4):
            bl.wait_ready(p, "127.0.0.1", port, path=path, timeout=30.0)
        time.sleep(0.5)
        rss_idle = bl.group_rss_kb(p.pid)
        nprocs = len(bl.group_pids(p.pid))
        cpu0 = bl.group_cpu_seconds(p.pid)
        load = [args.ab, "-s", "60", "-c", str(conc), "-n", str(nreq), f"http://127.0.0.1:{port}{path}"]
        pss_idle = group_pss_kb(p.pid)
        with bl.RssSampler(p.pid, 0.02) as rss, PssSampler(p.pid, 0.1) as pss:
            try:
                text = procs.run(load, timeout=300)
                aborted = None
            except RuntimeError as e:
                # ab gives up at the first reset connection: the run counts as failed.
                text, aborted = str(e), str(e).strip().splitlines()[-2:]
        cpu = bl.group_cpu_seconds(p.pid) - cpu0
        if p.poll() is not None:
            raise RuntimeError(f"{name} died during the run:\n{bl.log_tail(p)}")
    finally:
        procs.stop(p)
    if aborted:
        res = {"seconds": float("nan"), "complete": 0, "failed": 0, "non2xx": 0, "rps": 0.0,
               "p50_ms": -1, "p100_ms": -1, "connect_max_ms": -1}
    else:
        res = parse_ab(text)
    res.update(
        aborted=aborted,
        server=name,
        scenario=scenario,
        p99_ms=parse_p99(text),
        cpu_s=cpu,
        cpu_ms_per_req=cpu / res["complete"] * 1e3 if res["complete"] else float("nan"),
        rss_idle_kb=rss_idle,
        rss_peak_kb=rss.peak_kb,
        rss_growth_per_req_b=(rss.peak_kb - rss_idle) * 1024 / conc,
        pss_idle_kb=pss_idle,
        pss_peak_kb=pss.peak_kb,
        procs=nprocs,
        loadavg=os.getloadavg()[0],
    )
    if args.verbose:
        print(text, file=sys.stderr)
    return res


def start_upstream(procs, args, tmp):
    port = bl.free_port()
    argv = [args.ringsgi, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "sleep", "--async", "4000",
            "--listen", str(min(somaxconn(), 16384)), "--disable-logging"]
    p = procs.start(argv, os.path.join(tmp, "upstream.log"))
    bl.wait_ready(p, "127.0.0.1", port, path="/?ms=0", timeout=30.0)
    return p, f"http://127.0.0.1:{port}/"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SERVERS)}")
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi, built with --features python)")
    ap.add_argument("--ringsgi-b", help="a second ringsgi binary, run as server `ringsgi-b` (A/B in the same run: "
                    "--only ringsgi,ringsgi-b,uwsgi)")
    ap.add_argument("--venv", default=os.path.join(bl.REPO, "target", "pyvenv"))
    ap.add_argument("--ab", default="ab")
    ap.add_argument("--json")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(SERVERS[:3])
    scenarios = args.scenarios.split(",")
    for n in names:
        if n not in SERVERS:
            bl.die(f"unknown server {n}")
    for s in scenarios:
        if s not in SCENARIOS:
            bl.die(f"unknown scenario {s}")
    args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    if "ringsgi-b" in names and not args.ringsgi_b:
        bl.die("--only ringsgi-b needs --ringsgi-b BINARY")
    for tool in ("uwsgi", "gunicorn"):
        if tool in names and not os.access(os.path.join(args.venv, "bin", tool), os.X_OK):
            bl.die(f"{args.venv}/bin/{tool} missing: run tests/python/setup-venv.sh --bench")
    args.ab = bl.need(args.ab)
    nofile = bl.raise_nofile()
    if nofile < 10000 + 200 and "10k" in scenarios:
        bl.die(f"open-files limit {nofile} is too low for 10,000 connections")
    bl.on_signal_raise()

    old_somax = somaxconn()
    raised = False
    if "10k" in scenarios and old_somax < 16384 and os.geteuid() == 0:
        raised = subprocess.run(["sysctl", "-qw", "net.core.somaxconn=16384"]).returncode == 0

    binary = bl.describe_binary(args.ringsgi)
    print(f"# gevent_vs_uwsgi: {bl.machine()}; ringsgi {binary}"
          + (f"; ringsgi-b {bl.describe_binary(args.ringsgi_b)}" if args.ringsgi_b else ""))
    print(f"# 2 workers each; scenarios {', '.join(scenarios)}; {args.rounds} rounds; servers {', '.join(names)}; "
          f"somaxconn {somaxconn()}")
    results = []
    procs = bl.Procs()
    try:
        with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
            try:
                upstream_url = None
                if "upstream" in scenarios:
                    _, upstream_url = start_upstream(procs, args, tmp)
                for r in range(args.rounds):
                    for scenario in scenarios:
                        order = names[r % len(names):] + names[: r % len(names)]
                        for name in order:
                            res = one_run(procs, name, scenario, args, tmp, upstream_url)
                            res["round"] = r + 1
                            results.append(res)
                            print(
                                f"round {r + 1} {scenario:8} {name:9} {res['seconds']:7.3f} s  complete "
                                f"{res['complete']}  failed {res['failed']}  non-2xx {res['non2xx']}  "
                                f"p50 {res['p50_ms']} p99 {res['p99_ms']} max {res['p100_ms']} ms | RSS idle "
                                f"{res['rss_idle_kb'] / 1024:.1f} MiB peak {res['rss_peak_kb'] / 1024:.1f} MiB "
                                f"growth {res['rss_growth_per_req_b'] / 1024:.1f} KiB/req | PSS idle {res['pss_idle_kb'] / 1024:.1f} "
                                f"peak {res['pss_peak_kb'] / 1024:.1f} MiB | cpu {res['cpu_s']:.2f} s "
                                f"= {res['cpu_ms_per_req']:.3f} ms/req  procs {res['procs']}  load {res['loadavg']:.2f}"
                                + (f"  AB ABORTED: {res['aborted']}" if res["aborted"] else ""),
                                flush=True,
                            )
            finally:
                procs.close()
    finally:
        if raised:
            subprocess.run(["sysctl", "-qw", f"net.core.somaxconn={old_somax}"])

    summary = {}
    for scenario in scenarios:
        module, conc, nreq, slots, _ = SCENARIOS[scenario]
        print(f"\n{scenario}: {module}, ab -c{conc} -n{nreq}, {slots} slots per worker (medians over rounds)\n")
        print("| server | ab time | failed + non-2xx (all runs) | p99 | peak RSS (all processes) | peak PSS | per in-flight request (RSS) | CPU per request |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            rs = [x for x in results if x["server"] == name and x["scenario"] == scenario]
            if not rs:
                continue
            ok = [x for x in rs if not x["aborted"]]
            s = summary[f"{scenario}/{name}"] = {
                "seconds": bl.median([x["seconds"] for x in ok] or [float("nan")]),
                "aborted": sum(1 for x in rs if x["aborted"]),
                "failed": sum(x["failed"] + x["non2xx"] + nreq - x["complete"] for x in rs),
                "p99_ms": bl.median([x["p99_ms"] for x in ok] or [float("nan")]),
                "peak_mib": bl.median([x["rss_peak_kb"] for x in rs]) / 1024,
                "pss_peak_mib": bl.median([x["pss_peak_kb"] for x in rs]) / 1024,
                "growth_kib": bl.median([x["rss_growth_per_req_b"] for x in rs]) / 1024,
                "cpu_ms": bl.median([x["cpu_ms_per_req"] for x in ok] or [float("nan")]),
            }
            note = f" ({s['aborted']} ab runs aborted)" if s["aborted"] else ""
            print(f"| {name} | {s['seconds']:.3f} s | {s['failed']}{note} | {s['p99_ms']:.0f} ms | {s['peak_mib']:.1f} MiB | "
                  f"{s['pss_peak_mib']:.1f} MiB | "
                  f"{s['growth_kib']:.1f} KiB | {s['cpu_ms']:.3f} ms |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bl.machine(), "binary": binary, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "args": vars(args), "runs": results, "summary": summary}, f, indent=2)
    # Non-zero when ringsgi failed a request (the peers' failures are reported, not fatal).
    return 1 if any(v["failed"] for k, v in summary.items() if k.endswith("/ringsgi")) else 0


if __name__ == "__main__":
    sys.exit(main())
