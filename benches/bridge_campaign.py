#!/usr/bin/env python3
"""Issue #12: the ring bridge's stress campaign. Every request must be answered in time.

Each round runs five loads, each against a fresh `ringsgi --cores 2` (release build), and
counts two things: requests that were not answered within `--timeout` (a lost wakeup in the
pump's park protocol leaves a worker asleep with work on its ring, so a request waits for
ever, or until something unrelated wakes the worker), and, in the server's log, lines of the
pump's watchdog ("watchdog found work": a true save, for builds that still have one).

- recycle: `--max-requests 60`, 6 clients sending keep-alive requests in a loop for
  `--seconds` (hundreds of worker replacements, each a drain that stops accepting);
- bursts: `--async 2`, bursts of 60 connections each asking for a 3 ms sleep (the slots run
  out and come back many times per burst; the accept wait is dropped and armed again);
- reload: 8 clients on 20 ms sleeps while the master gets SIGHUP 3 times (drains);
- slowloris: 300 never-ending heads trickling a header line every second, 6 normal clients
  sending `Connection: close` requests meanwhile;
- idle: `--cores 1`, 1000 keep-alive connections that each send a request, go quiet long
  enough to be parked (0.5 s), then send another (unparking), then one connection with a
  request every 20 ms for 100 requests (the pump parks before each).

    python3 benches/bridge_campaign.py [--rounds 3] [--seconds 5] [--ringsgi PATH]

Exits non-zero if any request was lost (not answered in time, or answered wrongly).
Python only (no wrk), loopback only, every wait bounded.
"""

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

SAVE = "watchdog found work"


class Lost(Exception):
    pass


