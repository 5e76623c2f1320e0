"""The seed's "Suspend/Resume" example: yielding from the application callable is not practical
when the wait happens deep in a call stack; `uwsgi.wait_fd_read(fd)` then `uwsgi.suspend()`
switches away from any depth (needs a suspend engine: `--greenlet`).

The request connects to 127.0.0.1:PORT (`?PORT`), waits (3 calls deep) until the peer sends
a line, and answers with it.

    ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/suspend.py --async 10 --greenlet
    curl 'http://127.0.0.1:8080/?9001'

uWSGI: uwsgi --http-socket 127.0.0.1:8080 --plugins python3,greenlet_python3 --greenlet --async 10 \\
    --wsgi-file suspend.py
"""
import socket

import uwsgi


def read_line(sock, depth):
    if depth:
        return read_line(sock, depth - 1)
    uwsgi.wait_fd_read(sock.fileno(), 10)
    uwsgi.suspend()
    assert uwsgi.ready_fd() == sock.fileno(), (uwsgi.ready_fd(), sock.fileno())
    return sock.recv(4096)


def application(env, start_response):
    with socket.create_connection(("127.0.0.1", int(env["QUERY_STRING"]))) as s:
        line = read_line(s, 3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got: " + line]
