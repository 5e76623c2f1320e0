#!/usr/bin/env python3
"""The seed article's test (issue #2): 1000 concurrent clients on an app that sleeps 1 s.

Server: `ringsgi --http 127.0.0.1:PORT --app sleep --async 1000 --listen 4096
--disable-logging` with the default --cores (one worker per CPU). Loads, each against a
fresh server:

- `ab -c 1000 -n 2000 http://127.0.0.1:PORT/` (new connection per request, as in the
  article): "Time taken for tests" (target <= 3.05 s), failed requests (must be 0);
- `wrk -t2 -c1000 -d10s http://127.0.0.1:PORT/` (keep-alive): req/s (target >= 990), errors.

For each run: peak RSS summed over all server processes (VmRSS of master and workers from
/proc/PID/status, sampled every 50 ms during the load), and server CPU seconds per request
(utime+stime of master and workers from /proc/PID/stat, before/after the load).

    python3 benches/sleep_ab.py                   # 3 ab runs, then 3 wrk runs
    python3 benches/sleep_ab.py --rounds 1 --json out.json

Needs: target/release/ringsgi (cargo build --release), ab (apache2-utils), wrk.
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

AB_TARGET_S = 3.05
WRK_TARGET_RPS = 990.0
SLEEP_S = 1.0  # the sleep app's default


def somaxconn():
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except OSError:
        return 4096


def parse_ab(text):
    def num(pattern, cast=float, default=None):
        m = re.search(pattern, text)
        if m:
            return cast(m.group(1))
        if default is None:
            raise RuntimeError(f"cannot parse ab output ({pattern}):\n{text}")
        return default

    return {
        "seconds": num(r"Time taken for tests:\s+([\d.]+) seconds"),
        "complete": num(r"Complete requests:\s+(\d+)", int),
        "failed": num(r"Failed requests:\s+(\d+)", int),
        "non2xx": num(r"Non-2xx responses:\s+(\d+)", int, 0),
        "rps": num(r"Requests per second:\s+([\d.]+)"),
        "p50_ms": num(r"\n\s+50%\s+(\d+)", int, -1),
        "p100_ms": num(r"\n\s+100%\s+(\d+)", int, -1),
        "connect_max_ms": num(r"Connect:\s+\d+\s+\d+\s+[\d.]+\s+\d+\s+(\d+)", int, -1),
    }


def one_run(procs, kind, args, tmp):
    port = bl.free_port()
    argv = [
        args.ringsgi,
        "--http",
        f"127.0.0.1:{port}",
        "--app",
        "sleep",
        "--async",
        str(args.async_slots),
        "--listen",
        str(args.listen),
        "--disable-logging",
    ]
    if args.cores:
        argv += ["--cores", str(args.cores)]
    server = procs.start(argv, os.path.join(tmp, f"ringsgi-{kind}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port, path="/?ms=0")
        idle = bl.idle_cpu(server.pid, 2.0)
        rss_idle = bl.group_rss_kb(server.pid)
        nprocs = len(bl.group_pids(server.pid))
        url = f"http://127.0.0.1:{port}/"
        if kind == "ab":
            load = [args.ab, "-c", str(args.concurrency), "-n", str(args.requests), url]
            timeout = 120
        else:
            load = [args.wrk, "-t2", f"-c{args.concurrency}", f"-d{args.duration}s", url]
            timeout = args.duration + 60
        cpu0 = bl.group_cpu_seconds(server.pid)
        with bl.RssSampler(server.pid, 0.05) as rss:
            out = procs.run(load, timeout=timeout)
        cpu = bl.group_cpu_seconds(server.pid) - cpu0
        if server.poll() is not None:
            raise RuntimeError(f"server died during the run:\n{bl.log_tail(server)}")
        # Still serving after the load? (A stuck worker shows up here as a timeout.)
        try:
            bl.wait_ready(server, "127.0.0.1", port, path="/?ms=0", timeout=5.0)
            healthy = True
        except RuntimeError:
            healthy = False
        idle_after = bl.idle_cpu(server.pid, 2.0)
    finally:
        procs.stop(server)
    res = parse_ab(out) if kind == "ab" else bl.parse_wrk(out)
    nreq = res["complete"] if kind == "ab" else res["requests"]
    res.update(
        kind=kind,
        cpu_s=cpu,
        cpu_ms_per_req=cpu / nreq * 1e3 if nreq else float("nan"),
        rss_peak_kb=rss.peak_kb,
        rss_idle_kb=rss_idle,
        rss_samples=rss.samples,
        idle_cpu_s=idle,
        idle_cpu_after_s=idle_after,
        healthy_after=healthy,
        procs=nprocs,
        loadavg=os.getloadavg()[0],
    )
    if args.verbose:
        print(out, file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each load (default 3)")
    ap.add_argument("--only", choices=("ab", "wrk"), help="run one load only")
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=2000, help="ab -n (default 2000)")
    ap.add_argument("--duration", type=int, default=10, help="wrk -d seconds (default 10)")
    ap.add_argument("--cores", type=int, help="server --cores (default: the server's default)")
    ap.add_argument("--async", dest="async_slots", type=int, default=1000)
    ap.add_argument("--listen", type=int, default=min(4096, somaxconn()))
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi)")
    ap.add_argument("--ab", default="ab")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the load generators' output to stderr")
    args = ap.parse_args()
    args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    kinds = [args.only] if args.only else ["ab", "wrk"]
    if "ab" in kinds:
        args.ab = bl.need(args.ab)
    if "wrk" in kinds:
        args.wrk = bl.need(args.wrk)
    nofile = bl.raise_nofile()
    if nofile < args.concurrency + 100:
        bl.die(f"open-files limit {nofile} is too low for {args.concurrency} connections (ulimit -Hn)")
    bl.on_signal_raise()

    print(f"# sleep_ab: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi)}")
    print(
        f"# server: --app sleep (1 s) --async {args.async_slots} --listen {args.listen} "
        f"--cores {args.cores or 'default'}; RLIMIT_NOFILE {nofile}; {args.rounds} rounds"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for kind in kinds:
                for r in range(args.rounds):
                    res = one_run(procs, kind, args, tmp)
                    res["round"] = r + 1
                    results.append(res)
                    if kind == "ab":
                        head = (
                            f"ab  round {r + 1}: {res['seconds']:6.3f} s  complete {res['complete']}  "
                            f"failed {res['failed']}  non-2xx {res['non2xx']}  {res['rps']:7.1f} req/s  "
                            f"p50 {res['p50_ms']} ms  max {res['p100_ms']} ms  "
                            f"connect max {res['connect_max_ms']} ms"
                        )
                    else:
                        head = (
                            f"wrk round {r + 1}: {res['rps']:7.1f} req/s  {res['requests']} req  "
                            f"errors {res['errors']} {res['socket_errors']} non-2xx {res['non2xx']}"
                        )
                    print(
                        f"{head}  | peak RSS {res['rss_peak_kb'] / 1024:6.1f} MiB "
                        f"(idle {res['rss_idle_kb'] / 1024:.1f})  cpu {res['cpu_s']:.2f} s "
                        f"({res['cpu_ms_per_req']:.3f} ms/req)  idle cpu before/after "
                        f"{res['idle_cpu_s']:.2f}/{res['idle_cpu_after_s']:.2f} s per 2 s  "
                        f"procs {res['procs']}  healthy after: {res['healthy_after']}  "
                        f"load {res['loadavg']:.2f}",
                        flush=True,
                    )
        finally:
            procs.close()

    print()
    print("| load | metric (median of runs) | value | target | verdict |")
    print("|---|---|---:|---:|---|")
    ok = True
    summary = {}
    for kind in kinds:
        rs = [x for x in results if x["kind"] == kind]
        rss = bl.median([x["rss_peak_kb"] for x in rs]) / 1024
        cpu = bl.median([x["cpu_ms_per_req"] for x in rs])
        healthy = all(x["healthy_after"] for x in rs)
        ok = ok and healthy
        if kind == "ab":
            t = bl.median([x["seconds"] for x in rs])
            failed = sum(x["failed"] + x["non2xx"] for x in rs)
            incomplete = sum(args.requests - x["complete"] for x in rs)
            ok = ok and t <= AB_TARGET_S and failed == 0 and incomplete == 0
            print(f"| ab | Time taken for tests | {t:.3f} s | <= {AB_TARGET_S} s | "
                  f"{'met' if t <= AB_TARGET_S else f'MISSED by {t - AB_TARGET_S:.3f} s'} |")
            print(f"| ab | failed + non-2xx requests (all runs) | {failed} | 0 | {'met' if failed == 0 else 'MISSED'} |")
            summary["ab"] = {"seconds_median": t, "failed": failed, "incomplete": incomplete}
        else:
            rps = bl.median([x["rps"] for x in rs])
            errors = sum(x["errors"] for x in rs)
            ok = ok and rps >= WRK_TARGET_RPS and errors == 0
            print(f"| wrk | Requests/sec | {rps:.1f} | >= {WRK_TARGET_RPS:.0f} | "
                  f"{'met' if rps >= WRK_TARGET_RPS else f'MISSED by {WRK_TARGET_RPS - rps:.1f}'} |")
            # Each connection runs its requests one after another and each takes a little
            # over 1 s, so at most duration-1 of them finish within wrk's window.
            ceiling = args.concurrency * (math.ceil(args.duration / SLEEP_S) - 1) / args.duration
            print(f"| wrk | ceiling of this command (a server adding 0 ms to the 1 s) | {ceiling:.1f} | | "
                  f"{rps / ceiling * 100:.1f}% of it |")
            print(f"| wrk | errors (all runs) | {errors} | 0 | {'met' if errors == 0 else 'MISSED'} |")
            summary["wrk"] = {"rps_median": rps, "errors": errors, "ceiling_rps": ceiling}
        print(f"| {kind} | peak RSS, all server processes | {rss:.1f} MiB | | |")
        print(f"| {kind} | server CPU per request | {cpu:.3f} ms | | |")
        if not healthy:
            print(f"| {kind} | server answered after the load | NO | yes | MISSED |")
        summary[kind].update(rss_peak_mib_median=rss, cpu_ms_per_req_median=cpu, healthy_after=healthy)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": bl.machine(),
                    "binary": bl.describe_binary(args.ringsgi),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                    "args": vars(args),
                    "runs": results,
                    "summary": summary,
                },
                f,
                indent=2,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
