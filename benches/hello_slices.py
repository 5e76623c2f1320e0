#!/usr/bin/env python3
"""Hello world, keep-alive: server CPU per request of several servers, measured in short
interleaved slices while all of them run at once (issue #12: a comparison that resolves a few
percent on a shared VM).

Why: `hello_vs_nginx.py` starts one server at a time and measures it for 5-10 s; the servers of
one round are 10-40 s apart, and on this VM the speed of the whole machine drifts by 10-20% on
that time scale (the same binary did 90,947 and 106,500 requests per CPU-second in two
consecutive quiet runs; single rounds of one pair spanned 0.80-1.38x). Here every server is
started once, all pinned to the same CPU and idle but the one under load, and the load
(`wrk -t1 -c64`, pinned to the other CPU) moves from server to server every `--slice` seconds,
the order rotating each cycle. A cycle's servers are measured within a few seconds of each
other, so a drift slower than that hits them alike, and the ratio of two servers is taken
per cycle (median over the cycles, with a bootstrap 95% interval). Run the same binary twice
(`--server a=BIN --server b=BIN`) for an A/A control: the spread that nothing but the
machine makes.

CPU is each server's own: the `sum_exec_runtime` of every thread of its process group
(`/proc/PID/task/TID/schedstat`, nanoseconds), read when the slice's wrk has exited and the
server is idle; user and system time come from `/proc/PID/stat` (clock ticks) over all the
slices. Requests are wrk's.

    python3 benches/hello_slices.py                        # ringsgi, nginx and the Rust peers
    python3 benches/hello_slices.py --server new=target/release/ringsgi --server old=/tmp/old \\
        --server nginx --cycles 20 --slice 2
    python3 benches/hello_slices.py --server a=target/release/ringsgi --server b=target/release/ringsgi

`--server NAME=BINARY` is a ringsgi binary (`--cores 1 --app hello --disable-logging`),
`--server NAME=@ARGV` any other command line (`{port}` replaced), and `nginx`,
`may_minihttp`, `hyper`, `actix` the peers of `hello_vs_nginx.py` (the Rust ones built on first
use). The first server is the one the others are compared with.

Needs: wrk, taskset, 2+ CPUs; nginx and cargo for those peers.
"""

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import hello_vs_nginx as hv  # noqa: E402

DEFAULT_SERVERS = ["ringsgi", "nginx", "may_minihttp", "hyper", "actix"]


