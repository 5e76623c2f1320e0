//! Readiness watches without a future or an operation slot: a `POLL_ADD` whose `user_data` is
//! a key of the caller's choosing (tagged with [`WATCH`](super::WATCH)); its one result is
//! queued in the driver for a single consumer task that serves many watches.
//!
//! This is how an idle keep-alive connection waits for its next request at the cost of a
//! table entry: no task, no future, no buffer, no driver slot (see `conn::Parked`). A
//! `POLL_ADD` consumes no data, so a watch can be cancelled at any time without losing bytes;
//! its cancelled result (`-ECANCELED`) is queued like any other, and the consumer drops results
//! whose key it no longer holds (its keys carry a generation).

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::task::Waker;

use io_uring::{opcode, types};

use super::{Driver, SECONDARY, WATCH};

/// The driver's queue of watch results and the waker of their consumer.
#[derive(Default)]
pub(crate) struct Watches {
    /// `(key, result)` of watches that completed, oldest first. A result is the `POLL_ADD`'s:
    /// the ready events, or `-errno`.
    pub(super) ready: VecDeque<(u64, i32)>,
    /// The consumer's waker, woken when a result is queued.
    pub(super) waker: Option<Waker>,
}

/// The largest key a watch can carry (the bits below [`WATCH`]).
pub(crate) const MAX_KEY: u64 = WATCH - 1;

impl Driver {
    /// Watch `fd` for `events` (one-shot): the result is queued under `key` (at most
    /// [`MAX_KEY`]; a live watch's key must be unique, for [`Driver::unwatch`]).
    pub(crate) fn watch(&self, fd: RawFd, events: u32, key: u64) {
        debug_assert!(key <= MAX_KEY);
        let ud = WATCH | (key & MAX_KEY);
        debug_assert_eq!(ud & SECONDARY, 0);
        self.push(&[opcode::PollAdd::new(types::Fd(fd), events)
            .build()
            .user_data(ud)]);
    }

    /// Cancel the watch with `key` (its result, `-ECANCELED` or the readiness if it came
    /// first, is still queued).
    pub(crate) fn unwatch(&self, key: u64) {
        self.cancel(WATCH | (key & MAX_KEY));
    }

    /// The oldest queued watch result; with none, `waker` is stored and woken on the next.
    pub(crate) fn next_watch(&self, waker: &Waker) -> Option<(u64, i32)> {
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use crate::uring::recv::recv_idle_for;
    use crate::uring::tests::{in_worker, settle};

    /// The hot idle wait: a window that passes gives the buffer back with its bytes and loses
    /// nothing; bytes that come later are read into the same buffer.
    #[test]
    fn an_idle_recv_that_times_out_keeps_its_buffer_and_loses_nothing() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            let fd = ours.as_raw_fd();
            let mut buf = Vec::with_capacity(64);
            buf.extend_from_slice(b"ab");
            let (res, buf) = recv_idle_for(fd, buf, Duration::from_millis(30), true).await;
            assert!(res.is_none(), "{res:?}");
            assert_eq!(buf, b"ab");
            settle(&driver).await;
            theirs.write_all(b"cd").unwrap();
            let (res, buf) = recv_idle_for(fd, buf, Duration::from_secs(5), false).await;
            assert_eq!(res.unwrap().unwrap(), 2);
            assert_eq!(buf, b"abcd");
            settle(&driver).await;
        });
    }

    /// A watch reports readiness under its key, takes no operation slot, and a cancelled one
    /// reports `-ECANCELED` under its own.
    #[test]
    fn watches_report_under_their_keys_and_cancel_cleanly() {
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            let next = || {
                std::future::poll_fn(|cx| match driver.next_watch(cx.waker()) {
                    Some(r) => std::task::Poll::Ready(r),
                    None => std::task::Poll::Pending,
                })
            };
            let before = driver.stats().ops_in_flight;
            driver.watch(a.as_raw_fd(), libc::POLLIN as u32, 7);
            driver.watch(b.as_raw_fd(), libc::POLLIN as u32, (3 << 32) | 9);
            assert_eq!(driver.stats().ops_in_flight, before, "a watch took a slot");
            a_peer.write_all(b"x").unwrap();
            let (key, res) = next().await;
            assert_eq!(key, 7);
            assert!(res > 0 && res as i16 & libc::POLLIN != 0, "{res}");
            driver.unwatch((3 << 32) | 9);
            let (key, res) = next().await;
            assert_eq!((key, res), ((3 << 32) | 9, -libc::ECANCELED));
            settle(&driver).await;
        });
    }
}
