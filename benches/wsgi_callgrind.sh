#!/usr/bin/env bash
# User-space instructions per WSGI request in the worker process, counted by callgrind: exact
# and repeatable (about 1%) where CPU time on a shared machine is not, and what the engine's
# per-request changes were judged by (docs/benchmarks.md, issue 10, "this stop").
#
#   benches/wsgi_callgrind.sh BINARY LABEL [greenlet]
#   N1=1000 N2=5000 APP=examples/python/hello.py benches/wsgi_callgrind.sh target/release/ringsgi now greenlet
#   APP_ARGS="--app hello" C=64 benches/wsgi_callgrind.sh target/release/ringsgi rust-hello
#   CLIENT=wrk APP_ARGS="--app hello" C=64 benches/wsgi_callgrind.sh target/release/ringsgi rust-hello-wrk
#
# Two runs of the server under `valgrind --tool=callgrind`, one with N1 and one with N2
# keep-alive requests (`ab -k -c16`, `C` to change); (I(N2) - I(N1)) / (N2 - N1) cancels
# start-up out. `APP_ARGS` replaces `--wsgi-file APP` (e.g. `--app hello`: the Rust hello app).
# `CLIENT=wrk`: the requests are wrk's (HTTP/1.1, a `Host` header only: the hello benchmark's
# client) sent by `benches/wrk_like.py`, exactly N of them, instead of ab's (HTTP/1.0
# keep-alive, four headers).
# Outputs: target/callgrind/LABEL.N.PID (callgrind_annotate them). Needs valgrind and ab.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1; LABEL=$2; MODE=${3:-}
N1=${N1:-1000}; N2=${N2:-5000}
APP=${APP:-examples/python/hello.py}
C=${C:-16}
CLIENT=${CLIENT:-ab}
read -r -a APP_ARGV <<<"${APP_ARGS:---wsgi-file $APP}"
OUT=target/callgrind
mkdir -p "$OUT"
EXTRA=()
[ "$MODE" = greenlet ] && EXTRA=(--async 64 --greenlet --virtualenv target/pyvenv)
one() {
    local n=$1 port=$((19000 + RANDOM % 900)) m w
    rm -f "$OUT/$LABEL.$n".*
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$LABEL.$n.%p" \
        "$BIN" --cores 1 --http "127.0.0.1:$port" "${APP_ARGV[@]}" --disable-logging \
        "${EXTRA[@]}" >"$OUT/$LABEL.$n.log" 2>&1 &
    m=$!
    for _ in $(seq 600); do grep -q "ready" "$OUT/$LABEL.$n.log" && break; sleep 0.3; done
    w=$(pgrep -P "$m" | head -1)
    if [ "$CLIENT" = wrk ]; then
        python3 benches/wrk_like.py "http://127.0.0.1:$port/" "$n" "$C" >&2
    else
        ab -q -k -n "$n" -c "$C" "http://127.0.0.1:$port/" | grep -E "Failed" >&2
    fi
    kill "$m"; wait "$m" 2>/dev/null || true
    grep "^totals\|^summary" "$OUT/$LABEL.$n.$w" | head -1 | awk '{print $2}'
}
a=$(one "$N1"); b=$(one "$N2")
echo "$LABEL ${MODE:-default} ($CLIENT): $(( (b - a) / (N2 - N1) )) instructions per request ($a at $N1, $b at $N2)"
