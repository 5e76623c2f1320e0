# gevent's loop on the worker's io_uring ring (module `_ringsgi_gevent`, ringsgi --gevent).
#
# gevent selects it through `gevent.config.loop = "_ringsgi_gevent.RingLoop"` before the hub
# exists. The hub runs `RingLoop.run()`: callbacks, then ready watchers; when nothing is
# runnable it parks: it switches to the worker's executor (the main greenlet) with its next
# deadline, the executor waits on its ring with the GIL released (io watchers are one-shot
# POLL_ADDs re-armed while the watcher is active, keyed by registration, never by fd), then
# switches back into the hub with what completed. docs/gevent.md describes it.
import os
import sys
import heapq
from heapq import heappush as _heappush, heappop as _heappop
import signal as _signal_mod
import time
import fcntl as _fcntl
import select as _select_mod
import traceback
import weakref as _weakref
from collections import deque

from greenlet import getcurrent as _getcurrent

import _ringsgi

# Originals, bound before any monkey patching (patch_all replaces os.waitpid, signal.signal,
# select.*).
_monotonic = time.monotonic
_waitpid = os.waitpid
_getpid = os.getpid
_pidfd_open = getattr(os, "pidfd_open", None)
_os_close = os.close
_os_read = os.read
_os_pipe = os.pipe
_os_stat = os.stat
_signal = _signal_mod.signal
_set_wakeup_fd = _signal_mod.set_wakeup_fd
_getswitchinterval = sys.getswitchinterval
_poll_cls = _select_mod.poll
_F_GETFD = _fcntl.F_GETFD
_fcntl_fn = _fcntl.fcntl

# The engine's primitives (src/python/gevent.rs) and the raw switch to the executor.
_poll_start = _ringsgi.poll_start
_poll_cancel = _ringsgi.poll_cancel
_take_events = _ringsgi.take_events
_park_hub = _ringsgi.park_hub
_wake = _ringsgi.wake
_raw_suspend = _ringsgi.raw_suspend

__all__ = ["RingLoop", "loop", "READ", "WRITE", "MAXPRI", "MINPRI"]

READ = 1
WRITE = 2
MAXPRI = 2
MINPRI = -2
_POLLIN = 0x001
_POLLPRI = 0x002
_POLLOUT = 0x004
_POLLERR = 0x008
_POLLHUP = 0x010
_POLLNVAL = 0x020
_POLLRDHUP = 0x2000
_READISH = _POLLIN | _POLLPRI | _POLLHUP | _POLLERR | _POLLNVAL | _POLLRDHUP
_WRITEISH = _POLLOUT | _POLLHUP | _POLLERR | _POLLNVAL


def _noop(*_args):
    pass


def _ready_order(x):
    # Higher priority first; at the same priority timers, then io, then async watchers.
    return (-x[0], x[1])


def _any_pending(asyncs):
    # any(a._pending for a in asyncs) without a generator per loop iteration.
    for a in asyncs:
        if a._pending:
            return True
    return False


class _Callback(object):
    __slots__ = ("callback", "args")

    def __init__(self, callback, args):
        self.callback = callback
        self.args = args

    def stop(self):
        self.callback = None
        self.args = None

    close = stop

    @property
    def pending(self):
        return self.callback is not None

    def __bool__(self):
        # True while pending or running (gevent's Event checks its notifier this way);
        # the loop clears `args` after the call.
        return self.args is not None


_new_callback = object.__new__


