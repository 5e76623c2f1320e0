//! The future of one ring operation, and its cancel-on-drop rule.

use std::any::Any;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::{Driver, OpKind, SECONDARY, user_data};

/// A submitted single-shot operation that owns `T` (its buffers) until the kernel is done.
///
/// Awaiting it yields the raw CQE result and gives `T` back. Dropping it early orphans `T`
/// into the driver and cancels the operation (see the module invariant).
pub(crate) struct Op<T: 'static> {
    driver: Rc<Driver>,
    idx: u32,
    generation: u32,
    data: Option<T>,
}

impl<T: 'static> Op<T> {
    /// Submit `entry` (its `user_data` is set here). `data` must own every buffer `entry`
    /// points to, at a stable address.
    pub(crate) fn submit(entry: squeue::Entry, data: T) -> Op<T> {
        Self::submit_kind(entry, OpKind::Other, data)
    }

    /// [`Op::submit`] for an operation whose orphaned result needs cleanup (see [`OpKind`]).
    pub(crate) fn submit_kind(entry: squeue::Entry, kind: OpKind, data: T) -> Op<T> {
        let driver = Driver::current();
        let (idx, generation) = driver.alloc(kind, 1);
        driver.push(&[entry.user_data(user_data(idx, generation))]);
        Op {
            driver,
            idx,
            generation,
            data: Some(data),
        }
    }

    /// Submit `entry` linked to a `LINK_TIMEOUT` (the timeout's timespec lives in `data`).
    /// If the timeout fires first, the operation completes with `-ECANCELED`.
    pub(crate) fn submit_linked(entry: squeue::Entry, timeout: squeue::Entry, data: T) -> Op<T> {
        let driver = Driver::current();
        let (idx, generation) = driver.alloc(OpKind::Other, 2);
        let ud = user_data(idx, generation);
        driver.push(&[
            entry.flags(squeue::Flags::IO_LINK).user_data(ud),
            timeout.user_data(ud | SECONDARY),
        ]);
        Op {
            driver,
            idx,
            generation,
            data: Some(data),
        }
    }
}

impl<T: 'static> Op<T> {
    /// Ask the kernel to cancel the operation, keeping the future: awaiting it afterwards
    /// yields its final result, `-ECANCELED` if the cancel won, or what it did if it completed
    /// first. Unlike a drop, nothing the kernel did is lost (a receive's bytes stay in the
    /// buffer that comes back).
    pub(crate) fn cancel(&self) {
        self.driver.cancel(user_data(self.idx, self.generation));
    }
}

impl<T: 'static> Op<T> {
    /// The result and the buffers if the operation has completed, without waiting (and
    /// without registering a waker); `None` while it is in flight.
    pub(crate) fn try_take(&mut self) -> Option<(i32, T)> {
        let (res, _flags) = self.driver.take_done(self.idx)?;
        let data = self.data.take().expect("Op taken after completion");
        Some((res, data))
    }
}

impl<T: 'static + Unpin> Future for Op<T> {
    type Output = (i32, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.driver.poll_single(self.idx, cx.waker()) {
            Some((res, _flags)) => {
                let data = self.data.take().expect("Op polled after completion");
                Poll::Ready((res, data))
            }
            None => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            let keep: Box<dyn Any> = Box::new(data);
            self.driver.orphan(self.idx, self.generation, Some(keep));
        }
    }
}

/// Map a CQE result of an operation submitted with a linked timeout: `-ECANCELED` means the
/// timeout fired (the future itself was alive, so nobody else cancelled it).
pub(crate) fn timed_result(res: i32) -> io::Result<u32> {
    if res == -libc::ECANCELED {
        Err(io::Error::from(io::ErrorKind::TimedOut))
    } else {
        super::cqe_result(res)
    }
}

/// Await `op` for at most `timeout` (`None`: no limit); `None` if the time ran out first, in
/// which case `op` is dropped: cancelled, its buffers kept by the driver until the kernel is
/// done with them (the caller must treat the socket as broken).
///
/// The data path (recv, send) uses this coarse user-space deadline ([`super::wheel`]: a slot
/// in the worker's timer wheel, a few milliseconds of resolution) rather than a kernel
/// `LINK_TIMEOUT` (an hrtimer arm and cancel plus an extra SQE and CQE per operation) or a
/// glommio timer per operation (a precise clock read and a `BTreeMap` insert and remove).
/// `poll` and `connect` keep linked timeouts (rare operations, and the kernel-side deadline
/// is their documented contract).
pub(crate) async fn deadline<T: 'static + Unpin>(
    op: Op<T>,
    timeout: Option<std::time::Duration>,
) -> Option<(i32, T)> {
    match timeout {
        None => Some(op.await),
        Some(d) => {
            futures_lite::future::or(async { Some(op.await) }, async {
                super::wheel::Deadline::after(d).await;
                None
            })
            .await
        }
    }
}
