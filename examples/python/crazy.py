# The "crazy example" of uWSGI's "The Gevent loop engine" page, in Python 3:
# sleep in a request, resolve names concurrently with a join timeout, and leave a background
# greenlet running after the response ended.
#
#   ringsgi --http :8080 --gevent 100 --wsgi-file examples/python/crazy.py -H VENV
#
# CRAZY_SLEEP (default 3 s) and CRAZY_NAMES (comma-separated, default the uWSGI page's four
# hosts) let tests stay short and local.
import os
import sys

import gevent
import gevent.socket

SLEEP = float(os.environ.get("CRAZY_SLEEP", "3"))
NAMES = os.environ.get(
    "CRAZY_NAMES", "www.google.com,www.example.com,www.python.org,projects.unbit.it"
).split(",")


def bg_task():
    for i in range(1, 10):
        print("background task", i)
        gevent.sleep(0.01)
    sys.stdout.flush()


def long_task():
    for i in range(1, 10):
        print(i)
    sys.stdout.flush()


def application(e, sr):
    sr("200 OK", [("Content-Type", "text/html")])
    t = gevent.spawn(long_task)
    t.join()
    yield b"sleeping for 3 seconds...<br/>"
    gevent.sleep(SLEEP)
    yield b"done<br>"
    yield b"getting some ips...<br/>"
    jobs = [gevent.spawn(gevent.socket.gethostbyname, url) for url in NAMES]
    gevent.joinall(jobs, timeout=2)

    for j in jobs:
        yield ("ip = %s<br/>" % j.value).encode()

    gevent.spawn(bg_task)  # this task will go on after request end