class _Watcher(object):
    _kind = "watcher"

    def __init__(self, loop, ref=True, priority=None):
        self.loop = loop
        self._ref = bool(ref)
        self._priority = priority or 0
        self._callback = None
        self._args = None
        self._active = False
        self._pending = False

    # -- the parts gevent reads
    @property
    def active(self):
        return self._active

    @property
    def pending(self):
        return self._pending

    def _get_ref(self):
        return self._ref

    def _set_ref(self, value):
        value = bool(value)
        if value != self._ref and self._active:
            self.loop._nref += 1 if value else -1
        self._ref = value

    ref = property(_get_ref, _set_ref)

    def _get_callback(self):
        return self._callback

    def _set_callback(self, cb):
        if cb is not None and not callable(cb):
            raise TypeError("Expected callable, not %r" % (cb,))
        self._callback = cb

    callback = property(_get_callback, _set_callback)

    def _get_args(self):
        return self._args

    def _set_args(self, args):
        if args is not None and not isinstance(args, tuple):
            raise TypeError("args must be a tuple, not %r" % (args,))
        self._args = args

    args = property(_get_args, _set_args)

    def _get_priority(self):
        return self._priority

    def _set_priority(self, value):
        if self._active:
            raise AttributeError("Cannot set priority of an active watcher")
        self._priority = value

    priority = property(_get_priority, _set_priority)

    def _activate(self):
        if not self._active:
            self._active = True
            if self._ref:
                self.loop._nref += 1

    def _deactivate(self):
        if self._active:
            self._active = False
            if self._ref:
                self.loop._nref -= 1

    def start(self, callback, *args):
        if callback is None or not callable(callback):
            raise TypeError("callback must be callable, not %r" % (callback,))
        self.callback = callback
        self.args = args
        self._activate()
        self._start()

    def _start(self):
        pass

    def stop(self):
        self._stop()
        self._deactivate()
        self._pending = False
        self._callback = None
        self._args = None

    def _stop(self):
        pass

    def close(self):
        self.stop()

    def feed(self, revents, callback, *args):
        self.callback = callback
        self.args = args
        self.loop._fed.append((self, revents))

    def __enter__(self):
        return self

    def __exit__(self, t, v, tb):
        self.close()

    def _run(self, *extra):
        cb = self.callback
        if cb is None:
            return
        cb(*(extra + (self.args or ())))

    def __repr__(self):
        return "<%s at 0x%x%s>" % (
            type(self).__name__,
            id(self),
            " active" if self._active else "",
        )


class io(_Watcher):
    _kind = "io"

    def __init__(self, loop, fd, events, ref=True, priority=None):
        if fd < 0:
            raise ValueError("fd must be non-negative: %r" % fd)
        if events & ~(READ | WRITE):
            raise ValueError("illegal event mask: %r" % events)
        # An invalid descriptor raises OSError(EBADF) now, as libev's watcher does.
        _fcntl_fn(fd, _F_GETFD)
        _Watcher.__init__(self, loop, ref, priority)
        self.fd = fd
        self.events = events
        self._reg = None
        self._pass_events = False

    def _get_events_str(self):
        return "|".join(n for n, b in (("READ", READ), ("WRITE", WRITE)) if self.events & b)

    events_str = property(_get_events_str)

    def start(self, callback, *args, **kwargs):
        self._pass_events = bool(kwargs.get("pass_events", False))
        _Watcher.start(self, callback, *args)

    def _start(self):
        self.loop._io_start(self)

    def _stop(self):
        self.loop._io_stop(self)

    def _run(self, events):
        cb = self.callback
        if cb is None:
            return
        args = self.args or ()
        if self._pass_events:
            cb(events, *args)
        else:
            cb(*args)


