//! The fixed pool of request slots: uWSGI's "async cores".
//!
//! `--async N` slots per worker are created once at start. A slot holds what one in-flight
//! request needs: the buffer its head is copied into and the parsed header index (the
//! response's output buffers come from a per-worker LIFO of spares when it writes its head,
//! `response.rs`, so that a request that sleeps holds none). The buffers get their memory
//! on the slot's first request and keep it afterwards (the free list is LIFO, so the same hot
//! slots are reused): the steady state allocates nothing, and an idle `--async 10000` worker
//! costs ~4 MB instead of the ~55 MB that preallocating 5 KB per slot measured. The free list
//! holds slot ids only (4 bytes each); buffers that requests gave back wait on a LIFO of
//! spares, so a slot never used costs no buffer descriptor either (144 bytes each, 1.4 MB per
//! worker at `--async 10000`, issue #12). A request holds a slot from
//! its complete head to its last response byte (a kept-alive response's last send of at most
//! 16 KiB: to its submission, `conn::settle`); a connection that is idle or still sending a
//! head holds none.
//!
//! When every slot is busy, new requests wait here in FIFO order (a freed slot is handed to
//! the oldest waiter) and the worker stops accepting (`server::worker` disarms its accept),
//! so further connections wait in the shared kernel backlog where other workers can take
//! them. Nothing spins.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::proto::http::HeadIndex;

/// Index of a slot in its worker's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId(pub u32);

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The buffers of one slot, allocated once and reused by every request it serves.
#[derive(Debug)]
pub(crate) struct SlotBufs {
    /// The request head bytes (method, target, headers), copied out of the connection buffer.
    pub(crate) head: Vec<u8>,
    /// Spans into `head`: method, path, headers, framing.
    pub(crate) index: HeadIndex,
}

impl SlotBufs {
    /// Buffers without memory (they get it on first use).
    pub(crate) fn empty() -> SlotBufs {
        SlotBufs {
            head: Vec::new(),
            index: HeadIndex::default(),
        }
    }
}

/// Room kept in the list of spare buffers however empty it is.
const SPARE_KEEP: usize = 64;

/// A waiter's mailbox: the slot is handed over directly so no later arrival can take it.
struct Waiter {
    handoff: Rc<Cell<Option<(SlotId, SlotBufs)>>>,
    waker: Option<Waker>,
}

/// The pool. One per worker, shared by its connection tasks.
pub(crate) struct SlotPool {
    /// Free slot ids, LIFO.
    free: RefCell<Vec<SlotId>>,
    /// Buffers given back by finished requests, LIFO; a slot taken when none is here gets
    /// empty ones. At most as many as slots were ever busy at once.
    spare: RefCell<Vec<SlotBufs>>,
    waiters: RefCell<VecDeque<Rc<RefCell<Waiter>>>>,
    /// Wakers of tasks waiting for "a slot is free" (the accept loop) or "none is free".
    watchers: RefCell<Vec<Waker>>,
    size: usize,
    /// How many times a request had to wait because every slot was busy.
    queue_full: Cell<u64>,
    last_full_log: Cell<Option<Instant>>,
    /// Where the busy count is published for the master's stats (the worker's scoreboard).
    gauge: Cell<Option<&'static std::sync::atomic::AtomicU32>>,
}

impl fmt::Debug for SlotPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotPool")
            .field("size", &self.size)
            .field("free", &self.free_count())
            .finish()
    }
}

impl SlotPool {
    /// Create `n` slots. Their buffers get memory on first use (see the module docs).
    pub(crate) fn new(n: usize) -> Rc<SlotPool> {
        let free = (0..n).rev().map(|i| SlotId(i as u32)).collect();
        Rc::new(SlotPool {
            free: RefCell::new(free),
            spare: RefCell::new(Vec::new()),
            waiters: RefCell::new(VecDeque::new()),
            watchers: RefCell::new(Vec::new()),
            size: n,
            queue_full: Cell::new(0),
            last_full_log: Cell::new(None),
            gauge: Cell::new(None),
        })
    }

    /// Publish the busy count to `gauge` from now on.
    pub(crate) fn publish_to(&self, gauge: &'static std::sync::atomic::AtomicU32) {
        self.gauge.set(Some(gauge));
        self.publish();
    }

    fn publish(&self) {
        self.publish_busy(self.busy_count());
    }

