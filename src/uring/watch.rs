//! Readiness watches without a future: a `POLL_ADD` whose one result is queued in the driver
//! under a key of the caller's choosing, for a single consumer task that serves many watches.
//!
//! This is how an idle keep-alive connection waits for its next request at the cost of an
//! operation slot and a table entry: no task, no future, no buffer (see `conn::Parked`).
//! A `POLL_ADD` consumes no data, so a watch can be cancelled at any time without losing
//! bytes; its cancelled result (`-ECANCELED`) is queued like any other and the consumer drops
//! results whose key it no longer knows.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::task::Waker;

use io_uring::{opcode, types};

use super::{Driver, OpKind, user_data};

/// The driver's queue of watch results and the waker of their consumer.
#[derive(Default)]
pub(crate) struct Watches {
    /// `(key, user_data, result)` of watches that completed, oldest first. A result is the
    /// `POLL_ADD`'s: the ready events, or `-errno`. The `user_data` tells a watch from an
    /// earlier one under the same key.
    pub(super) ready: VecDeque<(u32, u64, i32)>,
    /// The consumer's waker, woken when a result is queued.
    pub(super) waker: Option<Waker>,
}

impl Driver {
    /// Watch `fd` for `events` (one-shot): the result is queued under `key`. Returns the
    /// watch's `user_data`, for [`Driver::unwatch`].
    pub(crate) fn watch(&self, fd: RawFd, events: u32, key: u32) -> u64 {
        let (idx, generation) = self.alloc(OpKind::Watch { key }, 1, false);
        let ud = user_data(idx, generation);
        self.push(&[opcode::PollAdd::new(types::Fd(fd), events)
            .build()
            .user_data(ud)]);
        ud
    }

    /// Cancel a watch (its result, `-ECANCELED` or the readiness if it came first, is still
    /// queued: the consumer ignores results whose `user_data` it no longer holds).
    pub(crate) fn unwatch(&self, ud: u64) {
        self.cancel(ud);
    }

    /// The oldest queued watch result; with none, `waker` is stored and woken on the next.
    pub(crate) fn next_watch(&self, waker: &Waker) -> Option<(u32, u64, i32)> {
        let mut inner = self.inner.borrow_mut();
        let w = &mut inner.watches;
        match w.ready.pop_front() {
            Some(r) => Some(r),
            None => {
                match &w.waker {
                    Some(old) if old.will_wake(waker) => {}
                    _ => w.waker = Some(waker.clone()),
                }
                None
            }
        }
    }
}
