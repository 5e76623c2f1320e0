//! The gevent engine (`--gevent N`): gevent's loop on the worker's ring.
//!
//! The loop itself is Python (`gevent_loop.py`, module `_ringsgi_gevent`, selected through
//! `gevent.config.loop` before the hub exists); this module gives it the ring:
//!
//! - io watchers: [`poll_start`] submits a one-shot `POLL_ADD` for a registration number
//!   (a glommio task awaiting the ring's poll); its completion is queued as `(reg, revents)`;
//!   [`poll_cancel`] drops the task, which cancels the poll. Registrations, never fds, key
//!   completions (fds are reused).
//! - the hub's wait: when nothing is runnable the hub calls [`park_hub`] with its next
//!   deadline and switches to the executor (the raw `suspend`); the hub driver ([`run_hub`])
//!   waits on the ring with the GIL released until a poll completes, the deadline passes, a
//!   request needs the hub, or another thread wakes it (an eventfd read on glommio's ring:
//!   `async_.send()`, `run_callback_threadsafe`), then the runner switches back into the hub.
//! - requests ([`drive_request`]): each runs in a greenlet of gevent's hub; its WSGI I/O
//!   (output, body, the `uwsgi` waits) is done by its Rust future while the greenlet waits in
//!   the hub, then resumed with a hub callback. Only the runner switches greenlets from Rust
//!   (into the hub); everything else is gevent's own switching inside Python.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule, PyTuple};

use super::wsgi::Exchange;
use super::{engine, ffi, greenlet};
use crate::{Request, Response};

pub(crate) const LOOP_PY: &str = include_str!("gevent_loop.py");

#[derive(Default)]
struct State {
    /// Completed polls, `(registration, revents)`, for the hub's next pass.
    events: RefCell<Vec<(u64, u32)>>,
    /// In-flight polls by registration; dropping one cancels its poll.
    polls: RefCell<HashMap<u64, glommio::Task<()>>>,
    next_reg: Cell<u64>,
    next_loop: Cell<u64>,
    /// The loop that parked (its id): only its completions end the executor's wait.
    parked_loop: Cell<u64>,
    /// Something for the hub arrived while it was parked.
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// What the hub parked with: `None` forever, `Some(d)` at most `d`.
    timeout: Cell<Option<Duration>>,
    /// Request greenlets (by address) → their exchange: the `uwsgi` module's current request
    /// (looked up at every greenlet switch: see [`AddrHasher`]).
    requests: RefCell<HashMap<usize, Rc<Exchange>, BuildHasherDefault<AddrHasher>>>,
    /// The hub driver runs (started at the first request or by --pyrun).
    started: Cell<bool>,
    active: Cell<bool>,
    /// --gevent-wait-for-hub.
    wait_for_hub: Cell<bool>,
    /// The loop module's `spawn` (see [`spawn_fn`]).
    spawn: RefCell<Option<Py<PyAny>>>,
    /// The hub's harakiri context (no deadline, no request): current while a greenlet of no
    /// request runs.
    hub_ctx: RefCell<Option<Rc<crate::harakiri::ReqCtx>>>,
}

thread_local! {
    static STATE: State = State::default();
}

/// The hash of a greenlet's address for the request map: a multiplication (Fibonacci
/// hashing), not the default SipHash, which the map's lookup at every switch paid for. The
/// keys are addresses of live objects, not attacker-chosen.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Objects are 16-byte aligned: the low bits carry nothing.
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The eventfd other threads write to wake the executor (`async_.send()`).
static EVENTFD: AtomicI32 = AtomicI32::new(-1);

/// Whether this thread runs the gevent engine.
pub(crate) fn active() -> bool {
    STATE.with(|s| s.active.get())
}

fn notify() {
    STATE.with(|s| {
        s.notified.set(true);
        if let Some(w) = s.waker.borrow_mut().take() {
            w.wake();
        }
    });
}

/// Whether the calling thread is the worker's executor with the gevent engine (its ring).
#[pyfunction]
fn on_ring() -> bool {
    active()
}

/// Registration numbers carry their loop's id in the top bits: a loop run inside a callback
/// of the hub's loop (gevent's tests do that) takes only its own completions.
const LOOP_SHIFT: u32 = 40;

fn loop_of(reg: u64) -> u64 {
    reg >> LOOP_SHIFT
}

