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

`--client wrk` (issue #12) replaces the Python waves with `wrk -t2 -c10000 -d20s --timeout 10s`
on the same server: every connection keeps one 1 s request in flight for 20 s. Its ceiling is
connections / 1 s = 10,000 req/s; since a request takes a little more than 1 s, each connection
completes at most 19 requests in wrk's 20 s, so 9,500 req/s is the most wrk can report. Reported:
wrk's req/s against both, errors, the peak RSS of all server processes (sampled every 50 ms) and
per connection above idle, server CPU per request.

    python3 benches/sleep_10k.py --client wrk [--duration 20] [--threads 2] [--maps]

With `--client wrk` it also prints, per process (master, each worker), the RSS split into
anonymous / file-backed / shared-memory pages (RssAnon, RssFile, RssShmem of /proc/PID/status)
at idle and at the sample where the summed RSS peaked, and the PSS (/proc/PID/smaps_rollup)
at idle and 2 s before the end of the load: file pages (the binary, libc) count in every
process's RSS, once in the sum of PSS. `--maps` adds each process's resident kB by mapping
([heap], the binary, each library, anonymous mmaps, shared memory, io_uring rings).
"""

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import threading
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
    ap.add_argument("--client", choices=("python", "wrk"), default="python")
    ap.add_argument("--duration", type=int, default=20, help="wrk: seconds (default 20)")
    ap.add_argument("--threads", type=int, default=2, help="wrk: threads (default 2)")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("-v", "--verbose", action="store_true", help="print wrk's output")
    ap.add_argument("--maps", action="store_true",
                    help="wrk: also print each process's resident kB by mapping (/proc/PID/smaps)")
    a = ap.parse_args()
    bl.raise_nofile()
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
        # The workers exist and answer before the idle figures are taken (the master binds,
        # so a connect succeeds before it forks them).
        deadline = time.time() + 10
        while len(server_pids(srv.pid)) < 3 and time.time() < deadline:
            time.sleep(0.02)
        bl_get(port)
        time.sleep(0.5)
        pids = server_pids(srv.pid)
        idle_rss = rss_kb(pids)
        cpu0 = cpu_ticks(pids)
        if a.client == "wrk":
            return wrk_run(a, srv, port, pids, idle_rss, cpu0)
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


def wrk_run(a, srv, port, pids, idle_rss, cpu0):
    argv = [a.wrk, f"-t{a.threads}", f"-c{a.conns}", f"-d{a.duration}s", "--timeout", "10s",
            f"http://127.0.0.1:{port}/"]
    idle_parts = {pid: bl.rss_parts_kb(pid) for pid in pids}
    idle_pss = {pid: bl.pss_kb(pid) for pid in pids}
    idle_maps = {pid: bl.smaps_summary(pid) for pid in pids} if a.maps else {}
    late = {}

    def snapshot_late():
        # Near the end of the load, where the peak has been reached in every run so far: the
        # proportional sizes and (--maps) what each mapping holds.
        time.sleep(max(0.0, a.duration - 2.0))
        for pid in pids:
            late[pid] = (bl.pss_kb(pid), bl.smaps_summary(pid) if a.maps else {})

    snap = threading.Thread(target=snapshot_late, daemon=True)
    with PartsSampler(srv.pid) as rss:
        snap.start()
        t0 = time.time()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=a.duration + 120)
        wall = time.time() - t0
    snap.join(timeout=5)
    cpu1 = cpu_ticks(pids)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}")
    res = bl.parse_wrk(out.stdout)
    ceiling = a.conns / 1.0
    wrk_ceiling = a.conns * (a.duration - 1) / a.duration
    peak = max(rss.peak_kb, idle_rss)
    print(f"# sleep_10k --client wrk: {' '.join(argv[:-1])}; server {a.ringsgi} --cores 2 "
          f"--async {a.conns} --app sleep (1 s)")
    print(f"{res['requests']} requests in {res['seconds']:.2f} s (wall {wall:.1f} s): "
          f"{res['rps']:.0f} req/s = {res['rps'] / ceiling * 100:.1f}% of {ceiling:.0f} "
          f"(connections / sleep), {res['rps'] / wrk_ceiling * 100:.1f}% of {wrk_ceiling:.0f} "
          f"(at most {a.duration - 1} requests per connection in {a.duration} s)")
    print(f"errors {res['errors']} {res['socket_errors']} non-2xx {res['non2xx']}")
    print(f"server RSS idle {idle_rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
          f"({rss.samples} samples, peak at {rss.peak_at:.1f} s), "
          f"{(peak - idle_rss) * 1024 / a.conns:.0f} bytes per connection "
          f"with a request in flight")
    print(f"server CPU {(cpu1 - cpu0) / 100:.2f} s = "
          f"{(cpu1 - cpu0) * 10 / max(1, res['requests']):.3f} ms per request")
    print_breakdown(srv.pid, pids, idle_parts, idle_pss, rss.peak_parts, late, idle_maps)
    if a.verbose:
        print(out.stdout)
    return 1 if res["errors"] else 0


class PartsSampler(bl.RssSampler):
    """RssSampler that also keeps each process's (anon, file, shmem) at the sample with the
    highest total."""

    def __init__(self, pgid, interval=0.05):
        super().__init__(pgid, interval)
        self.peak_parts = {}

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set():
            parts = {pid: bl.rss_parts_kb(pid) for pid in bl.group_pids(self.pgid)}
            parts = {pid: v for pid, v in parts.items() if v is not None}
            kb = sum(sum(v) for v in parts.values())
            if kb > self.peak_kb:
                self.peak_kb, self.peak_at = kb, time.monotonic() - t0
                self.peak_parts = parts
            self.samples += 1
            self._stop.wait(self.interval)


def print_breakdown(master, pids, idle_parts, idle_pss, peak_parts, late, idle_maps):
    """Per process: RSS split into anonymous / file-backed / shared memory at idle and at the
    peak of the summed RSS, and PSS at idle and near the end of the load (MiB)."""
    mib = lambda kb: f"{kb / 1024:.1f}" if kb is not None else "-"
    workers = sorted(p for p in pids if p != master)
    names = {master: "master"} | {p: f"worker {i}" for i, p in enumerate(workers)}
    print("RSS by kind, MiB (anon / file / shmem): idle -> peak; PSS: idle -> near the end")
    tot_i, tot_p, tot_pss = [0, 0, 0], [0, 0, 0], [0, 0]
    for pid in [master] + workers:
        i = idle_parts.get(pid) or (0, 0, 0)
        p = peak_parts.get(pid) or (0, 0, 0)
        pss_late = late.get(pid, (None, {}))[0]
        for k in range(3):
            tot_i[k] += i[k]
            tot_p[k] += p[k]
        tot_pss[0] += idle_pss.get(pid) or 0
        tot_pss[1] += pss_late or 0
        print(f"  {names[pid]:9} {mib(i[0])} / {mib(i[1])} / {mib(i[2])} -> "
              f"{mib(p[0])} / {mib(p[1])} / {mib(p[2])}; PSS {mib(idle_pss.get(pid))} -> {mib(pss_late)}")
    print(f"  {'all':9} {mib(tot_i[0])} / {mib(tot_i[1])} / {mib(tot_i[2])} -> "
          f"{mib(tot_p[0])} / {mib(tot_p[1])} / {mib(tot_p[2])}; PSS {mib(tot_pss[0])} -> {mib(tot_pss[1])}")
    if idle_maps:
        for pid in [master] + workers:
            end = late.get(pid, (None, {}))[1]
            print(f"  {names[pid]}: resident kB by mapping, idle -> near the end")
            for name in sorted(set(idle_maps.get(pid, {})) | set(end), key=lambda n: -end.get(n, 0)):
                print(f"    {name:40} {idle_maps.get(pid, {}).get(name, 0):7} -> {end.get(name, 0):7}")


def bl_wait(port):
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start")


def bl_get(port):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /?ms=0 HTTP/1.0\r\n\r\n")
        while s.recv(4096):
            pass


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
    sys.exit(main())
