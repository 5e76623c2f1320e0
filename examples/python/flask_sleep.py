# The article's Flask app (seed "gevent ... uWSGI"): a view that sleeps 1 s with the plain
# `time.sleep`, made cooperative by monkey patching.
#
#   ringsgi --http :3000 --gevent 1000 --gevent-monkey-patch -H VENV --module flask_sleep:app \
#       --pythonpath examples/python
#
# /inflight answers the highest number of /-requests seen sleeping at once (for tests).
from flask import Flask

app = Flask(__name__)

_now = 0
_peak = 0


@app.route("/")
def hello():
    global _now, _peak
    from time import sleep

    _now += 1
    _peak = max(_peak, _now)
    try:
        sleep(1)
    finally:
        _now -= 1
    return "Hello World!"


@app.route("/inflight")
def inflight():
    return str(_peak)
