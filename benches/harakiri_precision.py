#!/usr/bin/env python3
"""Issue #3: harakiri precision with the other slots busy.

Server: `ringsgi --cores 1 --harakiri 0.2 --async 1000 --app sleep --disable-logging`.
Background load: BUSY keep-alive connections looping on `GET /?ms=5&harakiri=0` (short
sleeps, no deadline of their own). Measured: PROBES requests `GET /?ms=5000`, each must be
cancelled 200 ms after it started; per probe, (time its 504 arrived - time it was sent - 200 ms).
Reported: p50/p90/p99/max of that delay in ms, and how many probes did not get a 504.

    python3 benches/harakiri_precision.py [--busy 200] [--probes 200]
"""

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


async def request(r, w, target):
    w.write(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    head = await r.readuntil(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    await r.readexactly(n)
    return int(head[9:12])


async def busy_loop(port, stop):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    while not stop.is_set():
        await request(r, w, "/?ms=5&harakiri=0")
    w.close()


async def probe(port, delays, bad):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    status = await request(r, w, "/?ms=5000")
    dt = time.monotonic() - t0
    w.close()
    if status == 504:
        delays.append((dt - 0.2) * 1000)
    else:
        bad.append(status)


async def run(port, busy, probes):
    stop = asyncio.Event()
    loops = [asyncio.create_task(busy_loop(port, stop)) for _ in range(busy)]
    await asyncio.sleep(0.5)  # let the background load reach its steady state
    delays, bad = [], []
    # Probes in small groups so that they overlap with each other and with the load.
    for i in range(0, probes, 20):
        await asyncio.gather(*(probe(port, delays, bad) for _ in range(min(20, probes - i))))
    stop.set()
    await asyncio.gather(*loops, return_exceptions=True)
    return delays, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--busy", type=int, default=200)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--ringsgi", default="target/release/ringsgi")
    a = ap.parse_args()
    port = bl.free_port()
    srv = subprocess.Popen(
        ["taskset", "-c", "0", a.ringsgi, "--cores", "1", "--harakiri", "0.2", "--async", "1000",
         "--http", f"127.0.0.1:{port}", "--app", "sleep", "--disable-logging"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.02)
        delays, bad = asyncio.run(run(port, a.busy, a.probes))
        delays.sort()
        pct = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
        print(f"# harakiri_precision: --harakiri 0.2, {a.busy} busy keep-alive loops, {a.probes} probes")
        print(f"cancel delay past the deadline (ms, at the client): p50 {pct(0.5):.1f} "
              f"p90 {pct(0.9):.1f} p99 {pct(0.99):.1f} max {delays[-1]:.1f}; "
              f"probes without a 504: {len(bad)}")
    finally:
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait()


if __name__ == "__main__":
    main()
