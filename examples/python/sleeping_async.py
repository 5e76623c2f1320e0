"""The seed's sleeping example (uWSGI tests/sleeping_async.py, in Python 3): `uwsgi.async_sleep(N)`
registers a timer and the next `yield` gives the core back until it fires. Unlike uWSGI
(whole seconds), ringsgi honours fractions: `?0.2` sleeps 200 ms.

    ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/sleeping_async.py --async 100 --greenlet
    curl 'http://127.0.0.1:8080/?1'     # <h1>Hello World after 1 seconds</h1>

uWSGI: uwsgi --http-socket 127.0.0.1:8080 --plugins python3,greenlet_python3 --greenlet --async 100 \\
    --wsgi-file sleeping_async.py
"""
import uwsgi

sleepvalue = 5


def application(env, start_response):
    secs = float(env.get("QUERY_STRING") or sleepvalue)
    start_response("200 Ok", [("Content-type", "text/html")])
    yield uwsgi.async_sleep(secs)
    timed_out = env["x-wsgiorg.fdevent.timeout"]
    yield ("<h1>Hello World after %g seconds</h1>" % secs).encode()
    yield ("<p>timeout flag: %s</p>" % timed_out).encode()
