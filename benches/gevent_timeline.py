#!/usr/bin/env python3
"""Where the wall time of the article's test goes (gevent4): `abtl` (benches/abtl.c, ab's
closed loop, `-c1000 -n2000`, with a per-request timeline) against ringsgi `--gevent` and
uWSGI `--gevent` serving benches/gevent_timeline_app.py (flask_sleep.py that also records,
per request, when its view was entered and when its `time.sleep(1)` returned). The same
argv as benches/gevent_vs_uwsgi.py (2 workers, `--gevent 1000 --gevent-monkey-patch`),
servers alternated each round.

Per request (all CLOCK_MONOTONIC, so client and server times compare):
  queue  = view entered - connect started (backlog, accept, spawn, Flask's dispatch)
  sleep  = sleep returned - view entered  (1 s + how late the timer ran)
  answer = first response byte at the client - sleep returned (the rest of the view, the
           response written, the client's wake-up)
and for the run: the wall time (the last answer), when the last wave-1 view was entered
(the first wave's spread) and the last wave-2 one, and the server's CPU seconds.

    cc -O2 -o target/abtl benches/abtl.c
    python3 benches/gevent_timeline.py --ringsgi BIN --venv VENV --rounds 3 [--only ringsgi,uwsgi]
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

BENCHES = os.path.dirname(os.path.abspath(__file__))
APP = "gevent_timeline_app:app"


def server_argv(name, args, port):
    if name.startswith("ringsgi"):
        binary = args.ringsgi if name == "ringsgi" else args.ringsgi_b
        return [binary, "--cores", "2", "--http", f"127.0.0.1:{port}", "--gevent", "1000", "--gevent-monkey-patch",
                "--virtualenv", args.venv, "--pythonpath", BENCHES, "--module", APP, "--listen", "1024",
                "--disable-logging"] + args.ringsgi_extra.split()
    return [os.path.join(args.venv, "bin", "uwsgi"), "--master", "--processes", "2", "--http-socket",
            f"127.0.0.1:{port}", "--gevent", "1000", "--gevent-monkey-patch", "--virtualenv", args.venv,
            "--pythonpath", BENCHES, "--module", APP, "--listen", "1024", "--disable-logging",
            "--die-on-term"] + args.uwsgi_extra.split()


def get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def one_run(procs, name, args, tmp):
    port = bl.free_port()
    p = procs.start(server_argv(name, args, port), os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(p, "127.0.0.1", port, path="/timeline", timeout=60)
        for _ in range(4):
            bl.wait_ready(p, "127.0.0.1", port, path="/?i=-1", timeout=30)
        for _ in range(20):
            get(port, "/timeline")
        time.sleep(0.5)
        out = os.path.join(tmp, f"{name}-{port}.tsv")
        cpu0 = bl.group_cpu_seconds(p.pid)
        r = subprocess.run([args.abtl, str(port), "1000", "2000", "/?i=%ld", out], capture_output=True, text=True)
        cpu = bl.group_cpu_seconds(p.pid) - cpu0
        server = {}
        pids = set()
        mismatched = {}
        for _ in range(60):
            text = get(port, "/timeline")
            for line in text.splitlines():
                if line.startswith("# pid"):
                    f = line.split()
                    pids.add(f[2])
                    mismatched[f[2]] = int(f[4])
                    continue
                i, a, b = line.split()
                server[int(i)] = (float(a), float(b))
            if len(server) >= 2000 and len(pids) >= 2:
                break
    finally:
        procs.stop(p)
    with open(out) as f:
        t0 = float(f.readline().split()[2])
        client = {}
        for line in f:
            i, start, conn, first, end, status = (int(x) for x in line.split())
            client[i] = (start / 1e6, conn / 1e6, first / 1e6, end / 1e6, status)
    failed = sum(1 for c in client.values() if c[4] != 200)
    rows = []
    for i, (start, _conn, first, end, _st) in client.items():
        if i not in server:
            continue
        enter, wake = (x - t0 for x in server[i])
        rows.append((i, start, enter, wake, first, end))
    wall = max(c[3] for c in client.values())
    res = {"name": name, "wall": wall, "failed": failed, "cpu": cpu, "matched": len(rows),
           "load": os.getloadavg()[0], "stderr": r.stderr.strip(), "mismatched": sum(mismatched.values())}
    for wave, sel in (("w1", lambda i: i < 1000), ("w2", lambda i: i >= 1000)):
        rs = [x for x in rows if sel(x[0])]
        res[wave] = {
            "queue": [x[2] - x[1] for x in rs],
            "sleep": [x[3] - x[2] for x in rs],
            "answer": [x[4] - x[3] for x in rs],
            "close": [x[5] - x[4] for x in rs],
            "last_enter": max(x[2] for x in rs),
            "first_enter": min(x[2] for x in rs),
            "last_start": max(x[1] for x in rs),
        }
    return res


def show(res):
    print(f"{res['name']:9} wall {res['wall']:.3f} s failed {res['failed']} cpu {res['cpu']:.2f} s "
          f"matched {res['matched']} load {res['load']:.2f} (Flask's request.args wrong in {res['mismatched']})")
    for wave in ("w1", "w2"):
        w = res[wave]
        print(f"  {wave}: views entered {w['first_enter']:.3f}..{w['last_enter']:.3f} s, last connect {w['last_start']:.3f} s")
        for k in ("queue", "sleep", "answer", "close"):
            xs = [x * 1e3 for x in w[k]]
            print(f"    {k:6} ms p50 {pct(xs, 50):8.2f} p90 {pct(xs, 90):8.2f} p99 {pct(xs, 99):8.2f} "
                  f"max {max(xs):8.2f} mean {sum(xs) / len(xs):8.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ringsgi", required=True)
    ap.add_argument("--ringsgi-b", help="a second ringsgi binary, run as `ringsgi-b`")
    ap.add_argument("--ringsgi-extra", default="", help="extra ringsgi options")
    ap.add_argument("--uwsgi-extra", default="", help="extra uWSGI options")
    ap.add_argument("--venv", required=True)
    ap.add_argument("--abtl", default=os.path.join(bl.REPO, "target", "abtl"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="ringsgi,uwsgi")
    args = ap.parse_args()
    names = args.only.split(",")
    bl.raise_nofile()
    bl.check_kernel_tracing()
    procs = bl.Procs()
    allres = []
    try:
        with tempfile.TemporaryDirectory(prefix="ringsgi-tl-") as tmp:
            for r in range(args.rounds):
                order = names[r % len(names):] + names[: r % len(names)]
                for name in order:
                    res = one_run(procs, name, args, tmp)
                    res["round"] = r + 1
                    print(f"round {r + 1} ", end="")
                    show(res)
                    allres.append(res)
    finally:
        procs.close()
    print("\nmedians:")
    for name in names:
        rs = [x for x in allres if x["name"] == name]
        print(f"  {name:9} wall {bl.median([x['wall'] for x in rs]):.3f} s  cpu {bl.median([x['cpu'] for x in rs]):.2f} s  "
              f"w1 last enter {bl.median([x['w1']['last_enter'] for x in rs]):.3f}  "
              f"w2 last enter {bl.median([x['w2']['last_enter'] for x in rs]):.3f}  "
              f"w2 answer p50 {bl.median([pct(x['w2']['answer'], 50) for x in rs]) * 1e3:.2f} ms  "
              f"w1 answer p50 {bl.median([pct(x['w1']['answer'], 50) for x in rs]) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
