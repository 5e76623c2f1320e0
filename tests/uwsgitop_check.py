#!/usr/bin/env python3
"""Run the real uwsgitop against a stats server and say whether it could show the document.

uwsgitop is a curses program with no batch mode: it draws the table, then waits for a key
(`q` quits, `a` cycles the async-core views). This script runs it under a pseudo-terminal
(TERM=xterm, 60x250), waits for the worker table, presses `a` twice (merged cores view, then
cores under each worker: both read per-core fields), then `q`, all within --timeout seconds.

Exit status:
  0   uwsgitop exited by itself with status 0, printed no Python traceback, drew the
      worker table header, the pid of every worker in the document (fetched once by this
      script: uwsgitop silently drops a row it cannot format) and every --expect string
  1   anything else (the captured screen text is printed to help)
  77  uwsgitop (or python's curses) is not installed: the caller may skip

Usage:
  uwsgitop_check.py ADDR [--expect TEXT]...        # ADDR: host:port, http://host:port/,
                                                   # a UNIX socket path or @abstract
  uwsgitop_check.py --serve FILE [--serve-mode raw|http] [--expect TEXT]...
      serves FILE on 127.0.0.1 (an ephemeral port) to every connection, then closes, as
      `--stats` does (raw) or as `--stats-http` does (http: FILE is a whole HTTP response)

uwsgitop is looked up as $UWSGITOP, then on PATH, then next to this Python interpreter.
"""

import argparse
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import fcntl
import threading
import time

SKIP = 77
HEADER = "WID"  # first column of uwsgitop's worker table header
ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78MDEc]|[\x0e\x0f]")


def find_uwsgitop():
    env = os.environ.get("UWSGITOP")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("uwsgitop")
    if found:
        return found
    local = os.path.join(os.path.dirname(sys.executable), "uwsgitop")
    return local if os.access(local, os.X_OK) else None


def serve(path, mode):
    """Serve the file's bytes to every connection, in a daemon thread. Returns the address."""
    with open(path, "rb") as f:
        payload = f.read()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def loop():
        while True:
            conn, _ = srv.accept()
            with conn:
                if mode == "http":
                    # Read the request head first so the client never sees a reset.
                    conn.settimeout(2)
                    buf = b""
                    try:
                        while b"\r\n\r\n" not in buf:
                            chunk = conn.recv(4096)
                            if not chunk:
                                break
                            buf += chunk
                    except OSError:
                        pass
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=loop, daemon=True).start()
    host, port = srv.getsockname()
    if mode == "http":
        return "http://%s:%d/" % (host, port)
    return "%s:%d" % (host, port)


def fetch_pids(addr):
    """The worker pids in the document at ADDR, read once here, so that a worker row that
    uwsgitop drops (it swallows formatting errors per row) is noticed. Best effort: []."""
    import json
    import urllib.request
    try:
        if addr.startswith("http://"):
            body = urllib.request.urlopen(addr, timeout=5).read()
        else:
            if addr.startswith("@"):
                family, target = socket.AF_UNIX, "\0" + addr[1:]
            elif ":" in addr:
                host, port = addr.rsplit(":", 1)
                family, target = socket.AF_INET, (host, int(port))
            else:
                family, target = socket.AF_UNIX, addr
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(target)
            body = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            s.close()
        doc = json.loads(body.decode("utf-8", "replace"))
        # A pid that is not an integer is kept too: uwsgitop's "%d" drops that row.
        return [str(w["pid"]) for w in doc.get("workers", []) if w.get("pid") not in (None, 0)]
    except Exception:  # uwsgitop itself will report an unreachable or broken server
        return []


def run(uwsgitop, addr, expect, timeout):
    master, slave = pty.openpty()
    # Wide enough that no column of the worker rows is cut off.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 250, 0, 0))
    env = dict(os.environ, TERM="xterm", LINES="60", COLUMNS="250")
    proc = subprocess.Popen(
        [uwsgitop, "--frequency", "1", addr],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    raw = b""
    deadline = time.monotonic() + timeout
    # Keys to press, each once the screen shows what the previous one should have caused.
    script = [b"a", b"a", b"q"]
    next_key_at = None
    exited = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                exited = proc.poll() is not None or proc.wait(timeout=2) is not None
                break
            raw += chunk
        text = ANSI.sub(b"", raw).decode("utf-8", "replace")
        if next_key_at is None and HEADER in text:
            next_key_at = time.monotonic() + 0.5
        if next_key_at is not None and script and time.monotonic() >= next_key_at:
            os.write(master, script.pop(0))
            next_key_at = time.monotonic() + 0.5
        if proc.poll() is not None and not r:
            exited = True
            break
    if not exited:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    os.close(master)
    text = ANSI.sub(b"", raw).decode("utf-8", "replace")
    problems = []
    if not exited:
        problems.append("uwsgitop did not exit within %.0f s" % timeout)
    elif proc.returncode != 0:
        problems.append("uwsgitop exited with status %s" % proc.returncode)
    if "Traceback" in text:
        problems.append("uwsgitop printed a Python traceback")
    for needle in [HEADER] + expect:
        if needle not in text:
            problems.append("%r is not on the screen" % needle)
    return problems, text


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("addr", nargs="?", help="stats server address (as uwsgitop takes it)")
    p.add_argument("--serve", metavar="FILE", help="serve FILE instead of using ADDR")
    p.add_argument("--serve-mode", choices=["raw", "http"], default="raw")
    p.add_argument("--expect", action="append", default=[], metavar="TEXT",
                   help="text that must appear on the screen (repeatable)")
    p.add_argument("--timeout", type=float, default=15.0)
    args = p.parse_args()
    if bool(args.addr) == bool(args.serve):
        p.error("give exactly one of ADDR or --serve FILE")
    try:
        import curses  # noqa: F401  (uwsgitop needs it; some Pythons lack it)
    except ImportError:
        print("skip: python has no curses module", file=sys.stderr)
        return SKIP
    uwsgitop = find_uwsgitop()
    if not uwsgitop:
        print("skip: uwsgitop not found (pip install uwsgitop, or set UWSGITOP)",
              file=sys.stderr)
        return SKIP
    addr = serve(args.serve, args.serve_mode) if args.serve else args.addr
    expect = args.expect + [pid for pid in fetch_pids(addr) if pid not in args.expect]
    problems, text = run(uwsgitop, addr, expect, args.timeout)
    if problems:
        print("uwsgitop check FAILED against %s:" % addr, file=sys.stderr)
        for line in problems:
            print("  - " + line, file=sys.stderr)
        print("---- screen text (escape sequences removed) ----", file=sys.stderr)
        print(text, file=sys.stderr)
        return 1
    print("uwsgitop check ok against %s" % addr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
