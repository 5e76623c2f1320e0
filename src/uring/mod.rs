//! The worker's own io_uring ring, and the pump that bridges it into glommio.
//!
//! Every socket operation of a worker goes through this ring (completion-based: recv, send,
//! close, poll + linked timeout; connections are taken with `accept4`, see `accept.rs`).
//! glommio keeps its own three rings for its timers, its blocking pool and file I/O; this
//! module adds a fourth ring that we own so that we can create it with
//! `SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG` and use the opcodes glommio lacks.
//!
//! # Shape
//!
//! - [`Driver`] (one per worker thread, reached through a thread-local) holds the ring, a table
//!   of in-flight operations (`ops`) and a backlog of SQEs that did not fit in the SQ.
//! - An operation is an [`op::Op`] future. It owns every buffer the kernel may touch. Its
//!   `user_data` is `(generation << 32) | index`; the generation discards stale completions.
//! - The [`pump`] task submits SQEs, reaps CQEs and wakes the futures. When there is nothing to
//!   do it parks inside glommio on a READ of an eventfd registered on our ring.
//!
//! # Invariant: buffers outlive the kernel's use of them
//!
//! When an `Op` is dropped before its final completion, its buffers move into the op table as
//! an orphan, an `ASYNC_CANCEL` is submitted, and the buffers are freed only when the final CQE
//! arrives. The caller must treat the connection as broken (data may have landed in the
//! orphan), and `conn` closes it.
#![allow(unsafe_code)]

pub(crate) mod accept;
pub(crate) mod close;
pub(crate) mod connect;
pub(crate) mod file;
pub(crate) mod multi;
pub(crate) mod op;
pub(crate) mod poll;
pub(crate) mod pool;
pub(crate) mod pump;
pub(crate) mod recv;
pub(crate) mod send;
pub(crate) mod splice;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod watch;
pub(crate) mod wheel;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::task::Waker;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// `user_data` of SQEs whose completion nobody waits for (cancels, detached closes).
const DETACHED: u64 = u64::MAX;
/// Marks the second CQE of a linked pair (the `LINK_TIMEOUT` after a `POLL_ADD` or `RECV`).
const SECONDARY: u64 = 1 << 63;
/// Marks the `user_data` of a readiness watch ([`watch`]): no operation slot, the rest of the
/// `user_data` is the watcher's key. Operation generations stay below this bit (30 bits).
const WATCH: u64 = 1 << 62;

/// Counters of the ring and of the bridge, read by tests and by stats.
#[derive(Debug, Default, Clone, Copy)]
pub struct DriverStats {
    /// Times the pump parked inside glommio waiting for the eventfd.
    pub parks: u64,
    /// Times the eventfd READ completed and woke the pump.
    pub eventfd_wakes: u64,
    /// `io_uring_enter` calls made by the pump.
    pub enters: u64,
    /// Completions reaped.
    pub cqes: u64,
    /// Operations currently in the table (in flight or orphaned).
    pub ops_in_flight: u64,
    /// Orphaned operations (future dropped, waiting for the final CQE).
    pub orphans: u64,
    /// Receives that found the worker's provided-buffer ring empty ([`pool`]) and read
    /// into a buffer of their own instead.
    pub pool_misses: u64,
    /// Multishot receives armed (`uring::multi`).
    pub multishots: u64,
    /// Multishot receives the driver cancelled for holding more than `multi::MAX_QUEUED`
    /// unread results.
    pub multishot_caps: u64,
}

