# The Python half of ringsgi's WSGI engine (module `_ringsgi`, loaded into each worker).
#
# `run` serves one request: with --greenlet it is the body of the request's greenlet, and
# every wait (a body not arrived yet, a chunk for a slow client, a uwsgi wait) is registered on
# the request object `r` (Rust, src/python/wsgi.rs) and then `suspend()` switches to the
# executor, which does the wait on the ring and switches back. Without --greenlet the same
# code runs straight on the executor and `suspend()` does nothing.
import sys
import traceback

# The raw switches to the executor (src/python/ffi.rs), set by the engine.
suspend = None
park = None


def loop(job):
    """The body of a pooled greenlet: run a job, park, run the next one. Reusing greenlets
    keeps each one's Python data stack (a new greenlet maps a fresh one: mmap + munmap)."""
    while True:
        func, args = job
        func(*args)
        # Parked, the greenlet must not keep the last request (environ, body) alive.
        func = args = job = None
        job = park()


class Harakiri(TimeoutError):
    """Raised inside a request at its next switch when its harakiri deadline passed."""


class Input:
    """wsgi.input: the request body as it arrives (PEP 3333)."""

    __slots__ = ("_r",)

    def __init__(self, r):
        self._r = r

    def read(self, size=-1):
        r = self._r
        if size is None:
            size = -1
        while True:
            data = r.input_read(size)
            if data is not None:
                return data
            suspend()
            r.check()

    def readline(self, size=-1):
        r = self._r
        if size is None:
            size = -1
        while True:
            data = r.input_readline(size)
            if data is not None:
                return data
            suspend()
            r.check()

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self):
        pass


class EmptyInput:
    """wsgi.input of a request without a body: one instance per worker for all of them."""

    __slots__ = ()

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration

    def close(self):
        pass


class FileWrapper:
    """wsgi.file_wrapper: a file with a fileno() is sent by the engine (splice)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class _Call:
    __slots__ = ("r",)

    def start_response(self, status, headers, exc_info=None):
        self.r.start(status, headers, exc_info)
        return self.write

    def write(self, data):
        r = self.r
        if r.push(data):
            suspend()
            r.check()


def run(app, environ, r):
    call = _Call()
    call.r = r
    result = None
    try:
        result = app(environ, call.start_response)
        kind = type(result)
        if kind is list or kind is tuple:
            # Sent at the end in one piece: no switch, and nothing to close (a getattr that
            # misses costs an AttributeError).
            r.push_all(result)
            result = None
        elif kind is FileWrapper and r.sendfile(result.filelike):
            suspend()
            r.check()
        elif not r.greenlet:
            # Straight on the executor: the engine pulls the chunks one by one (step) and
            # writes each before the next; it calls close() (finish).
            r.defer(iter(result))
            r.defer_close(result)
            result = None
            return
        else:
            for chunk in result:
                if r.push(chunk):
                    suspend()
                    r.check()
    except BaseException as e:
        r.fail(e, traceback.format_exc())
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except BaseException:
                # The response itself is complete: log, do not cut it.
                r.log_exception(traceback.format_exc())
        r.done()


def load(wsgi_file, module, callable_name):
    """Import the app; returns the callable. Raises with a one-line reason."""
    import importlib
    import importlib.util
    import os

    if wsgi_file is not None:
        path = os.path.abspath(wsgi_file)
        name = "uwsgi_file_" + "".join(c if c.isalnum() else "_" for c in wsgi_file)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None:
            raise ImportError("not a Python file: %s" % wsgi_file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        d = os.path.dirname(path)
        if d not in sys.path:
            sys.path.insert(0, d)
        spec.loader.exec_module(mod)
        what = wsgi_file
    else:
        mod = importlib.import_module(module)
        what = module
    app = getattr(mod, callable_name, None)
    if app is None:
        raise LookupError("%s has no callable %r" % (what, callable_name))
    if not callable(app):
        raise TypeError("%s.%s is not callable" % (what, callable_name))
    return app


def describe(e, tb=None):
    """One line: the exception and where it was raised."""
    where = ""
    if isinstance(e, SyntaxError) and e.filename:
        where = " (%s, line %s)" % (e.filename, e.lineno)
    else:
        tb = traceback.extract_tb(tb or e.__traceback__)
        # The app's own frames, not importlib's or the engine's (a "<...>" file name).
        own = [f for f in tb if not f.filename.startswith("<")]
        frame = own[-1] if own else None
        if frame is not None:
            where = " (%s, line %s)" % (frame.filename, frame.lineno)
    text = e.msg if isinstance(e, SyntaxError) and e.msg else str(e)
    msg = text.splitlines()[0] if text else ""
    return "%s: %s%s" % (type(e).__name__, msg, where)


def setup_paths(pythonpath, virtualenv):
    import glob
    import os
    import site

    if virtualenv:
        venv = os.path.abspath(virtualenv)
        found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
        if not found:
            raise ImportError("--virtualenv %s: no lib/python*/site-packages in it" % virtualenv)
        for sp in found:
            site.addsitedir(sp)
            # Before the interpreter's own site-packages, as in an activated venv.
            sys.path.remove(sp)
            sys.path.insert(0, sp)
        sys.prefix = sys.exec_prefix = venv
        os.environ["VIRTUAL_ENV"] = venv
        # Child Python processes (subprocess with sys.executable) use the venv too.
        python = os.path.join(venv, "bin", "python")
        if os.path.exists(python):
            sys.executable = python
    for p in reversed(pythonpath):
        sys.path.insert(0, os.path.abspath(p))
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    # stdout and stderr go to the server's log pipe: a line at a time, not a block.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass


def run_script(path, argv, r):
    """--pyrun: run `path` as __main__; returns the exit status."""
    import runpy

    import os

    status = 0
    sys.argv = [path] + list(argv)
    # As `python FILE` does: the script's directory first on sys.path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code
        else:
            sys.stderr.write("%s\n" % (e.code,))
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
    r.exit_status(status)
    r.done()


def run_handler(handler, num, r):
    """A `uwsgi.register_signal` handler, in its own greenlet."""
    try:
        handler(num)
    except BaseException as e:
        r.fail(e, traceback.format_exc())
    finally:
        r.done()


def step(it, r):
    """One chunk of a response iterable pulled by the engine; False at its end."""
    try:
        chunk = next(it)
    except StopIteration:
        return False
    except BaseException as e:
        r.fail(e, traceback.format_exc())
        return False
    try:
        r.push(chunk)
    except BaseException as e:
        r.fail(e, traceback.format_exc())
        return False
    return True


def finish(result, r):
    """close() of a response iterable pulled by the engine."""
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except BaseException:
            r.log_exception(traceback.format_exc())
