"""The app of benches/wsgi_sleep.py: sleeps `?SECS` (default 1) with uwsgi.async_sleep and the
uWSGI async idiom (`yield` after registering the timer), then says hello. Runs unchanged on
ringsgi --greenlet and on uWSGI's async mode."""
import uwsgi


def application(env, start_response):
    secs = float(env.get("QUERY_STRING") or 1)
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield uwsgi.async_sleep(secs)
    yield b"Hello World!"
