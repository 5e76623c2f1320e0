//! send from an owned buffer, with an optional deadline ([`super::op::deadline`]).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, types};

use super::op::{Op, deadline};

struct SendData {
    buf: Vec<u8>,
}

/// Send `buf[offset..]` once (may be partial). Returns the bytes sent and the buffer.
/// `MSG_NOSIGNAL`: a closed peer is an `EPIPE` error, not a SIGPIPE.
pub(crate) async fn send(
    fd: RawFd,
    buf: Vec<u8>,
    offset: usize,
    timeout: Option<Duration>,
) -> (io::Result<usize>, Vec<u8>) {
    debug_assert!(offset <= buf.len());
    let ptr = buf.as_ptr().wrapping_add(offset);
    let len = (buf.len() - offset) as u32;
    let entry = opcode::Send::new(types::Fd(fd), ptr, len)
        .flags(libc::MSG_NOSIGNAL)
        .build();
    let Some((res, data)) = deadline(Op::submit(entry, SendData { buf }), timeout).await else {
        return (Err(io::ErrorKind::TimedOut.into()), Vec::new());
    };
    (super::cqe_result(res).map(|n| n as usize), data.buf)
}

/// Send all of `buf[offset..]`, looping over partial sends. Each wait is bounded by `timeout`.
///
/// One `async fn` with the operation and its deadline inline, not a loop over [`send`]: each
/// `async fn` layer stores its arguments again, and this future sits in every response being
/// sent (392 bytes through `send` and `deadline`; every request of 10,000 answered at once
/// holds one; mem10k).
pub(crate) async fn send_all(
    fd: RawFd,
    mut buf: Vec<u8>,
    mut offset: usize,
    timeout: Option<Duration>,
) -> (io::Result<()>, Vec<u8>) {
    while offset < buf.len() {
        let ptr = buf.as_ptr().wrapping_add(offset);
        let len = (buf.len() - offset) as u32;
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        let op = Op::submit(entry, SendData { buf });
        let done = match timeout {
            None => Some(op.await),
            Some(d) => {
                futures_lite::future::or(async { Some(op.await) }, async {
                    super::wheel::Deadline::after(d).await;
                    None
                })
                .await
            }
        };
        // Timed out: the operation was dropped (cancelled), its buffer kept by the driver.
        let Some((res, data)) = done else {
            return (Err(io::ErrorKind::TimedOut.into()), Vec::new());
        };
        buf = data.buf;
        match super::cqe_result(res) {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => offset += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// A send submitted without waiting for its completion ([`send_later`]): the last send of a
/// kept-alive response, which goes to the kernel in the same submission as the connection's
/// next receive. Awaiting it would cost a wake of the connection task and a turn of the pump
/// per request for a result that, on a socket with room, is known at submission. Its
/// completion is still checked ([`Sending::try_settle`], [`Sending::settle`]) before anything
/// else is written to or done with the connection, and its buffer lives in the operation
/// until then (dropped unsettled, it is an orphan: cancelled, its buffer kept by the driver
/// until the final completion; the connection must then be closed).
pub(crate) struct Sending {
    op: Op<SendData>,
    fd: RawFd,
    /// The operation sends `buf[offset..]`.
    offset: usize,
}

impl std::fmt::Debug for Sending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sending")
            .field("fd", &self.fd)
            .field("offset", &self.offset)
            .finish()
    }
}

/// Submit a send of all of `buf` and return at once (see [`Sending`]).
pub(crate) fn send_later(fd: RawFd, buf: Vec<u8>) -> Sending {
    send_later_from(fd, buf, 0)
}

/// [`send_later`] of `buf[offset..]`.
fn send_later_from(fd: RawFd, buf: Vec<u8>, offset: usize) -> Sending {
    debug_assert!(offset < buf.len());
    let ptr = buf.as_ptr().wrapping_add(offset);
    let len = (buf.len() - offset) as u32;
    // MSG_WAITALL: on a stream socket the kernel finishes a short send itself (io_uring
    // retries it when the socket has room) instead of completing it with a partial count.
    let entry = opcode::Send::new(types::Fd(fd), ptr, len)
        .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
        .build();
    Sending {
        op: Op::submit(entry, SendData { buf }),
        fd,
        offset,
    }
}

impl Sending {
    /// The outcome if it is known now, without waiting: every byte sent (`Ok`), or the send
    /// failed (`Err`); with the buffer. `Err(self)` while it is in flight, or when it sent
    /// only part of the bytes (the rest is submitted at once): then [`settle`](Self::settle)
    /// it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_settle(mut self) -> Result<(io::Result<()>, Vec<u8>), Sending> {
        let Some((res, data)) = self.op.try_take() else {
            return Err(self);
        };
        let buf = data.buf;
        match super::cqe_result(res) {
            Ok(n) if self.offset + n as usize == buf.len() => Ok((Ok(()), buf)),
            Ok(0) => Ok((Err(io::ErrorKind::WriteZero.into()), buf)),
            Ok(n) => Err(send_later_from(self.fd, buf, self.offset + n as usize)),
            // As `send_all`: an interrupted send is tried again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                Err(send_later_from(self.fd, buf, self.offset))
            }
            Err(e) => Ok((Err(e), buf)),
        }
    }

    /// Wait until every byte is sent, each wait bounded by `timeout` (as [`send_all`]).
    pub(crate) async fn settle(self, timeout: Duration) -> (io::Result<()>, Vec<u8>) {
        let Sending { op, fd, offset } = self;
        let Some((res, data)) = deadline(op, Some(timeout)).await else {
            return (Err(io::ErrorKind::TimedOut.into()), Vec::new());
        };
        match super::cqe_result(res) {
            Ok(0) => (Err(io::ErrorKind::WriteZero.into()), data.buf),
            Ok(n) => send_all(fd, data.buf, offset + n as usize, Some(timeout)).await,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                send_all(fd, data.buf, offset, Some(timeout)).await
            }
            Err(e) => (Err(e), data.buf),
        }
    }
}