    fn publish_busy(&self, busy: usize) {
        if let Some(g) = self.gauge.get() {
            g.store(busy as u32, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Slots held by requests right now.
    pub(crate) fn busy_count(&self) -> usize {
        self.size - self.free_count()
    }

    /// Slots free right now.
    pub(crate) fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    /// Take a free slot now, if there is one.
    pub(crate) fn try_acquire(self: &Rc<Self>) -> Option<SlotGuard> {
        let (id, free_left) = {
            let mut free = self.free.borrow_mut();
            let id = free.pop()?;
            (id, free.len())
        };
        let bufs = {
            let mut spare = self.spare.borrow_mut();
            let bufs = spare.pop().unwrap_or_else(SlotBufs::empty);
            // The list grows to as many slots as were ever free at once (168 bytes each:
            // 840 KB per worker when 5,000 sleeping requests end together) and would keep
            // that memory while the slots are busy again, their buffers in requests: give
            // the room back as it empties (mem10k).
            if spare.capacity() > SPARE_KEEP && spare.len() < spare.capacity() / 4 {
                let keep = spare.capacity() / 2;
                spare.shrink_to(keep);
            }
            bufs
        };
        if free_left == 0 {
            self.notify_watchers();
        }
        self.publish_busy(self.size - free_left);
        Some(SlotGuard {
            hold: SlotHold {
                pool: Some(self.clone()),
                id,
            },
            bufs: Some(bufs),
        })
    }

    /// Take a slot, waiting (FIFO) while every slot is busy.
    pub(crate) async fn acquire(self: &Rc<Self>) -> SlotGuard {
        if let Some(slot) = self.try_acquire() {
            return slot;
        }
        self.note_full();
        let handoff = Rc::new(Cell::new(None));
        let waiter = Rc::new(RefCell::new(Waiter {
            handoff: handoff.clone(),
            waker: None,
        }));
        self.waiters.borrow_mut().push_back(waiter.clone());
        let mut guard = WaitGuard {
            pool: self,
            waiter: &waiter,
            done: false,
        };
        let (id, bufs) = poll_fn(|cx| match handoff.take() {
            Some(s) => Poll::Ready(s),
            None => {
                waiter.borrow_mut().waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        guard.done = true;
        self.publish();
        SlotGuard {
            hold: SlotHold {
                pool: Some(self.clone()),
                id,
            },
            bufs: Some(bufs),
        }
    }

    /// Resolves once at least one slot is free.
    pub(crate) async fn wait_free(&self) {
        poll_fn(|cx| {
            if self.free_count() > 0 {
                Poll::Ready(())
            } else {
                self.watch(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once no slot is free.
    pub(crate) async fn wait_exhausted(&self) {
        poll_fn(|cx| {
            if self.free_count() == 0 {
                Poll::Ready(())
            } else {
                self.watch(cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// Register `waker` for the next change, once per task: the accept loop polls a new
    /// `wait_exhausted` for every connection it accepts, and a clone per poll grew the list
    /// without bound until glommio's 16-bit waker count of the accept task overflowed (the
    /// worker aborted after ~32k connections).
    fn watch(&self, waker: &std::task::Waker) {
        let mut ws = self.watchers.borrow_mut();
        if !ws.iter().any(|w| w.will_wake(waker)) {
            ws.push(waker.clone());
        }
    }

    fn notify_watchers(&self) {
        let ws = std::mem::take(&mut *self.watchers.borrow_mut());
        for w in ws {
            w.wake();
        }
    }

    /// Count (and log, at most once a second) that every slot is busy.
    pub(crate) fn note_full(&self) {
        self.queue_full.set(self.queue_full.get() + 1);
        let now = Instant::now();
        let due = match self.last_full_log.get() {
            None => true,
            Some(t) => now.duration_since(t) >= Duration::from_secs(1),
        };
        if due {
            self.last_full_log.set(Some(now));
            tracing::warn!(
                "async queue is full: all {} slots busy ({} times so far); raise --async",
                self.size,
                self.queue_full.get()
            );
        }
    }

    fn release(&self, id: SlotId, mut bufs: SlotBufs) {
        bufs.head.clear();
        bufs.index.clear();
        // Waiters that gave up removed themselves (WaitGuard), so the oldest one is alive.
        let next = self.waiters.borrow_mut().pop_front();
        if let Some(w) = next {
            let mut w = w.borrow_mut();
            w.handoff.set(Some((id, bufs)));
            if let Some(k) = w.waker.take() {
                k.wake();
            }
            return;
        }
        self.spare.borrow_mut().push(bufs);
        let was_empty = {
            let mut free = self.free.borrow_mut();
            free.push(id);
            free.len() == 1
        };
        if was_empty {
            self.notify_watchers();
        }
    }
}

/// Removes a waiter that gave up (its request future was dropped), returning a slot that was
/// handed to it in the meantime.
struct WaitGuard<'a> {
    pool: &'a SlotPool,
    waiter: &'a Rc<RefCell<Waiter>>,
    done: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.pool
            .waiters
            .borrow_mut()
            .retain(|w| !Rc::ptr_eq(w, self.waiter));
        let handed = self.waiter.borrow().handoff.take();
        if let Some((id, bufs)) = handed {
            self.pool.release(id, bufs);
        }
    }
}

/// A held slot. Dropping it returns the slot to the pool (or hands it to the oldest waiter).
#[derive(Debug)]
pub(crate) struct SlotGuard {
    hold: SlotHold,
    bufs: Option<SlotBufs>,
}

impl SlotGuard {
    pub(crate) fn id(&self) -> SlotId {
        self.hold.id
    }

    /// Move the buffers out (into a `Request`/`Response`) for the duration of a call.
    pub(crate) fn take_bufs(&mut self) -> SlotBufs {
        self.bufs.take().expect("slot buffers present")
    }

    /// Exchange the slot's header index with `index` (a head indexed before the slot was
    /// taken moves in; the slot's old, cleared index, with its capacity, moves out).
    pub(crate) fn swap_index(&mut self, index: &mut HeadIndex) {
        let bufs = self.bufs.as_mut().expect("slot buffers present");
        std::mem::swap(&mut bufs.index, index);
    }

    /// Replace the slot's head bytes with `head` (in place: no move of the buffers).
    pub(crate) fn set_head(&mut self, head: &[u8]) {
        let bufs = self.bufs.as_mut().expect("slot buffers present");
        bufs.head.clear();
        bufs.head.extend_from_slice(head);
    }

    /// Put buffers back (possibly fresh ones if the originals were lost to a cancel).
    pub(crate) fn put_bufs(&mut self, bufs: SlotBufs) {
        self.bufs = Some(bufs);
    }

    /// The slot without its buffers, and the buffers, for a request that moves them into its
    /// `Request` and `Response`: the slot then costs 16 bytes in the request's future instead
    /// of a second, empty set of buffer descriptors (mem10k).
    pub(crate) fn split(mut self) -> (SlotHold, SlotBufs) {
        let bufs = self.take_bufs();
        let hold = SlotHold {
            pool: self.hold.pool.take(),
            id: self.hold.id,
        };
        (hold, bufs)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(bufs) = self.bufs.take() {
            self.hold.release(bufs);
        }
        // Otherwise `hold` releases the slot with fresh buffers (or was split off).
    }
}

/// A held slot whose buffers are elsewhere ([`SlotGuard::split`]). Dropping it returns the
/// slot with fresh buffers (the request's were lost, as to a cancel); [`SlotHold::finish`]
/// returns it with the request's buffers.
#[derive(Debug)]
pub(crate) struct SlotHold {
    /// `None` once released.
    pool: Option<Rc<SlotPool>>,
    id: SlotId,
}

impl SlotHold {
    /// Return the slot to the pool with `bufs`.
    pub(crate) fn finish(mut self, bufs: SlotBufs) {
        self.release(bufs);
    }

    fn release(&mut self, bufs: SlotBufs) {
        if let Some(pool) = self.pool.take() {
            pool.release(self.id, bufs);
            pool.publish();
        }
    }
}

impl Drop for SlotHold {
    fn drop(&mut self) {
        // Fresh buffers only for a slot still held (their request's were lost): a finished or
        // split-off hold has nothing to return, and builds nothing.
        if self.pool.is_some() {
            self.release(SlotBufs::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_polling_many_waits_is_registered_once() {
        struct Nop;
        impl std::task::Wake for Nop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let pool = SlotPool::new(4);
        let waker = std::task::Waker::from(std::sync::Arc::new(Nop));
        let mut cx = std::task::Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut f = std::pin::pin!(pool.wait_exhausted());
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(pool.watchers.borrow().len(), 1);
    }

    #[test]
    fn spare_buffers_give_their_room_back_as_slots_fill_again() {
        let pool = SlotPool::new(1000);
        let held: Vec<_> = (0..1000).map(|_| pool.try_acquire().unwrap()).collect();
        drop(held);
        assert_eq!(pool.spare.borrow().len(), 1000);
        let full = pool.spare.borrow().capacity();
        let again: Vec<_> = (0..990).map(|_| pool.try_acquire().unwrap()).collect();
        let cap = pool.spare.borrow().capacity();
        assert!(
            cap <= 2 * SPARE_KEEP,
            "capacity {cap} of {full} kept for 10 spares"
        );
        drop(again);
        assert_eq!(pool.spare.borrow().len(), 1000);
        assert_eq!(pool.free_count(), 1000);
    }
}