/// What an operation slot is doing. One doc line per state, as the kernel sees it.
enum Lifecycle {
    /// Unused; on the free list.
    Free,
    /// Submitted (or queued for submission); the future waits for the result.
    Waiting(Option<Waker>),
    /// The single-shot result arrived and waits for the future to take it.
    Done { res: i32, flags: u32 },
    /// A multishot receive ([`multi`]): the connection's waker; the first of its results
    /// not yet taken by the connection (`res`, `flags`: each names the pool buffer it
    /// filled), a list in the driver's [`multi::Queues`] (no allocation per connection: a
    /// sleeping request's connection keeps its multishot armed); whether the driver
    /// cancelled it for holding too many ([`multi::MAX_QUEUED`]).
    Multi {
        waker: Option<Waker>,
        head: u32,
        cancelled: bool,
    },
    /// The future was dropped; the kernel may still write into these buffers.
    Orphan(
        #[allow(dead_code, reason = "never read: holding it keeps the buffers alive")]
        Option<Box<dyn Any>>,
    ),
}

/// What kind of operation a slot holds, for the cleanup an orphan needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OpKind {
    /// Opening a file: an orphan's successful result is a descriptor nobody will see, so the
    /// driver closes it.
    Open,
    /// A receive with a buffer from the worker's [`pool`]: a result that nobody takes (its
    /// future was dropped) gives its buffer back.
    Pooled,
    /// A multishot receive into the worker's [`pool`] ([`multi`]): as `Pooled`, for each of
    /// its results; its slot is freed at its final one (no `IORING_CQE_F_MORE`).
    Multi,
    /// Anything else.
    Other,
}

struct OpSlot {
    generation: u32,
    state: Lifecycle,
    kind: OpKind,
    /// Final CQEs still expected before the slot can be reused (2 for a linked pair; a
    /// multishot's CQEs with `IORING_CQE_F_MORE` do not count).
    pending: u8,
}

/// One worker's ring and its operation table.
pub struct Driver {
    inner: RefCell<Inner>,
    /// The pump's waker while it is parked, so that a new SQE can wake it.
    pump_waker: RefCell<Option<Waker>>,
    /// True while the pump is parked in glommio.
    parked: Cell<bool>,
    /// Mirrors the ring's `IORING_CQ_EVENTFD_DISABLED` flag (inverted) to skip redundant writes.
    eventfd_on: Cell<bool>,
}

struct Inner {
    ring: IoUring,
    /// The provided-buffer ring of receives that wait for a request; `None` if the kernel
    /// refused it. Declared after `ring`, so dropped after it.
    pool: Option<pool::BufPool>,
    ops: Vec<OpSlot>,
    free: Vec<u32>,
    /// SQEs that did not fit in the submission queue; pushed by the pump first.
    backlog: VecDeque<squeue::Entry>,
    /// Wakers collected while reaping, woken after the borrow is released.
    to_wake: Vec<Waker>,
    /// Results of readiness watches ([`watch`]), for their one consumer.
    watches: watch::Watches,
    /// The results of multishot receives not yet taken by their connections ([`multi`]).
    mq: multi::Queues,
    /// The eventfd registered on the ring (the pump reads a duplicate of it through glommio).
    eventfd: OwnedFd,
    stats: DriverStats,
    /// The kernel refused a multishot receive (`-EINVAL`: before 6.0): none is armed again.
    multishot_off: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("stats", &self.stats())
            .finish()
    }
}

thread_local! {
    static DRIVER: RefCell<Option<Rc<Driver>>> = const { RefCell::new(None) };
}