def read_response(s, buf):
    """One whole response from socket `s` (leftover bytes in `buf`, a bytearray). Returns
    (status, close); raises Lost on a timeout, EOF, or garbage."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            n = 0
            close = False
            for h in head[1:]:
                k, _, v = h.partition(":")
                if k.strip().lower() == "content-length":
                    n = int(v)
                if k.strip().lower() == "connection" and v.strip().lower() == "close":
                    close = True
            while len(buf) < end + 4 + n:
                more = recv(s)
                buf += more
            status = int(head[0].split(" ")[1])
            del buf[: end + 4 + n]
            return status, close
        buf += recv(s)


def recv(s):
    try:
        d = s.recv(65536)
    except socket.timeout as e:
        raise Lost("no answer in time") from e
    except ConnectionResetError:
        # A draining worker's close of an idle connection (the request crossed it): the
        # caller retries if no byte of the answer came (RFC 9112 §9.3.1).
        raise EOFError from None
    except OSError as e:
        raise Lost(f"recv: {e}") from e
    if not d:
        raise EOFError
    return d


def connect(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.lost = []

    def good(self):
        with self.lock:
            self.ok += 1

    def bad(self, what):
        with self.lock:
            self.lost.append(what)


def client_loop(port, target, stop, tally, timeout, close=False):
    """Keep-alive requests in a loop until `stop`. A connection the server closed after a
    complete answer (or, idle, before any byte of the next one: a draining worker) is reopened."""
    req = f"GET {target} HTTP/1.1\r\nHost: t\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
    req = req.encode()
    s, buf, reused = None, bytearray(), False
    while not stop.is_set():
        try:
            if s is None:
                s, buf, reused = connect(port, timeout), bytearray(), False
            s.sendall(req)
            status, closed = read_response(s, buf)
            if status != 200:
                tally.bad(f"status {status}")
            else:
                tally.good()
            reused = True
            if closed or close:
                s.close()
                s = None
        except (EOFError, ConnectionResetError, BrokenPipeError):
            # Closed by the server before any byte of the answer to a request on a reused
            # connection: retry. Anything else is a loss.
            if not reused or buf:
                tally.bad("connection closed without a (whole) answer")
            if s:
                s.close()
            s = None
        except (Lost, OSError) as e:
            tally.bad(f"{target}: {e}")
            if s:
                s.close()
            s = None
    if s:
        s.close()


def threads_for(port, target, n, seconds, tally, timeout, close=False, during=None):
    stop = threading.Event()
    ts = [threading.Thread(target=client_loop, args=(port, target, stop, tally, timeout, close)) for _ in range(n)]
    for t in ts:
        t.start()
    if during:
        during()
    else:
        time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()


def load_recycle(srv, port, a, tally):
    threads_for(port, "/", 6, a.seconds, tally, a.timeout)


def load_bursts(srv, port, a, tally):
    for _ in range(max(3, a.seconds)):
        conns = [connect(port, a.timeout) for _ in range(60)]
        for c in conns:
            c.sendall(b"GET /sleep?ms=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        for c in conns:
            try:
                status, _ = read_response(c, bytearray())
                (tally.good if status == 200 else lambda: tally.bad(f"status {status}"))()
            except (Lost, EOFError, OSError) as e:
                tally.bad(f"burst: {e!r}")
            c.close()


def load_reload(srv, port, a, tally):
    def hups():
        for _ in range(3):
            time.sleep(a.seconds / 4)
            os.kill(srv.pid, signal.SIGHUP)
        time.sleep(a.seconds / 4)

    threads_for(port, "/sleep?ms=20", 8, a.seconds, tally, a.timeout, during=hups)


def load_slowloris(srv, port, a, tally):
    stop = threading.Event()
    slow = []

    def trickle():
        for i in range(300):
            try:
                s = connect(port, a.timeout)
                s.sendall(f"GET /slow/{i} HTTP/1.1\r\nHost: t\r\n".encode())
                slow.append(s)
            except OSError:
                pass
        while not stop.wait(1.0):
            for s in slow:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    t = threading.Thread(target=trickle)
    t.start()
    threads_for(port, "/", 6, a.seconds, tally, a.timeout, close=True)
    stop.set()
    t.join()
    for s in slow:
        s.close()


def load_idle(srv, port, a, tally):
    conns = [connect(port, a.timeout) for _ in range(1000)]
    bufs = [bytearray() for _ in conns]
    for rnd in range(2):
        for c in conns:
            c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for c, b in zip(conns, bufs):
            try:
                status, _ = read_response(c, b)
                (tally.good if status == 200 else lambda: tally.bad(f"status {status}"))()
            except (Lost, EOFError, OSError) as e:
                tally.bad(f"idle round {rnd}: {e!r}")
        time.sleep(0.5)  # past the 100 ms hot window: every connection parks
    for c in conns:
        c.close()
    s, b = connect(port, a.timeout), bytearray()
    for _ in range(100):
        time.sleep(0.02)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _ = read_response(s, b)
            (tally.good if status == 200 else lambda: tally.bad(f"status {status}"))()
        except (Lost, EOFError, OSError) as e:
            tally.bad(f"sparse: {e!r}")
            s, b = connect(port, a.timeout), bytearray()
    s.close()


LOADS = {
    "recycle": (["--cores", "2", "--max-requests", "60"], load_recycle),
    "bursts": (["--cores", "2", "--async", "2", "--mount", "/sleep=sleep"], load_bursts),
    "reload": (["--cores", "2", "--mount", "/sleep=sleep", "--reload-mercy", "20"], load_reload),
    "slowloris": (["--cores", "2"], load_slowloris),
    "idle": (["--cores", "1", "--keepalive-timeout", "300", "--listen", "4096"], load_idle),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="length of the timed loads (default 5)")
    ap.add_argument("--timeout", type=float, default=5.0, help="longest wait for one answer (default 5 s)")
    ap.add_argument("--loads", default=",".join(LOADS), help=f"comma-separated subset of {','.join(LOADS)}")
    ap.add_argument("--ringsgi", help="server binary (default target/release/ringsgi)")
    a = ap.parse_args()
    a.ringsgi = bl.ringsgi_binary(a.ringsgi)
    bl.raise_nofile()
    bl.on_signal_raise()
    print(f"# bridge_campaign: {bl.machine()}; ringsgi {bl.describe_binary(a.ringsgi)}", flush=True)
    procs = bl.Procs()
    total_ok = total_lost = total_saves = 0
    with tempfile.TemporaryDirectory(prefix="ringsgi-campaign-") as tmp:
        try:
            for r in range(a.rounds):
                for name in a.loads.split(","):
                    extra, load = LOADS[name]
                    port = bl.free_port()
                    log = os.path.join(tmp, f"{name}-{r}.log")
                    srv = procs.start([a.ringsgi, "--http", f"127.0.0.1:{port}", "--disable-logging"] + extra, log)
                    bl.wait_ready(srv, "127.0.0.1", port)
                    tally = Tally()
                    t0 = time.monotonic()
                    load(srv, port, a, tally)
                    took = time.monotonic() - t0
                    procs.stop(srv)
                    with open(log, errors="replace") as f:
                        lines = f.readlines()
                    saves = [x for x in lines if SAVE in x]
                    total_ok += tally.ok
                    total_lost += len(tally.lost)
                    total_saves += len(saves)
                    print(
                        f"round {r + 1} {name:9} {tally.ok:7d} answered  {len(tally.lost):3d} lost  "
                        f"{len(saves):3d} watchdog saves  {took:5.1f} s"
                        + (f"  first lost: {tally.lost[0]}" if tally.lost else "")
                        + (f"  first save: {saves[0].strip()}" if saves else ""),
                        flush=True,
                    )
        finally:
            procs.close()
    print(f"total: {total_ok} answered, {total_lost} lost, {total_saves} watchdog saves")
    return 1 if total_lost else 0


if __name__ == "__main__":
    sys.exit(main())
