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
