#!/usr/bin/env python3
"""axum hello, keep-alive, 64 connections: the same Router through ringsgi and on axum's own
Tokio server, in the same run (issue 13).

ringsgi serves `examples/axum.rs` (`ringsgi::tower::app(router)`, one worker); the peer is
`benches/peers/axum_tokio` (`axum::serve` on one current-thread Tokio runtime), whose Router has
the same routes minus the ringsgi-only ones. Both are pinned to CPU 0; the load generator is
`wrk -t1 -c64` on `/hello`, pinned to CPU 1. Each round runs the servers in a rotated order so
that drifting background load hits all alike. Each run starts a fresh server, checks it answers,
measures its idle CPU use over 2 s, runs a short warm-up, then the measured wrk run. The number
that matters is requests per server CPU-second: requests completed divided by the CPU time
(utime+stime of every process of the server, from /proc/PID/stat) used during the measured run.

    cargo build --release --example axum
    cargo build --release --manifest-path benches/peers/axum_tokio/Cargo.toml
    cargo build --release                             # the `app` series (--no-app: without)
    python3 benches/axum_vs_tokio.py                  # 3 rounds of 10 s each
    python3 benches/axum_vs_tokio.py --rounds 5 --duration 20 --json out.json

Needs: the two binaries above, wrk, taskset, 2+ CPUs.
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

SERVERS = ("ringsgi", "tokio", "app")
PATH = "/hello"


def server_argv(name, args, port):
    pin = ["taskset", "-c", str(args.server_cpu)]
    if name == "tokio":
        return pin + [args.peer, f"127.0.0.1:{port}"]
    ringsgi = [args.ringsgi] if name == "ringsgi" else [args.app, "--app", "hello"]
    return pin + ringsgi + ["--cores", "1", "--http", f"127.0.0.1:{port}", "--disable-logging"]


def one_run(procs, name, args, tmp):
    port = bl.free_port()
    server = procs.start(server_argv(name, args, port), os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port, path=PATH)
        idle = bl.idle_cpu(server.pid, 2.0)
    except BaseException:
        procs.stop(server)
        raise
    res = bl.measured_wrk_run(procs, server, name, port, PATH, args)
    res.update(idle_cpu_s=idle)
    return res


def binary(path, default, build):
    path = path or os.path.join(bl.REPO, default)
    if not os.access(path, os.X_OK):
        bl.die(f"{path} not found: {build}")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs per server (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk warm-up per run (default 1)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--ringsgi", help="ringsgi's axum example (default target/release/examples/axum)")
    ap.add_argument("--peer", help="the Tokio peer (default benches/peers/axum_tokio/target/release/axum-tokio-peer)")
    ap.add_argument("--app", help="ringsgi's binary for the `app` series (default target/release/ringsgi)")
    ap.add_argument("--no-app", action="store_true", help="leave the `app` series out")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    args.ringsgi = binary(
        args.ringsgi, "target/release/examples/axum", "cargo build --release --example axum"
    )
    args.peer = binary(
        args.peer,
        "benches/peers/axum_tokio/target/release/axum-tokio-peer",
        "cargo build --release --manifest-path benches/peers/axum_tokio/Cargo.toml",
    )
    servers = SERVERS[:2] if args.no_app else SERVERS
    if not args.no_app:
        args.app = binary(args.app, "target/release/ringsgi", "cargo build --release")
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()

    print(f"# axum_vs_tokio: {bl.machine()}; tree {bl.git_revision()}")
    print(f"# ringsgi: {args.ringsgi}; tokio peer: {args.peer}; app: {args.app}")
    print(
        f"# server: 1 worker/thread on CPU {args.server_cpu}; load: taskset -c {args.client_cpu} "
        f"wrk -t1 -c{args.connections} -d{args.duration}s {PATH} (keep-alive), {args.rounds} rounds"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                order = servers[r % len(servers) :] + servers[: r % len(servers)]
                for name in order:
                    res = one_run(procs, name, args, tmp)
                    res["round"] = r + 1
                    results.append(res)
                    print(
                        f"round {r + 1} {name:8} {res['rps']:10.0f} req/s  {res['requests']:9d} req  "
                        f"cpu {res['cpu_s']:6.2f} s  {res['req_per_cpu_s']:9.0f} req/cpu-s  "
                        f"{res['cpu_us_per_req']:6.2f} us/req  errors {res['errors']}  "
                        f"user/sys {res['user_s']:.2f}/{res['sys_s']:.2f} s  "
                        f"idle cpu {res['idle_cpu_s']:.2f} s/2 s  procs {res['procs']}  "
                        f"cpu{args.server_cpu} other {res['server_cpu_other_s']:.2f} s "
                        f"steal {res['server_cpu_steal_s']:.2f} s  "
                        f"cpu{args.client_cpu} busy {res['client_cpu_busy_s']:.2f} s"
                        + ("" if res["healthy_after"] else "  STUCK: no answer within 5 s after the load"),
                        flush=True,
                    )
        finally:
            procs.close()

    summary = {}
    for name in servers:
        rs = [x for x in results if x["server"] == name]
        summary[name] = {
            "rps_median": bl.median([x["rps"] for x in rs]),
            "req_per_cpu_s_median": bl.median([x["req_per_cpu_s"] for x in rs]),
            "cpu_us_per_req_median": bl.median([x["cpu_us_per_req"] for x in rs]),
            "req_per_cpu_s_pooled": sum(x["requests"] for x in rs) / sum(x["cpu_s"] for x in rs),
            "errors": sum(x["errors"] for x in rs),
            "stuck_runs": sum(not x["healthy_after"] for x in rs),
            "idle_cpu_s_max": max(x["idle_cpu_s"] for x in rs),
        }
    a, b = summary["ringsgi"], summary["tokio"]
    ratio_eff = a["req_per_cpu_s_median"] / b["req_per_cpu_s_median"]
    ratio_pooled = a["req_per_cpu_s_pooled"] / b["req_per_cpu_s_pooled"]
    ratio_rps = a["rps_median"] / b["rps_median"]
    per_round = []
    for r in range(1, args.rounds + 1):
        x = next(x for x in results if x["round"] == r and x["server"] == "ringsgi")
        y = next(y for y in results if y["round"] == r and y["server"] == "tokio")
        per_round.append(x["req_per_cpu_s"] / y["req_per_cpu_s"])

    print()
    print(
        "| server | req/s (median) | req per server CPU-s (median) | CPU µs per req (median) | pooled req/CPU-s | "
        "errors | stuck runs | idle CPU (max, s per 2 s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in servers:
        s = summary[name]
        print(
            f"| {name} | {s['rps_median']:.0f} | {s['req_per_cpu_s_median']:.0f} | {s['cpu_us_per_req_median']:.2f} | "
            f"{s['req_per_cpu_s_pooled']:.0f} | {s['errors']} | {s['stuck_runs']} | {s['idle_cpu_s_max']:.2f} |"
        )
    print()
    print(
        f"ratio ringsgi/tokio, req per CPU-s: {ratio_eff:.2f}x median, {ratio_pooled:.2f}x pooled, "
        f"per round {', '.join(f'{x:.2f}' for x in per_round)}"
    )
    print(f"ratio ringsgi/tokio, req/s: {ratio_rps:.2f}x")
    if "app" in summary:
        per_round_app = []
        for r in range(1, args.rounds + 1):
            x = next(x for x in results if x["round"] == r and x["server"] == "ringsgi")
            y = next(y for y in results if y["round"] == r and y["server"] == "app")
            per_round_app.append(x["req_per_cpu_s"] / y["req_per_cpu_s"])
        print(
            f"ratio ringsgi (axum)/app (plain App), req per CPU-s: "
            f"{a['req_per_cpu_s_median'] / summary['app']['req_per_cpu_s_median']:.2f}x median, "
            f"per round {', '.join(f'{x:.2f}' for x in per_round_app)}; CPU µs per request added by "
            f"the adapter and axum: {a['cpu_us_per_req_median'] - summary['app']['cpu_us_per_req_median']:.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": bl.machine(),
                    "tree": bl.git_revision(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                    "args": vars(args),
                    "runs": results,
                    "summary": summary,
                    "ratio_req_per_cpu_s_median": ratio_eff,
                    "ratio_req_per_cpu_s_pooled": ratio_pooled,
                    "ratio_per_round": per_round,
                    "ratio_rps_median": ratio_rps,
                },
                f,
                indent=2,
            )
    bad = sum(summary[n]["errors"] + summary[n]["stuck_runs"] for n in servers)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
