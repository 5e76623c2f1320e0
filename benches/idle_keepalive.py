#!/usr/bin/env python3
"""Idle-wake latency: one keep-alive connection, one request every GAP seconds to a
single worker, so that the worker's pump is parked when each request arrives.

Usage: benches/idle_keepalive.py [BINARY] [N] [GAP]
       (defaults: target/debug/ringsgi 200 0.05). Starts `BINARY --cores 1 --app hello`
on a free loopback port, prints the median / p90 / max time from sending a request to
having its whole answer, and stops the server.
"""
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            raise RuntimeError("server closed the connection")
        buf += d
        head, sep, body = buf.partition(b"\r\n\r\n")
        if sep:
            cl = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if cl and len(body) >= cl[0]:
                return


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/ringsgi"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    gap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    port = free_port()
    server = subprocess.Popen(
        [binary, "--cores", "1", "--app", "hello", "--http-socket", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        one(s)  # warm-up
        lat = []
        for _ in range(n):
            time.sleep(gap)
            t = time.perf_counter()
            one(s)
            lat.append(time.perf_counter() - t)
        lat.sort()

        def ms(x):
            return f"{x * 1e3:.3f} ms"

        print(
            f"{n} requests, one every {gap} s: median {ms(lat[n // 2])}, "
            f"p90 {ms(lat[n * 9 // 10])}, max {ms(lat[-1])}"
        )
    finally:
        server.terminate()
        server.wait(timeout=70)


if __name__ == "__main__":
    main()
