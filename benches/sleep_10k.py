#!/usr/bin/env python3
"""Issue #3: 10,000 concurrent connections, each asking the sleep app for 1 s, in two waves.

Server: `ringsgi --cores 2 --async 10000 --listen 16384 --app sleep --disable-logging`
(net.core.somaxconn is raised to 16384 for the run if it is lower, and restored after).
Client: NPROC Python asyncio processes (stdlib only), each opening its share of the 10,000
keep-alive connections at once and sending `GET /?ms=1000` on each; when every response of
the first wave is in, the second wave goes out on the same connections. Reported: total wall
time of the two waves (limit 2.0 s; the ideal is 2.0 s plus connection set-up), failures,
latency percentiles, peak RSS of all server processes, bytes per in-flight request
((peak - idle RSS) / 10,000), server CPU per request.

    python3 benches/sleep_10k.py [--conns 10000] [--procs 2] [--ringsgi target/release/ringsgi]
"""

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


async def one(host, port, waves, barrier_q, lat):
    r, w = await asyncio.open_connection(host, port)
    req = f"GET /?ms=1000 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    for wave in range(waves):
        if wave:
            await barrier_q[wave].wait()
        t0 = time.monotonic()
        w.write(req)
        head = await r.readuntil(b"\r\n\r\n")
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        body = await r.readexactly(n)
        if not head.startswith(b"HTTP/1.1 200") or body != b"Hello World!":
            raise RuntimeError(f"bad response {head[:40]!r}")
        lat.append(time.monotonic() - t0)
    w.close()


async def client_main(host, port, n, waves, start_at, out):
    lat = []
    events = [asyncio.Event() for _ in range(waves)]
    await asyncio.sleep(max(0, start_at - time.time()))
    tasks = [asyncio.create_task(one(host, port, waves, events, lat)) for _ in range(n)]
    failures = 0
    # Release wave k+1 when this process has all wave-k responses.
    for wave in range(1, waves):
        while len(lat) < n * wave and not all(t.done() for t in tasks):
            await asyncio.sleep(0.001)
        events[wave].set()
    for t in tasks:
        try:
            await t
        except Exception:
            failures += 1
    out.put((lat, failures, time.time()))


def client_proc(host, port, n, waves, start_at, out):
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    asyncio.run(client_main(host, port, n, waves, start_at, out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--ringsgi", default="target/release/ringsgi")
    a = ap.parse_args()
    old_somax = int(open("/proc/sys/net/core/somaxconn").read())
    if old_somax < 16384:
        subprocess.run(["sysctl", "-qw", "net.core.somaxconn=16384"], check=True)
    port = bl.free_port() if hasattr(bl, "free_port") else 29500
    srv = subprocess.Popen(
        [a.ringsgi, "--cores", "2", "--async", str(a.conns), "--listen", "16384",
         "--http", f"127.0.0.1:{port}", "--app", "sleep", "--disable-logging"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        bl_wait(port)
        pids = server_pids(srv.pid)
        idle_rss = rss_kb(pids)
        cpu0 = cpu_ticks(pids)
        out = mp.Queue()
        start_at = time.time() + 0.5
        share = a.conns // a.procs
        ps = [mp.Process(target=client_proc, args=("127.0.0.1", port, share, a.waves, start_at, out))
              for _ in range(a.procs)]
        for p in ps:
            p.start()
        peak = idle_rss
        results = []
        while len(results) < a.procs:
            peak = max(peak, rss_kb(pids))
            try:
                results.append(out.get(timeout=0.05))
            except Exception:
                pass
        for p in ps:
            p.join(timeout=10)
        cpu1 = cpu_ticks(pids)
        lat = sorted(x for r in results for x in r[0])
        failures = sum(r[1] for r in results)
        total = max(r[2] for r in results) - start_at
        n = a.conns * a.waves
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
        print(f"# sleep_10k: {a.conns} connections x {a.waves} waves, {a.procs} client processes, "
              f"server {a.ringsgi} --cores 2 --async {a.conns}")
        print(f"total wall time {total:.3f} s (limit 2.0 s)  requests {len(lat)}/{n}  failures {failures}")
        print(f"latency ms p50 {pct(0.5):.0f} p90 {pct(0.9):.0f} p99 {pct(0.99):.0f} max {pct(1.0):.0f}")
        print(f"server RSS idle {idle_rss/1024:.1f} MiB, peak {peak/1024:.1f} MiB, "
              f"{(peak-idle_rss)*1024/a.conns:.0f} bytes per in-flight request")
        print(f"server CPU {(cpu1-cpu0)/100:.2f} s = {(cpu1-cpu0)*10/max(1,len(lat)):.3f} ms per request")
    finally:
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait()
        if old_somax < 16384:
            subprocess.run(["sysctl", "-qw", f"net.core.somaxconn={old_somax}"])


def bl_wait(port):
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start")


def server_pids(master):
    pids = [master]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open(f"/proc/{p}/stat").read().split(")")[1].split()[1] == str(master):
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def rss_kb(pids):
    s = 0
    for p in pids:
        try:
            for l in open(f"/proc/{p}/status"):
                if l.startswith("VmRSS:"):
                    s += int(l.split()[1])
        except OSError:
            pass
    return s


def cpu_ticks(pids):
    t = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().split(")")[1].split()
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t


if __name__ == "__main__":
    main()
