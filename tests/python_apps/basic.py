# Test apps of tests/python.rs: one WSGI callable per path.
import os
import sys

import uwsgi

released = False


def on_signal(num):
    # Runs in its own greenlet: it may wait.
    uwsgi.async_sleep(0.01)
    uwsgi.suspend()
    print("python signal %d handled by worker %d" % (num, uwsgi.worker_id()), file=sys.stderr, flush=True)


uwsgi.register_signal(17, "workers", on_signal)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello ", b"World!"]
    if path == "/env":
        start_response("200 OK", [("Content-Type", "text/plain")])
        keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD",
                "SERVER_PROTOCOL", "CONTENT_LENGTH", "HTTP_X_TEST")
        return ["|".join("%s=%s" % (k, environ.get(k, "-")) for k in keys).encode()]
    if path == "/stream":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            for i in range(3):
                yield b"chunk %d;" % i
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/lines":
        inp = environ["wsgi.input"]
        first = inp.readline()
        rest = inp.readlines()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d lines, first %r, %d bytes after" % (1 + len(rest), first, sum(map(len, rest)))]
    if path == "/read":
        inp = environ["wsgi.input"]
        parts = []
        while True:
            d = inp.read(4)
            if not d:
                break
            parts.append(d)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d reads: " % len(parts) + b"".join(parts)]
    if path == "/raise":
        raise ValueError("raised on purpose")
    if path == "/none":
        start_response("200 OK", [])
        return None
    if path == "/twice":
        start_response("200 OK", [])
        start_response("500 Oops", [])
        return [b"no"]
    if path == "/excinfo-before":
        # An error before the body: exc_info replaces the status and headers.
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("x")
        except KeyError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error page"]
    if path == "/excinfo-after":
        # An error after the head went out: exc_info re-raises, the response is cut.
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial;"
            try:
                raise KeyError("late")
            except KeyError:
                start_response("500 Oops", [], sys.exc_info())
            yield b"never"
        return gen()
    if path == "/badclose":
        class Body:
            def __iter__(self):
                yield b"all of it"

            def close(self):
                raise OSError("close failed")
        start_response("200 OK", [])
        return Body()
    if path == "/badheader":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"no"]
    if path == "/length":
        start_response("200 OK", [("Content-Length", "5")])
        return iter([b"ab", b"cde"])
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/errors":
        environ["wsgi.errors"].write("a line for the log\n")
        start_response("204 No Content", [])
        return []
    if path == "/wait":
        # Waits for /release: only possible if another request runs meanwhile.
        global released
        while not released:
            uwsgi.async_sleep(0.01)
            uwsgi.suspend()
        released = False
        start_response("200 OK", [])
        return [b"released"]
    if path == "/release":
        released = True
        start_response("200 OK", [])
        return [b"ok"]
    if path == "/slow":
        class Body:
            def __iter__(self):
                while True:
                    uwsgi.async_sleep(0.05)
                    yield b""

            def close(self):
                sys.stderr.write("slow body closed\n")
                environ["wsgi.errors"].write("slow body closed\n")
        start_response("200 OK", [])
        return Body()
    if path == "/endless":
        class Endless:
            def __iter__(self):
                while True:
                    yield b"x" * 65536

            def close(self):
                environ["wsgi.errors"].write("endless body closed\n")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Endless()
    if path == "/userharakiri":
        uwsgi.set_user_harakiri(0.3)
        while True:
            uwsgi.async_sleep(0.05)
            uwsgi.suspend()
    if path == "/spin":
        while True:
            pass
    if path == "/fdwait":
        def fdwait():
            r, w = os.pipe()
            r2, w2 = os.pipe()
            try:
                start_response("200 OK", [])
                yield uwsgi.wait_fd_read(r, 0.05)
                first = (environ["x-wsgiorg.fdevent.timeout"], uwsgi.ready_fd())
                os.write(w, b"x")
                # Two in succession: the first ready one ends the wait.
                uwsgi.wait_fd_read(r2, 5)
                yield uwsgi.wait_fd_read(r, 5)
                second = (environ["x-wsgiorg.fdevent.timeout"], uwsgi.ready_fd() == r)
                yield ("%s %s" % (first, second)).encode()
            finally:
                for fd in (r, w, r2, w2):
                    os.close(fd)
        return fdwait()
    if path == "/connect":
        def connect():
            fd = uwsgi.async_connect("127.0.0.1:" + environ["QUERY_STRING"])
            try:
                start_response("200 OK", [])
                yield uwsgi.wait_fd_write(fd, 5)
                yield b"connected %s" % str(uwsgi.is_connected(fd)).encode()
            finally:
                os.close(fd)
        return connect()
    if path == "/signal":
        uwsgi.signal(17)
        start_response("200 OK", [])
        return [b"raised"]
    if path == "/worker":
        start_response("200 OK", [])
        facts = (uwsgi.worker_id(), environ["uwsgi.core"], uwsgi.numproc,
                 uwsgi.masterpid() == os.getppid(), uwsgi.opt.get("greenlet"))
        return [b"worker %d core %d numproc %d master %r opt %r" % facts]
    start_response("404 Not Found", [])
    return [b"not found"]
