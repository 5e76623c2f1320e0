#!/bin/bash
# Counts the accept path's system calls per new connection (docs/benchmarks.md, "Accept and
# fast recycling (issue #12)"). Needs strace and a debug build (cargo build).
# Usage: benches/accept_cost.sh CORES N  -- N sequential new connections (Connection: close) against a debug ringsgi
# with CORES workers, every worker thread under strace -c (accept4, io_uring_enter, poll).
CORES=$1; N=$2; BIN=${RINGSGI_BIN:-target/debug/ringsgi}; OUT=${TMPDIR:-/tmp}/accept_cost; mkdir -p $OUT
$BIN --http 127.0.0.1:0 --cores $CORES --disable-logging 2> $OUT/log.$CORES &
M=$!
for i in $(seq 1 100); do grep -q "ready" $OUT/log.$CORES 2>/dev/null && [ $(grep -c " ready" $OUT/log.$CORES) -ge $CORES ] && break; sleep 0.1; done
PORT=$(grep -o "bound http socket on 127.0.0.1:[0-9]*" $OUT/log.$CORES | cut -d: -f2)
TIDS=""
for w in $(pgrep -P $M); do for t in /proc/$w/task/*; do TIDS="$TIDS -p ${t##*/}"; done; done
strace -f -c -e trace=accept4,io_uring_enter,poll,ppoll $TIDS -o $OUT/strace.$CORES &
S=$!
sleep 1
python3 - $PORT $N <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d: break
        data += d
    assert data.startswith(b"HTTP/1.1 200"), data[:40]
    s.close()
print("done", n)
PY
sleep 0.5
kill -INT $S; wait $S 2>/dev/null
kill -INT $M; wait $M 2>/dev/null
cat $OUT/strace.$CORES
