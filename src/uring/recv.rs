//! recv into the spare capacity of an owned buffer, with an optional deadline
//! ([`super::op::deadline`]); and [`recv_first`], the wait for a request's first bytes, into
//! a buffer of the worker's [`pool`](super::pool).

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types};

use super::op::{Op, deadline};
use super::{Driver, OpKind, pool, user_data};

struct RecvData {
    buf: Vec<u8>,
}

/// Receive into `buf[len..capacity]`. On success `buf.len()` grows by the bytes received
/// (0 = peer closed). With `timeout`, an expired wait yields `ErrorKind::TimedOut`.
///
/// Cancel safety: if this future is dropped the buffer is orphaned and the socket must be
/// treated as broken.
pub(crate) async fn recv(
    fd: RawFd,
    buf: Vec<u8>,
    timeout: Option<Duration>,
) -> (io::Result<usize>, Vec<u8>) {
    recv_with(fd, buf, timeout, 0).await
}

/// `IORING_RECVSEND_POLL_FIRST`: arm the poll at once instead of trying the receive first.
const POLL_FIRST: u16 = 1;

/// Receive on an idle connection for at most `window`. With `poll_first`
/// (`IORING_RECVSEND_POLL_FIRST`, for a kept-alive connection that has just been answered, whose
/// next bytes are not expected yet) the kernel arms its poll at once instead of first trying a
/// receive that would find nothing.
///
/// Returns `None` if nothing arrived within `window`, with `buf` given back intact (the receive was cancelled and its final result awaited, so no byte is lost and
/// the connection stays usable); otherwise the receive's result as from [`recv`].
pub(crate) async fn recv_idle_for(
    fd: RawFd,
    mut buf: Vec<u8>,
    window: Duration,
    poll_first: bool,
) -> (Option<io::Result<usize>>, Vec<u8>) {
    if buf.capacity() == buf.len() {
        buf.reserve(4096);
    }
    let spare = buf.capacity() - buf.len();
    let ptr = buf.as_mut_ptr().wrapping_add(buf.len());
    let entry = opcode::Recv::new(types::Fd(fd), ptr, spare as u32)
        .ioprio(if poll_first { POLL_FIRST } else { 0 })
        .build();
    let mut op = Op::submit(entry, RecvData { buf });
    // The window is a slot in the worker's coarse timer wheel, not a glommio timer: this wait
    // starts once per kept-alive request, and a glommio timer costs a precise clock read and
    // a `BTreeMap` insert and remove in glommio's reactor each time (issue #12).
    let first = futures_lite::future::or(async { Some((&mut op).await) }, async {
        super::wheel::Deadline::after(window).await;
        None
    })
    .await;
    let (res, data) = match first {
        Some(done) => done,
        None => {
            op.cancel();
            op.await
        }
    };
    let mut buf = data.buf;
    match res {
        n if n >= 0 => {
            // SAFETY: the kernel wrote `n` bytes into the spare capacity starting at `len`.
            unsafe { buf.set_len(buf.len() + n as usize) };
            (Some(Ok(n as usize)), buf)
        }
        e if e == -libc::ECANCELED || e == -libc::EINTR => (None, buf),
        e => (Some(Err(io::Error::from_raw_os_error(-e))), buf),
    }
}

