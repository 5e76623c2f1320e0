//! POLL_ADD linked to LINK_TIMEOUT: wait until an fd is readable or writable, or time out.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, types};

use super::op::{Op, timed_result};

/// Wait for `events` (`libc::POLLIN`/`POLLOUT`...) on `fd`. `Ok(revents)` when ready,
/// `ErrorKind::TimedOut` when `timeout` passed first. Dropping the future cancels both SQEs.
pub(crate) async fn poll(fd: RawFd, events: u32, timeout: Option<Duration>) -> io::Result<u32> {
    let entry = opcode::PollAdd::new(types::Fd(fd), events).build();
    let res = match timeout {
        None => Op::submit(entry, ()).await.0,
        Some(d) => {
            let ts = Box::new(super::timespec(d));
            let t = opcode::LinkTimeout::new(&*ts as *const types::Timespec).build();
            Op::submit_linked(entry, t, ts).await.0
        }
    };
    timed_result(res)
}
