//! recv into the spare capacity of an owned buffer, with an optional deadline ([`super::op::deadline`]).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, types};

use super::op::{Op, deadline};

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