class timer(_Watcher):
    """A timer: an entry of the loop's heap. `gevent.sleep()` and every `Timeout` create,
    start and stop one, so its methods set the fields directly instead of going through
    `_Watcher`'s properties and helpers (the same semantics, fewer Python calls)."""

    _kind = "timer"

    def __init__(self, loop, after=0.0, repeat=0.0, ref=True, priority=None):
        if repeat < 0.0:
            raise ValueError("repeat must be positive or zero: %r" % repeat)
        self.loop = loop
        self._ref = bool(ref)
        self._priority = priority or 0
        self._callback = None
        self._args = None
        self._active = False
        self._pending = False
        self.after = after
        self.repeat = repeat
        self._seq = None
        self.at = 0.0

    def start(self, callback, *args, **kwargs):
        if callback is None or not callable(callback):
            raise TypeError("callback must be callable, not %r" % (callback,))
        loop = self.loop
        self._callback = callback
        self._args = args
        if kwargs.get("update", loop._starting_timers_update) if kwargs else (
            loop._starting_timers_update
        ):
            loop._now = _monotonic()
        if not self._active:
            self._active = True
            if self._ref:
                loop._nref += 1
        # loop._timer_start, inlined.
        self._seq = seq = loop._tseq = loop._tseq + 1
        self.at = at = loop._now + self.after
        _heappush(loop._timers, (at, seq, self))

    def again(self, callback, *args, **kwargs):
        update = kwargs.get("update", True)
        self.loop._timer_stop(self)
        self.callback = callback
        self.args = args
        if update:
            self.loop.update_now()
        self._activate()
        self.loop._timer_start(self, self.repeat or self.after)

    def _stop(self):
        self.loop._timer_stop(self)

    def stop(self):
        # _Watcher.stop with loop._timer_stop and _deactivate inlined.
        self._seq = None
        if self._active:
            self._active = False
            if self._ref:
                self.loop._nref -= 1
        self._pending = False
        self._callback = None
        self._args = None

    close = stop

    def __exit__(self, t, v, tb):
        self.stop()


class _Listed(_Watcher):
    """prepare, check, idle, fork: kept in a list of the loop."""

    _list = None

    def _start(self):
        lst = getattr(self.loop, self._list)
        if self not in lst:
            lst.append(self)

    def _stop(self):
        lst = getattr(self.loop, self._list)
        if self in lst:
            lst.remove(self)


class prepare(_Listed):
    _kind = "prepare"
    _list = "_prepares"


class check(_Listed):
    _kind = "check"
    _list = "_checks"


class idle(_Listed):
    _kind = "idle"
    _list = "_idles"


class fork(_Listed):
    _kind = "fork"
    _list = "_forks"


class async_(_Listed):
    _kind = "async"
    _list = "_asyncs"

    def send(self):
        # From any thread. The eventfd write keeps the GIL (gevent-loop-notes.md).
        self._pending = True
        self.loop._wakeup()

    def send_ignoring_arg(self, _ignored):
        self.send()

    def stop(self):
        # An async watcher keeps a send() made while it was stopped? libev drops it.
        _Listed.stop(self)


class signal(_Watcher):
    _kind = "signal"

    def __init__(self, loop, signalnum, ref=True, priority=None):
        if signalnum < 1 or signalnum >= _signal_mod.NSIG:
            raise ValueError("illegal signal number: %r" % signalnum)
        _Watcher.__init__(self, loop, ref, priority)
        self.signum = signalnum
        self._previous = None

    def _start(self):
        self.loop._signal_start(self)

    def _stop(self):
        self.loop._signal_stop(self)


class child(_Watcher):
    _kind = "child"

    def __init__(self, loop, pid, trace=0, ref=True):
        if not loop.default:
            raise TypeError("child watchers are only available on the default loop")
        _Watcher.__init__(self, loop, ref, None)
        self.pid = pid
        self.trace = trace
        self.rpid = 0
        self.rstatus = 0
        self._io = None
        self._pidfd = -1
        self._poll_timer = None

    def _start(self):
        self.loop._child_start(self)

    def _stop(self):
        self.loop._child_stop(self)

    def _set_status(self, status):
        self.rstatus = status


class stat(_Watcher):
    _kind = "stat"

    def __init__(self, loop, path, interval=0.0, ref=True, priority=None):
        _Watcher.__init__(self, loop, ref, priority)
        self.path = path
        self._paths = path if isinstance(path, bytes) else os.fsencode(path)
        self.interval = interval
        self.attr = self._stat()
        self.prev = None
        self._timer = None

    def _stat(self):
        try:
            return _os_stat(self.path)
        except OSError:
            return None

    def _start(self):
        self.attr = self._stat()
        every = self.interval if self.interval and self.interval > 0 else 0.1
        # As libev: an interval below 0 becomes the default it actually uses.
        self.interval = every
        self._timer = self.loop.timer(every, every, ref=False)
        self._timer.start(self._check)

    def _check(self):
        new = self._stat()
        if new != self.attr:
            self.prev, self.attr = self.attr, new
            self._run()

    def _stop(self):
        if self._timer is not None:
            self._timer.stop()
            self._timer = None


