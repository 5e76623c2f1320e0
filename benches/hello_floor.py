#!/usr/bin/env python3
"""Hello world, keep-alive: CPU per request of any set of servers in the same run (issue #12: the
floor of io_uring against epoll, ringsgi builds against each other and against nginx).

As `hello_vs_nginx.py`: each server pinned to CPU 0, `wrk -t1 -c64` pinned to CPU 1, every round
runs each server once, the order rotating from round to round. The number compared is server
CPU time per request (utime+stime of the server's process group during the measured run,
divided by the requests wrk completed), split into user and system time.

    python3 benches/hello_floor.py --server base=/tmp/old/ringsgi --server new=target/release/ringsgi
    python3 benches/hello_floor.py --floor target/release/examples/uring_floor --rounds 5 --duration 5

`--server NAME=BINARY` is a ringsgi binary (`--cores 1 --app hello --disable-logging`);
`--server NAME=@ARGV` (a `{port}` in ARGV is replaced) is any other command line; `--floor
BINARY` adds `examples/uring_floor.rs` in its modes epoll, single, multi; nginx is always there
(`--no-nginx` to leave it out).

Needs: wrk, taskset, nginx, 2+ CPUs.
"""

import argparse
import os
import shlex
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import hello_vs_nginx as hv  # noqa: E402


def argv_for(spec, args, port, tmp):
    pin = ["taskset", "-c", str(args.server_cpu)]
    if spec == "nginx":
        conf = os.path.join(tmp, f"nginx-{port}.conf")
        with open(conf, "w") as f:
            f.write(hv.NGINX_CONF.format(mask=format(1 << args.server_cpu, "b"), tmp=tmp, port=port))
        return pin + [args.nginx, "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]
    if spec.startswith("@"):
        return pin + [a.replace("{port}", str(port)) for a in shlex.split(spec[1:])]
    return pin + [spec, "--cores", "1", "--http", f"127.0.0.1:{port}", "--app", "hello", "--disable-logging"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", action="append", default=[], metavar="NAME=BINARY|@ARGV")
    ap.add_argument("--floor", help="examples/uring_floor binary: adds its epoll, single and multi modes")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    servers = []
    for s in args.server:
        name, _, spec = s.partition("=")
        servers.append((name, spec))
    if args.floor:
        for mode in ("epoll", "single", "multi"):
            servers.append((f"floor-{mode}", f"@{args.floor} {mode} 127.0.0.1:{{port}}"))
    if not args.no_nginx:
        args.nginx = bl.need(args.nginx)
        servers.append(("nginx", "nginx"))
    if not servers:
        bl.die("no server to measure")
    args.wrk = bl.need(args.wrk)
    bl.need("taskset")
    bl.raise_nofile()
    bl.on_signal_raise()
    print(f"# hello_floor: {bl.machine()}")
    for name, spec in servers:
        print(f"# {name} = {spec}")
    results = {name: [] for name, _ in servers}
    procs = bl.Procs()
    with tempfile.TemporaryDirectory(prefix="ringsgi-bench-") as tmp:
        try:
            for r in range(args.rounds):
                k = r % len(servers)
                for name, spec in servers[k:] + servers[:k]:
                    port = bl.free_port()
                    server = procs.start(argv_for(spec, args, port, tmp), os.path.join(tmp, f"{name}-{port}.log"))
                    try:
                        bl.wait_ready(server, "127.0.0.1", port)
                    except BaseException:
                        procs.stop(server)
                        raise
                    res = bl.measured_wrk_run(procs, server, name, port, "/", args)
                    results[name].append(res)
                    print(
                        f"round {r + 1} {name:14} {res['rps']:9.0f} req/s {res['requests']:8d} req "
                        f"{res['cpu_us_per_req']:6.2f} us/req (user {res['user_s'] / res['requests'] * 1e6:5.2f}, "
                        f"sys {res['sys_s'] / res['requests'] * 1e6:5.2f}) errors {res['errors']} "
                        f"cpu{args.server_cpu} other {res['server_cpu_other_s']:.2f} s steal {res['server_cpu_steal_s']:.2f} s",
                        flush=True,
                    )
        finally:
            procs.close()
    ref = "nginx" if "nginx" in results else servers[0][0]
    ref_med = bl.median([x["cpu_us_per_req"] for x in results[ref]])
    print(f"median per server (ratio = {ref} CPU per request / this one's = requests per CPU-second vs {ref}):")
    for name, _ in servers:
        rs = results[name]
        med = bl.median([x["cpu_us_per_req"] for x in rs])
        user = bl.median([x["user_s"] / x["requests"] * 1e6 for x in rs])
        sys_ = bl.median([x["sys_s"] / x["requests"] * 1e6 for x in rs])
        per_round = ", ".join(
            f"{b['cpu_us_per_req'] / a['cpu_us_per_req']:.2f}" for a, b in zip(rs, results[ref])
        )
        print(
            f"  {name:14} {med:6.2f} us/req (user {user:5.2f}, sys {sys_:5.2f})  x{ref_med / med:.2f} "
            f"(per round {per_round})"
        )
    return 1 if any(x["errors"] for v in results.values() for x in v) else 0


if __name__ == "__main__":
    sys.exit(main())
