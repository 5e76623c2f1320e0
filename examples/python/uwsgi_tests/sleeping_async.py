# uWSGI's tests/sleeping_async.py, ported to Python 3 (the response chunks are bytes).
# Run: ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/uwsgi_tests/sleeping_async.py \
#          --async 10 --greenlet
import uwsgi

sleepvalue = 5


def application(env, start_response):
    start_response('200 Ok', [('Content-type', 'text/html')])
    yield uwsgi.async_sleep(sleepvalue)
    # print("TIMEOUT: ", env['x-wsgiorg.fdevent.timeout'])
    yield b"<h1>Hello World after %d seconds</h1>" % sleepvalue
