#!/usr/bin/env python3
"""A/B of ringsgi binaries on a WSGI app: requests per server CPU-second, the binaries
alternating round by round (drifting background load hits all alike), each run a fresh
server pinned to CPU 0 and `wrk -t1 -c64` pinned to CPU 1 (benchlib.measured_wrk_run).

    python3 benches/wsgi_ab.py before=/tmp/ringsgi.old after=target/release/ringsgi --greenlet
    python3 benches/wsgi_ab.py a=BIN b=BIN --rounds 6 --duration 5 --app examples/python/hello.py
"""
import argparse
import os
import sys
import tempfile
import types

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bins", nargs="+", help="LABEL=PATH, two or more")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--greenlet", action="store_true", help="--async 64 --greenlet")
    ap.add_argument("--app", default=os.path.join(bl.REPO, "examples", "python", "hello.py"))
    ap.add_argument("--venv", default=os.path.join(bl.REPO, "target", "pyvenv"))
    a = ap.parse_args()
    args = types.SimpleNamespace(
        connections=64, client_cpu=1, server_cpu=0, wrk=bl.need("wrk"), warmup=1, duration=a.duration, verbose=False
    )
    bl.raise_nofile()
    items = [b.split("=", 1) for b in a.bins]
    procs = bl.Procs()
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for r in range(a.rounds):
                order = items if r % 2 == 0 else list(reversed(items))
                for label, path in order:
                    port = bl.free_port()
                    argv = ["taskset", "-c", "0", path, "--cores", "1", "--http", f"127.0.0.1:{port}",
                            "--wsgi-file", a.app, "--disable-logging"]
                    if a.greenlet:
                        argv += ["--async", "64", "--greenlet", "--virtualenv", a.venv]
                    s = procs.start(argv, os.path.join(tmp, f"{label}-{port}.log"))
                    bl.wait_ready(s, "127.0.0.1", port, timeout=30)
                    x = bl.measured_wrk_run(procs, s, label, port, "/", args)
                    user = x["user_s"] / x["requests"] * 1e6
                    sys_ = x["sys_s"] / x["requests"] * 1e6
                    res.setdefault(label, []).append((x["req_per_cpu_s"], user, sys_))
                    print(f"round {r + 1} {label:10} {x['req_per_cpu_s']:8.0f} req/cpu-s  user {user:6.2f} "
                          f"sys {sys_:6.2f} us/req  cpu0 other {x['server_cpu_other_s']:.2f} s  load {x['loadavg']:.1f}",
                          flush=True)
        finally:
            procs.close()
    for label, xs in res.items():
        print(f"{label}: median {bl.median([x[0] for x in xs]):.0f} req/cpu-s, user "
              f"{bl.median([x[1] for x in xs]):.2f} sys {bl.median([x[2] for x in xs]):.2f} us/req")
    first = items[0][0]
    for label, _ in items[1:]:
        rat = [b[0] / a_[0] for a_, b in zip(res[first], res[label])]
        print(f"{label}/{first}: median {bl.median(rat):.3f} (per round {', '.join(f'{x:.3f}' for x in rat)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
