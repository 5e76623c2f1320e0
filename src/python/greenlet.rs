//! The one switch point between the executor and request greenlets.
//!
//! Every switch into a request greenlet happens in [`runner`], one glommio task per worker,
//! at a fixed C-stack depth (greenlets share the C stack; a greenlet resumed deeper than
//! where it started reads garbage: python-embedding-notes.md, trap 3). A request's future
//! queues its [`Exchange`] and waits until the runner has switched in and the greenlet has
//! switched back out (or ended). Nothing on the executor's stack is handed to a greenlet: the
//! greenlet reaches its request through the heap-allocated exchange.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::ffi;
use super::wsgi::Exchange;

/// What the runner does with a queued exchange.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Job {
    /// Start the greenlet (first time) or switch back into it.
    Resume,
    /// The request was cancelled (harakiri, client gone): throw `Harakiri` in so that its
    /// `finally` blocks and the iterable's `close()` run, then drop it.
    Kill,
}

#[derive(Default)]
struct Runner {
    queue: RefCell<VecDeque<(Rc<Exchange>, Job)>>,
    waker: RefCell<Option<Waker>>,
    started: Cell<bool>,
    /// Parked greenlets (in `boot.loop`), reused for the next jobs.
    pool: RefCell<Vec<Py<PyAny>>>,
    /// Most greenlets parked: one per request slot (each keeps its Python data stack, 16 KiB
    /// and more). Fewer made every load above it create and destroy greenlets (a data stack
    /// `mmap` and `munmap`, a `GreenletExit` unwinding each), all again at the next peak.
    pool_max: Cell<usize>,
}

/// Most parked greenlets kept when the worker's slot count is not known (`--pyrun`).
const POOL_MAX: usize = 256;

thread_local! {
    static RUNNER: Runner = Runner::default();
    /// The exchange whose greenlet is running now (set by the runner around each switch, and
    /// around a direct call without --greenlet): where the `uwsgi` API registers waits.
    static CURRENT: RefCell<Option<Rc<Exchange>>> = const { RefCell::new(None) };
}

/// The request running now, if any (under --gevent: the request whose greenlet runs).
pub(crate) fn current() -> Option<Rc<Exchange>> {
    if super::gevent::active() {
        return Python::attach(super::gevent::current);
    }
    CURRENT.with(|c| c.borrow().clone())
}

/// Under --gevent: the next switch into the running exchange (the hub's parent) goes to `g`,
/// the greenlet that parked (the hub), instead of the exchange's own greenlet.
pub(crate) fn set_resume_target(g: Py<PyAny>) {
    CURRENT.with(|c| {
        if let Some(ex) = c.borrow().as_ref() {
            *ex.resume_to.borrow_mut() = Some(g);
        }
    });
}

/// Run `f` with `ex` as the current request.
pub(crate) fn with_current<R>(ex: &Rc<Exchange>, f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.replace(Some(ex.clone())));
    let r = f();
    CURRENT.with(|c| *c.borrow_mut() = prev);
    r
}

/// Whether the running request was cancelled (a greenlet must not wait any more).
pub(crate) fn cancelled() -> bool {
    if super::gevent::active() {
        return current().is_some_and(|e| e.cancelled.get());
    }
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|e| e.cancelled.get()))
}

/// Keep up to `n` parked request greenlets (the worker's slot count).
pub(crate) fn set_pool_max(n: usize) {
    RUNNER.with(|r| r.pool_max.set(n));
}

/// Queue `ex` for the runner.
pub(crate) fn queue(ex: Rc<Exchange>, job: Job) {
    RUNNER.with(|r| {
        if !r.started.replace(true) {
            glommio::spawn_local(runner()).detach();
        }
        ex.ran.set(false);
        r.queue.borrow_mut().push_back((ex, job));
        if let Some(w) = r.waker.borrow_mut().take() {
            w.wake();
        }
    });
}

