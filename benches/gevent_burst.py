#!/usr/bin/env python3
"""The article's test with `ab` itself (`ab -c1000 -n2000`), seen from the server (gevent4):
how the bursts of new requests spread and whether the machine's CPUs were busy meanwhile.

ab 2.3 sends ONE request first and opens the other 999 connections only when its answer
came (strace), so the run is three 1 s sleeps in a row: request 0; the first burst (999
requests, entered from ~1.05 s); the second burst (each started when its predecessor of the
first burst answered). The app is benches/gevent_timeline_app.py (flask_sleep.py that
records when each request reached the app and when its sleep returned); the same argv as
benches/gevent_vs_uwsgi.py. Per run:

  wall         ab's "Time taken for tests"
  w1 A..B      the first burst: when its second and its last request reached the app (s
               from ab's start); B-A is the burst's spread; split: requests per worker
  w2 last      when the last request of the second burst reached the app (the wall time is
               that + 1 s + its answer)
  busy         CPUs of the machine busy (/proc/stat, sampled every 10 ms) during the first
               burst: 2.0 is saturated; less is idle CPU while requests wait (latency)
  user/sys     the server's CPU seconds; ab: ab's

Servers are given as NAME=SPEC, alternated each round: SPEC is `BINARY[:ENV=V,ENV=V]` for a
ringsgi build (with extra environment variables), or `uwsgi[:OPT,OPT]` for uWSGI with extra
options (e.g. `uwsgi:--cpu-affinity,1`).

    python3 benches/gevent_burst.py --venv VENV --rounds 4 \\
        new=target/release/ringsgi old=OLD_BINARY uwsgi=uwsgi
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import gevent_timeline as gt  # noqa: E402


def run(procs, name, spec, args, tmp):
    port = bl.free_port()
    env = dict(os.environ)
    kind, _, extra = spec.partition(":")
    if kind == "uwsgi":
        args.uwsgi_extra = extra.replace(",", " ")
        argv = gt.server_argv("uwsgi", args, port)
    else:
        args.ringsgi = kind
        for kv in filter(None, extra.split(",")):
            k, _, v = kv.partition("=")
            env[k] = v
        argv = gt.server_argv("ringsgi", args, port)
    with open(os.path.join(tmp, f"{name}-{port}.log"), "wb") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
    procs.procs.append(p)
    samples = []
    try:
        bl.wait_ready(p, "127.0.0.1", port, path="/timeline", timeout=60)
        for _ in range(4):
            bl.wait_ready(p, "127.0.0.1", port, path="/?i=-1", timeout=30)
        for _ in range(20):
            gt.get(port, "/timeline")
        time.sleep(0.3)
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                samples.append((time.monotonic(), sum(b for b, _ in bl.cpu_times().values())))
                stop.wait(0.01)

        th = threading.Thread(target=sampler)
        th.start()
        u0, s0 = bl.group_cpu_split(p.pid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        out = subprocess.run([args.ab, "-q", "-c1000", "-n2000", f"http://127.0.0.1:{port}/?i=7"],
                             capture_output=True, text=True).stdout
        stop.set()
        th.join()
        u1, s1 = bl.group_cpu_split(p.pid)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        m = re.search(r"Time taken for tests:\s+([\d.]+)", out)
        wall = float(m.group(1)) if m else float("nan")
        fm = re.search(r"Failed requests:\s+(\d+)", out)
        failed = int(fm.group(1)) if fm else -1
        rows = []
        pids = set()
        pid = None
        for _ in range(40):
            for line in gt.get(port, "/timeline").splitlines():
                if line.startswith("#"):
                    pid = line.split()[2]
                    pids.add(pid)
                    continue
                _i, a, b = line.split()
                rows.append((float(a) - t0, float(b) - t0, pid))
            if len(rows) >= 2000 and len(pids) >= 2:
                break
    finally:
        procs.stop(p)
    rows = [r for r in rows if r[0] > 0]
    enters = sorted(a for a, _, _ in rows)
    cut = 1.6  # the first burst enters at ~1.05-1.3 s, the second from ~2.05 s
    w1 = [a for a in enters if a < cut]
    per = {}
    for a, _, pid in rows:
        if a < cut:
            per[pid] = per.get(pid, 0) + 1

    def busy(a, b):
        pts = [(t - t0, c) for t, c in samples if a <= t - t0 <= b]
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            return float("nan")
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])

    r = {"wall": wall, "failed": failed, "w1_first": w1[min(1, len(w1) - 1)], "w1_last": w1[-1],
         "w2_last": enters[-1], "split": sorted(per.values()), "user": u1 - u0, "sys": s1 - s0,
         "ab": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), "load": os.getloadavg()[0]}
    r["busy"] = busy(r["w1_first"], r["w1_last"])
    print(f"{name:10} wall {wall:.3f} s failed {failed} | w1 {r['w1_first']:.3f}..{r['w1_last']:.3f} "
          f"({r['w1_last'] - r['w1_first']:.3f}) split {r['split']} | w2 last {r['w2_last']:.3f} | busy "
          f"{r['busy']:.2f} CPUs | user {r['user']:.2f} sys {r['sys']:.2f} ab {r['ab']:.2f} s | load {r['load']:.2f}",
          flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("servers", nargs="+", help="NAME=SPEC (see above)")
    ap.add_argument("--venv", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--ab", default="ab")
    args = ap.parse_args()
    args.ringsgi_b = None
    args.ringsgi_extra = ""
    args.uwsgi_extra = ""
    args.ab = bl.need(args.ab)
    servers = [tuple(s.split("=", 1)) for s in args.servers]
    bl.raise_nofile()
    bl.check_kernel_tracing()
    import tempfile

    procs = bl.Procs()
    res = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ringsgi-burst-") as tmp:
            for rd in range(args.rounds):
                order = servers[rd % len(servers):] + servers[: rd % len(servers)]
                for name, spec in order:
                    res.setdefault(name, []).append(run(procs, name, spec, args, tmp))
    finally:
        procs.close()
    print("\nmedians:")
    for name, _ in servers:
        rs = res[name]
        print(f"  {name:10} wall {bl.median([r['wall'] for r in rs]):.3f} s  first burst "
              f"{bl.median([r['w1_last'] - r['w1_first'] for r in rs]):.3f} s  busy {bl.median([r['busy'] for r in rs]):.2f} CPUs  "
              f"server CPU {bl.median([r['user'] + r['sys'] for r in rs]):.2f} s  walls {[round(r['wall'], 3) for r in rs]}")


if __name__ == "__main__":
    main()
