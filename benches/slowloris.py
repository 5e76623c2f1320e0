#!/usr/bin/env python3
"""Slowloris against the defaults (issue #8): 2,000 never-ending request heads, then normal
clients, ringsgi against nginx in the same run.

Each server gets 2 workers (ringsgi: `--cores 2` at its default `--async 100`; nginx:
`worker_processes 2`). For each server, in a fresh process:

1. unloaded: `wrk -t1 -c{clients} -d{duration}s --latency` with `Connection: close` (every
   request on a new connection: accept, head, slot, answer, close), its p99 and errors;
2. an attacker process opens {slow} connections that send a request line and then one header
   line per second, never the empty line that ends the head; a connection the server closes
   (408 after its header timeout) is opened again, so the pressure stays at {slow};
3. once all of them are connected and have sent their first line, the same wrk run again.

`--attack uploads` instead sends, on each attacking connection, a `POST` announcing a 1 GB
body and then the body as fast as the server takes it, never reading the answer: one
client's unread upload and slow reading must not starve the others.

The issue's bar: under attack, 0 failed requests and a p99 within 3x of the unloaded p99.

    python3 benches/slowloris.py                      # ringsgi and nginx, 2,000 slow heads
    python3 benches/slowloris.py --servers ringsgi --slow 400 --json out.json

wrk's `--timeout 5s` makes a request that gets no answer within 5 s of a 10 s run a failure.

Needs: target/release/ringsgi (cargo build --release), wrk, nginx (unless --servers ringsgi).
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

P99_FACTOR = 3.0

NGINX_CONF = """\
worker_processes 2;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 20000;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            default_type text/plain;
            return 200 "Hello World!";
        }}
    }}
}}
"""

# The attacker: a separate Python process (asyncio), so that its work is not counted as ours
# and it can be killed as a group. Prints "connected N" once N connections have sent their
# first line, then "stats opened=... closed_by_server=..." every 5 s.
ATTACKER = r"""
import asyncio, sys, time
host, port, n, every, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
CHUNK = b"x" * 65536
opened = closed = 0
ready = set()

async def one(i):
    global opened, closed
    while True:
        try:
            r, w = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened += 1
        try:
            if mode == "uploads":
                # A large upload the app never reads, the answer never read either.
                w.write(f"POST /up/{i} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000000\r\n\r\n".encode())
                await w.drain()
                ready.add(i)
                while True:
                    w.write(CHUNK)
                    await w.drain()
            w.write(f"GET /slow/{i} HTTP/1.1\r\nHost: {host}\r\n".encode())
            await w.drain()
            ready.add(i)
            while True:
                try:
                    data = await asyncio.wait_for(r.read(4096), every)
                except asyncio.TimeoutError:
                    w.write(b"X-Slow: 1\r\n")
                    await w.drain()
                    continue
                if not data:
                    break
        except OSError:
            pass
        closed += 1
        w.close()

async def main():
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    announced = False
    t = time.monotonic()
    while True:
        await asyncio.sleep(0.1)
        if not announced and len(ready) >= n:
            print(f"connected {len(ready)}", flush=True)
            announced = True
        if time.monotonic() - t >= 5:
            t = time.monotonic()
            print(f"stats opened={opened} closed_by_server={closed}", flush=True)

