//! Outbound TCP for calling third parties, on the worker's ring, with read and write
//! timeouts; implements `futures-io`'s `AsyncRead`/`AsyncWrite` for ordinary async libraries.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::uring;

type IoFuture = Pin<Box<dyn Future<Output = (io::Result<usize>, Vec<u8>)>>>;

/// Bytes asked for per read when the caller's buffer is smaller.
const READ_CHUNK: usize = 16 * 1024;

/// Connect to `addr` within `timeout` (`None`: the kernel's own limit).
///
/// ```no_run
/// # async fn handler() -> std::io::Result<()> {
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use std::time::Duration;
/// let addr = ringsgi::resolve("localhost", 6379).await?[0];
/// let mut conn = ringsgi::connect(addr, Some(Duration::from_secs(1))).await?;
/// conn.set_read_timeout(Some(Duration::from_secs(2)));
/// conn.write_all(b"PING\r\n").await?;
/// let mut reply = [0u8; 7];
/// conn.read_exact(&mut reply).await?;
/// # Ok(()) }
/// ```
pub async fn connect(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    crate::harakiri::note_wait("connect");
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    let fd: OwnedFd = socket.into();
    uring::connect::connect(fd.as_raw_fd(), SockAddr::from(addr), timeout).await?;
    Ok(TcpStream {
        fd,
        read_timeout: None,
        write_timeout: None,
        read: None,
        rbuf: Vec::new(),
        rpos: 0,
        write: None,
        broken: false,
    })
}

/// A connected TCP stream whose I/O goes through the worker's ring.
///
/// Reads and writes wait at most their timeout (`ErrorKind::TimedOut`). Dropping the stream
/// with an operation in flight cancels it; its buffer is freed when the kernel is done.
pub struct TcpStream {
    fd: OwnedFd,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The receive in flight, if any.
    read: Option<IoFuture>,
    /// Received bytes not yet handed to the caller: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// The send in flight, if any.
    write: Option<IoFuture>,
    /// A timed-out or failed operation may have moved bytes: no further I/O.
    broken: bool,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl TcpStream {
    /// Limit each read's wait (`None`: no limit).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Limit each write's wait (`None`: no limit).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    fn check(&self) -> io::Result<()> {
        if self.broken {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream broken by an earlier timeout or error",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl TcpStream {
    /// Read up to `max` bytes and hand them to `put` without an intermediate copy (the HTTP
    /// client's adapter fills hyper's buffer this way). `Ready(Ok(0))`: end of stream.
    pub(crate) fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        put: impl FnOnce(&[u8]),
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.rpos < self.rbuf.len() {
                let n = max.min(self.rbuf.len() - self.rpos);
                put(&self.rbuf[self.rpos..self.rpos + n]);
                self.rpos += n;
                return Poll::Ready(Ok(n));
            }
            self.check()?;
            if max == 0 {
                return Poll::Ready(Ok(0));
            }
            crate::harakiri::note_wait("TcpStream read");
            let fut = self.read.get_or_insert_with(|| {
                let mut v = std::mem::take(&mut self.rbuf);
                v.clear();
                v.reserve(max.max(READ_CHUNK));
                Box::pin(uring::recv::recv(self.fd.as_raw_fd(), v, self.read_timeout))
            });
            let (res, v) = std::task::ready!(fut.as_mut().poll(cx));
            self.read = None;
            self.rbuf = v;
            self.rpos = 0;
            match res {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => continue,
                Err(e) => {
                    self.broken = e.kind() == io::ErrorKind::TimedOut;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.poll_read_with(cx, len, |src| buf[..src.len()].copy_from_slice(src))
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check()?;
        crate::harakiri::note_wait("TcpStream write");
        let fut = this.write.get_or_insert_with(|| {
            Box::pin(uring::send::send(
                this.fd.as_raw_fd(),
                buf.to_vec(),
                0,
                this.write_timeout,
            ))
        });
        let (res, _) = std::task::ready!(fut.as_mut().poll(cx));
        this.write = None;
        if let Err(e) = &res {
            this.broken = e.kind() == io::ErrorKind::TimedOut;
        }
        Poll::Ready(res)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(fut) = this.write.as_mut() {
            let (res, _) = std::task::ready!(fut.as_mut().poll(cx));
            this.write = None;
            res?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        let r = socket2::SockRef::from(&self.fd).shutdown(Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
