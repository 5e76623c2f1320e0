#!/usr/bin/env python3
"""Hello world, keep-alive: kernel event counts per request (system calls by name, io_uring
SQEs, CQEs, poll arms, task work, context switches) of any set of servers, under the load of
`hello_vs_nginx.py` (server pinned to CPU 0, `wrk -t1 -c64` pinned to CPU 1).

Counts do not move with the machine's load the way CPU times do, so they are what to compare
on a shared machine (issue #12). Requests are counted on the client side: `perf stat` counts
wrk's `write` system calls (one per request) in the same window as the server's events.

    python3 benches/hello_counts.py --server base=/tmp/base/ringsgi --server new=target/release/ringsgi
    python3 benches/hello_counts.py --server "floor=@target/release/examples/uring_floor single 127.0.0.1:{port}"

`--server NAME=BINARY` is a ringsgi binary (`--cores 1 --app hello --disable-logging`);
`--server NAME=@ARGV` any other command line (`{port}` is replaced). `perf` removes its
events when it exits; the script checks that no kernel tracing is left on before and after.

Needs: perf (tracepoints readable: root or perf_event_paranoid <= -1), wrk, taskset.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

SERVER_EVENTS = [
    "raw_syscalls:sys_enter",
    "syscalls:sys_enter_io_uring_enter",
    "syscalls:sys_enter_membarrier",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_clock_gettime",
    "io_uring:io_uring_submit_req",
    "io_uring:io_uring_complete",
    "io_uring:io_uring_poll_arm",
    "io_uring:io_uring_task_add",
    "io_uring:io_uring_task_work_run",
    "context-switches",
]


def argv_for(spec, args, port):
    pin = ["taskset", "-c", str(args.server_cpu)]
    if spec.startswith("@"):
        return pin + [a.replace("{port}", str(port)) for a in shlex.split(spec[1:])]
    return pin + [spec, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "hello", "--disable-logging"]


def perf_stat(pids, events, seconds):
    """Start `perf stat` on `pids` for `seconds`; returns the process (CSV on stderr)."""
    return subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def parse_perf(text):
    out = {}
    for line in text.splitlines():
        f = line.split(",")
        if len(f) < 3:
            continue
        try:
            out[f[2]] = float(f[0])
        except ValueError:
            out[f[2]] = float("nan")
    return out


def one(procs, name, spec, args, tmp):
    port = bl.free_port()
    server = procs.start(argv_for(spec, args, port), os.path.join(tmp, f"{name}-{port}.log"))
    try:
        bl.wait_ready(server, "127.0.0.1", port)
        time.sleep(0.3)
        pids = bl.group_pids(server.pid)
        wrk = subprocess.Popen(
            ["taskset", "-c", str(args.client_cpu), args.wrk, "-t1", "-c64", f"-d{args.duration + 3}s",
             f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1.0)
        ps = perf_stat(pids, SERVER_EVENTS, args.duration)
        # `-p` takes every thread of a process.
        pc = perf_stat([wrk.pid], ["syscalls:sys_enter_write"], args.duration)
        s_err = ps.communicate()[1]
        c_err = pc.communicate()[1]
        wrk.communicate()
    finally:
        procs.stop(server)
    s = parse_perf(s_err)
    reqs = parse_perf(c_err).get("syscalls:sys_enter_write", 0.0)
    return reqs, s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", action="append", default=[], metavar="NAME=BINARY|@ARGV")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--wrk", default="wrk")
    args = ap.parse_args()
    if not args.server:
        bl.die("no server to measure")
    args.wrk = bl.need(args.wrk)
    bl.need("perf")
    bl.need("taskset")
    bl.check_kernel_tracing()
    bl.raise_nofile()
    bl.on_signal_raise()
    print(f"# hello_counts: {bl.machine()}")
    procs = bl.Procs()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                for s in args.server:
                    name, _, spec = s.partition("=")
                    reqs, ev = one(procs, name, spec, args, tmp)
                    rows.append((r + 1, name, reqs, ev))
        finally:
            procs.close()
    short = [e.split(":")[-1].replace("sys_enter_", "").replace("io_uring_", "") for e in SERVER_EVENTS]
    print("per request (requests = wrk's write calls in the window):")
    print(f"{'round':>5} {'server':14} {'requests':>9} " + " ".join(f"{s[:10]:>10}" for s in short))
    for r, name, reqs, ev in rows:
        vals = [ev.get(e, float("nan")) / reqs if reqs else float("nan") for e in SERVER_EVENTS]
        print(f"{r:5d} {name:14} {reqs:9.0f} " + " ".join(f"{v:10.4f}" for v in vals))
    bl.check_kernel_tracing()
    return 0


if __name__ == "__main__":
    sys.exit(main())