async fn recv_with(
    fd: RawFd,
    mut buf: Vec<u8>,
    timeout: Option<Duration>,
    ioprio: u16,
) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() == buf.len() {
        buf.reserve(4096);
    }
    let spare = buf.capacity() - buf.len();
    // SAFETY-free: the pointer is computed from the Vec; it stays valid because the Vec moves
    // into the Op (its heap block does not move) and is only handed back after the final CQE.
    let ptr = buf.as_mut_ptr().wrapping_add(buf.len());
    let entry = opcode::Recv::new(types::Fd(fd), ptr, spare as u32)
        .ioprio(ioprio)
        .build();
    let Some((res, data)) = deadline(Op::submit(entry, RecvData { buf }), timeout).await else {
        return (Err(io::ErrorKind::TimedOut.into()), Vec::new());
    };
    let mut buf = data.buf;
    match super::cqe_result(res) {
        Ok(n) => {
            let n = n as usize;
            // SAFETY: the kernel wrote `n` bytes into the spare capacity starting at `len`.
            unsafe { buf.set_len(buf.len() + n) };
            (Ok(n), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// Wait at most `window` for the first bytes of a request and append them to `buf`, which
/// holds no receive buffer while it waits: the bytes land in a buffer of the worker's
/// [`pool`](super::pool), are copied (exactly: `buf` grows by what came, no more) and the
/// pool buffer goes back at once. With `poll_first`, as [`recv_idle_for`].
///
/// Returns what [`recv_idle_for`] returns: `None` if nothing came within `window` (the
/// receive was cancelled and its final result awaited: no byte is lost), otherwise the
/// result of the receive. When the pool is empty (`-ENOBUFS`: more completions than buffers
/// wait for their tasks, as when thousands of sleeping requests are answered at once), the
/// bytes are still in the socket and a non-blocking `recv(2)` into a buffer on the stack
/// takes them: no allocation either way. Without a pool (the kernel refused it) the bytes
/// are received into `buf`'s own spare capacity, as before.
pub(crate) async fn recv_first(
    fd: RawFd,
    mut buf: Vec<u8>,
    window: Duration,
    poll_first: bool,
) -> (Option<io::Result<usize>>, Vec<u8>) {
    let mut poll_first = poll_first;
    loop {
        let Some(mut op) = PooledRecv::submit(fd, poll_first) else {
            buf.reserve(pool::BUF_LEN);
            return recv_idle_for(fd, buf, window, poll_first).await;
        };
        let first = futures_lite::future::or(async { Some((&mut op).await) }, async {
            super::wheel::Deadline::after(window).await;
            None
        })
        .await;
        let (res, flags) = match first {
            Some(done) => done,
            None => {
                op.cancel();
                (&mut op).await
            }
        };
        return match op.take(res, flags, &mut buf) {
            n if n >= 0 => (Some(Ok(n as usize)), buf),
            e if e == -libc::ENOBUFS => {
                let mut scratch = [0u8; pool::BUF_LEN];
                match nix::sys::socket::recv(
                    fd,
                    &mut scratch,
                    nix::sys::socket::MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(n) => {
                        buf.extend_from_slice(&scratch[..n]);
                        (Some(Ok(n)), buf)
                    }
                    // Nothing after all (a spurious wakeup): wait again.
                    Err(nix::errno::Errno::EAGAIN) => {
                        poll_first = true;
                        continue;
                    }
                    Err(e) => (Some(Err(e.into())), buf),
                }
            }
            e if e == -libc::ECANCELED || e == -libc::EINTR => (None, buf),
            e => (Some(Err(io::Error::from_raw_os_error(-e))), buf),
        };
    }
}

/// A single-shot `RECV` with `IOSQE_BUFFER_SELECT` from the worker's pool. Its future yields
/// the CQE's result and flags (which name the buffer); dropped before its final completion,
/// it is cancelled and the driver gives back the buffer its result may have taken
/// ([`OpKind::Pooled`]).
struct PooledRecv {
    driver: Rc<Driver>,
    idx: u32,
    generation: u32,
    done: bool,
}

impl PooledRecv {
    /// Submit the receive; `None` if the worker has no pool.
    fn submit(fd: RawFd, poll_first: bool) -> Option<PooledRecv> {
        let driver = Driver::current();
        driver.inner.borrow().pool.as_ref()?;
        let (idx, generation) = driver.alloc(OpKind::Pooled, 1);
        // No buffer address: the kernel picks one of group BGID when the bytes arrive.
        let entry = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), pool::BUF_LEN as u32)
            .buf_group(pool::BGID)
            .ioprio(if poll_first { POLL_FIRST } else { 0 })
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(idx, generation));
        driver.push(&[entry]);
        Some(PooledRecv {
            driver,
            idx,
            generation,
            done: false,
        })
    }

    fn cancel(&self) {
        self.driver.cancel(user_data(self.idx, self.generation));
    }

    /// Append the bytes of a result (`res`, `flags`) to `buf` and give its pool buffer back.
    /// Returns `res`; counts a `-ENOBUFS`.
    fn take(&self, res: i32, flags: u32, buf: &mut Vec<u8>) -> i32 {
        let mut inner = self.driver.inner.borrow_mut();
        let Some(pool) = inner.pool.as_mut() else {
            return res;
        };
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 {
                buf.extend_from_slice(pool.bytes(bid, res as usize));
            }
            pool.give_back(bid);
        }
        if res == -libc::ENOBUFS {
            pool.misses += 1;
        }
        res
    }
}

impl Future for PooledRecv {
    type Output = (i32, u32);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(i32, u32)> {
        match self.driver.poll_single(self.idx, cx.waker()) {
            Some(out) => {
                self.done = true;
                Poll::Ready(out)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for PooledRecv {
    fn drop(&mut self) {
        if !self.done {
            self.driver.orphan(self.idx, self.generation, None);
        }
    }
}
