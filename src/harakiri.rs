//! Harakiri inside the worker, and the context of the request being run.
//!
//! Every request gets its own deadline when its slot starts it (`--harakiri`), which the
//! handler may move (`set_user_harakiri`). [`expired`] resolves when the deadline passes; the
//! connection loop races it against the handler and drops (cancels) the handler alone.
//!
//! [`Guarded`] wraps the handler's future: around every poll it makes the request current
//! (for [`worker_id`], [`slot_id`], [`set_user_harakiri`]) and, when the request has a
//! deadline, marks the worker busy in the shared scoreboard, which is how the master sees an
//! executor stuck in a handler that never yields (the second harakiri layer).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::scoreboard::WorkerBoard;
use crate::slot::SlotId;

/// The request being run: who it is, its deadline, what it last waited on.
#[derive(Debug)]
pub(crate) struct ReqCtx {
    pub(crate) slot: SlotId,
    started_ms: u64,
    /// The harakiri deadline; `None`: none.
    deadline: Cell<Option<Instant>>,
    /// The same on the coarse clock of the scoreboard (`sys::monotonic_ms`; 0: none), set with
    /// it: for a deadline set by `set_user_harakiri` from its own clock reads, so that it does
    /// not depend on how `started` was taken (a request without `--harakiri` starts at its
    /// executor turn's clock, `conn::turn_now`).
    deadline_ms: Cell<u64>,
    /// Bumped when the deadline changes, so that [`expired`] re-arms.
    generation: Cell<u64>,
    watcher: RefCell<Option<Waker>>,
    /// What the handler last awaited (for `--harakiri-verbose`).
    waiting: Cell<&'static str>,
    /// `"METHOD URI" from ADDR`, for the scoreboard.
    info: Vec<u8>,
    board: Option<&'static WorkerBoard>,
}

impl ReqCtx {
    pub(crate) fn new(
        slot: SlotId,
        started: Instant,
        harakiri: Option<Duration>,
        info: Vec<u8>,
        board: Option<&'static WorkerBoard>,
    ) -> ReqCtx {
        // `started` is moments ago (the caller read it when the request began): the coarse
        // clock's now is its time on the master's clock, without a second precise clock read
        // per request.
        let started_ms = crate::sys::monotonic_ms();
        ReqCtx {
            slot,
            started_ms,
            deadline: Cell::new(harakiri.map(|h| started + h)),
            deadline_ms: Cell::new(harakiri.map_or(0, |h| started_ms + h.as_millis() as u64)),
            generation: Cell::new(0),
            watcher: RefCell::new(None),
            waiting: Cell::new("running (not awaiting anything)"),
            info,
            board,
        }
    }

    /// What the handler last awaited.
    pub(crate) fn waiting_on(&self) -> &'static str {
        self.waiting.get()
    }

    /// Set the deadline to `timeout` from now (`None`: none).
    fn set_deadline(&self, timeout: Option<Duration>) {
        self.deadline.set(timeout.map(|t| Instant::now() + t));
        self.deadline_ms
            .set(timeout.map_or(0, |t| crate::sys::monotonic_ms() + t.as_millis() as u64));
        self.generation.set(self.generation.get() + 1);
        if let Some(w) = self.watcher.borrow_mut().take() {
            w.wake();
        }
    }

    fn deadline_ms(&self) -> u64 {
        self.deadline_ms.get()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<ReqCtx>>> = const { RefCell::new(None) };
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
    /// Contexts of finished requests that nobody else held, for the next requests: one
    /// allocation per concurrent request instead of one per request (issue #12).
    static SPARE: RefCell<Vec<Rc<ReqCtx>>> = const { RefCell::new(Vec::new()) };
}

/// Most spare contexts kept (the worker's concurrent requests rarely exceed it).
const MAX_SPARE: usize = 256;

