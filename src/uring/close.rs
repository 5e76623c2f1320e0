//! close through the ring, detached: nobody waits for a close.

use std::os::fd::{IntoRawFd, OwnedFd};

use io_uring::{opcode, types};

use super::Driver;

/// Close `fd` with an `IORING_OP_CLOSE` submitted with the next batch. Falls back to
/// `close(2)` when no driver is installed on this thread.
pub(crate) fn close(fd: OwnedFd) {
    match Driver::try_current() {
        Some(d) => {
            let raw = fd.into_raw_fd();
            d.push_detached(opcode::Close::new(types::Fd(raw)).build());
        }
        None => drop(fd),
    }
}