impl Driver {
    /// Create this thread's ring and make it the current driver. Call once per worker thread,
    /// inside the glommio executor, then spawn [`pump::run`].
    pub fn install(entries: u32) -> io::Result<Rc<Driver>> {
        // COOP_TASKRUN, not DEFER_TASKRUN: under DEFER_TASKRUN the kernel announces queued
        // work only through the eventfd, and on Linux 6.18 it sends that signal from an RCU
        // callback some 16 ms late (see the pump's module docs). Under COOP_TASKRUN it queues
        // the work as task work on this thread and wakes it, even while it sleeps in
        // glommio's io_uring_enter; running the work posts our CQEs and signals the eventfd
        // directly, in microseconds (`tests::raw_defer_taskrun_ring_eventfd_signal_latency`).
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)?;
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        // Plain (not `_async`) registration: the async variant signals only for completions
        // posted by io-wq workers, and ours are posted by task work on this thread (under
        // DEFER_TASKRUN it never signalled at all). Start disabled: the pump enables it only
        // while parking.
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let mut ring = ring;
        ring.completion().disable_eventfd();
        let pool = pool::BufPool::register(&ring);
        let driver = Rc::new(Driver {
            inner: RefCell::new(Inner {
                ring,
                pool,
                ops: Vec::with_capacity(1024),
                free: Vec::new(),
                backlog: VecDeque::new(),
                to_wake: Vec::with_capacity(64),
                watches: watch::Watches::default(),
                mq: multi::Queues::default(),
                eventfd,
                stats: DriverStats::default(),
                multishot_off: false,
            }),
            pump_waker: RefCell::new(None),
            parked: Cell::new(false),
            eventfd_on: Cell::new(false),
        });
        DRIVER.with(|d| *d.borrow_mut() = Some(driver.clone()));
        Ok(driver)
    }

    /// The current thread's driver. Panics outside a worker (a programming error).
    pub(crate) fn current() -> Rc<Driver> {
        Self::try_current().expect("ringsgi ring driver is not installed on this thread")
    }

    /// Run `f` with the current thread's driver (no `Rc` clone: for state that must stay
    /// small, such as a connection's multishot receive). Panics outside a worker.
    pub(crate) fn with_current<R>(f: impl FnOnce(&Driver) -> R) -> R {
        DRIVER.with(|d| {
            f(d.borrow()
                .as_ref()
                .expect("ringsgi ring driver is not installed on this thread"))
        })
    }

    /// The current thread's driver, if installed.
    pub(crate) fn try_current() -> Option<Rc<Driver>> {
        DRIVER.with(|d| d.borrow().clone())
    }

    /// Remove this thread's driver (tests; worker shutdown).
    pub fn uninstall() {
        DRIVER.with(|d| d.borrow_mut().take());
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DriverStats {
        let inner = self.inner.borrow();
        let mut s = inner.stats;
        s.pool_misses = inner.pool.as_ref().map_or(0, |p| p.misses);
        s.ops_in_flight = (inner.ops.len() - inner.free.len()) as u64;
        s.orphans = inner
            .ops
            .iter()
            .filter(|o| matches!(o.state, Lifecycle::Orphan(_)))
            .count() as u64;
        s
    }

    /// Reserve an operation slot and return its `user_data`.
    fn alloc(&self, kind: OpKind, pending: u8) -> (u32, u32) {
        let mut inner = self.inner.borrow_mut();
        let state = Lifecycle::Waiting(None);
        if let Some(idx) = inner.free.pop() {
            let slot = &mut inner.ops[idx as usize];
            slot.generation = slot.generation.wrapping_add(1) & 0x3fff_ffff;
            slot.state = state;
            slot.kind = kind;
            slot.pending = pending;
            (idx, slot.generation)
        } else {
            let idx = inner.ops.len() as u32;
            if inner.ops.len() == inner.ops.capacity() {
                // Grown by a fixed step, not doubled: with every kept-alive connection's
                // multishot receive in the table (10,000 sleeping requests), doubling would
                // leave up to half of it unused.
                inner.ops.reserve_exact(1024);
            }
            inner.ops.push(OpSlot {
                generation: 0,
                state,
                kind,
                pending,
            });
            (idx, 0)
        }
    }

    /// Queue SQEs for submission by the pump, waking it if it is parked.
    fn push(&self, entries: &[squeue::Entry]) {
        {
            let mut inner = self.inner.borrow_mut();
            let Inner { ring, backlog, .. } = &mut *inner;
            if backlog.is_empty() {
                let mut sq = ring.submission();
                // Linked SQEs must not be split between the SQ and the backlog.
                if sq.capacity() - sq.len() >= entries.len() {
                    for e in entries {
                        // SAFETY: every SQE is built by an `Op` that owns the memory it points to
                        // until its final CQE (see the module invariant).
                        unsafe { sq.push(e).expect("checked capacity") };
                    }
                } else {
                    backlog.extend(entries.iter().cloned());
                }
            } else {
                backlog.extend(entries.iter().cloned());
            }
        }
        self.wake_pump();
    }

    /// Wake the pump if it is parked (it has new SQEs to submit).
    fn wake_pump(&self) {
        if self.parked.replace(false)
            && let Some(w) = self.pump_waker.borrow_mut().take()
        {
            w.wake();
        }
    }

    /// Submit an `ASYNC_CANCEL` for `user_data` (fire and forget), at once.
    ///
    /// At once, not at the pump's next turn: on our `COOP_TASKRUN` ring the kernel runs task
    /// work at the exit of any syscall of this thread, so a dropped receive whose socket
    /// became readable would otherwise retry and take the data at the next syscall of
    /// whatever task runs before the pump (`recv_timeout_then_data`: the test's own write).
    /// Submitted first, the cancellation wins over that retry, as it did under
    /// `DEFER_TASKRUN`. An error here leaves the SQE queued; the pump's flush submits it
    /// and reports the error.
    fn cancel(&self, user_data: u64) {
        let e = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(DETACHED);
        self.push(&[e]);
        let _ = self.flush();
    }

    /// Submit an SQE whose completion nobody awaits (detached close).
    pub(crate) fn push_detached(&self, e: squeue::Entry) {
        self.push(&[e.user_data(DETACHED)]);
    }

    /// Poll a single-shot operation. Returns the result and frees the slot when done.
    fn poll_single(&self, idx: u32, waker: &Waker) -> Option<(i32, u32)> {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.ops[idx as usize];
        match &mut slot.state {
            Lifecycle::Done { res, flags } => {
                let out = (*res, *flags);
                if slot.pending == 0 {
                    slot.state = Lifecycle::Free;
                    inner.free.push(idx);
                } else {
                    // The linked timeout's CQE is still due: keep the slot until it arrives.
                    slot.state = Lifecycle::Orphan(None);
                }
                Some(out)
            }
            Lifecycle::Waiting(w) => {
                match w {
                    Some(old) if old.will_wake(waker) => {}
                    _ => *w = Some(waker.clone()),
                }
                None
            }
            _ => unreachable!("poll_single on a slot in the wrong state"),
        }
    }

    /// The result of single-shot operation `idx` if it has completed (the slot is freed as by
    /// [`poll_single`](Self::poll_single)); `None` while it is in flight.
    fn take_done(&self, idx: u32) -> Option<(i32, u32)> {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.ops[idx as usize];
        let Lifecycle::Done { res, flags } = slot.state else {
            return None;
        };
        if slot.pending == 0 {
            slot.state = Lifecycle::Free;
            inner.free.push(idx);
        } else {
            slot.state = Lifecycle::Orphan(None);
        }
        Some((res, flags))
    }

    /// The future of operation `idx` was dropped before its final completion.
    ///
    /// Its buffers (`keep`) are kept until the kernel is done; a cancel is submitted.
    fn orphan(&self, idx: u32, generation: u32, keep: Option<Box<dyn Any>>) {
        let cancel = {
            let mut inner = self.inner.borrow_mut();
            let Inner {
                ops, free, pool, ..
            } = &mut *inner;
            let slot = &mut ops[idx as usize];
            debug_assert_eq!(slot.generation, generation);
            let kind = slot.kind;
            let prev = std::mem::replace(&mut slot.state, Lifecycle::Orphan(keep));
            match (&prev, kind) {
                (Lifecycle::Done { res, .. }, OpKind::Open) => close_orphan_fd(*res),
                (Lifecycle::Done { flags, .. }, OpKind::Pooled) => give_back(pool, *flags),
                _ => {}
            }
            match prev {
                Lifecycle::Done { .. } if slot.pending == 0 => {
                    slot.state = Lifecycle::Free;
                    free.push(idx);
                    false
                }
                Lifecycle::Done { .. } => false,
                _ => true,
            }
        };
        if cancel {
            self.cancel(user_data(idx, generation));
        }
    }

    /// Submit queued SQEs and run deferred completions if the kernel flagged any.
    /// Returns the number of SQEs submitted.
    fn flush(&self) -> io::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        let Inner {
            ring,
            backlog,
            stats,
            ..
        } = &mut *inner;
        let mut submitted = 0;
        loop {
            {
                let mut sq = ring.submission();
                while let Some(e) = backlog.front() {
                    // SAFETY: as in `push`: the owning `Op` keeps the memory alive.
                    if unsafe { sq.push(e) }.is_err() {
                        break;
                    }
                    backlog.pop_front();
                }
            }
            let (sq_len, taskrun, overflow) = {
                let sq = ring.submission();
                (sq.len(), sq.taskrun(), sq.cq_overflow())
            };
            if sq_len == 0 && !taskrun && !overflow {
                return Ok(submitted);
            }
            stats.enters += 1;
            match ring.submit() {
                Ok(n) => submitted += n,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(submitted),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            if backlog.is_empty() {
                return Ok(submitted);
            }
        }
    }

    /// Drain the completion queue: update op slots, collect wakers. Returns CQEs reaped.
    fn reap(&self) -> usize {
        let mut to_wake = {
            let mut inner = self.inner.borrow_mut();
            std::mem::take(&mut inner.to_wake)
        };
        let n;
        let mut to_cancel = Vec::new();
        {
            let mut inner = self.inner.borrow_mut();
            let Inner {
                ring,
                pool,
                ops,
                free,
                watches,
                mq,
                ..
            } = &mut *inner;
            let mut count = 0;
            for cqe in ring.completion() {
                count += 1;
                complete(
                    ops,
                    free,
                    watches,
                    mq,
                    pool,
                    &cqe,
                    &mut to_wake,
                    &mut to_cancel,
                );
            }
            n = count;
            inner.stats.cqes += n as u64;
            inner.stats.multishot_caps += to_cancel.len() as u64;
        }
        for ud in to_cancel {
            self.cancel(ud);
        }
        for w in to_wake.drain(..) {
            w.wake();
        }
        self.inner.borrow_mut().to_wake = to_wake;
        n
    }

    /// True if completions or deferred work are waiting, or SQEs wait for submission.
    fn has_work(&self) -> bool {
        let mut inner = self.inner.borrow_mut();
        if !inner.backlog.is_empty() {
            return true;
        }
        let ring = &mut inner.ring;
        let sq = ring.submission();
        if !sq.is_empty() || sq.taskrun() || sq.cq_overflow() {
            return true;
        }
        drop(sq);
        !ring.completion().is_empty()
    }

    fn set_eventfd_enabled(&self, enabled: bool) {
        if self.eventfd_on.replace(enabled) == enabled {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let cq = inner.ring.completion();
        if enabled {
            cq.enable_eventfd();
        } else {
            cq.disable_eventfd();
        }
    }

    /// A duplicate (`F_DUPFD_CLOEXEC`) of the registered eventfd, for the pump's glommio READ.
    fn dup_eventfd(&self) -> io::Result<OwnedFd> {
        self.inner.borrow().eventfd.try_clone()
    }

    pub(crate) fn note_park(&self) {
        self.inner.borrow_mut().stats.parks += 1;
    }

    pub(crate) fn note_eventfd_wake(&self) {
        self.inner.borrow_mut().stats.eventfd_wakes += 1;
    }
}

/// Apply one CQE to the op table (`to_cancel`: multishots to cancel once the table is free).
#[allow(clippy::too_many_arguments)]
fn complete(
    ops: &mut [OpSlot],
    free: &mut Vec<u32>,
    watches: &mut watch::Watches,
    mq: &mut multi::Queues,
    pool: &mut Option<pool::BufPool>,
    cqe: &cqueue::Entry,
    to_wake: &mut Vec<Waker>,
    to_cancel: &mut Vec<u64>,
) {
    let ud = cqe.user_data();
    if ud == DETACHED {
        return;
    }
    if ud & (WATCH | SECONDARY) == WATCH {
        // A readiness watch (single-shot, no operation slot): queue its result.
        watches.ready.push_back((ud & !WATCH, cqe.result()));
        if let Some(w) = watches.waker.take() {
            to_wake.push(w);
        }
        return;
    }
    if let (Some(pool), Some(bid)) = (pool.as_mut(), cqueue::buffer_select(cqe.flags())) {
        pool.taken(bid);
    }
    let secondary = ud & SECONDARY != 0;
    let idx = (ud & 0xffff_ffff) as u32;
    let generation = ((ud & !SECONDARY) >> 32) as u32;
    let Some(slot) = ops.get_mut(idx as usize) else {
        return;
    };
    if slot.generation != generation || matches!(slot.state, Lifecycle::Free) {
        // Stale: the slot was reused. Cannot happen while slots are freed only on their
        // final CQE, but the generation makes it harmless if it does.
        return;
    }
    let res = cqe.result();
    let flags = cqe.flags();
    // A multishot's CQEs with `IORING_CQE_F_MORE` are not its last (single-shot operations
    // never set it).
    let more = cqueue::more(flags);
    if !more {
        slot.pending = slot.pending.saturating_sub(1);
    }
    if secondary {
        // The linked timeout's own CQE: only its arrival matters.
        if slot.pending == 0 && matches!(slot.state, Lifecycle::Orphan(_)) {
            slot.state = Lifecycle::Free;
            free.push(idx);
        }
        return;
    }
    match &mut slot.state {
        Lifecycle::Waiting(w) => {
            if let Some(w) = w.take() {
                to_wake.push(w);
            }
            slot.state = Lifecycle::Done { res, flags };
        }
        Lifecycle::Multi {
            waker,
            head,
            cancelled,
        } => {
            let queued = mq.push(head, res, flags);
            if more && !*cancelled && queued > multi::MAX_QUEUED {
                // Unread results pile up (a client sending while its request is served): stop
                // taking the worker's buffers for it; what came stays queued, in order.
                *cancelled = true;
                to_cancel.push(ud);
            }
            if let Some(w) = waker.take() {
                to_wake.push(w);
            }
        }
        Lifecycle::Orphan(_) => {
            match slot.kind {
                OpKind::Open => close_orphan_fd(res),
                OpKind::Pooled | OpKind::Multi => give_back(pool, flags),
                OpKind::Other => {}
            }
            if slot.pending == 0 {
                if slot.kind == OpKind::Multi {
                    mq.ended();
                }
                slot.state = Lifecycle::Free;
                free.push(idx);
            }
        }
        Lifecycle::Done { .. } | Lifecycle::Free => {}
    }
}

fn user_data(idx: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | idx as u64
}

/// Give the pool buffer a completion took (if it took one) back: its future was dropped.
fn give_back(pool: &mut Option<pool::BufPool>, flags: u32) {
    if let (Some(pool), Some(bid)) = (pool.as_mut(), cqueue::buffer_select(flags)) {
        pool.give_back(bid);
    }
}

/// Close a file the kernel opened for an open whose future was dropped: nobody else has it.
fn close_orphan_fd(res: i32) {
    if res >= 0 {
        // SAFETY: a non-negative open result is a new fd that no one else has seen; the
        // future that would have owned it is gone.
        drop(unsafe { OwnedFd::from_raw_fd(res) });
    }
}

/// Convert a negative CQE result into an `io::Error`.
pub(crate) fn cqe_result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// Build a kernel timespec for a duration.
pub(crate) fn timespec(d: std::time::Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(d.as_secs())
        .nsec(d.subsec_nanos())
}
