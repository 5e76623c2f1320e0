//! Zero-copy file → socket: `IORING_OP_SPLICE` from the file (at an offset) into a pipe, then
//! from the pipe into the socket, the way nginx's `sendfile on` avoids copying the body
//! through user space.
//!
//! Each splice is one ring operation and one `.await`, so a transfer is a series of switch
//! points and a slow client holds only its own request. The kernel runs every splice in an
//! io-wq worker (`REQ_F_FORCE_ASYNC`); so that no worker ever sleeps on a slow client, the
//! socket is made `O_NONBLOCK` for the duration of the transfer: a full socket answers
//! `EAGAIN`, and the wait for room is a `POLL_ADD` on the ring bounded by the socket timeout.
//!
//! # Cancel safety
//!
//! Each operation owns what it refers to: the [`Pipe`] (both ends) and the file (an
//! `Rc<OwnedFd>` clone) move into the op's data, so the driver keeps them open while an
//! orphaned splice is in flight and closes them at its final CQE; the descriptor numbers
//! cannot be reused under the kernel. A pipe goes back to the per-worker pool only when a
//! transfer completed (the pipe is then empty); a dropped or failed transfer closes its pipe,
//! which may still hold bytes. The caller must treat the connection as broken, as for a
//! cancelled send.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use io_uring::{opcode, types};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::op::{Op, deadline};

/// The pipe size asked for: a 1 MiB file moves in one file → pipe step. Capped by
/// `/proc/sys/fs/pipe-max-size`; if the kernel refuses (that limit, or the per-user pipe
/// page limits), the pipe keeps its default size (64 KiB) and the transfer takes more steps.
const PIPE_WANT: usize = 1 << 20;

/// Pipes kept per worker for reuse. A pipe holds no pages while empty, only its ring of
/// buffer slots, so keeping some costs little; beyond this many concurrent transfers, the
/// extra pipes are closed when their transfer ends.
const POOL_MAX: usize = 64;

thread_local! {
    /// This worker's empty pipes, ready for the next transfer.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    /// The size to ask for, read once per worker from `/proc/sys/fs/pipe-max-size`.
    static PIPE_SIZE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Both ends of a pipe used as the in-kernel buffer of a transfer.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity in bytes: the most one file → pipe step moves.
    capacity: usize,
}

impl Pipe {
    /// An empty pipe: one from this worker's pool, or a new one.
    pub(crate) fn take() -> io::Result<Pipe> {
        if let Some(p) = POOL.with(|p| p.borrow_mut().pop()) {
            return Ok(p);
        }
        Pipe::new()
    }

    fn new() -> io::Result<Pipe> {
        // Blocking ends: the file → pipe step only runs on an empty pipe, and the pipe →
        // socket step is non-blocking through the socket's flag (see the module docs).
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let want = PIPE_SIZE.with(|s| {
            let want = s.get().unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .map_or(PIPE_WANT, |max| max.min(PIPE_WANT))
            });
            s.set(Some(want));
            want
        });
        // Refused (limits): keep the default size, silently.
        let _ = fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(want as i32));
        let capacity = fcntl(write.as_raw_fd(), FcntlArg::F_GETPIPE_SZ)? as usize;
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Its capacity in bytes (tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Return an **empty** pipe to the pool (only a completed transfer knows it is empty).
    fn recycle(self) {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(self);
            }
        });
    }

    /// The inode of the pipe (tests: to check that a pipe was closed, not leaked).
    #[cfg(test)]
    pub(crate) fn inode(&self) -> u64 {
        nix::sys::stat::fstat(self.read.as_raw_fd())
            .expect("fstat")
            .st_ino
    }
}

/// Pipes in this worker's pool (tests).
#[cfg(test)]
pub(crate) fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

/// What a splice keeps open until its final CQE.
struct SpliceData {
    pipe: Pipe,
    /// The file of a file → pipe step.
    _file: Option<Rc<OwnedFd>>,
}

