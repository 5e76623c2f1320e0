#!/usr/bin/env bash
# User-space instructions per request of a gevent worker under the article's test
# (examples/python/flask_sleep.py, `time.sleep(1)` monkey-patched), counted by callgrind:
# exact to a few percent where CPU time on this shared machine is not (docs/benchmarks.md,
# "gevent: CPU per request (gevent3)").
#
#   benches/gevent_callgrind.sh ringsgi BINARY LABEL
#   benches/gevent_callgrind.sh uwsgi - LABEL          # uWSGI --gevent from the bench venv
#   VENV=target/pyvenv N1=500 N2=1000 C=500 benches/gevent_callgrind.sh ringsgi target/release/ringsgi now
#
# Two runs of a 1-worker server under `valgrind --tool=callgrind`, one serving N1 and one N2
# requests (`ab -cC`, one connection per request); (I(N2) - I(N1)) / (N2 - N1) of the worker
# cancels start-up out. The count moves by a few percent between runs (how many requests the
# hub handles per wake-up depends on timing): compare several runs. Outputs:
# target/callgrind/LABEL.N.PID (callgrind_annotate them). Needs valgrind, ab, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=$1; BIN=$2; LABEL=$3
N1=${N1:-500}; N2=${N2:-1000}; C=${C:-500}
VENV=${VENV:-target/pyvenv}
OUT=target/callgrind
mkdir -p "$OUT"
one() {
    local n=$1 port=$((19000 + RANDOM % 900)) m w
    rm -f "$OUT/$LABEL.$n".*
    if [ "$SERVER" = ringsgi ]; then
        setsid valgrind --tool=callgrind --callgrind-out-file="$OUT/$LABEL.$n.%p" "$BIN" \
            --cores 1 --http "127.0.0.1:$port" --gevent 1000 --gevent-monkey-patch \
            --virtualenv "$VENV" --pythonpath examples/python --module flask_sleep:app \
            --listen 4096 --disable-logging >"$OUT/$LABEL.$n.log" 2>&1 &
    else
        setsid valgrind --tool=callgrind --callgrind-out-file="$OUT/$LABEL.$n.%p" \
            "$VENV/bin/uwsgi" --master --processes 1 --http-socket "127.0.0.1:$port" \
            --gevent 1000 --gevent-monkey-patch --virtualenv "$VENV" \
            --pythonpath examples/python --module flask_sleep:app --listen 4096 \
            --disable-logging --die-on-term >"$OUT/$LABEL.$n.log" 2>&1 &
    fi
    m=$!
    for _ in $(seq 300); do
        curl -s -o /dev/null -m 5 "http://127.0.0.1:$port/inflight" && break
        sleep 0.5
    done
    # Warm-up: the imports done at the first request are not counted twice.
    for _ in 1 2 3 4; do curl -s -o /dev/null -m 10 "http://127.0.0.1:$port/"; done
    # The worker: the master's last child (ringsgi's import preflight child has exited).
    w=$(pgrep -P "$m" | tail -1)
    ab -q -s 120 -n "$n" -c "$C" "http://127.0.0.1:$port/" | grep -E "Failed" >&2
    kill -TERM -- "-$m"
    # callgrind writes the worker's counts when it exits.
    for _ in $(seq 60); do kill -0 "$w" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$m" 2>/dev/null || true
    wait "$m" 2>/dev/null || true
    grep "^summary\|^totals" "$OUT/$LABEL.$n.$w" | head -1 | awk '{print $2}'
}
a=$(one "$N1"); b=$(one "$N2")
echo "$LABEL ($SERVER): $(( (b - a) / (N2 - N1) )) instructions per request ($a at $N1, $b at $N2)"
