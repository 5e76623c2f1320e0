"""The seed's first async example ("uWSGI asynchronous/non-blocking modes", tests.cpubound_async),
in Python 3: every `yield` of the response iterable gives the core back to the server, so other
requests run between the chunks.

    ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/cpubound_async.py --async 10 --greenlet
    curl -s http://127.0.0.1:8080/ | head -c 60     # <h1>1</h1><h1>2</h1>...<h1>9999</h1>

uWSGI: uwsgi --http-socket 127.0.0.1:8080 --plugins python3 --wsgi-file cpubound_async.py --async 10
"""


def application(env, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    for i in range(1, 10000):
        yield ("<h1>%s</h1>" % i).encode()
