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

Needs: target/release/ringsgi (cargo build --release), nginx, wrk, taskset, 2+ CPUs.
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


def server_argv(name, args, port, tmp):
    pin = ["taskset", "-c", str(args.server_cpu)]
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
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    args.nginx = bl.need(args.nginx)
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()

    print(f"# hello_vs_nginx: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi)}")
    print(
        f"# server: 1 worker on CPU {args.server_cpu}; load: taskset -c {args.client_cpu} "
        f"wrk -t1 -c{args.connections} -d{args.duration}s (keep-alive), {args.rounds} rounds"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                order = ("ringsgi", "nginx") if r % 2 == 0 else ("nginx", "ringsgi")
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
    for name in ("ringsgi", "nginx"):
        rs = [x for x in results if x["server"] == name]
        summary[name] = {
            "rps_median": bl.median([x["rps"] for x in rs]),
            "req_per_cpu_s_median": bl.median([x["req_per_cpu_s"] for x in rs]),
            "req_per_cpu_s_pooled": sum(x["requests"] for x in rs) / sum(x["cpu_s"] for x in rs),
            "errors": sum(x["errors"] for x in rs),
            "stuck_runs": sum(not x["healthy_after"] for x in rs),
            "idle_cpu_s_max": max(x["idle_cpu_s"] for x in rs),
        }
    ratio_eff = summary["ringsgi"]["req_per_cpu_s_median"] / summary["nginx"]["req_per_cpu_s_median"]
    ratio_pooled = summary["ringsgi"]["req_per_cpu_s_pooled"] / summary["nginx"]["req_per_cpu_s_pooled"]
    ratio_rps = summary["ringsgi"]["rps_median"] / summary["nginx"]["rps_median"]
    per_round = []
    for r in range(1, args.rounds + 1):
        a = next(x for x in results if x["round"] == r and x["server"] == "ringsgi")
        b = next(x for x in results if x["round"] == r and x["server"] == "nginx")
        per_round.append(a["req_per_cpu_s"] / b["req_per_cpu_s"])

    print()
    print(
        "| server | req/s (median) | req per server CPU-s (median) | pooled | errors | "
        "stuck runs | idle CPU (max, s per 2 s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("ringsgi", "nginx"):
        s = summary[name]
        print(
            f"| {name} | {s['rps_median']:.0f} | {s['req_per_cpu_s_median']:.0f} | "
            f"{s['req_per_cpu_s_pooled']:.0f} | {s['errors']} | {s['stuck_runs']} | {s['idle_cpu_s_max']:.2f} |"
        )
    print()
    print(f"ratio ringsgi/nginx, req per CPU-s: {ratio_eff:.2f}x median, {ratio_pooled:.2f}x pooled, "
          f"per round {', '.join(f'{x:.2f}' for x in per_round)}")
    print(f"ratio ringsgi/nginx, req/s: {ratio_rps:.2f}x")
    verdict = "met" if ratio_eff >= TARGET else f"MISSED by {(TARGET - ratio_eff) / TARGET * 100:.0f}%"
    print(f"target >= {TARGET}x nginx in req per CPU-s: {verdict}")
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
                    "ratio_per_round": per_round,
                    "ratio_rps_median": ratio_rps,
                },
                f,
                indent=2,
            )
    bad = sum(summary[n]["errors"] + summary[n]["stuck_runs"] for n in ("ringsgi", "nginx"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
