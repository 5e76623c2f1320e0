//! Waiting for a descriptor to become readable or writable, with a timeout: uWSGI's
//! `wait_fd_read`/`wait_fd_write` and `ready_fd`, as `IORING_OP_POLL_ADD` linked to
//! `IORING_OP_LINK_TIMEOUT` on the worker's ring.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::uring::poll::poll;

/// Which descriptor became ready in [`wait_fds`], and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Position of the descriptor in the slice given to [`wait_fds`].
    pub index: usize,
    /// The `poll(2)` revents the kernel reported (`POLLIN`, `POLLOUT`, `POLLHUP`, ...).
    pub revents: u32,
}

/// Wait until `fd` is readable (or hung up / in error), at most `timeout` (`None`: forever).
///
/// Returns `Ok(revents)`; `Err` with [`io::ErrorKind::TimedOut`] when the timeout passed
/// first. Works on any pollable descriptor: sockets, pipes, eventfds.
///
/// ```no_run
/// # async fn f(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
/// use std::time::Duration;
/// match ringsgi::wait_fd_read(fd, Some(Duration::from_secs(2))).await {
///     Ok(_) => { /* read without blocking */ }
///     Err(e) if e.kind() == std::io::ErrorKind::TimedOut => { /* gave up */ }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub async fn wait_fd_read(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<u32> {
    crate::harakiri::note_wait("wait_fd_read");
    poll(fd.as_raw_fd(), libc::POLLIN as u32, timeout).await
}

/// Wait until `fd` is writable (or hung up / in error), at most `timeout` (`None`: forever).
/// Same outcomes as [`wait_fd_read`].
pub async fn wait_fd_write(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<u32> {
    crate::harakiri::note_wait("wait_fd_write");
    poll(fd.as_raw_fd(), libc::POLLOUT as u32, timeout).await
}

/// Wait on several descriptors at once (`(fd, events)` pairs, events as `libc::POLLIN` /
/// `POLLOUT` bits) and say which became ready first; `TimedOut` if none did in `timeout`.
///
/// The polls not chosen are cancelled before this returns.
///
/// ```no_run
/// # async fn f(a: std::os::fd::BorrowedFd<'_>, b: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
/// use std::time::Duration;
/// let ready = ringsgi::wait_fds(
///     &[(a, libc::POLLIN as u32), (b, libc::POLLIN as u32)],
///     Some(Duration::from_millis(500)),
/// )
/// .await?;
/// println!("fd #{} is ready", ready.index);
/// # Ok(()) }
/// ```
pub async fn wait_fds(
    fds: &[(BorrowedFd<'_>, u32)],
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    crate::harakiri::note_wait("wait_fds");
    if fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no descriptor to wait on",
        ));
    }
    // One linked timeout per poll: each poll ends by itself at the deadline.
    let mut polls: Vec<Option<PollFuture>> = fds
        .iter()
        .map(|(fd, events)| Some(Box::pin(poll(fd.as_raw_fd(), *events, timeout)) as PollFuture))
        .collect();
    std::future::poll_fn(|cx: &mut Context<'_>| {
        for (index, slot) in polls.iter_mut().enumerate() {
            let Some(p) = slot else { continue };
            match p.as_mut().poll(cx) {
                Poll::Ready(Ok(revents)) => return Poll::Ready(Ok(Ready { index, revents })),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut => *slot = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if polls.iter().all(Option::is_none) {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::TimedOut)));
        }
        Poll::Pending
    })
    .await
}

type PollFuture = Pin<Box<dyn Future<Output = io::Result<u32>>>>;