/// A new loop on this thread: its id.
#[pyfunction]
fn loop_open() -> u64 {
    STATE.with(|s| {
        let id = s.next_loop.get() + 1;
        s.next_loop.set(id);
        id
    })
}

/// A loop is destroyed (or collected): cancel its polls, drop its completions.
#[pyfunction]
fn loop_close(id: u64) {
    let tasks: Vec<glommio::Task<()>> = STATE.with(|s| {
        s.events.borrow_mut().retain(|&(r, _)| loop_of(r) != id);
        let mut polls = s.polls.borrow_mut();
        let regs: Vec<u64> = polls
            .keys()
            .copied()
            .filter(|&r| loop_of(r) == id)
            .collect();
        regs.iter().filter_map(|r| polls.remove(r)).collect()
    });
    drop(tasks);
}

/// A fresh registration number of loop `id` for an io watcher's poll.
#[pyfunction]
fn next_reg(id: u64) -> u64 {
    STATE.with(|s| {
        let r = s.next_reg.get() + 1;
        s.next_reg.set(r);
        (id << LOOP_SHIFT) | (r & ((1 << LOOP_SHIFT) - 1))
    })
}

/// Submit a one-shot poll of `fd` for `events` (`POLLIN`/`POLLOUT` bits) as `reg`.
#[pyfunction]
fn poll_start(reg: u64, fd: i32, events: u32) {
    let task = glommio::spawn_local(async move {
        let revents = match crate::uring::poll::poll(fd, events, None).await {
            Ok(r) => r,
            // EBADF and friends: the watcher's owner finds out by using the fd.
            Err(_) => (libc::POLLERR | libc::POLLNVAL) as u32,
        };
        STATE.with(|s| {
            s.events.borrow_mut().push((reg, revents));
            s.polls.borrow_mut().remove(&reg);
        });
        notify();
    });
    STATE.with(|s| s.polls.borrow_mut().insert(reg, task));
}

/// Cancel the poll `reg` (dropping its task cancels the ring operation).
#[pyfunction]
fn poll_cancel(reg: u64) {
    let task = STATE.with(|s| {
        // A completion not taken yet goes too: only live registrations stay queued.
        s.events.borrow_mut().retain(|&(r, _)| r != reg);
        s.polls.borrow_mut().remove(&reg)
    });
    drop(task);
}

