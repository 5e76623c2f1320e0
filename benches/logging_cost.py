#!/usr/bin/env python3
"""What the request log costs: hello keep-alive with the log off, to a file through the worker's
logger thread (uWSGI template and JSON), in the same run (issue #10).

One worker pinned to CPU 0, `wrk -t1 -c64` pinned to CPU 1, rounds alternating the variants so
that drifting background load hits all alike. The figure is requests per server CPU-second
(master + worker + its logger thread, from /proc), and the ratio of each logging variant to the
log-off run of the same round. A slow disk can only drop lines (counted), never slow the core:
the executor hands each line to a bounded queue.

    python3 benches/logging_cost.py                  # 3 rounds of 5 s
    python3 benches/logging_cost.py --rounds 5 --duration 10

Needs: target/release/ringsgi (cargo build --release), wrk, taskset, 2+ CPUs.
"""

import argparse
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

TEMPLATE = '%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size) %(msecs)ms "%(referer)" "%(uagent)"'

VARIANTS = {
    "off": ["--disable-logging"],
    "template": ["--logformat", TEMPLATE],
    "json": ["--logformat", "json"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi)")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()
    print(f"# logging_cost: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi)}")
    print(f"# wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds; logs to a file in a temp dir")
    per = {k: [] for k in VARIANTS}
    ratios = {k: [] for k in VARIANTS if k != "off"}
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-logbench-") as tmp:
        try:
            for r in range(args.rounds):
                names = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
                got = {}
                for name in names:
                    port = bl.free_port()
                    log = os.path.join(tmp, f"{name}-{port}.log")
                    argv = ["taskset", "-c", str(args.server_cpu), args.ringsgi, "--cores", "1",
                            "--http", f"127.0.0.1:{port}", "--app", "hello"] + VARIANTS[name]
                    if name != "off":
                        argv += ["--logto", log]
                    server = procs.start(argv, os.path.join(tmp, f"{name}-{port}.out"))
                    try:
                        bl.wait_ready(server, "127.0.0.1", port)
                    except BaseException:
                        procs.stop(server)
                        raise
                    res = bl.measured_wrk_run(procs, server, name, port, "/", args)
                    got[name] = res["req_per_cpu_s"]
                    per[name].append(res["req_per_cpu_s"])
                    lines = sum(1 for _ in open(log)) if name != "off" else 0
                    print(f"round {r + 1} {name:9} {res['rps']:9.0f} req/s  {res['req_per_cpu_s']:8.0f} req/cpu-s  "
                          f"{res['cpu_us_per_req']:6.2f} us/req  user/sys {res['user_s']:.2f}/{res['sys_s']:.2f} s  "
                          f"log lines {lines}  errors {res['errors']}", flush=True)
                for k in ratios:
                    ratios[k].append(got[k] / got["off"])
        finally:
            procs.close()
    print()
    print("| log | req per server CPU-s (median) | vs log off (median of per-round ratios) |")
    print("|---|---:|---:|")
    for k in VARIANTS:
        ratio = "1.00" if k == "off" else f"{bl.median(ratios[k]):.2f}"
        print(f"| {k} | {bl.median(per[k]):.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
