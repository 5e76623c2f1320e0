#!/usr/bin/env python3
"""Exactly N keep-alive requests over C connections, each the bytes wrk sends.

    python3 benches/wrk_like.py URL N C

wrk (`wrk -t1 -cC`, the hello benchmark's client) sends `GET PATH HTTP/1.1` with a `Host`
header and nothing else, and one request at a time per connection. `ab -k` (which
`wsgi_callgrind.sh` used alone) sends HTTP/1.0 with `Connection: Keep-Alive`, `User-Agent` and
`Accept` as well: a different head to parse and a different response head. wrk itself runs for
a duration, not a number of requests, and callgrind's per-request figure needs an exact count:
this client gives it (`CLIENT=wrk benches/wsgi_callgrind.sh ...`). Prints `Failed requests: K`
like ab (non-200 answers and connections closed early).
"""

import selectors
import socket
import sys
import urllib.parse


def main():
    url, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    u = urllib.parse.urlsplit(url)
    req = f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    sent = done = failed = 0
    conns = {}
    for _ in range(min(c, n)):
        s = socket.create_connection((u.hostname, u.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns[s] = bytearray()
        sel.register(s, selectors.EVENT_READ)
        s.sendall(req)
        sent += 1
    while done < n and conns:
        for key, _ in sel.select(timeout=30) or [(None, None)]:
            if key is None:
                sys.exit(f"no answer within 30 s ({done} of {n} done)")
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                failed += n - sent if len(conns) == 1 else 0
                sel.unregister(s)
                del conns[s]
                s.close()
                continue
            buf = conns[s]
            buf += data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = bytes(buf[:end]).lower()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if len(buf) < end + 4 + length:
                    break
                if not head.startswith(b"http/1.1 200"):
                    failed += 1
                del buf[: end + 4 + length]
                done += 1
                if sent < n:
                    s.sendall(req)
                    sent += 1
    print(f"Failed requests:        {failed}")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
