#!/usr/bin/env python3
"""The CPU that the upstream scenario's view costs by itself (issue #11): Flask's test client
calls `examples/python/flask_upstream.py`'s view N times, C at once, in one process under
gevent's own libev loop with monkey patching, with no WSGI server at all. What a server adds
per request is its CPU per request in `gevent_vs_uwsgi.py --scenarios upstream` minus this.

    target/release/ringsgi --cores 1 --http 127.0.0.1:9311 --app sleep --async 2000 \
        --listen 4096 --disable-logging &              # the same 1 s upstream
    VENV/bin/python benches/gevent_app_floor.py --upstream http://127.0.0.1:9311/

VENV: `tests/python/setup-venv.sh --bench` (gevent, Flask, requests).
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent.pool  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="the third party's URL")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ["UPSTREAM"] = args.upstream
    sys.path.insert(0, os.path.join(REPO, "examples", "python"))
    import flask_upstream

    client = flask_upstream.app.test_client()

    def one(_):
        r = client.get("/")
        if r.status_code != 200:
            raise SystemExit(f"the view answered {r.status_code}")

    gevent.pool.Pool(50).map(one, range(100))  # warm-up: imports, first connections
    per_call = []
    for i in range(args.rounds):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        gevent.pool.Pool(args.concurrency).map(one, range(args.calls))
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        user, sys_ = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        per_call.append((user + sys_) / args.calls * 1000)
        print(
            f"round {i + 1}: {args.calls} calls, {args.concurrency} at once, wall {t1 - t0:.2f} s: "
            f"CPU {user + sys_:.2f} s = {per_call[-1]:.3f} ms per call "
            f"(user {user / args.calls * 1000:.3f}, sys {sys_ / args.calls * 1000:.3f})"
        )
    per_call.sort()
    print(f"median {per_call[len(per_call) // 2]:.3f} ms of CPU per call")


if __name__ == "__main__":
    main()
