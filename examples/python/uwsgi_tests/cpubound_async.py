# uWSGI's tests/cpubound_async.py, ported to Python 3 (the response chunks are bytes): 999
# chunks, each one a switch back to the server.
# Run: ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/uwsgi_tests/cpubound_async.py \
#          --async 10 --greenlet
import time


def application(env, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    for i in range(1, 1000):
        yield ("<h1>%s at %s</h1>" % (i, str(time.time()))).encode()
