//! Taking connections off a listening socket without ever holding an exclusive wait.
//!
//! io_uring's `ACCEPT` waits on the listener as an **exclusive** waiter, and the kernel's
//! wake function consumes a wakeup even for a request whose cancellation is under way. On
//! our `DEFER_TASKRUN` ring a cancelled `ACCEPT` stays on the listener until its
//! cancellation runs as task work, at our next `GETEVENTS`; a connection arriving meanwhile
//! wakes only that dead entry, every live waiter (ours or another worker's) sleeps on, and
//! the connection waits in the accept queue until another one arrives: forever at the end
//! of a burst or of a drain (issue #12; `uring/tests.rs`, `mod stranding`, shows it on a
//! raw ring). Workers stop waiting for connections all the time (every drain, when their
//! slots run out, to balance load), so ringsgi never waits with `ACCEPT`:
//!
//! - a connection is taken with a non-blocking `accept4(2)`, which never waits;
//! - when none is queued, the wait is a **non-exclusive** `POLL_ADD(POLLIN)` on the
//!   listener. Every such waiter is woken by a new connection and none consumes anything,
//!   so cancelling one (dropping the future) can strand nothing. It is level-triggered
//!   where it matters: armed while a connection is queued, it completes at once.
//!
//! The cost of non-exclusive waits is that every worker waiting on a listener wakes for
//! each new connection and all but one find the queue empty (see `docs/ARCHITECTURE.md`,
//! "Accept", for the measured counts). A worker waits only while it wants connections (a
//! slot is free and it is not clearly more loaded than another), and a busy worker takes
//! queued connections without waiting at all, one `accept4` each.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// A listening socket to take connections from.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: RawFd,
}

impl Acceptor {
    /// Take connections from `listener` (made non-blocking if it is not: `accept4` must
    /// never block the executor; the listener module creates its sockets non-blocking).
    pub(crate) fn new(listener: RawFd) -> io::Result<Acceptor> {
        let flags = OFlag::from_bits_retain(fcntl(listener, FcntlArg::F_GETFL)?);
        if !flags.contains(OFlag::O_NONBLOCK) {
            fcntl(listener, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        }
        Ok(Acceptor { listener })
    }

    /// The listening socket.
    pub(crate) fn listener(&self) -> RawFd {
        self.listener
    }

    /// A connection waiting in the accept queue, if any (`Ok(None)`: the queue is empty).
    /// The new socket is blocking and close-on-exec, as the ring's operations expect.
    pub(crate) fn try_accept(&self) -> io::Result<Option<OwnedFd>> {
        loop {
            // SAFETY: accept4(2) on a descriptor we were given, with no address buffers.
            let fd = unsafe {
                libc::accept4(
                    self.listener,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: a new descriptor that only we hold.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(None),
                // A client that reset its connection before we took it: take the next one.
                Some(libc::EINTR | libc::ECONNABORTED) => continue,
                _ => return Err(e),
            }
        }
    }

    /// Wait until a connection is queued: a non-exclusive `POLL_ADD(POLLIN)`, complete at
    /// once if one already is. Dropping the future cancels the wait, which strands nothing.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        super::poll::poll(self.listener, libc::POLLIN as u32, None)
            .await
            .map(|_| ())
    }
}
