#!/bin/bash
# Server CPU per request under a short wrk load, for comparing two builds in the same run.
# usage: benches/ring_flags_cpu.sh BINARY PORT
# Starts `BINARY --cores 1 --app hello` on 127.0.0.1:PORT, runs `wrk -t1 -c8 -d4s`, and
# prints the requests served, the CPU time of the master and worker processes
# (/proc/PID/stat utime+stime) and the CPU per request. Needs wrk.
set -eu
BIN=$1; PORT=$2
$BIN --cores 1 --app hello --http-socket 127.0.0.1:$PORT >/dev/null 2>&1 &
SP=$!
for i in $(seq 50); do python3 -c "import socket;socket.create_connection(('127.0.0.1',$PORT)).close()" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
PIDS="$SP $(pgrep -P $SP | tr '\n' ' ')"
t() { local s=0; for p in $PIDS; do read -r -a f < /proc/$p/stat; s=$((s + f[13] + f[14])); done; echo $s; }
T0=$(t)
OUT=$(wrk -t1 -c8 -d4s http://127.0.0.1:$PORT/ 2>&1)
T1=$(t)
REQ=$(echo "$OUT" | awk '/requests in/ {print $1}')
kill -TERM $SP; wait $SP 2>/dev/null || true
TCK=$(getconf CLK_TCK)
python3 -c "r=$REQ; c=($T1-$T0)/$TCK; print(f'$BIN: {r} requests, server CPU {c:.2f} s, {c/r*1e6:.1f} us/request')"
