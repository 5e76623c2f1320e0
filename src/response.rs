//! `Response`: what the application sends back, whole or streamed.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::proto::http::{self, ResponseFraming, Version};
use crate::uring;
use crate::writer;

/// Where the response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent; headers may still be added.
    Fresh,
    /// Streaming: the head is written (or buffered with the first chunk).
    Streaming(ResponseFraming),
    /// The last byte has been written.
    Finished,
}

/// The response of one request.
///
/// Either [`send`](Response::send) a whole body, or [`start`](Response::start) a stream and
/// [`write`](Response::write) chunks: each write waits until the client's socket took the
/// bytes, so every chunk is a point where the worker's other requests run (uWSGI's
/// "every yield is a switch").
pub struct Response {
    pub(crate) fd: RawFd,
    /// The slot's output buffer: response head, then small bodies and chunks.
    pub(crate) out: Vec<u8>,
    /// Application headers, serialized as `Name: value\r\n` lines.
    pub(crate) headers: Vec<u8>,
    pub(crate) status: u16,
    state: State,
    pub(crate) version: Version,
    /// Whether the connection may serve another request after this one.
    pub(crate) keep_alive: bool,
    /// `HEAD` request: send the head only.
    pub(crate) head_only: bool,
    /// Body bytes written (after framing is removed).
    pub(crate) body_bytes: u64,
    /// Bytes written to the socket, head included.
    pub(crate) wire_bytes: u64,
    pub(crate) timeout: Duration,
    /// A send was in flight when the future was dropped, or failed: close the connection.
    pub(crate) broken: bool,
    /// A header the application gave was invalid: the response fails at send time.
    bad_header: Option<String>,
    /// Stream by closing the connection, never chunked: set on the uwsgi listener, whose
    /// front server (nginx's uwsgi module) reads the body to EOF and does not de-chunk.
    pub(crate) close_delimited: bool,
    /// The last send of a kept-alive response may complete after `send`/`finish` returned
    /// (set by the connection loop, which settles it: see [`uring::send::Sending`]).
    pub(crate) defer_last: bool,
    /// That last send, submitted and not yet settled.
    pub(crate) sending: Option<uring::send::Sending>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("state", &self.state)
            .finish()
    }
}

/// Whether `b` may appear in a header name (RFC 9110 §5.6.2 `tchar`: visible ASCII but the
/// delimiters), by table: the check runs for every byte of every header an app sets.
fn is_tchar(b: u8) -> bool {
    const TABLE: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0x21;
        while i < 0x7f {
            t[i] = true;
            i += 1;
        }
        let delimiters = b"()<>@,;:\\\"/[]?={}";
        let mut j = 0;
        while j < delimiters.len() {
            t[delimiters[j] as usize] = false;
            j += 1;
        }
        t
    };
    TABLE[b as usize]
}

/// Headers the server writes itself; applications may not set them.
const RESERVED: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "server",
];

thread_local! {
    /// Output buffers of finished responses, last in first out, so that the hot path reuses
    /// the same few and allocates nothing; a response takes one when it writes its head, not
    /// before: a request that sleeps holds none (10,000 sleeping requests held 10,000 empty
    /// 256-byte buffers when each slot kept its own; mem10k).
    static SPARE_OUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// The same for the buffers of application headers, taken at the first `header`.
    static SPARE_HEADERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Most spare buffers of each kind a worker keeps (more are freed).
const SPARE_MAX: usize = 256;
/// Largest buffer kept for reuse; a bigger one (a large body sent whole) is shrunk to this.
const KEEP_CAPACITY: usize = 16 * 1024;
/// The largest last send of a kept-alive response that is not awaited ([`Response::defer_last`]).
/// A larger one is awaited as every other send: the kernel may take only part of it (a full
/// socket buffer), and what it leaves must go out as the client reads, not when the
/// connection's next receive ends; its slot, harakiri deadline, log figures and buffer then
/// cover it to its last byte, as before. 16 KiB: a hello, a JSON answer, a small page.
pub(crate) const DEFER_MAX: usize = KEEP_CAPACITY;

/// A spare buffer from `pool` (or a new, empty one).
fn take_spare(pool: &'static std::thread::LocalKey<RefCell<Vec<Vec<u8>>>>) -> Vec<u8> {
    pool.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Give back the output buffer of a response whose last send was settled after the response
/// itself was dropped ([`Response::defer_last`]).
pub(crate) fn recycle_out(buf: Vec<u8>) {
    give_spare(&SPARE_OUT, buf);
}

/// Keep `buf` in `pool` for the next response.
fn give_spare(pool: &'static std::thread::LocalKey<RefCell<Vec<Vec<u8>>>>, mut buf: Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    buf.clear();
    if buf.capacity() > KEEP_CAPACITY {
        buf.shrink_to(KEEP_CAPACITY);
    }
    let _ = pool.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < SPARE_MAX {
            p.push(buf);
        }
    });
}

