"""The seed's "Waiting for I/O" example: `uwsgi.wait_fd_read` called in succession on several
file descriptors, then `yield b""` hands the core back until the first of them is readable.
environ `uwsgi.ready_fd` tells which one woke the request; a timeout sets
`x-wsgiorg.fdevent.timeout`. (After a `yield`, uWSGI's `uwsgi.ready_fd()` returns -1: its
Python plugin clears the flag when it fills environ; after `uwsgi.suspend()` it returns the fd,
see suspend.py. ringsgi returns the fd in both cases.)

The request connects to the TCP ports given in the query string (`?p1,p2,...`, on 127.0.0.1)
and answers with the index of the first connection that has something to read and the line
read from it; `&timeout=S` bounds the wait.

    python3 -c 'import socket,time; ...'   # any servers that write a line, e.g. `nc -l 9001`
    ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/wait_fds.py --async 10 --greenlet
    curl 'http://127.0.0.1:8080/?9001,9002&timeout=5'   # ready: 1 b'hello\n'

uWSGI: uwsgi --http-socket 127.0.0.1:8080 --plugins python3 --async 10 --wsgi-file wait_fds.py
"""
import socket
from urllib.parse import parse_qsl

import uwsgi


def application(env, start_response):
    qs = env.get("QUERY_STRING", "")
    ports_part, _, rest = qs.partition("&")
    ports = [int(p) for p in ports_part.split(",") if p]
    timeout = int(float(dict(parse_qsl(rest)).get("timeout", "0")))
    socks = [socket.create_connection(("127.0.0.1", p)) for p in ports]
    try:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for s in socks:
            uwsgi.wait_fd_read(s.fileno(), timeout)
        yield b""  # yield the app, let the server do its magic
        if env["x-wsgiorg.fdevent.timeout"]:
            yield b"timeout\n"
            return
        which = [s.fileno() for s in socks].index(env["uwsgi.ready_fd"])
        yield ("ready: %d %r\n" % (which, socks[which].recv(4096))).encode()
    finally:
        for s in socks:
            s.close()
