"""A Flask app (Flask from PyPI) with the routes the tests use: raw and multipart uploads,
a streamed response, an error, and a slow endpoint that sleeps with uwsgi.async_sleep.

    tests/python/setup-venv.sh        # target/pyvenv with Flask and greenlet
    ringsgi --http 127.0.0.1:8080 --virtualenv target/pyvenv --module flask_app:app \\
        --pythonpath examples/python --async 100 --greenlet

    curl http://127.0.0.1:8080/                                  # hello from flask
    curl --data-binary @README.md http://127.0.0.1:8080/upload/raw
    curl -F f=@README.md -F name=x http://127.0.0.1:8080/upload/multipart
    curl http://127.0.0.1:8080/stream?n=3
    curl http://127.0.0.1:8080/error                             # 500
    curl http://127.0.0.1:8080/slow?s=0.5

Every upload answer is JSON: the byte count and the SHA-256 of what the app read.
"""
import hashlib
import os

from flask import Flask, Response, jsonify, request, stream_with_context

try:
    import uwsgi
except ImportError:  # run outside a server (flask run): /slow then blocks
    uwsgi = None

app = Flask(__name__)


@app.route("/")
def index():
    return "hello from flask\n"


@app.route("/upload/raw", methods=["POST", "PUT"])
def upload_raw():
    # Read the stream in pieces, as a proxy or an upload handler would.
    h, n = hashlib.sha256(), 0
    while True:
        chunk = request.stream.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return jsonify(bytes=n, sha256=h.hexdigest(), content_length=request.content_length)


@app.route("/upload/multipart", methods=["POST"])
def upload_multipart():
    files = {
        name: {"filename": f.filename, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, f in request.files.items()
        for data in [f.read()]
    }
    return jsonify(files=files, form=request.form.to_dict())


@app.route("/stream")
def stream():
    n = int(request.args.get("n", "5"))

    @stream_with_context
    def lines():
        for i in range(n):
            yield "line %d of %d\n" % (i + 1, n)

    return Response(lines(), mimetype="text/plain")


@app.route("/error")
def error():
    raise RuntimeError("flask_app: /error raised this on purpose")


@app.route("/slow")
def slow():
    secs = float(request.args.get("s", "1"))
    if uwsgi is None:
        import time

        time.sleep(secs)
    else:
        # Register the timer, then switch away until it fires (the greenlet engine lets a
        # view suspend from any depth; no yield to the server needed).
        uwsgi.async_sleep(secs)
        uwsgi.suspend()
    return jsonify(slept=secs, pid=os.getpid())