/// The polls of loop `id` completed since its last call.
#[pyfunction]
fn take_events(py: Python<'_>, id: u64) -> PyResult<Bound<'_, PyList>> {
    let mine: Vec<(u64, u32)> = STATE.with(|s| {
        let mut events = s.events.borrow_mut();
        if events.iter().all(|&(r, _)| loop_of(r) == id) {
            return std::mem::take(&mut *events);
        }
        let (mine, others) = events.drain(..).partition(|&(r, _)| loop_of(r) == id);
        *events = others;
        mine
    });
    PyList::new(py, mine)
}

/// Record the hub's wait (its next deadline; `None`: until something happens) and the
/// greenlet to switch back into; the caller then switches to the executor (raw `suspend`).
#[pyfunction]
#[pyo3(signature = (timeout, id))]
fn park_hub(py: Python<'_>, timeout: Option<f64>, id: u64) -> PyResult<()> {
    let t = timeout.map(|t| Duration::from_secs_f64(t.clamp(0.0, 1e9)));
    STATE.with(|s| {
        s.timeout.set(t);
        s.parked_loop.set(id);
    });
    let hub = ffi::current(py)?;
    super::greenlet::set_resume_target(hub);
    Ok(())
}

/// Wake the executor from any thread. Keeps the GIL (gevent-loop-notes.md: releasing it
/// here made gevent's thread pool start extra threads).
#[pyfunction]
fn wake() {
    let fd = EVENTFD.load(Ordering::Relaxed);
    if fd >= 0 {
        crate::sys::eventfd_write(fd, 1);
    }
}

/// Under --gevent, the running request greenlet tells its future that it switched out to
/// have its registered I/O done; false outside a request.
#[pyfunction]
fn switch_out(py: Python<'_>) -> bool {
    match current(py) {
        Some(ex) => {
            ex.switched_out.set(true);
            if let Some(w) = ex.waker.borrow_mut().take() {
                w.wake();
            }
            true
        }
        None => false,
    }
}

/// The request whose greenlet is running, under --gevent.
pub(crate) fn current(py: Python<'_>) -> Option<Rc<Exchange>> {
    let addr = ffi::current_addr(py);
    STATE.with(|s| s.requests.borrow().get(&addr).cloned())
}

/// A request ended: forget its greenlet.
pub(crate) fn unbind(ex: &Exchange) {
    let key = ex.gkey.replace(0);
    if key != 0 {
        // Dropped after the borrow: nothing that could switch greenlets (and so reach
        // `on_switch`) runs while the map is borrowed mutably.
        let gone = STATE.with(|s| s.requests.borrow_mut().remove(&key));
        drop(gone);
    }
}

/// Add the engine's functions to `_ringsgi` and load the loop module; select it as gevent's
/// loop (before any hub exists).
pub(crate) fn install(
    py: Python<'_>,
    boot: &Bound<'_, PyModule>,
    wait_for_hub: bool,
) -> PyResult<Py<PyModule>> {
    for f in [
        wrap_pyfunction!(on_ring, boot)?,
        wrap_pyfunction!(next_reg, boot)?,
        wrap_pyfunction!(loop_open, boot)?,
        wrap_pyfunction!(loop_close, boot)?,
        wrap_pyfunction!(poll_start, boot)?,
        wrap_pyfunction!(poll_cancel, boot)?,
        wrap_pyfunction!(take_events, boot)?,
        wrap_pyfunction!(park_hub, boot)?,
        wrap_pyfunction!(wake, boot)?,
        wrap_pyfunction!(switch_out, boot)?,
    ] {
        boot.add_function(f)?;
    }
    let code = std::ffi::CString::new(LOOP_PY).expect("gevent_loop.py has no NUL");
    let m = PyModule::from_code(py, &code, c"<ringsgi gevent_loop.py>", c"_ringsgi_gevent")?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("_ringsgi_gevent", &m)?;
    let gevent = py.import("gevent")?;
    gevent
        .getattr("config")?
        .setattr("loop", "_ringsgi_gevent.RingLoop")?;
    STATE.with(|s| {
        s.active.set(true);
        s.wait_for_hub.set(wait_for_hub);
    });
    Ok(m.unbind())
}

fn loop_fn<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    engine(|e| {
        e.gevent
            .as_ref()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no gevent engine"))
            .and_then(|m| m.bind(py).getattr(name))
    })
}

/// The loop module's `spawn`, looked up once per worker (it starts every request).
fn spawn_fn(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    if let Some(f) = STATE.with(|s| s.spawn.borrow().as_ref().map(|f| f.clone_ref(py))) {
        return Ok(f.into_bound(py));
    }
    let f = loop_fn(py, "spawn")?;
    STATE.with(|s| *s.spawn.borrow_mut() = Some(f.clone().unbind()));
    Ok(f)
}

/// greenlet's trace (`greenlet.settrace` with `ffi::switch_trace`), called on every switch of
/// the worker's thread with the greenlet about to run: the request whose greenlet runs next
/// becomes the current one for harakiri and the scoreboard (the master's hard harakiri and
/// blocked-executor line name it); any other greenlet (the hub, background greenlets) runs
/// as the hub.
pub(crate) fn switched_to(addr: usize) {
    // `try_with`: a switch during the thread's teardown finds no state, and does nothing.
    let _ = STATE.try_with(|s| {
        if let Some(ex) = s.requests.borrow().get(&addr) {
            if let Some(c) = &ex.hctx {
                crate::harakiri::switch_to(c, ex.label.as_bytes());
            }
        } else if let Some(c) = s.hub_ctx.borrow().as_ref() {
            crate::harakiri::switch_to(c, b"");
        }
    });
}

