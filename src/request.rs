//! `Request`: the protocol-neutral view of one request, and its body stream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::proto::ParseError;
use crate::proto::http::{BodyFraming, ChunkedDecoder, HeadIndex, Version};
use crate::proto::uwsgi::{self, CgiMeta};
use crate::slot::SlotId;
use crate::uring;

/// The peer of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A client on a unix socket (no address).
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => a.fmt(f),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

thread_local! {
    /// The port of every HTTP listener of this worker when they are all TCP listeners on one
    /// port (the usual case): [`Request::local_port`] without a `getsockname` per request.
    static HTTP_PORT: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
}

/// Record the worker's HTTP listeners (descriptor, TCP or not): when all are TCP and bound to
/// one port, that port is every HTTP connection's local port.
pub(crate) fn set_http_listeners(listeners: impl IntoIterator<Item = (RawFd, bool)>) {
    let mut port = None;
    for (fd, tcp) in listeners {
        let fd = crate::sys::borrow_fd(fd);
        let this = tcp
            .then(|| socket2::SockRef::from(&fd).local_addr().ok())
            .flatten()
            .and_then(|a| a.as_socket())
            .map(|a| a.port());
        match (this, port) {
            (None, _) => return HTTP_PORT.set(None),
            (Some(p), Some(q)) if p != q => return HTTP_PORT.set(None),
            (Some(p), _) => port = Some(p),
        }
    }
    HTTP_PORT.set(port);
}

/// One request as the application sees it.
///
/// The head (method, target, headers) lives in the request slot's buffer; the body is a
/// stream read from the connection on demand, so a large upload never sits in memory.
pub struct Request {
    pub(crate) head: Vec<u8>,
    pub(crate) index: HeadIndex,
    pub(crate) peer: Peer,
    pub(crate) worker: usize,
    pub(crate) slot: SlotId,
    pub(crate) body: Body,
    /// What a uwsgi request said about the front server's connection (scheme, server name
    /// and port); `None` on the HTTP listener, where the head says it all. Boxed: 48 bytes
    /// inline would sit in every HTTP request's future, held through the whole request
    /// (mem10k); a uwsgi request pays one allocation.
    pub(crate) cgi: Option<Box<CgiMeta>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("peer", &self.peer)
            .finish()
    }
}

fn text(b: &[u8]) -> &str {
    // httparse only accepts visible ASCII in the method and target.
    std::str::from_utf8(b).unwrap_or("")
}

impl Request {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        text(self.index.method.of(&self.head))
    }

    /// The request target as sent (path and query).
    pub fn target(&self) -> &str {
        text(self.index.target.of(&self.head))
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        text(self.index.path.of(&self.head))
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.index.query.map(|q| text(q.of(&self.head)))
    }

    /// The value of query parameter `name` (first match, not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> &'static str {
        match self.index.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.index.header(&self.head, name)
    }

    /// All headers, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.index
            .headers
            .iter()
            .map(|(n, v)| (text(n.of(&self.head)), v.of(&self.head)))
    }

    /// The client's address. Behind a front server on the uwsgi listener, the client the
    /// front server names (`REMOTE_ADDR`, `REMOTE_PORT`) when that is an IP address.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// `https` when the client reached the front server over TLS (uwsgi `UWSGI_SCHEME`,
    /// `REQUEST_SCHEME` or `HTTPS`), else `http`; always `http` on the HTTP listener, which
    /// does not speak TLS.
    pub fn scheme(&self) -> &str {
        match &self.cgi {
            Some(c) if c.https => "https",
            _ => "http",
        }
    }

    /// The server name the client addressed: uwsgi `SERVER_NAME`, else the `Host` header
    /// without its port; empty if neither was sent.
    pub fn server_name(&self) -> &str {
        match &self.cgi {
            Some(c) => text(c.server_name.of(&self.head)),
            None => text(uwsgi::split_host_port(self.header("host").unwrap_or_default()).0),
        }
    }

    /// The port the client addressed: uwsgi `SERVER_PORT`; on the HTTP listener the `Host`
    /// header's port, or 80 when `Host` names none. `None` when unknown (no `Host`, or a
    /// `SERVER_PORT` that is not a port number).
    pub fn server_port(&self) -> Option<u16> {
        match &self.cgi {
            Some(c) => c.server_port,
            None => {
                let host = self.header("host")?;
                Some(uwsgi::split_host_port(host).1.unwrap_or(80))
            }
        }
    }

    /// The local port of the connection the request arrived on (a TCP listener's port);
    /// `None` on a unix socket and for a uwsgi request (whose front server says it in
    /// [`Request::server_port`]).
    pub fn local_port(&self) -> Option<u16> {
        if self.cgi.is_some() {
            return None;
        }
        if let Some(port) = HTTP_PORT.get() {
            return Some(port);
        }
        let fd = crate::sys::borrow_fd(self.body.fd);
        let sock = socket2::SockRef::from(&fd);
        sock.local_addr().ok()?.as_socket().map(|a| a.port())
    }

    /// The worker (CPU core) serving this request.
    pub fn worker_id(&self) -> usize {
        self.worker
    }

    /// The request slot ("async core") this request holds.
    pub fn slot_id(&self) -> SlotId {
        self.slot
    }

    /// The next piece of the body, `None` at its end. Each call may wait on the client
    /// (bounded by `--socket-timeout`); other requests run meanwhile.
    pub async fn read_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        crate::harakiri::note_wait("reading the request body");
        self.body.read_chunk().await
    }

    /// The whole body, refused with `InvalidData` beyond `limit` bytes.
    pub async fn read_body(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.body.read_chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request body over the handler's limit",
                ));
            }
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }
}