/// Switch into `ex`'s greenlet and wait until it switched back out or ended.
pub(crate) async fn resume(ex: &Rc<Exchange>) {
    queue(ex.clone(), Job::Resume);
    std::future::poll_fn(|cx| {
        if ex.ran.get() {
            Poll::Ready(())
        } else {
            *ex.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    })
    .await
}

/// The runner task: all switches into request greenlets happen here.
async fn runner() {
    loop {
        std::future::poll_fn(|cx| {
            RUNNER.with(|r| {
                if r.queue.borrow().is_empty() {
                    *r.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
        })
        .await;
        Python::attach(|py| {
            while let Some((ex, job)) = RUNNER.with(|r| r.queue.borrow_mut().pop_front()) {
                step(py, &ex, job);
                ex.ran.set(true);
                if let Some(w) = ex.waker.borrow_mut().take() {
                    w.wake();
                }
            }
        });
    }
}

/// One switch into `ex`'s greenlet. Never inlined into different callers: the depth of
/// this frame is the depth of every greenlet switch.
#[inline(never)]
fn step(py: Python<'_>, ex: &Rc<Exchange>, job: Job) {
    let mut parts = ex.py.borrow_mut().take();
    let Some(p) = parts.as_mut() else {
        return;
    };
    if ex.finished.get() {
        return;
    }
    with_current(ex, || {
        let r = match (job, &p.greenlet) {
            (Job::Resume, Some(g)) => {
                ex.set_fdevent_timeout(py, &p.environ);
                let target = ex.resume_to.borrow_mut().take();
                let g = target.as_ref().unwrap_or(g);
                as_request(ex, || ffi::switch(py, g, None))
            }
            (Job::Resume, None) => {
                // A parked greenlet takes the job, or a new one starts with it.
                let pooled = RUNNER.with(|r| r.pool.borrow_mut().pop());
                let g = match pooled {
                    Some(g) => Ok(g),
                    None => super::engine(|e| ffi::new_greenlet(py, e.greenlet_loop.bind(py))),
                };
                let job = PyTuple::new(py, [p.func.bind(py).as_any(), p.args.bind(py).as_any()])
                    .and_then(|job| PyTuple::new(py, [job]));
                match (g, job) {
                    (Ok(g), Ok(args)) => {
                        let r = as_request(ex, || ffi::switch(py, &g, Some(&args)));
                        p.greenlet = Some(g);
                        r
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            (Job::Kill, Some(g)) => {
                ex.cancelled.set(true);
                // Still as the request: an app that swallows the exception and loops is
                // stuck past its deadline, which the master's hard harakiri sees.
                match super::harakiri_type(py) {
                    Some(t) => as_request(ex, || ffi::throw(py, g, t.bind(py))),
                    None => Ok(py.None()),
                }
            }
            (Job::Kill, None) => {
                ex.finished.set(true);
                Ok(py.None())
            }
        };
        match r {
            // Parked after its job: back to the pool.
            Ok(_) if ex.finished.get() => {
                if let Some(g) = p.greenlet.take() {
                    RUNNER.with(|r| {
                        let mut pool = r.pool.borrow_mut();
                        let max = match r.pool_max.get() {
                            0 => POOL_MAX,
                            n => n,
                        };
                        if pool.len() < max {
                            pool.push(g);
                        }
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                // `run` catches everything; this is an exception in the engine's own code
                // or a greenlet error. The greenlet is dead: not pooled.
                tracing::error!("python request greenlet: {e}");
                ex.failed.set(true);
                ex.finished.set(true);
                p.greenlet = None;
            }
        }
    });
    if ex.finished.get() || job == Job::Kill {
        if job == Job::Kill && !ex.finished.get() {
            tracing::error!("a cancelled Python request suspended again: dropping its greenlet");
        }
        // Dropped with the GIL held, here, not later inside another greenlet.
        drop(parts);
    } else {
        *ex.py.borrow_mut() = parts;
    }
}

/// Run `f` as `ex`'s request for the harakiri layer (its deadline, the scoreboard's busy mark
/// the master's hard harakiri reads, `set_user_harakiri`).
fn as_request<R>(ex: &Exchange, f: impl FnOnce() -> R) -> R {
    match &ex.hctx {
        Some(h) => crate::harakiri::run_as(h, f),
        None => f(),
    }
}

/// Cancels a request's greenlet when its future is dropped before the greenlet ended
/// (harakiri, client gone, worker stop): the runner throws `Harakiri` in.
pub(crate) struct KillOnDrop(pub(crate) Rc<Exchange>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.0.finished.get() {
            self.0.cancelled.set(true);
            queue(self.0.clone(), Job::Kill);
        }
    }
}