/// Start the hub driver once per worker (server mode).
pub(crate) fn ensure_started() {
    if STATE.with(|s| s.started.replace(true)) {
        return;
    }
    // The hub runs as no request: not with the deadline of the request that started it.
    let mut hub = Exchange::new(true, "gevent hub".to_owned(), -1);
    hub.hctx = hub
        .hctx
        .as_deref()
        .map(|c| Rc::new(crate::harakiri::engine_ctx(c)));
    STATE.with(|s| *s.hub_ctx.borrow_mut() = hub.hctx.clone());
    let ex = Rc::new(hub);
    let parts = Python::attach(|py| -> PyResult<super::wsgi::PyParts> {
        if ex.hctx.is_some() {
            let trace = ffi::switch_trace_function(py)?;
            py.import("greenlet")?
                .getattr("settrace")?
                .call1((trace,))?;
        }
        let r = Py::new(py, super::wsgi::Req { ex: ex.clone() })?;
        let args = PyTuple::new(
            py,
            [
                r.into_bound(py).into_any(),
                py.None().into_bound(py),
                py.None().into_bound(py),
                true.into_pyobject(py)?.to_owned().into_any(),
            ],
        )?;
        Ok(super::wsgi::PyParts {
            greenlet: None,
            func: loop_fn(py, "gevent_main")?.unbind(),
            args: args.unbind(),
            environ: None,
        })
    });
    match parts {
        Ok(p) => {
            *ex.py.borrow_mut() = Some(p);
            glommio::spawn_local(async move { run_hub(ex).await }).detach();
        }
        Err(e) => tracing::error!("--gevent: cannot start gevent's hub: {e}"),
    }
}

/// Run gevent's hub on this executor until the exchange `ex` (its parent greenlet) ends: the
/// runner switches into it, and whenever the hub parks, this waits on the ring.
pub(crate) async fn run_hub(ex: Rc<Exchange>) {
    STATE.with(|s| s.started.set(true));
    let _eventfd = match start_eventfd() {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!("--gevent: no eventfd for wake-ups from other threads: {e}");
            None
        }
    };
    loop {
        greenlet::resume(&ex).await;
        if ex.finished.get() {
            break;
        }
        wait().await;
    }
    EVENTFD.store(-1, Ordering::Relaxed);
}

