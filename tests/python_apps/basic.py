# Test apps of tests/python.rs: one WSGI callable per path.
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
    if path == "/spin":
        while True:
            pass
    if path == "/signal":
        uwsgi.signal(17)
        start_response("200 OK", [])
        return [b"raised"]
    if path == "/worker":
        start_response("200 OK", [])
        return [b"worker %d core %d" % (uwsgi.worker_id(), environ["uwsgi.core"])]
    start_response("404 Not Found", [])
    return [b"not found"]