class RingLoop(object):
    """gevent's loop (ILoop) on the worker's io_uring ring."""

    MAXPRI = MAXPRI
    MINPRI = MINPRI
    approx_timer_resolution = 0.00001
    backend = "io_uring"
    backend_int = 0
    origflags = ""
    origflags_int = 0
    sigfd = -1

    def __init__(self, flags=None, default=None):
        self.default = True if default is None else bool(default)
        self.error_handler = None
        self._callbacks = deque()
        self._timers = []
        self._tseq = 0
        self._regs = {}
        self._by_fd = {}
        self._prepares = []
        self._checks = []
        self._idles = []
        self._forks = []
        self._asyncs = []
        self._signals = {}
        self._sig_pipe = None
        self._sig_watcher = None
        self._fed = []
        self._nref = 0
        self._now = _monotonic()
        self._break = False
        self._destroyed = False
        self._pid = _getpid()
        # A hub in a thread other than the worker's executor (gevent allows one per thread)
        # cannot use the executor's ring: it waits with poll(2) in its own thread, woken by
        # a pipe. The worker's own hub never does.
        self._forked = not _ringsgi.on_ring()
        # This loop's id for its ring registrations; closed by destroy() or collection.
        self._lid = _ringsgi.loop_open()
        self._fin = None
        if not self._forked:
            self._fin = _weakref.finalize(self, _ringsgi.loop_close, self._lid)
            # Not at interpreter exit: the executor may be gone by then.
            self._fin.atexit = False
        self._wake_pipe = None
        self._wake_watcher = None
        self._starting_timers_update = False
        # Set by the engine for the worker's server hub: never leave run() when empty.
        self.serve = False
        self.iteration = 0
        self.depth = 0
        self._threadsafe_async = self.async_(ref=False)
        self._threadsafe_async.start(_noop)
        if self._forked:
            self._own_wake_pipe()

    def _own_wake_pipe(self):
        r, w = _os_pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake_pipe = (r, w)
        self._wake_watcher = self.io(r, READ, ref=False)
        self._wake_watcher.start(self._drain_wake_pipe)

    def _drain_wake_pipe(self):
        try:
            while _os_read(self._wake_pipe[0], 512):
                pass
        except OSError:
            pass

    def _wakeup(self):
        if self._wake_pipe is None:
            _wake()
        else:
            try:
                os.write(self._wake_pipe[1], b"x")
            except OSError:
                pass

    # ---- ILoop

    @property
    def ptr(self):
        return not self._destroyed

    def fileno(self):
        return None

    def now(self):
        return self._now

    def update_now(self):
        self._now = _monotonic()

    update = update_now

    def ref(self):
        self._nref += 1

    def unref(self):
        self._nref -= 1

    def break_(self, how=None):
        self._break = True

    def verify(self):
        pass

    def debug(self):
        return []

    @property
    def activecnt(self):
        return self._nref

    @property
    def pendingcnt(self):
        return len(self._fed) + sum(1 for a in self._asyncs if a._pending)

    @property
    def sig_pending(self):
        return False

    def run_callback(self, func, *args):
        # _Callback(func, args) without running __init__'s Python frame: one per request
        # start, wake-up and resume.
        cb = _new_callback(_Callback)
        cb.callback = func
        cb.args = args
        self._callbacks.append(cb)
        return cb

    def run_callback_threadsafe(self, func, *args):
        cb = self.run_callback(func, *args)
        self._threadsafe_async.send()
        return cb

    def io(self, fd, events, ref=True, priority=None):
        return io(self, fd, events, ref, priority)

    def timer(self, after, repeat=0.0, ref=True, priority=None):
        return timer(self, after, repeat, ref, priority)

    def signal(self, signum, ref=True, priority=None):
        return signal(self, signum, ref, priority)

    def idle(self, ref=True, priority=None):
        return idle(self, ref, priority)

    def prepare(self, ref=True, priority=None):
        return prepare(self, ref, priority)

    def check(self, ref=True, priority=None):
        return check(self, ref, priority)

    def fork(self, ref=True, priority=None):
        return fork(self, ref, priority)

    def async_(self, ref=True, priority=None):
        return async_(self, ref, priority)

    def child(self, pid, trace=0, ref=True):
        return child(self, pid, trace, ref)

    def stat(self, path, interval=0.0, ref=True, priority=None):
        return stat(self, path, interval, ref, priority)

    def install_sigchld(self):
        # Children are watched with pidfds on the ring: no SIGCHLD handler is needed.
        pass

    def reset_sigchld(self):
        pass

    def closing_fd(self, fd):
        fed = False
        for w in list(self._by_fd.get(fd, ())):
            if w._active:
                self._io_cancel(w)
                self._fed.append((w, w.events))
                fed = True
        return fed

    def reinit(self):
        pid = _getpid()
        if pid != self._pid:
            # A forked child (gevent.os.fork): the ring and the executor belong to the parent.
            # This process waits with poll(2) in place from now on, never switching to an
            # executor that is not its own.
            self._pid = pid
            self._forked = True
            if self._fin is not None:
                # The parent's ring registrations are not this process's to cancel.
                self._fin.detach()
                self._fin = None
            for reg, w in list(self._regs.items()):
                w._reg = None
                self._regs.pop(reg, None)
                if w._active:
                    self._io_arm(w)
            if self._wake_pipe is None:
                self._own_wake_pipe()
        for f in list(self._forks):
            self._fed.append((f, 0))

    def destroy(self):
        if self._destroyed:
            return
        self._destroyed = True
        if self._fin is not None:
            self._fin()
            self._fin = None
        self._regs.clear()
        self._by_fd.clear()
        self._callbacks.clear()
        self._timers = []
        if self._wake_pipe is not None:
            for fd in self._wake_pipe:
                try:
                    _os_close(fd)
                except OSError:
                    pass
            self._wake_pipe = None
        for signum in list(self._signals):
            for w in list(self._signals.get(signum, ())):
                w.stop()
        return True

    def handle_error(self, context, type, value, tb):
        from gevent.exceptions import HubDestroyed

        if type is HubDestroyed:
            self._callbacks.clear()
            self.break_()
            return
        handler = getattr(self.error_handler, "handle_error", None)
        if handler is not None:
            handler(context, type, value, tb)
        else:
            traceback.print_exception(type, value, tb)

    def _report(self, context):
        """The exception being handled goes to handle_error; nothing escapes run() (an
        exception out of the hub's run() would end the hub greenlet)."""
        t, v, tb = sys.exc_info()
        try:
            self.handle_error(context, t, v, tb)
        except:  # noqa: E722
            try:
                traceback.print_exc()
            except:  # noqa: E722
                pass
        finally:
            t = v = tb = None

    def _format(self):
        return "io_uring ringsgi"

    def __repr__(self):
        return "<%s.%s at 0x%x %s>" % (
            type(self).__module__,
            type(self).__name__,
            id(self),
            self._format(),
        )

    # ---- running

    def run(self, nowait=False, once=False):
        self._break = False
        self.depth += 1
        try:
            while not self._break and not self._destroyed:
                self.iteration += 1
                capped = self._run_callbacks()
                if self._prepares:
                    for w in list(self._prepares):
                        self._invoke(w)
                if self._callbacks:
                    capped = True
                if (
                    not self.serve
                    and self._nref <= 0
                    and not self._callbacks
                    and not self._fed
                ):
                    return
                if (
                    capped
                    or nowait
                    or self._fed
                    or self._idles
                    or _any_pending(self._asyncs)
                ):
                    timeout = 0.0
                elif self._timers:
                    # As libev: refresh `now` before computing how long to block (the hub may
                    # have been away in greenlets since the last refresh; a stale `now` made
                    # the wait too long and a 10 ms Timeout lose against a 20 ms sleep).
                    self._now = _monotonic()
                    timeout = max(0.0, self._timers[0][0] - self._now)
                else:
                    timeout = None
                events = self._wait(timeout)
                self._now = _monotonic()
                # As libev queues them: the check watchers active right after the poll (one
                # started by a callback of this iteration waits for the next).
                checks = list(self._checks) if self._checks else ()
                ran = self._dispatch(events)
                if not ran and not self._callbacks and self._idles:
                    for w in list(self._idles):
                        self._invoke(w)
                for w in checks:
                    if w._active:
                        self._invoke(w)
                if once or nowait:
                    return
        finally:
            self.depth -= 1

    def _run_callbacks(self):
        """Run queued callbacks (FIFO; those added meanwhile too), at most for a switch
        interval. True when capped (the next wait must not block)."""
        cbs = self._callbacks
        if not cbs:
            return False
        end = _monotonic() + _getswitchinterval()
        count = 0
        while cbs:
            cb = cbs.popleft()
            func = cb.callback
            if func is None:
                continue
            args = cb.args
            cb.callback = None
            try:
                func(*args)
            except:  # noqa: E722 (gevent's loop hands every exception to handle_error)
                self._report(cb)
            finally:
                cb.args = None
            count += 1
            if count >= 1000:
                count = 0
                if _monotonic() >= end:
                    self._now = _monotonic()
                    return bool(cbs)
        self._now = _monotonic()
        return False

    def _wait(self, timeout):
        if self._forked:
            return self._wait_forked(timeout)
        _park_hub(timeout, self._lid)
        _raw_suspend()
        return _take_events(self._lid)

    def _dispatch(self, events):
        ready = []
        # Only timers of priority 0 (the common case: sleeps and timeouts): already in the
        # order the sort below would give.
        plain = True
        regs = self._regs
        for reg, revents in events:
            w = regs.pop(reg, None)
            if w is None or w._reg != reg:
                continue
            w._reg = None
            ev = 0
            if revents & _READISH:
                ev |= READ
            if revents & _WRITEISH:
                ev |= WRITE
            ev &= w.events
            if revents & _POLLNVAL:
                # A closed descriptor: libev reports EV_ERROR (negative), gevent's
                # select.poll turns it into POLLNVAL.
                ev = -1
            if not w._active:
                continue
            if ev:
                ready.append((w._priority, 1, w, ev))
                plain = False
            else:
                self._io_arm(w)
        if self._fed:
            fed, self._fed = self._fed, []
            for w, ev in fed:
                ready.append((w._priority, 1, w, ev))
            plain = False
        now = self._now
        heap = self._timers
        while heap and heap[0][0] <= now:
            when, seq, w = _heappop(heap)
            if w._seq != seq:
                continue
            w._seq = None
            if w.repeat:
                w._seq = self._tseq = self._tseq + 1
                w.at = max(when + w.repeat, now)
                _heappush(heap, (w.at, w._seq, w))
            elif w._active:
                # w._deactivate(), inlined.
                w._active = False
                if w._ref:
                    self._nref -= 1
            prio = w._priority
            if prio:
                plain = False
            ready.append((prio, 0, w, None))
        for a in self._asyncs:
            if a._pending:
                a._pending = False
                ready.append((a._priority, 2, a, None))
                plain = False
        if not ready:
            return False
        if not plain and len(ready) > 1:
            ready.sort(key=_ready_order)
        for _, kind, w, ev in ready:
            if kind == 1 and w._kind == "io":
                if not w._active:
                    continue
                try:
                    w._run(ev)
                except:  # noqa: E722
                    w.stop()
                    self._report(w)
                    continue
                # Level-triggered: still active and not restarted meanwhile: re-arm.
                if w._active and w._reg is None:
                    self._io_arm(w)
            elif w._kind == "timer":
                cb = w._callback
                if cb is None:
                    continue
                try:
                    # w._run(), inlined.
                    cb(*(w._args or ()))
                except:  # noqa: E722
                    self._report(w)
                # A one-shot timer not restarted by its callback is stopped after it.
                if not w.repeat and w._seq is None and w._callback is cb:
                    w._callback = None
                    w._args = None
            else:
                self._invoke(w, ev)
        return True

    def _invoke(self, w, ev=None):
        if w.callback is None:
            return
        try:
            if ev:
                w._run(ev) if w._kind == "io" else w._run()
            else:
                w._run()
        except:  # noqa: E722
            self._report(w)

    # ---- io watchers: one-shot polls on the ring

    def _io_start(self, w):
        self._by_fd.setdefault(w.fd, set()).add(w)
        if w._reg is None:
            self._io_arm(w)

    def _io_arm(self, w):
        reg = _ringsgi.next_reg(self._lid)
        w._reg = reg
        self._regs[reg] = w
        if self._forked:
            return
        ev = 0
        if w.events & READ:
            ev |= _POLLIN
        if w.events & WRITE:
            ev |= _POLLOUT
        _poll_start(reg, w.fd, ev)

    def _io_cancel(self, w):
        reg = w._reg
        if reg is not None:
            w._reg = None
            self._regs.pop(reg, None)
            if not self._forked:
                _poll_cancel(reg)

    def _io_stop(self, w):
        self._io_cancel(w)
        s = self._by_fd.get(w.fd)
        if s is not None:
            s.discard(w)
            if not s:
                del self._by_fd[w.fd]
        # Drop an event already fed for it.
        if self._fed:
            self._fed = [(x, e) for x, e in self._fed if x is not w]

    def _wait_forked(self, timeout):
        p = _poll_cls()
        regs = {}
        for reg, w in self._regs.items():
            ev = 0
            if w.events & READ:
                ev |= _POLLIN
            if w.events & WRITE:
                ev |= _POLLOUT
            p.register(w.fd, ev)
            regs.setdefault(w.fd, []).append(reg)
        try:
            got = p.poll(None if timeout is None else timeout * 1000.0)
        except InterruptedError:
            got = []
        out = []
        for fd, rev in got:
            for reg in regs.get(fd, ()):
                out.append((reg, rev))
        return out

    # ---- timers: a heap here, the earliest deadline is the executor's wait

    def _timer_start(self, w, after):
        w._seq = self._tseq = self._tseq + 1
        w.at = self._now + after
        heapq.heappush(self._timers, (w.at, w._seq, w))

    def _timer_stop(self, w):
        w._seq = None

    # ---- signals: Python's handler (run by the interpreter on this thread), woken by a pipe

    def _signal_start(self, w):
        watchers = self._signals.get(w.signum)
        if watchers is None:
            watchers = self._signals[w.signum] = []
            prev = _signal(w.signum, self._on_signal)
            w._previous = prev
            self._signal_pipe()
        watchers.append(w)

    def _signal_stop(self, w):
        watchers = self._signals.get(w.signum)
        if watchers and w in watchers:
            watchers.remove(w)
            if not watchers:
                del self._signals[w.signum]
                first_prev = w._previous
                try:
                    _signal(w.signum, first_prev if first_prev is not None else _signal_mod.SIG_DFL)
                except (TypeError, ValueError, OSError):
                    pass

    def _signal_pipe(self):
        if self._sig_pipe is not None:
            return
        r, wfd = _os_pipe()
        os.set_blocking(r, False)
        os.set_blocking(wfd, False)
        try:
            _set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            pass
        self._sig_pipe = (r, wfd)
        self._sig_watcher = self.io(r, READ, ref=False)
        self._sig_watcher.start(self._drain_sig_pipe)

    def _drain_sig_pipe(self):
        try:
            while _os_read(self._sig_pipe[0], 512):
                pass
        except OSError:
            pass

    def _on_signal(self, signum, frame):
        for w in list(self._signals.get(signum, ())):
            self._fed.append((w, 0))
        self._wakeup()

    # ---- children: a pidfd per watched pid, polled on the ring

    def _child_start(self, w):
        if w.pid > 0 and _pidfd_open is not None:
            try:
                w._pidfd = _pidfd_open(w.pid)
            except OSError:
                w._pidfd = -1
            if w._pidfd >= 0:
                w._io = self.io(w._pidfd, READ, ref=False)
                w._io.start(self._child_ready, w)
                return
        # Any child (pid <= 0), or no pidfd: check every 10 ms.
        w._poll_timer = self.timer(0.01, 0.01, ref=False)
        w._poll_timer.start(self._child_ready, w)

    def _child_stop(self, w):
        if w._io is not None:
            w._io.stop()
            w._io = None
        if w._pidfd >= 0:
            try:
                _os_close(w._pidfd)
            except OSError:
                pass
            w._pidfd = -1
        if w._poll_timer is not None:
            w._poll_timer.stop()
            w._poll_timer = None

    def _child_ready(self, w):
        try:
            pid, status = _waitpid(w.pid if w.pid > 0 else -1, os.WNOHANG)
        except ChildProcessError:
            pid, status = w.pid, 0
        if pid == 0:
            return
        w.rpid = pid
        w.rstatus = status
        if w.pid > 0:
            self._child_stop(w)
        w._run()


