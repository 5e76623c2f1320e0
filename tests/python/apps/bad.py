"""Misbehaving WSGI apps for tests/python.rs (not validated: they break the PEP on purpose).

  /nonit            returns 42 (not iterable)
  /twice            start_response twice without exc_info
  /badheader        a header value with CR LF (an injected header)
  /badname          a header name with a space
  /none_status      a status that is not a string
  /ok               200 "fine" (the sibling that must be unaffected)
"""


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/nonit":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return 42
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"twice"]
    if path == "/badheader":
        start_response("200 OK", [("X-Bad", "a\r\nX-Injected: yes")])
        return [b"bad header"]
    if path == "/badname":
        start_response("200 OK", [("X Bad", "v")])
        return [b"bad name"]
    if path == "/none_status":
        start_response(None, [])
        return [b"bad status"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fine"]
