# examples/python/flask_sleep.py with a timeline (benches/gevent_timeline.py): per request
# index (`/?i=N`, sent by benches/abtl.c), CLOCK_MONOTONIC when the request reached the app
# and when the view's `time.sleep(1)` (monkey-patched) returned; `/timeline` answers them as
# `i enter wake` lines (the worker's pid first) and forgets them.
#
# The index is taken from the WSGI environ by a wrapper, and the view compares it with
# Flask's `request.args`: the count of requests that saw another request's arguments is in
# `/timeline`'s first line (`mismatched N`).
import os
import time

from flask import Flask, request

flask_app = Flask(__name__)
_seen = []
_mismatched = [0]


@flask_app.route("/")
def hello():
    from time import sleep

    env = request.environ
    if request.args.get("i", "-1") != env["timeline.i"]:
        _mismatched[0] += 1
    sleep(1)
    env["timeline.wake"] = time.monotonic()
    return "Hello World!"


@flask_app.route("/timeline")
def timeline():
    lines = [f"# pid {os.getpid()} mismatched {_mismatched[0]}"]
    lines += [f"{i} {a:.6f} {b:.6f}" for i, a, b in _seen]
    _seen.clear()
    return "\n".join(lines) + "\n"


def app(environ, start_response):
    enter = time.monotonic()
    qs = environ.get("QUERY_STRING", "")
    i = environ["timeline.i"] = qs[2:] if qs.startswith("i=") else "-1"
    body = flask_app(environ, start_response)
    if "timeline.wake" in environ:
        _seen.append((i, enter, environ["timeline.wake"]))
    return body