# The name before Python 3.7 made `async` a keyword (gevent keeps it).
setattr(RingLoop, "async", RingLoop.async_)

# gevent.core (deprecated) copies this module's globals: its `loop` is the loop class.
loop = RingLoop


# ---- the engine's side: requests and the hub's parent

def gevent_main(r, script, argv, serve):
    """The body of the greenlet that owns gevent's hub (the hub's parent): --pyrun runs the
    script here (so gevent.wait()/Hub.join() work in it); a server worker's hub runs forever."""
    import gevent
    from gevent.exceptions import LoopExit

    if serve:
        hub = gevent.get_hub()
        main = _getcurrent().parent
        if main is not None and not hasattr(main, "spawn_tree_locals"):
            # Requests are spawned from the executor's main greenlet: gevent's tree tracking
            # (spawn_raw) looks up `spawn_tree_locals` on it, and the main greenlet, having no
            # parent, never keeps one: an AttributeError raised and caught per request. One
            # dict shared by the requests, as they share the hub's when uWSGI spawns them
            # from the hub.
            main.spawn_tree_locals = {}
        if hub.parent is not _getcurrent():
            # The app created the hub while it was imported (on the executor's main
            # greenlet): this greenlet becomes its parent, so that nothing gevent throws to
            # the hub's parent (LoopExit, SystemExit) lands in the executor.
            hub.parent = _getcurrent()
        hub.loop.serve = True
        while True:
            try:
                hub.switch()
            except LoopExit:
                pass
    else:
        import _ringsgi as boot

        boot.run_script(script, argv, r)


