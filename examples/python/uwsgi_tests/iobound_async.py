# uWSGI's tests/iobound_async.py, ported to Python 3. The original fetched a logo from a
# hard-coded public address with uwsgi.send/recv; this port asks an HTTP server on 127.0.0.1
# whose port is the query string (`?8000`) and uses os.read/os.write on the fd that
# uwsgi.async_connect returns (the waits, is_connected and the timeout flag are the original's).
# Run: python3 -m http.server 8000 &
#      ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/uwsgi_tests/iobound_async.py \
#          --async 10 --greenlet
#      curl 'http://127.0.0.1:8080/?8000'
import os

import uwsgi


def send_request(env, client):

    os.write(client, b"GET / HTTP/1.0\r\n")

    # test for suspend/resume
    uwsgi.suspend()

    os.write(client, b"Host: 127.0.0.1\r\n\r\n")

    while 1:
        yield uwsgi.wait_fd_read(client, 2)
        if env['x-wsgiorg.fdevent.timeout']:
            return

        buf = os.read(client, 4096)
        if buf:
            yield buf
        else:
            break


def application(env, start_response):

    c = uwsgi.async_connect('127.0.0.1:%s' % env['QUERY_STRING'])

    # wait for connection
    yield uwsgi.wait_fd_write(c, 2)

    if env['x-wsgiorg.fdevent.timeout']:
        os.close(c)
        return

    if uwsgi.is_connected(c):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        for r in send_request(env, c):
            yield r
    else:
        start_response('500 Internal Server Error', [('Content-Type', 'text/html')])
        yield b"Internal Server Error"

    os.close(c)
