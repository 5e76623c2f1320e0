"""PEP 3333 test app for tests/python.rs, wrapped in wsgiref.validate (which asserts, inside
the app, everything the PEP asks of the server: environ types, the input and errors streams,
start_response, the iterable protocol and that close() is called).

Routes (PATH_INFO); the request id `?id=X` tags the log lines a test waits for:
  /env            environ as JSON (CGI variables, wsgi.* and server extension keys)
  /read?mode=M    reads wsgi.input with M (all, n, line, line_n, lines, iter) and echoes it;
                  header X-Pieces: how many reads; X-Input-Terminated
  /overread       read(CONTENT_LENGTH + 100), then read(10), read(), readline(): echoes
  /errors         writes a marker line to wsgi.errors
  /file?path=P    wsgi.file_wrapper over file P
  /exc_info       start_response 200, then an exception handled with exc_info before the body
  /exc_info_late  exc_info after the first chunk went out: start_response re-raises
  /write          the write() callable, then an iterable
  /stream?n=N     N chunks from a generator, no Content-Length (&size=S: each padded to S)
  /length         two chunks with a Content-Length header
  /raise          raises in the callable
  /raise_in_iter  raises after the first chunk
  /slow_stream    a chunk, then a chunk per 0.1 s for 30 s (uwsgi.async_sleep + yield)
Every response iterable logs "pep3333 close id=X" on close().
"""
import json
import sys
from urllib.parse import parse_qs
from wsgiref.validate import validator

import uwsgi


class Closing:
    """A response iterable that logs its close()."""

    def __init__(self, environ, it):
        self.errors = environ["wsgi.errors"]
        self.tag = query(environ).get("id", "-")
        self.it = iter(it)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.it)

    def close(self):
        close = getattr(self.it, "close", None)
        if close:
            close()
        self.errors.write("pep3333 close id=%s\n" % self.tag)
        self.errors.flush()


def query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def env_json(environ):
    out = {}
    for k, v in environ.items():
        if isinstance(v, (str, int, bool)) or v is None:
            out[k] = v
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = "<%s>" % type(v).__name__
    out["wsgi.input.has"] = [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(environ["wsgi.input"], m)]
    out["wsgi.errors.has"] = [m for m in ("write", "writelines", "flush") if hasattr(environ["wsgi.errors"], m)]
    out["str_keys"] = all(isinstance(k, str) for k in environ)
    out["callable_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    return json.dumps(out, sort_keys=True).encode()


def read_body(environ, mode):
    inp = environ["wsgi.input"]
    pieces = []
    if mode == "all":
        # read() without a size, as apps do when wsgi.input_terminated is True: on the
        # server's own stream (wsgiref.validate's wrapper insists on read(size)).
        pieces.append(getattr(inp, "input", inp).read())
    elif mode == "n":
        while True:
            b = inp.read(1000)
            if not b:
                break
            pieces.append(b)
    elif mode == "line":
        while True:
            b = inp.readline()
            if not b:
                break
            pieces.append(b)
    elif mode == "line_n":
        while True:
            b = inp.readline(7)
            if not b:
                break
            assert len(b) <= 7, len(b)
            pieces.append(b)
    elif mode == "lines":
        pieces.extend(inp.readlines())
    elif mode == "iter":
        pieces.extend(inp)
    else:
        raise ValueError(mode)
    return pieces


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = query(environ)
    if path.startswith("/env"):
        body = env_json(environ)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Closing(environ, [body])
    if path == "/read":
        pieces = read_body(environ, q.get("mode", "all"))
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("X-Pieces", str(len(pieces))),
                ("X-Input-Terminated", str(environ.get("wsgi.input_terminated"))),
            ],
        )
        return Closing(environ, [b"".join(pieces)])
    if path == "/overread":
        inp = environ["wsgi.input"]
        n = int(environ.get("CONTENT_LENGTH") or 0)
        first = inp.read(n + 100)
        rest = [inp.read(10), inp.read(-1), inp.readline(-1)]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(environ, [b"%d:%s|%r" % (len(first), first, rest)])
    if path == "/errors":
        environ["wsgi.errors"].write("pep3333 wsgi.errors marker id=%s\n" % q.get("id"))
        environ["wsgi.errors"].writelines(["pep3333 writelines id=%s\n" % q.get("id")])
        environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(environ, [b"logged"])
    if path == "/file":
        f = open(q["path"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("handled before the body")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return Closing(environ, [b"exc_info handled"])
    if path == "/exc_info_late":
        return Closing(environ, exc_info_late(environ, start_response))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-1;")
        write(b"written-2;")
        return Closing(environ, [b"iter-1;", b"iter-2"])
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        size = int(q.get("size", "0"))
        return Closing(environ, ((b"chunk %d;" % i).ljust(size, b".") for i in range(int(q.get("n", "5")))))
    if path == "/length":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return Closing(environ, [b"01234", b"56789"])
    if path == "/raise":
        raise RuntimeError("pep3333 raised id=%s" % q.get("id"))
    if path == "/raise_in_iter":
        return Closing(environ, raise_in_iter(environ, start_response, q.get("id")))
    if path == "/slow_stream":
        return Closing(environ, slow_stream(start_response))
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return Closing(environ, [b"no route " + path.encode()])


def exc_info_late(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk;"
    try:
        raise ValueError("after the body started")
    except ValueError:
        # PEP 3333: the headers are out, so start_response re-raises; the server cuts the
        # response.
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    yield b"never sent"


def raise_in_iter(environ, start_response, tag):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk;"
    raise RuntimeError("pep3333 raised in iter id=%s" % tag)


def slow_stream(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk;"
    for i in range(300):
        uwsgi.async_sleep(0.1)
        yield b"tick %d;" % i


application = validator(app)
