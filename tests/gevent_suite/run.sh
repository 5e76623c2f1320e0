#!/bin/sh
# gevent's test modules on ringsgi's loop and on gevent's default loop, in-process, one
# process per module and loop, each bounded by a timeout. Prints one line per module:
#   NAME  ringsgi:<summary>  default:<summary>
# Usage: tests/gevent_suite/run.sh RINGSGI_BINARY VENV [MODULE...]
set -u
BIN=$1; VENV=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
T=${GEVENT_SUITE_TIMEOUT:-180}
cd "$HERE"
for m in "$@"; do
  r=$(timeout -k 5 "$T" "$BIN" --gevent 100 -H "$VENV" --pyrun run_module.py -- "$m" 2>/tmp/gsuite.$m.ringsgi.err </dev/null | grep '^RESULT' | tail -1)
  rc1=$?
  [ -z "$r" ] && r="no result (timeout or crash: see /tmp/gsuite.$m.ringsgi.err)"
  d=$(timeout -k 5 "$T" "$VENV/bin/python" run_module.py "$m" 2>/tmp/gsuite.$m.default.err </dev/null | grep '^RESULT' | tail -1)
  [ -z "$d" ] && d="no result (timeout or crash: see /tmp/gsuite.$m.default.err)"
  echo "$m | ringsgi: ${r#RESULT $m } | default: ${d#RESULT $m }"
done
