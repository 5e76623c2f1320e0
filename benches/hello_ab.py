#!/usr/bin/env python3
"""Hello world, keep-alive: two ringsgi binaries against each other in the same run (a before /
after check of a change on the hello path).

As `hello_vs_nginx.py`: one worker pinned to CPU 0, `wrk -t1 -c64` pinned to CPU 1, runs
alternating A, B; B, A; ... The number compared is server CPU time per request (utime+stime
of the server's processes during the measured run, divided by the requests wrk completed).

    python3 benches/hello_ab.py --a /path/to/before/ringsgi --b target/release/ringsgi
    python3 benches/hello_ab.py --a OLD --b NEW --rounds 6 --duration 10

Needs: wrk, taskset, 2+ CPUs.
"""

import argparse
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def one_run(procs, name, binary, args, tmp):
    port = bl.free_port()
    argv = ["taskset", "-c", str(args.server_cpu), binary, "--cores", "1", "--http", f"127.0.0.1:{port}",
            "--app", "hello", "--disable-logging"]
    server = procs.start(argv, os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port)
    except BaseException:
        procs.stop(server)
        raise
    return bl.measured_wrk_run(procs, server, name, port, "/", args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="binary A (before)")
    ap.add_argument("--b", required=True, help="binary B (after)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()
    print(f"# hello_ab: {bl.machine()}")
    print(f"# A = {args.a}\n# B = {args.b}")
    results = {"A": [], "B": []}
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                for name in (("A", "B") if r % 2 == 0 else ("B", "A")):
                    binary = args.a if name == "A" else args.b
                    res = one_run(procs, name, binary, args, tmp)
                    results[name].append(res)
                    print(
                        f"round {r + 1} {name} {res['rps']:9.0f} req/s {res['requests']:8d} req "
                        f"{res['cpu_us_per_req']:6.2f} us/req (user {res['user_s'] / res['requests'] * 1e6:.2f}, "
                        f"sys {res['sys_s'] / res['requests'] * 1e6:.2f}) errors {res['errors']} "
                        f"cpu{args.server_cpu} other {res['server_cpu_other_s']:.2f} s",
                        flush=True,
                    )
        finally:
            procs.close()
    med = {k: bl.median([x["cpu_us_per_req"] for x in v]) for k, v in results.items()}
    user = {k: bl.median([x["user_s"] / x["requests"] * 1e6 for x in v]) for k, v in results.items()}
    print(f"median server CPU per request: A {med['A']:.2f} us, B {med['B']:.2f} us, B/A {med['B'] / med['A']:.3f}")
    print(f"median user CPU per request:   A {user['A']:.2f} us, B {user['B']:.2f} us, B/A {user['B'] / user['A']:.3f}")
    return 1 if any(x["errors"] for v in results.values() for x in v) else 0


if __name__ == "__main__":
    sys.exit(main())
