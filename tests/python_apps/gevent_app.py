# Test app for --gevent (tests/gevent.rs).
import sys

import gevent
import uwsgi

# The app creates gevent's hub while it is imported (on the executor's main greenlet); the
# engine must still make its own greenlet the hub's parent (/hubparent).
gevent.spawn(lambda: None)


def on_signal(num):
    # Runs in a greenlet of gevent's hub: it may wait with gevent and with the uwsgi API.
    gevent.sleep(0.01)
    uwsgi.async_sleep(0.01)
    uwsgi.suspend()
    sys.stderr.write("gevent signal %d handled by worker %d\n" % (num, uwsgi.worker_id()))
    sys.stderr.flush()


uwsgi.register_signal(17, "workers", on_signal)


class Slow:
    """A response that waits in gevent forever; its close() is logged."""

    def __init__(self, errors):
        self.errors = errors

    def __iter__(self):
        gevent.sleep(60)
        yield b"never"

    def close(self):
        self.errors.write("slow body closed\n")
        self.errors.flush()


class Endless:
    """A stream that never ends, waiting in gevent between chunks; its close() is logged."""

    def __init__(self, errors):
        self.errors = errors

    def __iter__(self):
        while True:
            yield b"x" * 16384
            gevent.sleep(0.001)

    def close(self):
        self.errors.write("endless body closed\n")
        self.errors.flush()


def application(env, start_response):
    path = env["PATH_INFO"]
    if path == "/block":
        # A blocking call without monkey patching: the whole worker waits with it.
        import os
        import time

        time.sleep(float(env.get("QUERY_STRING") or 2))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d %f" % (os.getpid(), time.monotonic())]
    if path == "/pid":
        import os
        import time

        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d %f" % (os.getpid(), time.monotonic())]
    if path == "/gsleep":
        # A request that waits 20 ms in gevent (reload under load).
        gevent.sleep(0.02)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/bgforever":
        # A background greenlet that never ends on its own.
        gevent.spawn(gevent.sleep, 3600)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"spawned"]
    if path == "/bgraise":
        # A greenlet that raises after its request ended.
        def later():
            gevent.sleep(0.1)
            raise ValueError("bg boom after the request")

        gevent.spawn(later)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"spawned"]
    if path == "/yieldwait":
        # The seed's idiom: a wait registered with the uwsgi API, done at `yield ""`.
        def body():
            import time

            t0 = time.monotonic()
            uwsgi.async_sleep(0.3)
            yield b""
            # A lower bound only: the wait cannot end early if it happened at all.
            yield b"waited" if time.monotonic() - t0 >= 0.25 else b"did not wait"

        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()
    if path == "/chunkthenraise":
        # A chunk, then an exception before the greenlet waits for anything: the chunk
        # still reaches the client (the response is cut after it), no 500.
        def body():
            yield b"first chunk;"
            raise ValueError("boom after a chunk")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Endless(env["wsgi.errors"])
    if path == "/slow":
        env["wsgi.errors"].write("slow started\n")
        env["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Slow(env["wsgi.errors"])
    if path == "/loop":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [type(gevent.get_hub().loop).__name__.encode()]
    if path == "/uwsgi":
        # The uwsgi module finds the current request from the greenlet, also after a switch.
        before = uwsgi.connection_fd()
        gevent.sleep(0.01)
        after = uwsgi.connection_fd()
        uwsgi.async_sleep(0.01)
        uwsgi.suspend()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fd %d %s" % (before, b"same" if before == after and before > 0 else b"differs")]
    if path == "/bg":
        # A background greenlet that outlives the request by 0.5 s.
        def later():
            gevent.sleep(0.5)
            sys.stderr.write("background greenlet done\n")
            sys.stderr.flush()

        gevent.spawn(later)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"spawned"]
    if path == "/subprocess":
        # fork + exec in a request; the child is watched on the loop (a pidfd on the ring).
        from gevent import subprocess

        out = subprocess.check_output(["sh", "-c", "echo child says hi"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [out]
    if path == "/signal":
        uwsgi.signal(17)
        start_response("200 OK", [])
        return [b"raised"]
    if path == "/hubparent":
        parent = gevent.get_hub().parent
        start_response("200 OK", [("Content-Type", "text/plain")])
        # The thread's main greenlet (the executor) has no parent; the engine's has.
        return [b"engine" if parent.parent is not None else b"executor"]
    if path == "/post":
        body = env["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d" % len(body)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello World!"]