/// Move up to `len` bytes of `file` at `offset` into the (empty) `pipe`. Returns the bytes
/// moved (0: end of file) and the pipe. No timeout: the disk side is bounded by harakiri.
async fn file_to_pipe(
    file: &Rc<OwnedFd>,
    offset: u64,
    len: u32,
    pipe: Pipe,
) -> (io::Result<usize>, Pipe) {
    let entry = opcode::Splice::new(
        types::Fd(file.as_raw_fd()),
        offset as i64,
        types::Fd(pipe.write.as_raw_fd()),
        -1,
        len,
    )
    .build();
    let data = SpliceData {
        pipe,
        _file: Some(file.clone()),
    };
    let (res, data) = Op::submit(entry, data).await;
    (super::cqe_result(res).map(|n| n as usize), data.pipe)
}

/// Move up to `len` bytes from `pipe` into socket `sock` (made `O_NONBLOCK` by the caller:
/// a full socket is `WouldBlock`). `more`: more body follows (`SPLICE_F_MORE`, like
/// `MSG_MORE`). The pipe is `None` if `timeout` ran out: it stays with the orphaned op.
async fn pipe_to_socket(
    pipe: Pipe,
    sock: RawFd,
    len: u32,
    more: bool,
    timeout: Option<Duration>,
) -> (io::Result<usize>, Option<Pipe>) {
    let entry = opcode::Splice::new(
        types::Fd(pipe.read.as_raw_fd()),
        -1,
        types::Fd(sock),
        -1,
        len,
    )
    .flags(if more { libc::SPLICE_F_MORE } else { 0 })
    .build();
    let data = SpliceData { pipe, _file: None };
    match deadline(Op::submit(entry, data), timeout).await {
        Some((res, data)) => (super::cqe_result(res).map(|n| n as usize), Some(data.pipe)),
        None => (Err(io::ErrorKind::TimedOut.into()), None),
    }
}

/// Send `len` bytes of `file` from `offset` to the connected socket `sock` through `pipe`;
/// `sent` grows by the bytes the socket took, also when an error cuts the transfer short.
///
/// Each socket-side wait (a splice into the socket, or a poll for room) is bounded by
/// `timeout`. A file that ends early (it shrank) ends the transfer with `Ok` and fewer bytes:
/// the caller compares `sent` with what it announced. On success the pipe returns to the
/// pool; on error it is closed. Cancel safety: see the module docs.
pub(crate) async fn send_file(
    sock: RawFd,
    file: &Rc<OwnedFd>,
    offset: u64,
    len: u64,
    pipe: Pipe,
    timeout: Option<Duration>,
    sent: &mut u64,
) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(sock, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(sock, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    let res = transfer(sock, file, offset, len, pipe, timeout, sent).await;
    if !flags.contains(OFlag::O_NONBLOCK) {
        // Restore the socket for the connection's next request (ring send and recv).
        fcntl(sock, FcntlArg::F_SETFL(flags))?;
    }
    match res {
        Ok(pipe) => {
            pipe.recycle();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The loop of [`send_file`]; gives the (then empty) pipe back on success.
async fn transfer(
    sock: RawFd,
    file: &Rc<OwnedFd>,
    offset: u64,
    len: u64,
    mut pipe: Pipe,
    timeout: Option<Duration>,
    sent: &mut u64,
) -> io::Result<Pipe> {
    let end = offset + len;
    let mut off = offset;
    while off < end {
        let want = (end - off).min(pipe.capacity as u64) as u32;
        let (res, p) = file_to_pipe(file, off, want, pipe).await;
        pipe = p;
        let n = res?;
        if n == 0 {
            // The file shrank since its statx; the pipe is empty.
            return Ok(pipe);
        }
        off += n as u64;
        let mut left = n;
        while left > 0 {
            // More of the file follows what the pipe holds: let TCP fill its segments.
            let more = off < end;
            let (res, p) = pipe_to_socket(pipe, sock, left as u32, more, timeout).await;
            let Some(p) = p else {
                return Err(io::ErrorKind::TimedOut.into());
            };
            pipe = p;
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    left -= k;
                    *sent += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    super::poll::poll(sock, libc::POLLOUT as u32, timeout).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(pipe)
}