# gevent's functions the engine calls per request, bound at the first call (gevent is
# imported after this module is loaded).
_spawn_raw = None
_get_hub = None


def _bind_gevent():
    global _spawn_raw, _get_hub
    from gevent import get_hub, spawn_raw

    _get_hub = get_hub
    _spawn_raw = spawn_raw


def spawn(func, args):
    """A request's greenlet, child of the hub."""
    if _spawn_raw is None:
        _bind_gevent()
    return _spawn_raw(func, *args)


def resume(g):
    _get_hub().loop.run_callback(g.switch)


def _throw(g, exc):
    if not g.dead:
        g.throw(exc)


def kill(g, exc):
    if _get_hub is None:
        _bind_gevent()
    _get_hub().loop.run_callback(_throw, g, exc)


def gsuspend():
    """The request's switch out under --gevent: tell the executor what the request registered
    (its output, a uwsgi wait) and wait in the hub until the executor resumes it."""
    if _ringsgi.switch_out():
        _get_hub().switch()
    else:
        import gevent

        gevent.sleep(0)


def hub_busy():
    """Whether gevent's hub still has something to run (--gevent-wait-for-hub)."""
    import gevent

    hub = gevent.get_hub()
    loop = hub.loop
    return loop._nref > 0 or bool(loop._callbacks)


def _declare_interfaces():
    # gevent's interfaces (zope.interface, a gevent dependency), as its own loops declare.
    try:
        from zope.interface import classImplements
        from gevent._interfaces import ICallback, ILoop
    except ImportError:
        return
    classImplements(RingLoop, ILoop)
    classImplements(_Callback, ICallback)


_declare_interfaces()