def group_runtime_ns(pgid):
    """Sum of `sum_exec_runtime` (ns) of every thread of every live process of group `pgid`."""
    total = 0
    for pid in bl.group_pids(pgid):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def argv_for(name, spec, args, port, tmp):
    pin = ["taskset", "-c", str(args.server_cpu)]
    if spec == "nginx":
        # Each nginx has its own prefix directory (pid file, logs, temp paths).
        prefix = os.path.join(tmp, f"nginx-{port}")
        os.makedirs(prefix, exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(hv.NGINX_CONF.format(mask=format(1 << args.server_cpu, "b"), tmp=prefix, port=port))
        return pin + [args.nginx, "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "error.log")]
    if spec in hv.RUST_PEERS:
        return pin + [args.peer_bins[spec], f"127.0.0.1:{port}"]
    if spec.startswith("@"):
        return pin + [a.replace("{port}", str(port)) for a in shlex.split(spec[1:])]
    return pin + [spec, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "hello", "--disable-logging"]


def bootstrap_median(xs, n=2000, seed=12):
    """95% interval of the median of `xs` by resampling (deterministic seed)."""
    rng = random.Random(seed)
    meds = sorted(bl.median([rng.choice(xs) for _ in xs]) for _ in range(n))
    return meds[int(n * 0.025)], meds[int(n * 0.975) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", action="append", default=[], metavar="NAME[=BINARY|=@ARGV]")
    ap.add_argument("--cycles", type=int, default=20, help="cycles over all servers (default 20)")
    ap.add_argument("--slice", type=int, default=2, help="seconds of load per server per cycle (default 2)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load per server at the start")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--json", help="also write every slice and the summary to this file")
    args = ap.parse_args()
    servers = []
    for s in args.server or DEFAULT_SERVERS:
        name, eq, spec = s.partition("=")
        if not eq:
            spec = {"ringsgi": bl.ringsgi_binary(None)}.get(name, name)
        if spec == "nginx" or spec in hv.RUST_PEERS or spec.startswith("@"):
            pass
        elif not os.access(spec, os.X_OK):
            bl.die(f"{name}: {spec} is not a binary, '@ARGV', nginx or one of {', '.join(hv.RUST_PEERS)}")
        servers.append((name, spec))
    if len({n for n, _ in servers}) != len(servers) or len(servers) < 2:
        bl.die("need two or more servers with distinct names")
    if any(spec == "nginx" for _, spec in servers):
        args.nginx = bl.need(args.nginx)
    args.peer_bins = {spec: hv.build_rust_peer(spec) for _, spec in servers if spec in hv.RUST_PEERS}
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()
    tracing = bl.kernel_tracing()
    print(f"# hello_slices: {bl.machine()}; kernel tracing on: {tracing or 'none'}")
    for name, spec in servers:
        print(f"# {name} = {spec}")
    print(
        f"# all servers on CPU {args.server_cpu} at once; load: taskset -c {args.client_cpu} wrk -t1 "
        f"-c{args.connections} -d{args.slice}s per server per cycle, {args.cycles} cycles, order rotating",
        flush=True,
    )
    slices = []
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            running = {}
            for name, spec in servers:
                port = bl.free_port()
                p = procs.start(argv_for(name, spec, args, port, tmp), os.path.join(tmp, f"{name}.log"))
                bl.wait_ready(p, "127.0.0.1", port)
                running[name] = (p, port)
            wrk = ["taskset", "-c", str(args.client_cpu), args.wrk, "-t1", f"-c{args.connections}"]
            for name, (p, port) in running.items():
                if args.warmup > 0:
                    procs.run(wrk + [f"-d{args.warmup}s", f"http://127.0.0.1:{port}/"], timeout=args.warmup + 30)
            for c in range(args.cycles):
                k = c % len(servers)
                for name, _ in servers[k:] + servers[:k]:
                    p, port = running[name]
                    ns0 = group_runtime_ns(p.pid)
                    split0 = bl.group_cpu_split(p.pid)
                    machine0 = bl.cpu_times()
                    out = procs.run(wrk + [f"-d{args.slice}s", f"http://127.0.0.1:{port}/"], timeout=args.slice + 30)
                    # The server is idle again: its threads' runtimes are current.
                    ns1 = group_runtime_ns(p.pid)
                    split1 = bl.group_cpu_split(p.pid)
                    machine1 = bl.cpu_times()
                    if p.poll() is not None:
                        raise RuntimeError(f"{name} died:\n{bl.log_tail(p)}")
                    res = bl.parse_wrk(out)
                    cpu = (ns1 - ns0) / 1e9
                    res.update(
                        cycle=c + 1,
                        server=name,
                        cpu_s=cpu,
                        user_s=split1[0] - split0[0],
                        sys_s=split1[1] - split0[1],
                        us_per_req=cpu * 1e6 / max(1, res["requests"]),
                        steal_s=machine1[args.server_cpu][1] - machine0[args.server_cpu][1],
                    )
                    slices.append(res)
                line = "  ".join(
                    f"{x['server']} {x['us_per_req']:.2f}"
                    for x in sorted((s for s in slices if s["cycle"] == c + 1), key=lambda s: s["server"])
                )
                print(f"cycle {c + 1:2}: µs per request: {line}", flush=True)
            for name, (p, port) in running.items():
                bl.wait_ready(p, "127.0.0.1", port, timeout=5.0)
        finally:
            procs.close()

    base = servers[0][0]
    summary = {}
    print()
    print(f"| server | req/s (median) | µs CPU per request (median) | user / sys µs (pooled) | {base} / it, req per CPU-s: median of cycles [95% interval] | pooled | errors |")
    print("|---|---:|---:|---|---|---:|---:|")
    for name, _ in servers:
        mine = [s for s in slices if s["server"] == name]
        reqs = sum(s["requests"] for s in mine)
        entry = {
            "rps_median": bl.median([s["rps"] for s in mine]),
            "us_per_req_median": bl.median([s["us_per_req"] for s in mine]),
            "user_us_pooled": sum(s["user_s"] for s in mine) * 1e6 / reqs,
            "sys_us_pooled": sum(s["sys_s"] for s in mine) * 1e6 / reqs,
            "pooled_us": sum(s["cpu_s"] for s in mine) * 1e6 / reqs,
            "errors": sum(s["errors"] for s in mine),
        }
        if name != base:
            ratios = []
            for c in range(1, args.cycles + 1):
                a = next(s for s in slices if s["cycle"] == c and s["server"] == base)
                b = next(s for s in slices if s["cycle"] == c and s["server"] == name)
                ratios.append(b["us_per_req"] / a["us_per_req"])
            lo, hi = bootstrap_median(ratios)
            sb = summary[base]
            entry.update(
                ratio_median=bl.median(ratios),
                ratio_lo=lo,
                ratio_hi=hi,
                ratio_pooled=entry["pooled_us"] / sb["pooled_us"],
                ratios=ratios,
            )
            rel = f"**{entry['ratio_median']:.3f}x** [{lo:.3f}, {hi:.3f}]"
            pooled = f"{entry['ratio_pooled']:.3f}x"
        else:
            rel, pooled = "—", "—"
        summary[name] = entry
        print(
            f"| {name} | {entry['rps_median']:.0f} | {entry['us_per_req_median']:.2f} | "
            f"{entry['user_us_pooled']:.2f} / {entry['sys_us_pooled']:.2f} | {rel} | {pooled} | {entry['errors']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": bl.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "servers": servers,
                 "args": {k: v for k, v in vars(args).items() if k != "peer_bins"}, "slices": slices, "summary": summary},
                f,
                indent=2,
            )
    return 1 if any(summary[n]["errors"] for n, _ in servers) else 0


if __name__ == "__main__":
    sys.exit(main())
