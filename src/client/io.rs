//! The byte stream under a client connection: ringsgi's [`TcpStream`] (the worker's ring),
//! plain or wrapped in rustls, seen through hyper's `rt::Read`/`rt::Write`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use hyper::rt::{Read, ReadBufCursor, Write};
use rustls::pki_types::ServerName;

use super::error::{Error, ErrorKind, connect_error};
use crate::primitives::{TcpStream, connect, resolve};

/// Decrypted bytes asked for per TLS read (rustls hands out at most a record, 16 KiB).
const TLS_READ: usize = 16 * 1024;

/// A connection's transport.
pub(crate) enum Stream {
    /// Plain TCP: hyper's buffer is filled straight from the ring's receive buffer.
    Plain(TcpStream),
    /// TLS over TCP; `scratch` takes the plaintext before it is copied into hyper's buffer
    /// (hyper's buffer is uninitialised memory, which safe code cannot hand to rustls).
    Tls {
        stream: Box<TlsStream<TcpStream>>,
        scratch: Vec<u8>,
    },
}

impl Stream {
    /// Whether the TLS peer agreed to HTTP/1.1 through ALPN or sent no ALPN (plain: `true`).
    pub(crate) fn is_http11(&self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls { stream, .. } => {
                matches!(stream.get_ref().1.alpn_protocol(), None | Some(b"http/1.1"))
            }
        }
    }
}

/// Resolve `host` (off the core, unless it is an address literal), connect to its
/// addresses in turn, and do the TLS handshake when `tls` is given, all within `timeout`.
pub(crate) async fn open(
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Stream, Error> {
    let deadline = std::time::Instant::now() + timeout;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match super::within(Some(deadline), resolve(bare, port)).await {
            None => return Err(Error::new(ErrorKind::Timeout)),
            Some(Err(e)) => return Err(Error::with(ErrorKind::Resolve, e)),
            Some(Ok(a)) if a.is_empty() => {
                return Err(Error::with(
                    ErrorKind::Resolve,
                    format!("{bare} has no address"),
                ));
            }
            Some(Ok(a)) => a,
        },
    };
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::new(ErrorKind::Timeout));
        }
        match connect(addr, Some(left)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(tcp) = tcp else {
        return Err(connect_error(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no address")
        })));
    };
    let Some(config) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name =
        ServerName::try_from(bare.to_owned()).map_err(|e| Error::with(ErrorKind::InvalidUrl, e))?;
    let handshake = futures_rustls::TlsConnector::from(config).connect(name, tcp);
    match super::within(Some(deadline), handshake).await {
        None => Err(Error::with(ErrorKind::Timeout, "TLS handshake")),
        Some(Err(e)) => Err(Error::with(ErrorKind::Tls, e)),
        Some(Ok(stream)) => Ok(Stream::Tls {
            stream: Box::new(stream),
            scratch: vec![0; TLS_READ],
        }),
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => {
                let max = buf.remaining();
                tcp.poll_read_with(cx, max, |src| buf.put_slice(src))
                    .map_ok(|_| ())
            }
            Stream::Tls { stream, scratch } => {
                let max = buf.remaining().min(scratch.len());
                let n = std::task::ready!(
                    Pin::new(stream.as_mut()).poll_read(cx, &mut scratch[..max])
                )?;
                buf.put_slice(&scratch[..n]);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_close(cx),
            Stream::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}
