# A Flask view that calls a slow third party with `requests` (the article's scenario): under
# --gevent with --gevent-monkey-patch each call waits on the worker's ring, not the core.
#
#   ringsgi --http :3000 --gevent 1000 --gevent-monkey-patch -H VENV \
#       --module flask_upstream:app --pythonpath examples/python
#
# UPSTREAM (default http://127.0.0.1:9000/) is the third party's URL; `?port=N` asks
# http://127.0.0.1:N/ instead (tests).
import os

import requests
from flask import Flask, request

app = Flask(__name__)
UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9000/")
_now = 0
_peak = 0


@app.route("/")
def view():
    global _now, _peak
    _now += 1
    _peak = max(_peak, _now)
    try:
        port = request.args.get("port", type=int)
        url = "http://127.0.0.1:%d/" % port if port else UPSTREAM
        r = requests.get(url, timeout=30)
    finally:
        _now -= 1
    return "upstream said: %s" % r.text


@app.route("/inflight")
def inflight():
    return str(_peak)
