//! uWSGI's async primitives for application code, with the worker's io_uring ring under them.
//!
//! Every primitive is a future: awaiting it lets the worker's other request slots run, and
//! dropping it (the request was cancelled) cancels what it waits on without leaking a
//! descriptor, a submission or a buffer.
//!
//! They must be awaited inside a ringsgi worker (an app handler or a task it spawned).

mod net;
mod resolve;
mod sleep;
mod task;
mod wait_fd;

#[cfg(test)]
mod tests;

pub use net::{TcpStream, connect};
pub use resolve::resolve;
pub use sleep::{sleep, suspend};
pub use task::{Task, background_tasks, join_all_timeout, spawn};
pub use wait_fd::{Ready, wait_fd_read, wait_fd_write, wait_fds};