asyncio.run(main())
"""


def server_argv(name, args, port, tmp):
    if name == "ringsgi":
        return [args.ringsgi, "--cores", "2", "--http", f"127.0.0.1:{port}", "--app", "hello", "--disable-logging"]
    conf = os.path.join(tmp, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port))
    return [args.nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]


def parse_p99_ms(text):
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        raise RuntimeError(f"no p99 in wrk output:\n{text}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def wrk_run(procs, args, port):
    out = procs.run(
        [args.wrk, "-t1", f"-c{args.clients}", f"-d{args.duration}s", "--latency", "--timeout", "5s",
         "-H", "Connection: close", f"http://127.0.0.1:{port}/"],
        timeout=args.duration + 40,
    )
    res = bl.parse_wrk(out)
    # A run with no answer at all has no latency distribution.
    res["p99_ms"] = parse_p99_ms(out) if res["requests"] else float("inf")
    if args.verbose:
        print(out, file=sys.stderr)
    return res


def wait_connected(attacker, n, timeout):
    """Until the attacker says all `n` connections sent their first line (its stdout)."""
    deadline = time.monotonic() + timeout
    os.set_blocking(attacker.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        if attacker.poll() is not None:
            raise RuntimeError(f"attacker exited {attacker.returncode}: {buf!r}")
        chunk = attacker.stdout.read() or b""
        buf += chunk
        if f"connected {n}".encode() in buf:
            return
        time.sleep(0.1)
    raise RuntimeError(f"only part of {n} slow connections after {timeout} s: {buf[-200:]!r}")


def one_server(procs, name, args, tmp):
    port = bl.free_port()
    server = procs.start(server_argv(name, args, port, tmp), os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port)
        unloaded = wrk_run(procs, args, port)
        import subprocess

        attacker = subprocess.Popen(
            [sys.executable, "-c", ATTACKER, "127.0.0.1", str(port), str(args.slow), "1.0", args.attack],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.procs.append(attacker)
        try:
            t0 = time.monotonic()
            wait_connected(attacker, args.slow, 60)
            connect_s = time.monotonic() - t0
            rss_kb = bl.group_rss_kb(server.pid)
            loaded = wrk_run(procs, args, port)
            alive = server.poll() is None
        finally:
            procs.stop(attacker)
    finally:
        procs.stop(server)
    return {
        "server": name,
        "unloaded": unloaded,
        "loaded": loaded,
        "connect_s": connect_s,
        "rss_kb_under_attack": rss_kb,
        "alive": alive,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow", type=int, default=2000, help="attacking connections (default 2000)")
    ap.add_argument("--attack", choices=("heads", "uploads"), default="heads",
                    help="heads: never-ending heads (default); uploads: 1 GB uploads that nobody "
                         "reads, sent as fast as the server takes them, answers never read")
    ap.add_argument("--clients", type=int, default=10, help="wrk connections (default 10)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--servers", default="ringsgi,nginx")
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi)")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output to stderr")
    args = ap.parse_args()
    names = args.servers.split(",")
    if "ringsgi" in names:
        args.ringsgi = bl.ringsgi_binary(args.ringsgi)
    if "nginx" in names:
        args.nginx = bl.need(args.nginx)
    args.wrk = bl.need(args.wrk)
    nofile = bl.raise_nofile()
    if nofile < args.slow + 2 * args.clients + 100:
        bl.die(f"RLIMIT_NOFILE {nofile} is too low for {args.slow} slow connections")
    bl.on_signal_raise()

    print(f"# slowloris: {bl.machine()}; ringsgi {bl.describe_binary(args.ringsgi) if 'ringsgi' in names else '-'}")
    what = "never-ending heads (one header line per second)" if args.attack == "heads" else "unread 1 GB uploads, answers unread"
    print(
        f"# {args.slow} {what}; normal clients: "
        f"wrk -t1 -c{args.clients} -d{args.duration}s --latency -H 'Connection: close'"
    )
    results = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for name in names:
                res = one_server(procs, name, args, tmp)
                results.append(res)
                u, lo = res["unloaded"], res["loaded"]
                print(
                    f"{name:8} unloaded {u['rps']:8.0f} req/s p99 {u['p99_ms']:7.2f} ms errors {u['errors']}  |  "
                    f"{args.slow} {args.attack} (connected in {res['connect_s']:.1f} s, server RSS "
                    f"{res['rss_kb_under_attack'] / 1024:.1f} MiB): {lo['rps']:8.0f} req/s p99 "
                    f"{lo['p99_ms']:7.2f} ms errors {lo['errors']} ({lo['socket_errors']}, non-2xx {lo['non2xx']})"
                    + ("" if res["alive"] else "  SERVER DIED"),
                    flush=True,
                )
        finally:
            procs.close()
    bad = 0
    print()
    print("| server | unloaded req/s | unloaded p99 | attacked req/s | attacked p99 | p99 ratio | failed (answered) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for res in results:
        u, lo = res["unloaded"], res["loaded"]
        ratio = lo["p99_ms"] / u["p99_ms"] if u["p99_ms"] > 0 and lo["requests"] else float("inf")
        res["p99_ratio"] = ratio
        ok = lo["errors"] == 0 and ratio <= P99_FACTOR and res["alive"] and lo["requests"] > 0
        bad += not ok
        print(
            f"| {res['server']} | {u['rps']:.0f} | {u['p99_ms']:.2f} ms | {lo['rps']:.0f} | "
            f"{lo['p99_ms']:.2f} ms | {ratio:.2f}x | {lo['errors']} (of {lo['requests']} answered) |"
        )
    for res in results:
        lo = res["loaded"]
        met = lo["requests"] > 0 and lo["errors"] == 0 and res["p99_ratio"] <= P99_FACTOR and res["alive"]
        verdict = "met" if met else "MISSED"
        print(f"{res['server']}: 0 failed and p99 within {P99_FACTOR}x of unloaded: {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bl.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "args": vars(args), "results": results}, f, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
