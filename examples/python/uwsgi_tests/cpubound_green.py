# uWSGI's tests/cpubound_green.py, ported to Python 3 (the response chunks are bytes):
# uwsgi.suspend() 99,999 times, a chunk every 100.
# Run: ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/uwsgi_tests/cpubound_green.py \
#          --async 10 --greenlet
import uwsgi
import time


def application(env, start_response):
    counter = 0
    start_response('200 OK', [('Content-Type', 'text/html')])
    start_time = time.time()
    for i in range(1, 100000):
        uwsgi.suspend()
        # print every 100
        if i % 100 == 0:
            yield b"<h1>%d</h1>\n" % i
        counter = counter + i

    yield b"<h1>%d cycles after %d</h1>\n" % (counter, time.time() - start_time)
