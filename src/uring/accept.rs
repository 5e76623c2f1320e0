//! Multishot accept: one SQE, one CQE per accepted connection.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::OpKind;
use super::op::MultiOp;

/// A multishot accept on a listening socket. Dropping it cancels it; connections the kernel
/// accepted for it after that are closed by the driver.
pub(crate) struct AcceptMulti {
    op: MultiOp,
    listener: RawFd,
}

impl AcceptMulti {
    /// Arm a multishot accept on `listener` (accepted sockets get `SOCK_CLOEXEC`).
    pub(crate) fn arm(listener: RawFd) -> AcceptMulti {
        let e = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        AcceptMulti {
            op: MultiOp::submit(e, OpKind::Accept { listener }),
            listener,
        }
    }

    /// Arm a single-shot accept: one connection, then `next` yields `None` (re-arm).
    ///
    /// With several workers on one listener this spreads a burst of connections: the kernel
    /// wakes one waiter per connection, and a multishot accept takes every connection queued
    /// when its worker runs, so one worker would take a whole burst.
    pub(crate) fn arm_once(listener: RawFd) -> AcceptMulti {
        let e = opcode::Accept::new(
            types::Fd(listener),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        AcceptMulti {
            op: MultiOp::submit(e, OpKind::Accept { listener }),
            listener,
        }
    }

    /// The next accepted connection. `None` when the kernel ended the multishot (re-arm).
    ///
    /// Connections accepted for an earlier, cancelled accept on the same listener come first.
    pub(crate) async fn next(&mut self) -> Option<io::Result<OwnedFd>> {
        if let Some(fd) = super::Driver::current().take_stray(self.listener) {
            return Some(Ok(fd));
        }
        let res = self.op.next().await?;
        Some(super::cqe_result(res).map(|fd| {
            // SAFETY: a non-negative accept result is a new fd that only we hold.
            unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
        }))
    }
}
