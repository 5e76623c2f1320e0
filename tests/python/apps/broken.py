"""A WSGI file that does not import: a syntax error on line 5 (tests/python.rs)."""


def application(environ, start_response)
    return [b"never"]