/// The executor's side of the hub's park: until something for the hub happened or its
/// deadline passed. The GIL is not held here.
async fn wait() {
    let timeout = STATE.with(|s| s.timeout.take());
    let ready = std::future::poll_fn(|cx| {
        STATE.with(|s| {
            let id = s.parked_loop.get();
            if s.notified.replace(false) || s.events.borrow().iter().any(|&(r, _)| loop_of(r) == id)
            {
                Poll::Ready(())
            } else {
                *s.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    });
    match timeout {
        None => ready.await,
        Some(d) if d.is_zero() => futures_lite::future::yield_now().await,
        Some(d) => futures_lite::future::or(ready, glommio::timer::sleep(d)).await,
    }
    STATE.with(|s| s.notified.set(false));
}

/// The eventfd other threads write to, read for as long as the hub runs. Read through
/// glommio's own ring, not ours: a poll on our ring completed by another thread's write was
/// seen only by the ring bridge's 100 ms watchdog (gevent's test__threadpool: wake-ups
/// 100 ms late), under the `DEFER_TASKRUN` ring of the time; the watchdog is gone since.
fn start_eventfd() -> io::Result<glommio::Task<()>> {
    let fd = crate::sys::eventfd()?;
    let raw = {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    };
    let file = crate::sys::glommio_file(fd);
    EVENTFD.store(raw, Ordering::Relaxed);
    Ok(glommio::spawn_local(async move {
        loop {
            if file.read_at(0, 8).await.is_err() {
                tracing::error!("--gevent: reading the wake-up eventfd failed");
                break;
            }
            notify();
        }
    }))
}

/// Serve one request (or run a signal handler: no `io`) in a greenlet of gevent's hub: its
/// registered I/O is done here while the greenlet waits in the hub; a dropped future
/// (harakiri, client gone) kills the greenlet with `Harakiri` from a hub callback.
pub(crate) async fn drive_request(
    ex: &Rc<Exchange>,
    mut io: Option<(&mut Request, &mut Response)>,
) {
    ensure_started();
    let spawned = Python::attach(|py| -> PyResult<()> {
        let mut parts = ex.py.borrow_mut();
        let p = parts.as_mut().expect("the exchange's Python parts");
        let g = spawn_fn(py)?.call1((p.func.bind(py), p.args.bind(py)))?;
        let key = g.as_ptr() as usize;
        ex.gkey.set(key);
        let old = STATE.with(|s| s.requests.borrow_mut().insert(key, ex.clone()));
        drop(old);
        p.greenlet = Some(g.unbind());
        Ok(())
    });
    if let Err(e) = spawned {
        tracing::error!("{}: cannot start the request's greenlet: {e}", ex.label);
        ex.failed.set(true);
        ex.finished.set(true);
        return;
    }
    notify();
    let guard = KillOnDrop(ex.clone());
    loop {
        // Output pushed by a greenlet that runs on (wsgi.rs `push`) is sent here, never after
        // a failed write (the greenlet is told at its next push, then switches out).
        let has_io = io.is_some();
        std::future::poll_fn(|cx| {
            if ex.switched_out.get()
                || ex.finished.get()
                || (has_io && !ex.gone.get() && ex.has_output())
            {
                Poll::Ready(())
            } else {
                *ex.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if ex.finished.get() {
            break;
        }
        if !ex.switched_out.get() {
            if let Some((_, resp)) = io.as_mut() {
                ex.send_output(resp).await;
            }
            continue;
        }
        ex.switched_out.set(false);
        match io.as_mut() {
            Some((req, resp)) => ex.service(req, resp).await,
            None => ex.service_bare().await,
        }
        call_on_greenlet(ex, "resume", None);
    }
    drop(guard);
    Python::attach(|_py| {
        let parts = ex.py.borrow_mut().take();
        drop(parts);
    });
    // An app that raised after producing output: what it produced goes out before the
    // response is cut (as when each chunk was sent before the greenlet went on).
    if ex.failed.get()
        && !ex.gone.get()
        && !ex.cancelled.get()
        && ex.has_output()
        && let Some((_, resp)) = io.as_mut()
    {
        ex.send_output(resp).await;
    }
}

/// Queue `name(greenlet[, extra])` of the loop module (a hub callback) and wake the hub.
fn call_on_greenlet(ex: &Rc<Exchange>, name: &str, extra: Option<Py<PyAny>>) {
    Python::attach(|py| {
        let parts = ex.py.borrow();
        let Some(g) = parts.as_ref().and_then(|p| p.greenlet.as_ref()) else {
            return;
        };
        let r = loop_fn(py, name).and_then(|f| match &extra {
            Some(x) => f.call1((g.bind(py), x.bind(py))),
            None => f.call1((g.bind(py),)),
        });
        if let Err(e) = r {
            tracing::error!("{}: gevent {name}: {e}", ex.label);
        }
    });
    notify();
}

/// Kills a request's greenlet when its future is dropped before the greenlet ended.
struct KillOnDrop(Rc<Exchange>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let ex = &self.0;
        if ex.finished.get() {
            return;
        }
        ex.cancelled.set(true);
        let t = Python::attach(super::harakiri_type);
        call_on_greenlet(ex, "kill", t);
    }
}

/// A stopping worker whose --reload-mercy passed: throw `Harakiri` into every request
/// greenlet still running (from hub callbacks), so that their `finally` blocks and `close()`
/// run before the worker exits. How many were told.
pub(crate) fn cancel_requests() -> usize {
    let running: Vec<Rc<Exchange>> = STATE.with(|s| {
        s.requests
            .borrow()
            .values()
            .filter(|ex| !ex.finished.get())
            .cloned()
            .collect()
    });
    for ex in &running {
        ex.cancelled.set(true);
        let t = Python::attach(super::harakiri_type);
        call_on_greenlet(ex, "kill", t);
    }
    running.len()
}

/// --gevent-wait-for-hub: whether the hub still has work (background greenlets, timers).
pub(crate) fn hub_busy() -> bool {
    if !STATE.with(|s| s.started.get() && s.wait_for_hub.get()) {
        return false;
    }
    Python::attach(|py| {
        loop_fn(py, "hub_busy")
            .and_then(|f| f.call0())
            .and_then(|b| b.extract::<bool>())
            .unwrap_or(false)
    })
}

/// A `--pyrun` script under --gevent: it runs in the hub's parent greenlet.
pub(crate) async fn run_script(ex: Rc<Exchange>) {
    run_hub(ex).await;
}

/// The parts of a `--pyrun` exchange under --gevent: `gevent_main(r, script, argv, False)`.
pub(crate) fn script_parts(
    py: Python<'_>,
    r: Bound<'_, PyAny>,
    script: String,
    argv: &[String],
) -> PyResult<super::wsgi::PyParts> {
    let args = PyTuple::new(
        py,
        [
            r,
            script.into_pyobject(py)?.into_any(),
            PyList::new(py, argv)?.into_any(),
            false.into_pyobject(py)?.to_owned().into_any(),
        ],
    )?;
    Ok(super::wsgi::PyParts {
        greenlet: None,
        func: loop_fn(py, "gevent_main")?.unbind(),
        args: args.unbind(),
        environ: None,
    })
}
