#!/usr/bin/env python3
"""Runs the examples of examples/python/ under the real uWSGI (Debian's uwsgi with its python3
and greenlet_python3 plugins) and writes what they answer to tests/python/reference/*.txt:
the reference outputs tests/python.rs compares ringsgi's answers with.

    apt-get install uwsgi uwsgi-plugin-python3 uwsgi-plugin-greenlet-python3
    tests/python/setup-venv.sh && python3 tests/python/uwsgi_reference.py

Every case is one HTTP/1.0 request; its reference file holds the status code and the body,
with the parts that differ from run to run (times) replaced by the normalisers below, which
tests/python.rs mirrors. Takes about 15 s (one case sleeps 5 s, as uWSGI's test does).
"""

import glob
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EX = os.path.join(REPO, "examples", "python")
OUT = os.path.join(REPO, "tests", "python", "reference")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, target, body=b"", headers=(), timeout=30):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = f"{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        for k, v in headers:
            head += f"{k}: {v}\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class Uwsgi:
    def __init__(self, *args):
        self.port = free_port()
        argv = [
            "uwsgi", "--http-socket", f"127.0.0.1:{self.port}", "--plugins", "python3,greenlet_python3",
            "--master", "--processes", "1", "--die-on-term", "--disable-logging",
        ] + list(args)
        self.log = open(os.path.join("/tmp", f"uwsgi-ref-{self.port}.log"), "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=EX)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("uwsgi did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()
        self.log.close()


class Upstream:
    """A one-shot TCP server on 127.0.0.1: accepts connections and, per connection, optionally
    reads a request, then sends `reply` after `delay` seconds (None: never sends)."""

    def __init__(self, reply, delay=0.0, read_request=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.reply, self.delay, self.read_request = reply, delay, read_request
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        if self.read_request:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
        time.sleep(self.delay)
        if self.reply is not None:
            c.sendall(self.reply)
            if self.read_request:
                c.close()


# Normalisers (mirrored in tests/python.rs): times vary from run to run.
def norm_cpubound_async(body):
    return re.sub(rb" at [0-9.e+-]+</h1>", b" at T</h1>", body)


def norm_cycles(body):
    return re.sub(rb"cycles after \d+</h1>", b"cycles after T</h1>", body)


def digest(body):
    return f"len={len(body)} sha256={hashlib.sha256(body).hexdigest()}"


def write(name, status, body, summary=False):
    os.makedirs(OUT, exist_ok=True)
    text = f"status: {status}\n"
    text += ("body: " + digest(body) + "\n") if summary else "body:\n" + body.decode() + "\n"
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write(text)
    print(f"{name}: {status} {digest(body)}")


HTTP_REPLY = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nupstream\n"


def main():
    venv_site = glob.glob(os.path.join(REPO, "target", "pyvenv", "lib", "python3*", "site-packages"))
    if not venv_site:
        sys.exit("run tests/python/setup-venv.sh first (Flask comes from target/pyvenv)")

    with Uwsgi("--wsgi-file", "hello.py") as u:
        write("hello", *request(u.port, "GET", "/"))

    with Uwsgi("--wsgi-file", "cpubound_async.py", "--async", "10", "--greenlet") as u:
        write("cpubound_async", *request(u.port, "GET", "/"), summary=True)

    with Uwsgi("--wsgi-file", "sleeping_async.py", "--async", "10", "--greenlet") as u:
        write("sleeping_async", *request(u.port, "GET", "/?1"))

    with Uwsgi("--wsgi-file", "uwsgi_tests/sleeping_async.py", "--async", "10", "--greenlet") as u:
        write("uwsgi_tests_sleeping_async", *request(u.port, "GET", "/"))

    with Uwsgi("--wsgi-file", "uwsgi_tests/cpubound_async.py", "--async", "10", "--greenlet") as u:
        status, body = request(u.port, "GET", "/")
        write("uwsgi_tests_cpubound_async", status, norm_cpubound_async(body), summary=True)

    with Uwsgi("--wsgi-file", "uwsgi_tests/cpubound_green.py", "--async", "10", "--greenlet") as u:
        status, body = request(u.port, "GET", "/")
        write("uwsgi_tests_cpubound_green", status, norm_cycles(body), summary=True)

    up = Upstream(HTTP_REPLY, read_request=True)
    with Uwsgi("--wsgi-file", "uwsgi_tests/iobound_async.py", "--async", "10", "--greenlet") as u:
        write("uwsgi_tests_iobound_async", *request(u.port, "GET", f"/?{up.port}"))
    closed = free_port()  # nothing listens there: the connect fails
    with Uwsgi("--wsgi-file", "uwsgi_tests/iobound_async.py", "--async", "10", "--greenlet") as u:
        write("uwsgi_tests_iobound_async_refused", *request(u.port, "GET", f"/?{closed}"))

    silent, talker = Upstream(None), Upstream(b"hello\n", delay=0.2)
    with Uwsgi("--wsgi-file", "wait_fds.py", "--async", "10", "--greenlet") as u:
        write("wait_fds", *request(u.port, "GET", f"/?{silent.port},{talker.port}&timeout=5"))
        write("wait_fds_timeout", *request(u.port, "GET", f"/?{silent.port}&timeout=1"))

    pinger = Upstream(b"ping\n", delay=0.2)
    with Uwsgi("--wsgi-file", "suspend.py", "--async", "10", "--greenlet") as u:
        write("suspend", *request(u.port, "GET", f"/?{pinger.port}"))

    raw = bytes(range(256)) * 4096  # 1 MiB
    boundary = "ringsgiBoundary"
    multipart = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nringsgi\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + raw + f"\r\n--{boundary}--\r\n".encode()
    with Uwsgi("--pythonpath", venv_site[0], "--module", "flask_app:app", "--async", "10", "--greenlet") as u:
        write("flask_index", *request(u.port, "GET", "/"))
        status, body = request(u.port, "POST", "/upload/raw", raw, [("Content-Type", "application/octet-stream")])
        write("flask_upload_raw", status, canon_json(body))
        status, body = request(
            u.port, "POST", "/upload/multipart", multipart, [("Content-Type", f"multipart/form-data; boundary={boundary}")]
        )
        write("flask_upload_multipart", status, canon_json(body))
        write("flask_stream", *request(u.port, "GET", "/stream?n=3"))
        status, _ = request(u.port, "GET", "/error")
        write("flask_error", status, b"")
        status, body = request(u.port, "GET", "/slow?s=1")
        j = json.loads(body)
        j["pid"] = 0
        write("flask_slow", status, json.dumps(j, sort_keys=True).encode())


def canon_json(body):
    return json.dumps(json.loads(body), sort_keys=True).encode()


if __name__ == "__main__":
    main()
