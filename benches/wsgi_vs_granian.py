#!/usr/bin/env python3
"""WSGI hello world, keep-alive, 64 connections: ringsgi against granian and uWSGI, in the
same run (issue 10).

Every server runs examples/python/hello.py with ONE worker process pinned to CPU 0; the load
generator is `wrk -t1 -c64` pinned to CPU 1. Servers (each started fresh for each run, in an
order that rotates every round so drifting background load hits all alike):

- ringsgi:          ringsgi --cores 1 --http ADDR --wsgi-file hello.py --disable-logging
- ringsgi-greenlet: the same with --async 64 --greenlet --virtualenv target/pyvenv
- ringsgi-rust:     ringsgi --cores 1 --http ADDR --app hello --disable-logging: the Rust hello
                    app on the same server, the floor a Python app cannot go below (its
                    ratios are printed, not judged: it is not a WSGI server)
- granian:          granian --interface wsgi --workers 1 --host H --port P hello:application
                    (granian from PyPI, in target/pyvenv: tests/python/setup-venv.sh --bench)
- uwsgi:            uwsgi --http-socket ADDR --processes 1 --plugins python3 --wsgi-file
                    hello.py --disable-logging (Debian's uwsgi + uwsgi-plugin-python3), as
                    issue 10 names it. --http-socket closes the connection after every
                    response, so wrk reconnects each time and counts a "read" socket error
                    per request: those are not failures here (non-2xx, connect and timeout
                    errors are).
- uwsgi-http11:     the same with --http11-socket (uWSGI's keep-alive HTTP socket), the fair
                    keep-alive comparison.

The number that matters is requests per server CPU-second: requests completed divided by the
CPU time (utime+stime of every process of the server's process group, threads included, from
/proc/PID/stat) the server used during the measured run; user and system microseconds per
request are reported apart. Targets (issue 10): ringsgi >= 1.5x granian and >= 3x uWSGI.

    tests/python/setup-venv.sh --bench
    cargo build --release --features python
    python3 benches/wsgi_vs_granian.py                    # 3 rounds of 10 s each
    python3 benches/wsgi_vs_granian.py --rounds 1 --duration 5 --only granian,uwsgi

Needs: wrk, taskset, 2+ CPUs; ringsgi built with --features python; granian in the venv;
uwsgi with its python3 plugin.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

SERVERS = ("ringsgi", "ringsgi-greenlet", "ringsgi-rust", "granian", "uwsgi", "uwsgi-http11")
TARGETS = {"granian": 1.5, "uwsgi": 3.0, "uwsgi-http11": 3.0}  # ringsgi / other, requests per server CPU-second
EXAMPLES = os.path.join(bl.REPO, "examples", "python")


def server_argv(name, args, port):
    pin = ["taskset", "-c", str(args.server_cpu)]
    hello = os.path.join(EXAMPLES, "hello.py")
    if name == "ringsgi-rust":
        return pin + [args.ringsgi, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "hello", "--disable-logging"]
    if name.startswith("ringsgi"):
        argv = [args.ringsgi, "--cores", "1", "--http", f"127.0.0.1:{port}", "--wsgi-file", hello, "--disable-logging"]
        if name == "ringsgi-greenlet":
            argv += ["--async", str(args.connections), "--greenlet", "--virtualenv", args.venv]
        return pin + argv
    if name == "granian":
        return pin + [
            os.path.join(args.venv, "bin", "granian"),
            "--interface", "wsgi", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
            "--working-dir", EXAMPLES, "--no-access-log", "hello:application",
        ]
    flag = "--http11-socket" if name == "uwsgi-http11" else "--http-socket"
    return pin + [
        args.uwsgi, flag, f"127.0.0.1:{port}", "--processes", "1", "--plugins", "python3",
        "--wsgi-file", hello, "--disable-logging", "--die-on-term",
    ]


def one_run(procs, name, args, tmp):
    port = bl.free_port()
    server = procs.start(server_argv(name, args, port), os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port, timeout=30.0)
        idle = bl.idle_cpu(server.pid, 2.0)
    except BaseException:
        procs.stop(server)
        raise
    res = bl.measured_wrk_run(procs, server, name, port, "/", args)
    res.update(idle_cpu_s=idle)
    if name == "uwsgi":
        # One close per response (see the docstring): wrk's read errors are reconnects.
        res["errors"] -= res["socket_errors"].get("read", 0)
    res["user_us_per_req"] = res["user_s"] / res["requests"] * 1e6 if res["requests"] else float("nan")
    res["sys_us_per_req"] = res["sys_s"] / res["requests"] * 1e6 if res["requests"] else float("nan")
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs per server (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk warm-up per run (default 1)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SERVERS)}")
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi, built with --features python)")
    ap.add_argument("--venv", default=os.path.join(bl.REPO, "target", "pyvenv"))
    ap.add_argument("--uwsgi", default="uwsgi")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(SERVERS)
    for n in names:
        if n not in SERVERS:
            bl.die(f"unknown server {n}")
    if any(n.startswith("ringsgi") for n in names):
        args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    if "granian" in names and not os.access(os.path.join(args.venv, "bin", "granian"), os.X_OK):
        bl.die(f"no granian in {args.venv}: run tests/python/setup-venv.sh --bench")
    if any(n.startswith("uwsgi") for n in names):
        args.uwsgi = bl.need(args.uwsgi)
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()

    binary = bl.describe_binary(args.ringsgi) if args.ringsgi else "-"
    print(f"# wsgi_vs_granian: {bl.machine()}; ringsgi {binary}")
    print(
        f"# app: examples/python/hello.py; server: 1 worker on CPU {args.server_cpu}; load: taskset -c "
        f"{args.client_cpu} wrk -t1 -c{args.connections} -d{args.duration}s (keep-alive), {args.rounds} rounds; "
        f"servers: {', '.join(names)}"
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
                        f"round {r + 1} {name:16} {res['rps']:9.0f} req/s  {res['requests']:8d} req  "
                        f"cpu {res['cpu_s']:6.2f} s  {res['req_per_cpu_s']:8.0f} req/cpu-s  "
                        f"user {res['user_us_per_req']:6.2f} + sys {res['sys_us_per_req']:6.2f} us/req  "
                        f"errors {res['errors']}  idle cpu {res['idle_cpu_s']:.2f} s/2 s  procs {res['procs']}  "
                        f"cpu{args.server_cpu} other {res['server_cpu_other_s']:.2f} s "
                        f"steal {res['server_cpu_steal_s']:.2f} s  load {res['loadavg']:.2f}"
                        + ("" if res["healthy_after"] else "  STUCK: no answer within 5 s after the load"),
                        flush=True,
                    )
        finally:
            procs.close()

    summary = {}
    for name in names:
        rs = [x for x in results if x["server"] == name]
        summary[name] = {
            "rps_median": bl.median([x["rps"] for x in rs]),
            "req_per_cpu_s_median": bl.median([x["req_per_cpu_s"] for x in rs]),
            "user_us_per_req_median": bl.median([x["user_us_per_req"] for x in rs]),
            "sys_us_per_req_median": bl.median([x["sys_us_per_req"] for x in rs]),
            "errors": sum(x["errors"] for x in rs),
            "stuck_runs": sum(not x["healthy_after"] for x in rs),
        }
    print()
    print("| server | req/s (median) | req per server CPU-s (median) | user µs/req | sys µs/req | errors | stuck runs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        s = summary[name]
        print(
            f"| {name} | {s['rps_median']:.0f} | {s['req_per_cpu_s_median']:.0f} | {s['user_us_per_req_median']:.2f} | "
            f"{s['sys_us_per_req_median']:.2f} | {s['errors']} | {s['stuck_runs']} |"
        )
    print()
    ratios = {}
    for ours in (n for n in names if n.startswith("ringsgi")):
        for other, target in TARGETS.items():
            if other not in names:
                continue
            ratio = summary[ours]["req_per_cpu_s_median"] / summary[other]["req_per_cpu_s_median"]
            per_round = []
            for r in range(1, args.rounds + 1):
                a = next(x for x in results if x["round"] == r and x["server"] == ours)
                b = next(x for x in results if x["round"] == r and x["server"] == other)
                per_round.append(a["req_per_cpu_s"] / b["req_per_cpu_s"])
            ratios[f"{ours}/{other}"] = {"median": ratio, "per_round": per_round}
            if ours == "ringsgi-rust":
                verdict = "(the Rust floor, not judged)"
            else:
                verdict = "met" if ratio >= target else f"MISSED by {(target - ratio) / target * 100:.0f}%"
            print(
                f"{ours}/{other}, req per CPU-s: {ratio:.2f}x (per round "
                f"{', '.join(f'{x:.2f}' for x in per_round)}); target >= {target}x: {verdict}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": bl.machine(),
                    "binary": binary,
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                    "args": vars(args),
                    "runs": results,
                    "summary": summary,
                    "ratios": ratios,
                },
                f,
                indent=2,
            )
    bad = sum(summary[n]["errors"] + summary[n]["stuck_runs"] for n in names)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