/// [`ReqCtx::new`] in an `Rc`, reusing the allocation of a finished request's context (see
/// [`recycle`]) when one is spare.
pub(crate) fn new_ctx(
    slot: SlotId,
    started: Instant,
    harakiri: Option<Duration>,
    info: Vec<u8>,
    board: Option<&'static WorkerBoard>,
) -> Rc<ReqCtx> {
    let ctx = ReqCtx::new(slot, started, harakiri, info, board);
    match SPARE.with(|s| s.borrow_mut().pop()) {
        Some(mut spare) => match Rc::get_mut(&mut spare) {
            Some(old) => {
                *old = ctx;
                spare
            }
            None => Rc::new(ctx),
        },
        None => Rc::new(ctx),
    }
}

/// Give back the context of a finished request: kept for [`new_ctx`] if nothing else holds
/// it any more (an engine may keep a clone), else just dropped.
pub(crate) fn recycle(mut ctx: Rc<ReqCtx>) {
    let Some(c) = Rc::get_mut(&mut ctx) else {
        return;
    };
    // Nothing of the finished request stays alive in a spare: not its task (through the
    // waker), not its request line.
    c.watcher.get_mut().take();
    c.info = Vec::new();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX_SPARE {
            s.push(ctx);
        }
    });
}

/// Record the worker index of this thread (at worker start).
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

/// The worker (CPU core) this code runs on; `None` outside a ringsgi worker.
pub fn worker_id() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// The request slot ("async core") of the request being handled; `None` outside a request
/// handler (for example in a background task).
pub fn slot_id() -> Option<SlotId> {
    CURRENT.with(|c| c.borrow().as_ref().map(|r| r.slot))
}

/// Set the current request's harakiri deadline to `timeout` from now (`None` removes it),
/// like uWSGI's `uwsgi.set_user_harakiri`. Returns false outside a request handler.
///
/// ```no_run
/// # async fn handler() {
/// use std::time::Duration;
/// // This request may take up to a minute, whatever --harakiri says.
/// ringsgi::set_user_harakiri(Some(Duration::from_secs(60)));
/// # }
/// ```
pub fn set_user_harakiri(timeout: Option<Duration>) -> bool {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(r) => {
            r.set_deadline(timeout);
            true
        }
        None => false,
    })
}

/// Note what the current request is about to wait on (for `--harakiri-verbose`).
pub(crate) fn note_wait(what: &'static str) {
    CURRENT.with(|c| {
        if let Some(r) = c.borrow().as_ref() {
            r.waiting.set(what);
        }
    });
}

/// Resolves when `ctx`'s deadline has passed (never, while it has none).
pub(crate) async fn expired(ctx: &ReqCtx) {
    loop {
        let generation = ctx.generation.get();
        let changed = std::future::poll_fn(|cx| {
            if ctx.generation.get() != generation {
                Poll::Ready(())
            } else {
                let mut w = ctx.watcher.borrow_mut();
                match &*w {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        });
        match ctx.deadline.get() {
            None => changed.await,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return;
                }
                futures_lite::future::or(glommio::timer::sleep(d - now), changed).await;
            }
        }
    }
}

/// A handler future run as the current request (see the module docs).
pub(crate) struct Guarded<F> {
    inner: F,
    ctx: Rc<ReqCtx>,
}

impl<F> Guarded<F> {
    pub(crate) fn new(ctx: Rc<ReqCtx>, inner: F) -> Guarded<F> {
        Guarded { inner, ctx }
    }
}

impl<F: Future + Unpin> Future for Guarded<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let ctx = this.ctx.clone();
        run_as(&ctx, || Pin::new(&mut this.inner).poll(cx))
    }
}

/// The request being run now, if any (for engines that run its code outside its future's
/// poll, such as the Python greenlet runner).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn current() -> Option<Rc<ReqCtx>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// A context with no deadline on the same board as `of`, for an engine's own code that runs
/// requests inside its polls (gevent's hub): its polls mark the worker busy without a request
/// line until [`switch_to`] names the request that runs.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn engine_ctx(of: &ReqCtx) -> ReqCtx {
    ReqCtx::new(SlotId(u32::MAX), Instant::now(), None, Vec::new(), of.board)
}

