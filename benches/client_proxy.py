#!/usr/bin/env python3
"""The HTTP client (`ringsgi::client`) as a proxy: a ringsgi app that fetches every request
from a local nginx upstream, against the same app answering without the upstream (issue #13).

ringsgi runs `examples/fanout.rs` (one worker pinned to CPU 0). Two kinds of run alternate in
each round, each on a fresh ringsgi:
- `proxy`: `wrk -t1 -cN` on `GET /proxy?u=http://127.0.0.1:UPSTREAM/`: the handler GETs the
  upstream's small body (nginx, `return 200 "Hello World!"`) with the client and answers it;
- `direct`: the same load on `GET /`, a fixed answer from the same binary (no upstream call).
The numbers: requests per second, and the server's CPU per request (ringsgi's processes only,
utime+stime from /proc); the difference is what one outbound request costs the core.
Connections the upstream accepted during each proxy run come from nginx's `stub_status`.

Then pool reuse: a fresh ringsgi gets 1,000 sequential `GET /proxy` on one keep-alive
connection, and the upstream's accepted connections are counted around them (1 means every
request after the first reused the pooled connection).

    python3 benches/client_proxy.py                 # 3 rounds of 10 s each
    python3 benches/client_proxy.py --rounds 5 --duration 20 --json out.json

Needs: target/release/examples/fanout (cargo build --release --example fanout), nginx with
stub_status, wrk, taskset, 2+ CPUs. nginx and wrk share CPU 1.
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import hello_vs_nginx as hv  # noqa: E402

# hello_vs_nginx.py's nginx (the upstream here) plus a stub_status server that counts the
# connections it accepted (pool reuse).
NGINX_CONF = hv.NGINX_CONF.rstrip()[: -len("}}")] + """\
    server {{
        listen 127.0.0.1:{status_port};
        location / {{
            stub_status;
        }}
    }}
}}
"""


def nginx_accepts(status_port):
    """Connections nginx accepted so far (stub_status), minus the one asking."""
    with socket.create_connection(("127.0.0.1", status_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
    lines = data.split(b"\r\n\r\n", 1)[1].decode().splitlines()
    # "server accepts handled requests" / " 12 12 30"
    accepts = int(lines[2].split()[0])
    return accepts - 1


def start_fanout(procs, args, tmp):
    port = bl.free_port()
    argv = ["taskset", "-c", str(args.server_cpu), args.fanout, "--cores", "1",
            "--http", f"127.0.0.1:{port}", "--async", str(max(args.connections, 16)),
            "--disable-logging"]
    server = procs.start(argv, os.path.join(tmp, f"fanout-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port)
    except BaseException:
        procs.stop(server)
        raise
    return server, port


def sequential(port, path, n):
    """`n` GETs of `path`, one after another on one keep-alive connection; all must be 200."""
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    bad = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        for _ in range(n):
            s.sendall(req)
            status = f.readline()
            length = 0
            while True:
                h = f.readline()
                if h in (b"\r\n", b""):
                    break
                k, _, v = h.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            f.read(length)
            if b" 200 " not in status:
                bad += 1
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each kind (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk warm-up per run (default 1)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--sequential", type=int, default=1000, help="requests of the pool-reuse count")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--fanout", default=os.path.join(bl.REPO, "target", "release", "examples", "fanout"))
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    if not os.access(args.fanout, os.X_OK):
        bl.die(f"{args.fanout} is not an executable; run `cargo build --release --example fanout` first")
    args.nginx = bl.need(args.nginx)
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()

    print(f"# client_proxy: {bl.machine()}; {args.fanout} (tree {bl.git_revision()})")
    print(
        f"# ringsgi: 1 worker on CPU {args.server_cpu}; upstream: nginx, 1 worker on CPU {args.client_cpu}; "
        f"load: taskset -c {args.client_cpu} wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            up_port, status_port = bl.free_port(), bl.free_port()
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(mask=format(1 << args.client_cpu, "b"), tmp=tmp,
                                          port=up_port, status_port=status_port))
            nginx = procs.start(
                ["taskset", "-c", str(args.client_cpu), args.nginx, "-p", tmp, "-c", conf,
                 "-e", os.path.join(tmp, "error.log")],
                os.path.join(tmp, "nginx.log"),
            )
            bl.wait_ready(nginx, "127.0.0.1", up_port)
            proxy_path = f"/proxy?u=http%3A%2F%2F127.0.0.1%3A{up_port}%2F"
            for r in range(args.rounds):
                order = ("proxy", "direct") if r % 2 == 0 else ("direct", "proxy")
                for kind in order:
                    server, port = start_fanout(procs, args, tmp)
                    a0 = nginx_accepts(status_port)
                    path = proxy_path if kind == "proxy" else "/"
                    res = bl.measured_wrk_run(procs, server, kind, port, path, args)
                    res["upstream_conns"] = nginx_accepts(status_port) - a0 - 1  # minus our status GET
                    res["round"] = r + 1
                    results.append(res)
                    print(
                        f"round {r + 1} {kind:7} {res['rps']:9.0f} req/s  {res['requests']:8d} req  "
                        f"cpu {res['cpu_s']:6.2f} s  {res['cpu_us_per_req']:7.2f} us/req  "
                        f"errors {res['errors']}  upstream conns {res['upstream_conns'] if kind == 'proxy' else '-'}  "
                        f"cpu{args.server_cpu} other {res['server_cpu_other_s']:.2f} s  "
                        f"steal {res['server_cpu_steal_s']:.2f} s"
                        + ("" if res["healthy_after"] else "  STUCK"),
                        flush=True,
                    )
            # Pool reuse: sequential requests through a fresh ringsgi.
            server, port = start_fanout(procs, args, tmp)
            a0 = nginx_accepts(status_port)
            bad = sequential(port, proxy_path, args.sequential)
            opened = nginx_accepts(status_port) - a0 - 1
            procs.stop(server)
            print(f"sequential: {args.sequential} proxied requests, {bad} not 200, "
                  f"upstream connections opened: {opened}", flush=True)
        finally:
            procs.close()

    summary = {}
    for kind in ("proxy", "direct"):
        rs = [x for x in results if x["server"] == kind]
        summary[kind] = {
            "rps_median": bl.median([x["rps"] for x in rs]),
            "cpu_us_per_req_median": bl.median([x["cpu_us_per_req"] for x in rs]),
            "cpu_us_per_req_pooled": sum(x["cpu_s"] for x in rs) / sum(x["requests"] for x in rs) * 1e6,
            "errors": sum(x["errors"] for x in rs),
            "stuck_runs": sum(not x["healthy_after"] for x in rs),
        }
    conns = [x["upstream_conns"] for x in results if x["server"] == "proxy"]
    print()
    print("| run | req/s (median) | server CPU per request (median) | pooled | errors | stuck |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("proxy", "direct"):
        s = summary[kind]
        print(f"| {kind} | {s['rps_median']:.0f} | {s['cpu_us_per_req_median']:.2f} us | "
              f"{s['cpu_us_per_req_pooled']:.2f} us | {s['errors']} | {s['stuck_runs']} |")
    print()
    added = summary["proxy"]["cpu_us_per_req_median"] - summary["direct"]["cpu_us_per_req_median"]
    print(f"the outbound request adds {added:.2f} us of server CPU per request (medians)")
    print(f"upstream connections per proxy run (-c{args.connections}): {conns}")
    print(f"upstream connections opened for {args.sequential} sequential proxied requests: {opened}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bl.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "args": vars(args), "runs": results, "summary": summary,
                       "sequential": {"requests": args.sequential, "not_200": bad, "opened": opened}},
                      f, indent=2)
    bad_total = bad + sum(summary[k]["errors"] + summary[k]["stuck_runs"] for k in summary)
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())
