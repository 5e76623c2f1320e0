#!/usr/bin/env python3
"""Hello world, keep-alive, 64 connections: ringsgi against nginx, in the same run (issue #2).

Both servers get ONE worker pinned to CPU 0; the load generator is `wrk -t1 -c64` pinned to
CPU 1. Runs alternate between the two servers (ringsgi, nginx; nginx, ringsgi; ...) so that
drifting background load hits both alike. Each run starts a fresh server, checks it is
ready (a GET until it answers 200, bounded), measures its idle CPU use over 2 s, runs a short
warm-up, then the measured wrk run. The number that matters is requests per server
CPU-second: requests completed divided by the CPU time (utime+stime, master and workers,
from /proc/PID/stat) the server's processes used during the measured run.

    python3 benches/hello_vs_nginx.py                 # 3 rounds of 10 s each
    python3 benches/hello_vs_nginx.py --rounds 5 --duration 20 --json out.json
    python3 benches/hello_vs_nginx.py --peers nginx,may_minihttp,hyper,actix

`--peers` (issue #12) adds Rust servers built from crates.io: may_minihttp, hyper 1.x on
tokio's current_thread runtime and actix-web with one worker, each a small Cargo project in
benches/peers/ (not a workspace member, not built by CI), built here on first use with
`cargo build --release --target-dir target/peers`. Each is pinned like nginx (the whole
process on the server CPU) and answers the same 12-byte body. Rounds rotate the order.

Needs: target/release/ringsgi (cargo build --release), nginx, wrk, taskset, 2+ CPUs; cargo
and crates.io for the Rust peers.
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

TARGET = 1.25  # ringsgi / nginx, requests per server CPU-second

NGINX_CONF = """\
worker_processes 1;
worker_cpu_affinity {mask};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "Hello World!";
        }}
    }}
}}
"""


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUST_PEERS = {"may_minihttp": "peer-may-minihttp", "hyper": "peer-hyper", "actix": "peer-actix"}
PEER_TARGET = os.path.join(REPO, "target", "peers")


def build_rust_peer(name):
    """Build benches/peers/NAME in release mode into target/peers (a no-op when fresh)."""
    import subprocess

    manifest = os.path.join(REPO, "benches", "peers", name, "Cargo.toml")
    print(f"# building peer {name}: cargo build --release --manifest-path {manifest}", flush=True)
    subprocess.run(
        [bl.need("cargo"), "build", "--release", "--quiet", "--manifest-path", manifest, "--target-dir", PEER_TARGET],
        check=True,
    )
    return os.path.join(PEER_TARGET, "release", RUST_PEERS[name])


def server_argv(name, args, port, tmp):
    pin = ["taskset", "-c", str(args.server_cpu)]
    if name in RUST_PEERS:
        return pin + [args.peer_bins[name], f"127.0.0.1:{port}"]
    if name == "ringsgi":
        return pin + [
            args.ringsgi,
            "--cores",
            "1",
            "--http",
            f"127.0.0.1:{port}",
            "--app",
            "hello",
            "--disable-logging",
        ]
    conf = os.path.join(tmp, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(mask=format(1 << args.server_cpu, "b"), tmp=tmp, port=port))
    return pin + [args.nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]


def one_run(procs, name, args, tmp):
    port = bl.free_port()
    server = procs.start(server_argv(name, args, port, tmp), os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port)
        idle = bl.idle_cpu(server.pid, 2.0)
    except BaseException:
        procs.stop(server)
        raise
    res = bl.measured_wrk_run(procs, server, name, port, "/", args)
    res.update(idle_cpu_s=idle)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs per server (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk warm-up per run (default 1)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi)")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument(
        "--peers",
        default="nginx",
        help="comma-separated peers run against ringsgi: nginx, may_minihttp, hyper, actix (default nginx)",
    )
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p != "nginx" and p not in RUST_PEERS:
            bl.die(f"unknown peer {p!r}: nginx, {', '.join(RUST_PEERS)}")
    if "nginx" in peers:
        args.nginx = bl.need(args.nginx)
    args.peer_bins = {p: build_rust_peer(p) for p in peers if p in RUST_PEERS}
    servers = ["ringsgi"] + peers
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()

    print(f"# hello_vs_nginx: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi)}")
    print(
        f"# server: 1 worker on CPU {args.server_cpu}; load: taskset -c {args.client_cpu} "
        f"wrk -t1 -c{args.connections} -d{args.duration}s (keep-alive), {args.rounds} rounds; servers {', '.join(servers)}"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                # Rotate the order (ringsgi, nginx; nginx, ringsgi; ... with one peer).
                k = r % len(servers)
                order = servers[k:] + servers[:k]
                if len(servers) == 2 and r % 2:
                    order = servers[::-1]
                for name in order:
                    res = one_run(procs, name, args, tmp)
                    res["round"] = r + 1
                    results.append(res)
                    print(
                        f"round {r + 1} {name:12} {res['rps']:10.0f} req/s  {res['requests']:9d} req  "
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
            "req_per_cpu_s_pooled": sum(x["requests"] for x in rs) / sum(x["cpu_s"] for x in rs),
            "user_us_per_req_median": bl.median([x["user_s"] * 1e6 / max(1, x["requests"]) for x in rs]),
            "sys_us_per_req_median": bl.median([x["sys_s"] * 1e6 / max(1, x["requests"]) for x in rs]),
            "errors": sum(x["errors"] for x in rs),
            "stuck_runs": sum(not x["healthy_after"] for x in rs),
            "idle_cpu_s_max": max(x["idle_cpu_s"] for x in rs),
        }

    def per_round(peer):
        out = []
        for r in range(1, args.rounds + 1):
            a = next(x for x in results if x["round"] == r and x["server"] == "ringsgi")
            b = next(x for x in results if x["round"] == r and x["server"] == peer)
            out.append(a["req_per_cpu_s"] / b["req_per_cpu_s"])
        return out

    print()
    print(
        "| server | req/s (median) | req per server CPU-s (median) | pooled | user / sys µs per req (median) | "
        "ringsgi / it, req per CPU-s (median; per round) | errors | stuck runs | idle CPU (max, s per 2 s) |"
    )
    print("|---|---:|---:|---:|---|---|---:|---:|---:|")
    ratios = {}
    for name in servers:
        s_ = summary[name]
        if name == "ringsgi":
            rel = "—"
        else:
            ratios[name] = {
                "median": summary["ringsgi"]["req_per_cpu_s_median"] / s_["req_per_cpu_s_median"],
                "pooled": summary["ringsgi"]["req_per_cpu_s_pooled"] / s_["req_per_cpu_s_pooled"],
                "per_round": per_round(name),
                "rps": summary["ringsgi"]["rps_median"] / s_["rps_median"],
            }
            rel = f"{ratios[name]['median']:.2f}x; " + ", ".join(f"{x:.2f}" for x in ratios[name]["per_round"])
        print(
            f"| {name} | {s_['rps_median']:.0f} | {s_['req_per_cpu_s_median']:.0f} | "
            f"{s_['req_per_cpu_s_pooled']:.0f} | {s_['user_us_per_req_median']:.2f} / {s_['sys_us_per_req_median']:.2f} | "
            f"{rel} | {s_['errors']} | {s_['stuck_runs']} | {s_['idle_cpu_s_max']:.2f} |"
        )
    print()
    ratio_eff = ratio_pooled = ratio_rps = None
    if "nginx" in ratios:
        ratio_eff = ratios["nginx"]["median"]
        ratio_pooled = ratios["nginx"]["pooled"]
        ratio_rps = ratios["nginx"]["rps"]
        print(f"ratio ringsgi/nginx, req per CPU-s: {ratio_eff:.2f}x median, {ratio_pooled:.2f}x pooled, "
              f"per round {', '.join(f'{x:.2f}' for x in ratios['nginx']['per_round'])}")
        print(f"ratio ringsgi/nginx, req/s: {ratio_rps:.2f}x")
        verdict = "met" if ratio_eff >= TARGET else f"MISSED by {(TARGET - ratio_eff) / TARGET * 100:.0f}%"
        print(f"target >= {TARGET}x nginx in req per CPU-s: {verdict}")
    for name, r_ in ratios.items():
        if name != "nginx":
            print(f"ringsgi/{name}, req per CPU-s: {r_['median']:.2f}x median ({'ahead' if r_['median'] > 1 else 'behind'})")
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
                    "ratio_req_per_cpu_s_median": ratio_eff,
                    "ratio_req_per_cpu_s_pooled": ratio_pooled,
                    "ratios": ratios,
                    "ratio_rps_median": ratio_rps,
                },
                f,
                indent=2,
            )
    bad = sum(summary[n]["errors"] + summary[n]["stuck_runs"] for n in servers)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