/// Where the body framing stands.
#[derive(Debug)]
pub(crate) enum BodyState {
    /// `Content-Length`: bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// The body has been read to its end (or there was none).
    Done,
}

/// The request body stream over the connection's input buffer.
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) fd: RawFd,
    /// The connection's input buffer, lent for the duration of the request.
    pub(crate) input: Vec<u8>,
    /// Bytes of `input` already consumed (head, body read so far).
    pub(crate) pos: usize,
    pub(crate) state: BodyState,
    pub(crate) timeout: Duration,
    /// `Expect: 100-continue` was sent and `100 Continue` not yet answered.
    pub(crate) continue_pending: bool,
    /// An I/O on the connection was interrupted or failed: it must be closed.
    pub(crate) broken: bool,
    /// A framing error met while reading (answered with its status if nothing was sent).
    pub(crate) error: Option<ParseError>,
    /// Most bytes read from the socket in one `recv`.
    pub(crate) read_size: usize,
    /// Set when the request is over while something still holds this body (a tower service's
    /// body read by a task that outlives its request): no more reads, since the descriptor
    /// may already belong to another connection.
    pub(crate) revoked: Option<std::rc::Rc<std::cell::Cell<bool>>>,
}

impl Body {
    pub(crate) fn new(
        fd: RawFd,
        input: Vec<u8>,
        pos: usize,
        framing: BodyFraming,
        max_body: Option<u64>,
    ) -> Body {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyState::Done,
            BodyFraming::Length(n) => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new(max_body)),
        };
        Body {
            fd,
            input,
            pos,
            state,
            timeout: Duration::from_secs(30),
            continue_pending: false,
            broken: false,
            error: None,
            read_size: 16 * 1024,
            revoked: None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    pub(crate) async fn read_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            let avail = self.input.len() - self.pos;
            match &mut self.state {
                BodyState::Done => return Ok(None),
                BodyState::Length(remaining) => {
                    if avail > 0 {
                        let n = (*remaining).min(avail as u64) as usize;
                        *remaining -= n as u64;
                        if *remaining == 0 {
                            self.state = BodyState::Done;
                        }
                        let start = self.pos;
                        self.pos += n;
                        return Ok(Some(&self.input[start..start + n]));
                    }
                }
                BodyState::Chunked(dec) => {
                    if avail > 0 {
                        let start = self.pos;
                        let step = match dec.decode(&self.input[start..]) {
                            Ok(s) => s,
                            Err(e) => {
                                self.error = Some(e);
                                self.broken = true;
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    e.describe(),
                                ));
                            }
                        };
                        self.pos += step.consumed;
                        if step.done {
                            self.state = BodyState::Done;
                        }
                        if let Some(r) = step.data
                            && !r.is_empty()
                        {
                            return Ok(Some(&self.input[start + r.start..start + r.end]));
                        }
                        if step.done || step.consumed > 0 {
                            continue;
                        }
                    }
                }
            }
            self.fill().await?;
        }
    }

    /// Read more bytes from the socket into `input`.
    async fn fill(&mut self) -> io::Result<()> {
        if self.revoked.as_ref().is_some_and(|r| r.get()) {
            self.broken = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the request this body belongs to is over",
            ));
        }
        if self.continue_pending {
            self.continue_pending = false;
            let (r, _) = uring::send::send_all(
                self.fd,
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                0,
                Some(self.timeout),
            )
            .await;
            if let Err(e) = r {
                self.broken = true;
                return Err(e);
            }
        }
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.input.capacity() / 2 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        if self.input.capacity() - self.input.len() < 1024 {
            self.input.reserve(self.read_size);
        }
        // Mark broken until the recv returns: if this future is dropped mid-read, the input
        // buffer is orphaned in the ring and the connection cannot continue.
        self.broken = true;
        let input = std::mem::take(&mut self.input);
        let (r, input) = uring::recv::recv(self.fd, input, Some(self.timeout)).await;
        self.input = input;
        match r {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed the connection inside the request body",
            )),
            Ok(_) => {
                self.broken = false;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Read and discard the rest of the body so the connection can serve its next request.
    /// Returns false if the connection must be closed instead.
    pub(crate) async fn drain(&mut self, max: u64) -> bool {
        if self.broken {
            return false;
        }
        if let BodyState::Length(n) = self.state
            && n > max
        {
            return false;
        }
        let mut drained = 0u64;
        loop {
            match self.read_chunk().await {
                Ok(Some(c)) => {
                    drained += c.len() as u64;
                    if drained > max {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Parsed;
    use crate::proto::http::{Limits, parse_head};

    /// A request over `head` as conn.rs builds it (no socket: the body is never read).
    fn request(head: &[u8], cgi: Option<CgiMeta>) -> Request {
        let mut index = HeadIndex::default();
        let limits = Limits {
            max_head: head.len(),
            max_body: None,
            max_headers: 16,
        };
        assert!(matches!(
            parse_head(head, &limits, &mut index),
            Ok(Parsed::Complete(_))
        ));
        Request {
            head: head.to_vec(),
            index,
            peer: Peer::Unix,
            worker: 0,
            slot: SlotId(0),
            body: Body::new(-1, Vec::new(), 0, BodyFraming::None, None),
            cgi: cgi.map(Box::new),
        }
    }

    #[test]
    fn http_listener_cgi_facts_come_from_host() {
        let r = request(b"GET / HTTP/1.1\r\nHost: example.org:8080\r\n\r\n", None);
        assert_eq!(
            (r.scheme(), r.server_name(), r.server_port()),
            ("http", "example.org", Some(8080))
        );
        let r = request(b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", None);
        assert_eq!((r.server_name(), r.server_port()), ("[::1]", Some(80)));
        let r = request(b"GET / HTTP/1.0\r\n\r\n", None);
        assert_eq!((r.server_name(), r.server_port()), ("", None));
    }

    #[test]
    fn uwsgi_cgi_facts_come_from_the_vars() {
        let mut p = Vec::new();
        let vars: [(&[u8], &[u8]); 5] = [
            (b"REQUEST_METHOD", b"GET"),
            (b"HTTP_HOST", b"front:81"),
            (b"SERVER_NAME", b"back"),
            (b"SERVER_PORT", b"443"),
            (b"HTTPS", b"on"),
        ];
        uwsgi::encode(&mut p, 0, 0, &vars);
        let mut head = Vec::new();
        let meta = uwsgi::to_http_head(&p[uwsgi::HEADER_LEN..], &mut head).unwrap();
        let r = request(&head, Some(meta));
        assert_eq!(
            (r.scheme(), r.server_name(), r.server_port()),
            ("https", "back", Some(443))
        );
        assert_eq!(r.header("host"), Some(&b"front:81"[..]));
    }
}
