//! uWSGI's async primitives for application code, with the worker's io_uring ring under them.
//!
//! Every primitive is a future: awaiting it lets the worker's other request slots run, and
//! dropping it (the request was cancelled) cancels what it waits on without leaking a
//! descriptor, a submission or a buffer.
//!
//! They must be awaited inside a ringsgi worker (an app handler or a task it spawned).

mod wait_fd;

pub use wait_fd::{Ready, wait_fd_read, wait_fd_write, wait_fds};
