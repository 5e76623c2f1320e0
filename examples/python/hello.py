"""WSGI hello world (the benchmark app of benches/wsgi_vs_granian.py).

    ringsgi --http 127.0.0.1:8080 --wsgi-file examples/python/hello.py
    curl http://127.0.0.1:8080/      # Hello World!
"""


def application(environ, start_response):
    body = b"Hello World!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
