#!/usr/bin/env python3
"""User-space memory of idle keep-alive connections (issue #8): RSS growth per connection,
ringsgi against nginx in the same run.

For each server (one worker each: ringsgi `--cores 1`, nginx `worker_processes 1`), a fresh
process: the RSS of its processes (VmRSS summed over the process group) once it answers;
then {conns} keep-alive connections, each sending one request and reading its answer; then
{idle} s of idleness (longer than ringsgi's hot window, so that every connection is parked);
the RSS again; (after - before) / conns is the cost of one idle connection. The
connections are checked to be still open and usable afterwards (one more request on a
sample of them). RSS counts user-space pages only: socket buffers are kernel memory.

    python3 benches/idle_conns.py                     # 8,000 connections, ringsgi and nginx
    python3 benches/idle_conns.py --conns 16000 --servers ringsgi
    python3 benches/idle_conns.py --no-request        # new connections that send nothing

Needs: target/release/ringsgi, nginx (unless --servers ringsgi).
"""

import argparse
import json
import os
import selectors
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

TARGET = 256  # bytes per idle connection

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 40000;
events {{
    worker_connections 40000;
}}
http {{
    access_log off;
    keepalive_timeout 300;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "Hello World!";
        }}
    }}
}}
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def server_argv(name, args, port, tmp):
    if name == "ringsgi":
        return [args.ringsgi, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "hello",
                "--disable-logging", "--keepalive-timeout", "300", "--listen", "4096"]
    conf = os.path.join(tmp, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port))
    return [args.nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]


def exchange_all(socks, timeout=60.0):
    """Send one request on every socket and read one whole answer on each (non-blocking)."""
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        s.setblocking(False)
        s.send(REQUEST)
        sel.register(s, selectors.EVENT_READ)
        pending[s] = b""
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            data = s.recv(4096)
            if not data:
                raise RuntimeError("a connection was closed before its answer")
            pending[s] += data
            if pending[s].endswith(b"Hello World!"):
                sel.unregister(s)
                del pending[s]
    sel.close()
    if pending:
        raise RuntimeError(f"{len(pending)} answers missing after {timeout} s")


def one_server(procs, name, args, tmp):
    port = bl.free_port()
    server = procs.start(server_argv(name, args, port, tmp), os.path.join(tmp, f"{name}-{port}.log"))
    socks = []
    try:
        bl.wait_ready(server, "127.0.0.1", port)
        time.sleep(1.0)
        before = bl.group_rss_kb(server.pid)
        for i in range(args.conns):
            socks.append(socket.create_connection(("127.0.0.1", port)))
            # Batches, so that the backlog never overflows.
            if len(socks) % 500 == 0 and not args.no_request:
                exchange_all(socks[-500:])
        rest = len(socks) % 500
        if rest and not args.no_request:
            exchange_all(socks[-rest:])
        time.sleep(args.idle)
        after = bl.group_rss_kb(server.pid)
        # Still open and usable: one more request on every 16th connection.
        exchange_all(socks[::16])
        alive = server.poll() is None
    finally:
        for s in socks:
            s.close()
        procs.stop(server)
    return {
        "server": name,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "bytes_per_conn": (after - before) * 1024 / args.conns,
        "alive": alive,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=8000, help="idle keep-alive connections (default 8000)")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds idle before measuring (default 3)")
    ap.add_argument("--no-request", action="store_true",
                    help="new connections that send nothing (yet) instead of kept-alive ones")
    ap.add_argument("--servers", default="ringsgi,nginx")
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi)")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    names = args.servers.split(",")
    if "ringsgi" in names:
        args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    if "nginx" in names:
        args.nginx = bl.need(args.nginx)
    nofile = bl.raise_nofile()
    if nofile < args.conns + 100:
        bl.die(f"RLIMIT_NOFILE {nofile} is too low for {args.conns} connections")
    bl.on_signal_raise()
    print(f"# idle_conns: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi) if 'ringsgi' in names else '-'}")
    if args.no_request:
        print(f"# {args.conns} new connections that send nothing, then {args.idle} s idle")
    else:
        print(f"# {args.conns} keep-alive connections, one request each, then {args.idle} s idle")
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for name in names:
                res = one_server(procs, name, args, tmp)
                results.append(res)
                print(
                    f"{name:8} RSS {res['rss_before_kb'] / 1024:7.1f} MiB -> {res['rss_after_kb'] / 1024:7.1f} MiB: "
                    f"{res['bytes_per_conn']:6.0f} B per idle connection" + ("" if res["alive"] else "  SERVER DIED"),
                    flush=True,
                )
        finally:
            procs.close()
    bad = 0
    for res in results:
        if res["server"] == "ringsgi":
            ok = res["bytes_per_conn"] <= TARGET and res["alive"]
            bad += not ok
            print(f"ringsgi: <= {TARGET} B per idle connection: {'met' if ok else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bl.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "args": vars(args), "results": results}, f, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