/// Inside [`run_as`], an engine switched to another request's code (gevent's hub switching
/// greenlets): `ctx` becomes current and the scoreboard names it from now on, busy since now (`label` when it
/// has no request line of its own), so that the master's hard harakiri sees that request's
/// deadline and its blocked-executor line names it. Outside `run_as` it does nothing.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn switch_to(ctx: &Rc<ReqCtx>, label: &[u8]) {
    let inside = CURRENT
        .try_with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                return false;
            }
            *c = Some(ctx.clone());
            true
        })
        .unwrap_or(false);
    if inside && let Some(b) = ctx.board {
        let info = if ctx.info.is_empty() {
            label
        } else {
            &ctx.info
        };
        b.enter(
            ctx.slot.0,
            crate::sys::monotonic_ms(),
            ctx.deadline_ms(),
            ctx.started_ms,
            info,
        );
    }
}

/// Run `f` as request `ctx`: current for [`worker_id`], [`slot_id`], [`set_user_harakiri`],
/// and, when it has a deadline, marked busy in the scoreboard for the master's hard harakiri.
pub(crate) fn run_as<R>(ctx: &Rc<ReqCtx>, f: impl FnOnce() -> R) -> R {
    let board = ctx.board;
    if let Some(b) = board {
        let now = crate::sys::monotonic_ms();
        if ctx.deadline.get().is_some() {
            b.enter(
                ctx.slot.0,
                now,
                ctx.deadline_ms(),
                ctx.started_ms,
                &ctx.info,
            );
        } else {
            b.enter_plain(now);
        }
    }
    let prev = CURRENT.with(|c| c.replace(Some(ctx.clone())));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = prev);
    if let Some(b) = board {
        b.leave();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_deadline_on_the_scoreboard_is_from_now_whenever_the_request_started() {
        // A request without --harakiri starts at its executor turn's clock, which can be
        // earlier than its task by a long turn: 5 s here.
        let early = Instant::now() - Duration::from_secs(5);
        let ctx = ReqCtx::new(SlotId(0), early, None, Vec::new(), None);
        assert_eq!(ctx.deadline_ms(), 0);
        let before = crate::sys::monotonic_ms();
        ctx.set_deadline(Some(Duration::from_secs(2)));
        let after = crate::sys::monotonic_ms();
        let ms = ctx.deadline_ms();
        assert!(
            (before + 2000..=after + 2000).contains(&ms),
            "deadline {ms} ms, now {before}..{after} ms"
        );
        ctx.set_deadline(None);
        assert_eq!(ctx.deadline_ms(), 0);
        // --harakiri: from the request's start on the coarse clock.
        let ctx = ReqCtx::new(
            SlotId(0),
            Instant::now(),
            Some(Duration::from_secs(3)),
            Vec::new(),
            None,
        );
        assert_eq!(ctx.deadline_ms(), ctx.started_ms + 3000);
    }

    #[test]
    fn a_finished_context_is_reused_only_when_nothing_else_holds_it() {
        let t0 = Instant::now();
        let first = new_ctx(
            SlotId(1),
            t0,
            Some(Duration::from_secs(5)),
            b"GET /".to_vec(),
            None,
        );
        let addr = Rc::as_ptr(&first);
        recycle(first);
        // The next request gets the same allocation, with its own fields.
        let second = new_ctx(SlotId(2), t0, None, Vec::new(), None);
        assert_eq!(Rc::as_ptr(&second), addr);
        assert_eq!(second.slot, SlotId(2));
        assert_eq!(second.deadline.get(), None);
        assert!(second.info.is_empty());
        // A context someone still holds is not handed out again.
        let held = second.clone();
        recycle(second);
        let third = new_ctx(SlotId(3), t0, None, Vec::new(), None);
        assert_ne!(Rc::as_ptr(&third), Rc::as_ptr(&held));
        assert_eq!(held.slot, SlotId(2));
    }
}
