"""The `uwsgi` module as tests/python.rs checks it (run with --async N --greenlet).

  /info             JSON: worker_id, masterpid, numproc, opt, connection_fd, uwsgi.core
  /suspend          suspend() and green_schedule() return, 3 times each
  /sleep?s=S        async_sleep(S) + suspend(): elapsed (monotonic) and the timeout flag
  /wait_read_timeout  wait_fd_read on a pipe nobody writes, 1 s: timeout flag True
  /wait_write       wait_fd_write on a connected socket: ready at once, flag None, ready_fd
  /rendezvous?n=N   waits (suspend loop) until N requests are inside at once: proves they
                    run concurrently on one worker without any timing
  /signal           registers signal 17 on this worker and raises it; the handler logs
  /spin             while True: pass (never yields)
  /harakiri?s=S     sleeps S seconds in steps of 0.05 s; ?user=U calls set_user_harakiri(U)
                    first; its iterable logs "uwsgi_api close" on close()
"""
import json
import os
import socket
import sys
import time

import uwsgi

arrived = 0


def handler(signum):
    sys.stderr.write("uwsgi_api signal %d handled on worker %d\n" % (signum, uwsgi.worker_id()))
    sys.stderr.flush()


class Closing:
    def __init__(self, environ, it, tag):
        self.it, self.tag, self.errors = iter(it), tag, environ["wsgi.errors"]

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.it)

    def close(self):
        self.errors.write("uwsgi_api close %s\n" % self.tag)
        self.errors.flush()


def application(environ, start_response):
    global arrived
    path = environ["PATH_INFO"]
    q = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    out = {}
    if path == "/info":
        opt = uwsgi.opt
        out = {
            "worker_id": uwsgi.worker_id(),
            "masterpid": uwsgi.masterpid(),
            "numproc": uwsgi.numproc,
            "opt_is_mapping": hasattr(opt, "keys"),
            "opt_keys": sorted(k.decode() if isinstance(k, bytes) else k for k in opt.keys()),
            "connection_fd": uwsgi.connection_fd(),
            "core": environ.get("uwsgi.core"),
            "pid": os.getpid(),
        }
    elif path == "/suspend":
        out = {"suspend": [uwsgi.suspend() for _ in range(3)], "green_schedule": [uwsgi.green_schedule() for _ in range(3)]}
    elif path == "/sleep":
        secs = float(q.get("s", "0.2"))
        t0 = time.monotonic()
        uwsgi.async_sleep(secs)
        uwsgi.suspend()
        out = {"elapsed": time.monotonic() - t0, "timeout": environ["x-wsgiorg.fdevent.timeout"]}
    elif path == "/wait_read_timeout":
        r, w = os.pipe()
        try:
            uwsgi.wait_fd_read(r, 1)
            uwsgi.suspend()
            out = {"timeout": environ["x-wsgiorg.fdevent.timeout"], "ready_fd": uwsgi.ready_fd()}
        finally:
            os.close(r)
            os.close(w)
    elif path == "/wait_write":
        a, b = socket.socketpair()
        with a, b:
            uwsgi.wait_fd_write(a.fileno(), 5)
            uwsgi.suspend()
            out = {
                "timeout": environ["x-wsgiorg.fdevent.timeout"],
                "ready_fd_is_fd": uwsgi.ready_fd() == a.fileno(),
            }
    elif path == "/rendezvous":
        n = int(q["n"])
        arrived += 1
        goal = ((arrived - 1) // n + 1) * n
        while arrived < goal:
            uwsgi.suspend()
        out = {"met": n}
    elif path == "/signal":
        uwsgi.register_signal(17, "worker", handler)
        uwsgi.signal(17)
        out = {"raised": 17}
    elif path == "/spin":
        sys.stderr.write("uwsgi_api spinning\n")
        sys.stderr.flush()
        while True:
            pass
    elif path == "/harakiri":
        if "user" in q:
            uwsgi.set_user_harakiri(int(q["user"]))
        secs = float(q.get("s", "1"))
        tag = q.get("id", "-")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(environ, harakiri_body(secs), tag)
    else:
        start_response("404 Not Found", [])
        return [b""]
    body = json.dumps(out, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def harakiri_body(secs):
    # Nothing is sent before the sleep ends, so a harakiri can still answer 504.
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        uwsgi.async_sleep(0.05)
        uwsgi.suspend()
    yield b"slept %g" % secs