impl Drop for Response {
    fn drop(&mut self) {
        give_spare(&SPARE_OUT, std::mem::take(&mut self.out));
        give_spare(&SPARE_HEADERS, std::mem::take(&mut self.headers));
    }
}

impl Response {
    /// A response on `fd`; its buffers come from the worker's spares when it first writes.
    pub(crate) fn new(
        fd: RawFd,
        version: Version,
        keep_alive: bool,
        head_only: bool,
        timeout: Duration,
    ) -> Response {
        Response {
            fd,
            out: Vec::new(),
            headers: Vec::new(),
            status: 200,
            state: State::Fresh,
            version,
            keep_alive,
            head_only,
            body_bytes: 0,
            wire_bytes: 0,
            timeout,
            broken: false,
            bad_header: None,
            close_delimited: false,
            defer_last: false,
            sending: None,
        }
    }

    /// Add a header. `Content-Length`, `Transfer-Encoding`, `Connection`, `Date` and `Server`
    /// are managed by the server and refused, as are names and values with CR, LF or NUL;
    /// a refused header makes the next `send`/`start` fail with `InvalidInput`.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
        let value_ok = !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0);
        if !name_ok || !value_ok {
            self.bad_header = Some(format!("invalid header {name:?}"));
        } else if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            self.bad_header = Some(format!("header {name} is set by the server"));
        } else if self.state == State::Fresh {
            if self.headers.capacity() == 0 {
                self.headers = take_spare(&SPARE_HEADERS);
            }
            self.headers.extend_from_slice(name.as_bytes());
            self.headers.extend_from_slice(b": ");
            self.headers.extend_from_slice(value);
            self.headers.extend_from_slice(b"\r\n");
        }
        self
    }

    /// Append head lines `Name: value\r\n` already checked as [`header`](Self::header)
    /// checks them, none of them a header the server sets (the Python engine's headers,
    /// checked when the app gave them).
    #[cfg(feature = "python")]
    pub(crate) fn extend_headers(&mut self, lines: &[u8]) {
        if self.state == State::Fresh {
            if self.headers.capacity() == 0 {
                self.headers = take_spare(&SPARE_HEADERS);
            }
            self.headers.extend_from_slice(lines);
        }
    }

    /// The status set so far (200 until `send`/`start`).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether any byte of the response has been produced.
    pub fn is_started(&self) -> bool {
        self.state != State::Fresh
    }

    /// Whether the response was started with a length ([`start_sized`](Self::start_sized)).
    #[cfg_attr(not(feature = "python"), allow(dead_code))]
    pub(crate) fn is_sized(&self) -> bool {
        matches!(self.state, State::Streaming(ResponseFraming::Length(_)))
    }

    /// Whether the response is complete.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Body bytes written so far.
    pub fn bytes_sent(&self) -> u64 {
        self.body_bytes
    }

    fn check_fresh(&self) -> io::Result<()> {
        if let Some(why) = &self.bad_header {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why.clone()));
        }
        if self.state != State::Fresh {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "response already started",
            ));
        }
        Ok(())
    }

    fn write_head(&mut self, framing: ResponseFraming) {
        // A worker that is draining (reload, recycling, stop) tells the client to reconnect.
        if crate::conn::draining() {
            self.keep_alive = false;
        }
        if self.out.capacity() == 0 {
            self.out = take_spare(&SPARE_OUT);
        }
        let headers = std::mem::take(&mut self.headers);
        writer::with_date(|date| {
            http::encode_head(
                &mut self.out,
                self.version,
                self.status,
                &headers,
                framing,
                self.keep_alive,
                date,
            )
        });
        self.headers = headers;
    }

    /// Send a complete response with a `Content-Length` body.
    ///
    /// Returns once the bytes are handed to the worker's ring. On a kept-alive connection the
    /// send itself is then checked by the server before the connection's next request (a
    /// partial send is finished, a failed one closes the connection), so an error that only
    /// the completion reports (the client gone) is not returned here.
    pub async fn send(&mut self, status: u16, body: impl AsRef<[u8]>) -> io::Result<()> {
        self.check_fresh()?;
        let body = body.as_ref();
        self.status = status;
        let no_body = status < 200 || status == 204 || status == 304;
        let framing = if no_body {
            ResponseFraming::NoBody
        } else {
            ResponseFraming::Length(body.len() as u64)
        };
        self.out.clear();
        self.write_head(framing);
        if !self.head_only && !no_body {
            self.out.extend_from_slice(body);
            self.body_bytes = body.len() as u64;
        }
        self.state = State::Finished;
        self.flush().await
    }

    /// Begin a streamed response: chunked for HTTP/1.1 clients, delimited by closing the
    /// connection for HTTP/1.0 ones and on the uwsgi listener. The head goes out with the
    /// first [`write`](Self::write).
    pub fn start(&mut self, status: u16) -> io::Result<()> {
        self.check_fresh()?;
        self.status = status;
        let framing = if status < 200 || status == 204 || status == 304 {
            ResponseFraming::NoBody
        } else if self.version == Version::Http11 && !self.close_delimited {
            ResponseFraming::Chunked
        } else {
            self.keep_alive = false;
            ResponseFraming::CloseDelimited
        };
        self.out.clear();
        self.write_head(framing);
        self.state = State::Streaming(framing);
        Ok(())
    }

    /// Begin a response whose body length is known in advance (static files): the head
    /// carries `Content-Length: len` and goes out with the first
    /// [`write_filled`](Self::write_filled), or with [`finish`](Self::finish) for HEAD.
    ///
    /// Crate-internal because `len` is a promise: [`finish`](Self::finish) fails and the
    /// connection is closed if fewer bytes were written. Applications use `send` or `start`,
    /// where the server computes the framing itself.
    pub(crate) fn start_sized(&mut self, status: u16, len: u64) -> io::Result<()> {
        self.check_fresh()?;
        self.status = status;
        let framing = if status < 200 || status == 204 || status == 304 {
            ResponseFraming::NoBody
        } else {
            ResponseFraming::Length(len)
        };
        self.out.clear();
        self.write_head(framing);
        self.state = State::Streaming(framing);
        Ok(())
    }

    /// Let `fill` append body bytes straight into the output buffer (behind the head while it
    /// is still pending), then send them: a file is read into the buffer the socket is fed
    /// from, with no copy, and a small file leaves in one send together with its head.
    ///
    /// `fill` gets the buffer by value (ring operations own their buffers) and returns it
    /// with its result. Returns the body bytes appended. Only after
    /// [`start_sized`](Self::start_sized); more bytes than announced is an error.
    pub(crate) async fn write_filled<F, Fut>(&mut self, fill: F) -> io::Result<usize>
    where
        F: FnOnce(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = (io::Result<usize>, Vec<u8>)>,
    {
        crate::harakiri::note_wait("writing the response");
        let State::Streaming(ResponseFraming::Length(total)) = self.state else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write_filled() needs start_sized() with a body",
            ));
        };
        // Broken until the bytes are on the socket: if this future is dropped, or `fill`
        // fails, the response cannot be completed and the connection must close.
        self.broken = true;
        let out = std::mem::take(&mut self.out);
        let before = out.len();
        let (r, out) = fill(out).await;
        self.out = out;
        r?;
        let n = self.out.len().saturating_sub(before);
        if self.body_bytes + n as u64 > total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "body longer than its Content-Length",
            ));
        }
        self.body_bytes += n as u64;
        self.flush().await?;
        self.broken = false;
        Ok(n)
    }

    /// Send `len` bytes of `file` from `offset` as the body, zero-copy: the pending head goes
    /// out first with a plain send, then the body is spliced file → `pipe` → socket
    /// ([`uring::splice::send_file`]), each step bounded by the socket timeout.
    ///
    /// Only after [`start_sized`](Self::start_sized), not for HEAD; more bytes than announced
    /// is an error. A file that ends early leaves the body short: [`finish`](Self::finish)
    /// then fails and the connection closes. If this future is dropped or fails, the response
    /// is broken (the connection must close).
    pub(crate) async fn splice_body(
        &mut self,
        file: &std::rc::Rc<std::os::fd::OwnedFd>,
        offset: u64,
        len: u64,
        pipe: uring::splice::Pipe,
    ) -> io::Result<()> {
        crate::harakiri::note_wait("writing the response");
        let State::Streaming(ResponseFraming::Length(total)) = self.state else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "splice_body() needs start_sized() with a body",
            ));
        };
        if self.head_only || self.body_bytes + len > total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "body longer than its Content-Length",
            ));
        }
        // The head, before the first body byte.
        self.flush().await?;
        self.broken = true;
        let before = self.body_bytes;
        let r = uring::splice::send_file(
            self.fd,
            file,
            offset,
            len,
            pipe,
            Some(self.timeout),
            &mut self.body_bytes,
        )
        .await;
        self.wire_bytes += self.body_bytes - before;
        r?;
        self.broken = false;
        Ok(())
    }

    /// Write one chunk of a streamed response and wait until the socket took it.
    pub async fn write(&mut self, chunk: impl AsRef<[u8]>) -> io::Result<()> {
        crate::harakiri::note_wait("writing the response");
        let chunk = chunk.as_ref();
        let State::Streaming(framing) = self.state else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write() needs start() first, and not after finish()",
            ));
        };
        if chunk.is_empty() {
            return Ok(());
        }
        if !self.head_only {
            match framing {
                ResponseFraming::Chunked => {
                    http::encode_chunk_header(&mut self.out, chunk.len());
                    self.out.extend_from_slice(chunk);
                    self.out.extend_from_slice(b"\r\n");
                }
                ResponseFraming::CloseDelimited => self.out.extend_from_slice(chunk),
                ResponseFraming::NoBody | ResponseFraming::Length(_) => {}
            }
            self.body_bytes += chunk.len() as u64;
        }
        self.flush().await
    }

    /// End a streamed response (writes the last chunk). Called by the server if the
    /// application returns without it.
    pub async fn finish(&mut self) -> io::Result<()> {
        match self.state {
            State::Streaming(framing) => {
                if let ResponseFraming::Length(n) = framing
                    && !self.head_only
                    && self.body_bytes != n
                {
                    // The client counts on n bytes: only closing tells it the body is cut.
                    self.keep_alive = false;
                    self.state = State::Finished;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("body ended after {} of {n} bytes", self.body_bytes),
                    ));
                }
                if framing == ResponseFraming::Chunked && !self.head_only {
                    self.out.extend_from_slice(http::LAST_CHUNK);
                }
                self.state = State::Finished;
                self.flush().await
            }
            State::Finished => Ok(()),
            State::Fresh => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "finish() without a started response",
            )),
        }
    }

    /// End a streamed response with trailer fields (`trailers`: `Name: value\r\n` lines, checked
    /// by the caller). Only a chunked body can carry them (in its last chunk, RFC 9112 §7.1.2);
    /// with any other framing they are dropped and this is [`finish`](Self::finish).
    pub(crate) async fn finish_with_trailers(&mut self, trailers: &[u8]) -> io::Result<()> {
        if trailers.is_empty()
            || self.head_only
            || self.state != State::Streaming(ResponseFraming::Chunked)
        {
            return self.finish().await;
        }
        self.out.extend_from_slice(b"0\r\n");
        self.out.extend_from_slice(trailers);
        self.out.extend_from_slice(b"\r\n");
        self.state = State::Finished;
        self.flush().await
    }

    /// Whether `flush` submits `out` without awaiting it: the last send of a complete
    /// kept-alive response, at most [`DEFER_MAX`] bytes, when the connection loop settles it.
    fn defers_last_send(&self) -> bool {
        self.defer_last
            && self.keep_alive
            && self.state == State::Finished
            && self.out.len() <= DEFER_MAX
    }

    /// Write `out` to the socket. The last bytes of a complete kept-alive response are only
    /// submitted when the connection loop settles the send itself ([`Self::defer_last`]):
    /// they go to the kernel with the connection's next receive.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.defers_last_send() {
            debug_assert!(self.sending.is_none(), "a finished response sends once");
            let out = std::mem::take(&mut self.out);
            self.wire_bytes += out.len() as u64;
            self.sending = Some(uring::send::send_later(self.fd, out));
            return Ok(());
        }
        self.broken = true;
        let out = std::mem::take(&mut self.out);
        let len = out.len() as u64;
        let (r, mut out) = uring::send::send_all(self.fd, out, 0, Some(self.timeout)).await;
        out.clear();
        self.out = out;
        r?;
        self.broken = false;
        self.wire_bytes += len;
        Ok(())
    }

    /// Answer with an error status and a short text body (used by the server itself).
    pub(crate) async fn send_error(&mut self, status: u16) -> io::Result<()> {
        self.headers.clear();
        self.bad_header = None;
        self.state = State::Fresh;
        self.keep_alive = false;
        let reason = ::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        self.header("Content-Type", "text/plain; charset=utf-8");
        let body = format!("{status} {reason}\n");
        self.send(status, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::{DEFER_MAX, Response, State, is_tchar};
    use crate::proto::http::{ResponseFraming, Version};

    #[test]
    fn only_a_small_last_send_of_a_kept_alive_response_is_deferred() {
        let finished = |keep_alive: bool, defer_last: bool, len: usize| {
            let timeout = std::time::Duration::from_secs(1);
            let mut r = Response::new(-1, Version::Http11, keep_alive, false, timeout);
            r.defer_last = defer_last;
            r.state = State::Finished;
            r.out = vec![b'x'; len];
            r
        };
        assert!(finished(true, true, 120).defers_last_send());
        assert!(finished(true, true, DEFER_MAX).defers_last_send());
        // Larger: awaited, so a partial send is finished while the client reads.
        assert!(!finished(true, true, DEFER_MAX + 1).defers_last_send());
        assert!(!finished(false, true, 120).defers_last_send());
        assert!(!finished(true, false, 120).defers_last_send());
        let mut streaming = finished(true, true, 120);
        streaming.state = State::Streaming(ResponseFraming::Length(120));
        assert!(!streaming.defers_last_send());
    }

    #[test]
    fn tchar_table_is_visible_ascii_without_the_delimiters() {
        for b in 0..=255u8 {
            let want = b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
            assert_eq!(is_tchar(b), want, "byte {b:#04x}");
        }
        assert!("Content-Type".bytes().all(is_tchar));
        assert!(!"Bad Name".bytes().all(is_tchar));
    }
}
