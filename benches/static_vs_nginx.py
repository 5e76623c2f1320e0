#!/usr/bin/env python3
"""Static files, keep-alive: ringsgi (--static-map) against nginx serving the same files.

Two files, 4 KiB and 1 MiB, in a temporary directory both servers serve. Both servers get ONE
worker pinned to the same CPU (default 0); the load generator is `wrk -t1 -cN` pinned to
another (default 1). For each file, runs alternate between the two servers (ringsgi, nginx;
nginx, ringsgi; ...) so that drifting background load hits both alike. Each run starts a fresh
server, checks it serves the file (a GET until it answers 200, bounded), runs a short warm-up,
then the measured wrk run. The number that matters is requests per server CPU-second:
requests completed divided by the CPU time (utime+stime, master and workers, from
/proc/PID/stat) the server's processes used during the measured run; the ratio is
ringsgi / nginx.

nginx is configured as it usually is for static files (`sendfile on; tcp_nopush on;`, no
access log, no open_file_cache); `--nginx-sendfile off` compares against its read+write path,
the same shape as ringsgi's (read into a buffer on the ring, send it).

    python3 benches/static_vs_nginx.py                    # 3 rounds of 10 s per file
    python3 benches/static_vs_nginx.py --rounds 5 --duration 20 --json out.json
    python3 benches/static_vs_nginx.py --rounds 1 --duration 2 --warmup 0   # smoke run

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

FILES = (("4k.bin", 4 * 1024), ("1m.bin", 1024 * 1024))

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
    sendfile {sendfile};
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{
            alias {root}/;
        }}
    }}
}}
"""


def make_files(root):
    os.makedirs(root, exist_ok=True)
    for name, size in FILES:
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(size))


def server_argv(name, args, port, tmp, root):
    pin = ["taskset", "-c", str(args.server_cpu)]
    if name == "ringsgi":
        return pin + [
            args.ringsgi,
            "--cores",
            "1",
            "--http",
            f"127.0.0.1:{port}",
            "--static-map",
            f"/static={root}",
            "--disable-logging",
        ]
    conf = os.path.join(tmp, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(
            NGINX_CONF.format(
                mask=format(1 << args.server_cpu, "b"),
                tmp=tmp,
                port=port,
                root=root,
                sendfile=args.nginx_sendfile,
            )
        )
    return pin + [args.nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]


def one_run(procs, name, fname, args, tmp, root):
    port = bl.free_port()
    server = procs.start(server_argv(name, args, port, tmp, root), os.path.join(tmp, f"{name}-{port}.log"))
    path = f"/static/{fname}"
    try:
        bl.wait_ready(server, "127.0.0.1", port, path=path)
    except BaseException:
        procs.stop(server)
        raise
    res = bl.measured_wrk_run(procs, server, name, port, path, args)
    res.update(file=fname)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs per server and file (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk warm-up per run (default 1)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--nginx-sendfile", choices=("on", "off"), default="on")
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

    print(f"# static_vs_nginx: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi)}")
    print(
        f"# server: 1 worker on CPU {args.server_cpu}; load: taskset -c {args.client_cpu} "
        f"wrk -t1 -c{args.connections} -d{args.duration}s (keep-alive), {args.rounds} rounds per file; "
        f"nginx sendfile {args.nginx_sendfile}"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        # nginx's worker runs as an unprivileged user when started as root: let it read.
        os.chmod(tmp, 0o755)
        root = os.path.join(tmp, "www")
        make_files(root)
        try:
            for fname, _ in FILES:
                for r in range(args.rounds):
                    order = ("ringsgi", "nginx") if r % 2 == 0 else ("nginx", "ringsgi")
                    for name in order:
                        res = one_run(procs, name, fname, args, tmp, root)
                        res["round"] = r + 1
                        results.append(res)
                        print(
                            f"{fname:7} round {r + 1} {name:8} {res['rps']:10.0f} req/s  "
                            f"{res['requests']:9d} req  cpu {res['cpu_s']:6.2f} s  "
                            f"{res['req_per_cpu_s']:9.0f} req/cpu-s  {res['cpu_us_per_req']:7.2f} us/req  "
                            f"errors {res['errors']}  user/sys {res['user_s']:.2f}/{res['sys_s']:.2f} s"
                            + ("" if res["healthy_after"] else "  STUCK: no answer within 5 s after the load"),
                            flush=True,
                        )
        finally:
            procs.close()

    summary = {}
    print()
    print("| file | server | req/s (median) | req per server CPU-s (median) | pooled | errors | stuck runs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for fname, _ in FILES:
        for name in ("ringsgi", "nginx"):
            rs = [x for x in results if x["server"] == name and x["file"] == fname]
            s = {
                "rps_median": bl.median([x["rps"] for x in rs]),
                "req_per_cpu_s_median": bl.median([x["req_per_cpu_s"] for x in rs]),
                "req_per_cpu_s_pooled": sum(x["requests"] for x in rs) / max(sum(x["cpu_s"] for x in rs), 1e-9),
                "errors": sum(x["errors"] for x in rs),
                "stuck_runs": sum(not x["healthy_after"] for x in rs),
            }
            summary[f"{fname}/{name}"] = s
            print(
                f"| {fname} | {name} | {s['rps_median']:.0f} | {s['req_per_cpu_s_median']:.0f} | "
                f"{s['req_per_cpu_s_pooled']:.0f} | {s['errors']} | {s['stuck_runs']} |"
            )
    print()
    ratios = {}
    for fname, _ in FILES:
        a, b = summary[f"{fname}/ringsgi"], summary[f"{fname}/nginx"]
        ratios[fname] = {
            "req_per_cpu_s_median": a["req_per_cpu_s_median"] / b["req_per_cpu_s_median"],
            "req_per_cpu_s_pooled": a["req_per_cpu_s_pooled"] / b["req_per_cpu_s_pooled"],
            "rps_median": a["rps_median"] / b["rps_median"],
        }
        r = ratios[fname]
        print(
            f"{fname}: ratio ringsgi/nginx, req per CPU-s: {r['req_per_cpu_s_median']:.2f}x median, "
            f"{r['req_per_cpu_s_pooled']:.2f}x pooled; req/s: {r['rps_median']:.2f}x"
        )
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
                    "ratios": ratios,
                },
                f,
                indent=2,
            )
    bad = sum(s["errors"] + s["stuck_runs"] for s in summary.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
