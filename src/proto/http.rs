//! HTTP/1.1 on the wire: request heads in, chunked bodies in, response heads out.
//!
//! Everything here is a pure function over bytes (see the [module invariant](super)):
//!
//! - [`parse_head`] indexes a request head in the caller's buffer. It records [`Span`]s
//!   instead of copying, so a [`HeadIndex`] allocated once per request slot is reused for
//!   every request: parsing allocates nothing in steady state.
//! - [`ChunkedDecoder`] is a resumable state machine for `Transfer-Encoding: chunked`
//!   request bodies. It accepts input split at any byte boundary, down to one byte per call.
//! - [`encode_head`], [`encode_chunk_header`] and [`LAST_CHUNK`] write responses.
//!
//! The parser is strict where leniency opens request smuggling (body framing: RFC 9112 §6.3)
//! and follows the RFC's "MAY accept" allowances where they are harmless (leading empty
//! lines, a bare LF ending a head line).

use std::mem::MaybeUninit;
use std::ops::Range;

use super::{ParseError, Parsed};

/// The most header slots [`parse_head`] puts on its stack, whatever [`Limits::max_headers`]
/// says. 128 slots of `httparse::Header` are 4 KiB of stack, which is the most we want to
/// reserve in a parser that runs inside every request task.
pub const MAX_HEADERS: usize = 128;

/// The longest chunk-size line (size digits plus extensions, CRLF excluded) that
/// [`ChunkedDecoder`] accepts.
///
/// RFC 9112 §7.1.1: "A server ought to limit the total length of chunk extensions received
/// in a request to an amount reasonable for the services provided, in the same way that it
/// applies length limitations and timeouts for other parts of a message, and generate an
/// appropriate 4xx (Client Error) response if that amount is exceeded."
pub const MAX_CHUNK_LINE: usize = 4096;

/// The largest trailer section (all field lines and their CRLFs, the final CRLF included)
/// that [`ChunkedDecoder`] skips over before answering [`ParseError::HeadTooLarge`].
///
/// Trailers are read and discarded (RFC 9112 §7.1.2: "A recipient that removes the chunked
/// coding from a message MAY selectively retain or discard the received trailer fields"),
/// but an unbounded trailer would be an unbounded head.
pub const MAX_TRAILER: usize = 8 * 1024;

/// The interim response to `Expect: 100-continue` (RFC 9110 §10.1.1, §15.2.1), sent before
/// reading the body of a request whose [`HeadIndex::expect_continue`] is set.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The terminating chunk: b"0\r\n\r\n".
///
/// RFC 9112 §7.1: `last-chunk = 1*("0") [ chunk-ext ] CRLF`, followed by an empty
/// `trailer-section` and the final `CRLF`.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// Request heads
// ---------------------------------------------------------------------------------------------

/// Byte range of a parsed element, relative to the start of the buffer given to `parse_head`.
///
/// 32-bit offsets keep a header pair at 16 bytes; [`parse_head`] never looks past
/// `u32::MAX` bytes, so every span fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Number of bytes.
    pub len: u32,
}

impl Span {
    fn new(start: usize, len: usize) -> Span {
        // parse_head caps its window at u32::MAX bytes, so these conversions are lossless.
        debug_assert!(start + len <= u32::MAX as usize);
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    /// The span as a `usize` range, for slicing.
    pub fn range(self) -> Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }

    /// The bytes this span covers in `buf`.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than the buffer the span was parsed from.
    pub fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.range()]
    }
}

/// The HTTP version of a request. Only 1.0 and 1.1 are served; anything else is answered
/// with [`ParseError::VersionNotSupported`] (505).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// `HTTP/1.0`: no `Host` required, no chunked coding, close after the response unless
    /// the client asked for `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: persistent connections by default (RFC 9112 §9.3).
    #[default]
    Http11,
}

/// How the request body is framed.
///
/// RFC 9112 §6.3 decides the length of a request body from exactly two header fields:
/// `Transfer-Encoding` and `Content-Length`. "If this is a request message and none of the
/// above are true, then the message body length is zero (no message body is present)."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFraming {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` was sent.
    #[default]
    None,
    /// `Content-Length: N` (`Length(0)` is kept as sent; it is an empty body).
    Length(u64),
    /// `Transfer-Encoding: chunked`: decode with [`ChunkedDecoder`].
    Chunked,
}

/// Limits applied while parsing (from config: --buffer-size, --limit-post).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request head, leading empty lines and the final CRLF included
    /// (`--buffer-size`). Beyond it the request is refused with 414 or 431.
    pub max_head: usize,
    /// The largest request body (`--limit-post`); `None` for no limit. A larger body is
    /// refused with 413, from the `Content-Length` or while decoding chunks.
    pub max_body: Option<u64>,
    /// The most header fields in one request; more is 431. Capped at [`MAX_HEADERS`].
    pub max_headers: usize,
}

/// The index of a parsed request head: spans into the caller's buffer. Allocated once per request
/// slot and reused (clear() keeps capacity), so parsing allocates nothing in steady state.
#[derive(Debug, Default)]
pub struct HeadIndex {
    /// The method token, e.g. `GET`.
    pub method: Span,
    /// The raw request-target as sent.
    pub target: Span,
    /// The path: the target up to `?` (origin-form), or for absolute-form
    /// `http://h/p?q` the path part `/p`. `*` for an asterisk-form `OPTIONS *`.
    ///
    /// Empty for an absolute-form target without a path (`http://h` or `http://h?q`);
    /// RFC 3986 §6.2.3 makes that equivalent to `/`.
    pub path: Span,
    /// The query after `?`, without the `?`; `Some` of an empty span for a bare trailing `?`.
    /// A fragment (`#...`) is not split off: clients must not send one (RFC 9112 §3.2 has
    /// no fragment in any request-target form).
    pub query: Option<Span>,
    /// The request's HTTP version. (Default: Http11)
    pub version: Version,
    /// `(name, value)` in order, value trimmed of OWS. Repeated fields stay separate.
    pub headers: Vec<(Span, Span)>,
    /// How the body that follows the head is framed.
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one. HTTP/1.1 defaults to
    /// true unless a `Connection: close` token; HTTP/1.0 defaults to false unless
    /// `Connection: keep-alive` (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` (case-insensitive) on HTTP/1.1: send [`CONTINUE_100`] before
    /// reading the body. RFC 9110 §10.1.1: "A server that receives a 100-continue
    /// expectation in an HTTP/1.0 request MUST ignore that expectation."
    pub expect_continue: bool,
    /// A `Forwarded` or `X-Forwarded-For` field is present (the server looks for the client
    /// behind a trusted proxy only then: no header lookup per request otherwise).
    pub forwarded: bool,
    /// Bytes of the head including the final CRLFCRLF; the body or the next pipelined request
    /// starts here.
    pub head_len: usize,
}

impl HeadIndex {
    /// Reset to the default state, keeping the capacity of [`HeadIndex::headers`].
    pub fn clear(&mut self) {
        self.method = Span::default();
        self.target = Span::default();
        self.path = Span::default();
        self.query = None;
        self.version = Version::default();
        self.headers.clear();
        self.framing = BodyFraming::default();
        self.keep_alive = false;
        self.expect_continue = false;
        self.forwarded = false;
        self.head_len = 0;
    }

    /// The value of the first header named `name` (ASCII case-insensitive, as field names
    /// are: RFC 9110 §5.1), from the buffer the head was parsed from.
    pub fn header<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.of(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.of(buf))
    }
}

/// Parse a request head at the start of `buf`. On Complete(n), `out` is filled and n == out.head_len.
/// Partial: the head is not complete yet and buf.len() < limits.max_head.
///
/// `out` is cleared first; after `Partial` or an error its contents are unspecified.
/// Call again with the same buffer grown by newly read bytes: the parse starts over, which
/// is cheaper than it sounds because heads are small and almost always arrive whole.
///
/// Errors, each answered with its status and a closed connection:
/// - syntax ([`ParseError::Malformed`], 400), including obsolete line folding (RFC 9112
///   §5.2: a server "MUST either reject the message by sending a 400 (Bad Request)... or
///   replace each received obs-fold with one or more SP octets") and a target that is not
///   origin-form, absolute-form or `OPTIONS *`;
/// - [`ParseError::UriTooLong`] (414) when the request line alone does not fit in
///   `max_head`, else [`ParseError::HeadTooLarge`] (431) when the head does not, or has more
///   than `max_headers` fields;
/// - [`ParseError::VersionNotSupported`] (505) for `HTTP/x.y` other than 1.0 and 1.1;
/// - body framing: [`ParseError::AmbiguousLength`], [`ParseError::BodyTooLarge`],
///   [`ParseError::UnsupportedTransferCoding`];
/// - [`ParseError::MissingHost`] for HTTP/1.1 without `Host`.
pub fn parse_head(
    buf: &[u8],
    limits: &Limits,
    out: &mut HeadIndex,
) -> Result<Parsed<usize>, ParseError> {
    out.clear();
    // Never look past max_head (bounded work per call) nor past what a u32 Span can address.
    let cap = limits.max_head.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(cap)];

    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let slots = &mut slots[..limits.max_headers.min(MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= cap {
                Err(too_large(window))
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(bad_version(window, req.path)),
        Err(e) => return Err(ParseError::Malformed(describe(e))),
    };

    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        // httparse fills all three before it reports Complete.
        return Err(ParseError::Malformed("incomplete request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    out.version = version;
    out.head_len = head_len;
    out.method = span_of(window, method.as_bytes());
    out.target = span_of(window, target.as_bytes());
    set_path_and_query(out, method.as_bytes(), target.as_bytes())?;

    let mut hosts = 0usize;
    let mut content_length: Option<u64> = None;
    let mut te = TransferCodings::default();
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;

    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        out.headers
            .push((span_of(window, name), span_of(window, value)));

        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: "a recipient MAY either reject the message as invalid or replace
            // the duplicated field values with a single valid Content-Length field containing
            // that decimal value" -- we accept repeats of one value and refuse the rest.
            let n = parse_content_length(value)?;
            match content_length {
                Some(prev) if prev != n => return Err(ParseError::AmbiguousLength),
                _ => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te.add(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            // RFC 9110 §7.6.1: `Connection = #connection-option`, case-insensitive tokens.
            for token in list_elements(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            // RFC 9110 §10.1.1: `Expect = #expectation`; "The expectation token is
            // case-insensitive".
            expect_continue |=
                list_elements(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"));
        } else if name.eq_ignore_ascii_case(b"forwarded")
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
        {
            out.forwarded = true;
        }
    }

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message that
    // contains more than one Host header field line or a Host header field with an invalid
    // field value."
    if hosts > 1 {
        return Err(ParseError::Malformed("more than one Host header"));
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(ParseError::MissingHost);
    }

    out.framing = if te.present {
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty,
        // even if a Content-Length is present, and close the connection after processing the
        // message."
        if version == Version::Http10 {
            return Err(ParseError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.3: "If a message is received with both a Transfer-Encoding and a
        // Content-Length header field, the Transfer-Encoding overrides the Content-Length.
        // Such a message might indicate an attempt to perform request smuggling (Section 11.2)
        // or response splitting (Section 11.1) and ought to be handled as an error." We refuse.
        if content_length.is_some() {
            return Err(ParseError::AmbiguousLength);
        }
        te.check()?;
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        if limits.max_body.is_some_and(|max| n > max) {
            return Err(ParseError::BodyTooLarge);
        }
        BodyFraming::Length(n)
    } else {
        BodyFraming::None
    };

    // RFC 9112 §9.3: "If the "close" connection option is present, the connection will not
    // persist after the current response; else, if the received protocol is HTTP/1.1 (or
    // later), the connection will persist after the current response; else, if the received
    // protocol is HTTP/1.0, the "keep-alive" connection option is present, ... the connection
    // will persist after the current response; otherwise, the connection will close".
    out.keep_alive = !close && (version == Version::Http11 || keep_alive_token);
    out.expect_continue = expect_continue && version == Version::Http11;
    Ok(Parsed::Complete(head_len))
}

/// The offset span of `part`, a subslice of `buf` handed back by httparse.
fn span_of(buf: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    debug_assert!(start + part.len() <= buf.len(), "span outside the buffer");
    Span::new(start, part.len())
}

/// Strip optional whitespace (RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1), trimmed, empty ones skipped:
/// "a recipient MUST accept empty list elements".
fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The head did not end within `max_head` bytes: 414 if even the request line did not,
/// else 431.
fn too_large(window: &[u8]) -> ParseError {
    // RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line SHOULD
    // ignore at least one empty line (CRLF) received prior to the request-line" -- they are
    // not part of the request line.
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    if window[start..].contains(&b'\n') {
        // RFC 6585 §5: 431 "the server is unwilling to process the request because its header
        // fields are too large".
        ParseError::HeadTooLarge
    } else {
        // RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes
        // to parse MUST respond with a 414 (URI Too Long) status code".
        ParseError::UriTooLong
    }
}

/// httparse refused the version token. RFC 9110 §15.6.6: 505 "indicates that the server does
/// not support, or refuses to support, the major version of HTTP that was used in the request
/// message" -- but only for something that *is* an HTTP version (`HTTP/2.0`, `HTTP/1.2`,
/// `HTTP/3`); any other token there is a malformed request line.
fn bad_version(window: &[u8], target: Option<&str>) -> ParseError {
    let Some(target) = target else {
        return ParseError::VersionNotSupported;
    };
    // The default ParserConfig allows exactly one SP between target and version.
    let start = span_of(window, target.as_bytes()).range().end + 1;
    let rest = window.get(start..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    // RFC 9112 §2.3: `HTTP-version = HTTP-name "/" DIGIT "." DIGIT`; HTTP/2 and HTTP/3 spell
    // theirs without the minor digit, so accept that shape too.
    match &rest[..end] {
        [b'H', b'T', b'T', b'P', b'/', d] if d.is_ascii_digit() => ParseError::VersionNotSupported,
        [b'H', b'T', b'T', b'P', b'/', d1, b'.', d2]
            if d1.is_ascii_digit() && d2.is_ascii_digit() =>
        {
            ParseError::VersionNotSupported
        }
        // A version cut off by the end of the buffer: it started like one.
        [b'H', b'T', b'T', b'P', b'/', d, b'.'] if d.is_ascii_digit() && end == rest.len() => {
            ParseError::VersionNotSupported
        }
        _ => ParseError::Malformed("invalid HTTP version"),
    }
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "invalid header name (or obsolete line folding, RFC 9112 §5.2)"
        }
        httparse::Error::HeaderValue => "invalid byte in a header value",
        httparse::Error::NewLine => "invalid line ending (CR not followed by LF)",
        httparse::Error::Token => "invalid method or request-target in the request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::Status => "invalid status line",
        httparse::Error::TooManyHeaders => "too many header fields",
    }
}

/// Classify the request-target (RFC 9112 §3.2) and fill `path` / `query`.
fn set_path_and_query(out: &mut HeadIndex, method: &[u8], target: &[u8]) -> Result<(), ParseError> {
    let base = out.target.start as usize;
    match target {
        // origin-form = absolute-path [ "?" query ]
        [b'/', ..] => {
            split_query(out, base, target);
            Ok(())
        }
        // asterisk-form = "*": "only used for a server-wide OPTIONS request" (RFC 9112 §3.2.4).
        b"*" if method == b"OPTIONS" => {
            out.path = out.target;
            Ok(())
        }
        b"*" => Err(ParseError::Malformed(
            "asterisk-form target on a method other than OPTIONS",
        )),
        _ => {
            // absolute-form = absolute-URI. RFC 9112 §3.2.2: "a server MUST accept the use of
            // the absolute-form in requests"; we serve only the http and https schemes (the
            // scheme name is case-insensitive, RFC 3986 §3.1).
            let scheme_len = if starts_with_ignore_case(target, b"http://") {
                7
            } else if starts_with_ignore_case(target, b"https://") {
                8
            } else {
                return Err(ParseError::Malformed(
                    "request-target is not origin-form, absolute-form or OPTIONS *",
                ));
            };
            let rest = &target[scheme_len..];
            let authority = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            // RFC 9110 §4.2.1: "A recipient that processes such a URI reference [with an empty
            // host identifier] MUST reject it as invalid."
            if authority == 0 {
                return Err(ParseError::Malformed("absolute-form target without a host"));
            }
            let skip = scheme_len + authority;
            split_query(out, base + skip, &target[skip..]);
            Ok(())
        }
    }
}

/// Split `rest` (starting at buffer offset `base`) at the first `?` into path and query.
fn split_query(out: &mut HeadIndex, base: usize, rest: &[u8]) {
    match rest.iter().position(|&b| b == b'?') {
        Some(q) => {
            out.path = Span::new(base, q);
            out.query = Some(Span::new(base + q + 1, rest.len() - q - 1));
        }
        None => out.path = Span::new(base, rest.len()),
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// One `Content-Length` field value.
///
/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`; a comma list of one repeated value is what
/// a proxy makes of duplicated fields, which the RFC lets a recipient accept.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::Malformed("invalid Content-Length"));
        }
        // RFC 9110 §8.6: "a recipient MUST anticipate potentially large decimal numerals and
        // prevent parsing errors due to integer conversion overflows". A length beyond u64
        // is beyond any limit.
        let n = part.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let n = n.ok_or(ParseError::BodyTooLarge)?;
        match found {
            Some(prev) if prev != n => return Err(ParseError::AmbiguousLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(ParseError::Malformed("invalid Content-Length"))
}

/// The transfer codings of all `Transfer-Encoding` fields, concatenated in order
/// (RFC 9110 §5.3: a repeated list field is the same as one field with the values joined by
/// commas).
#[derive(Default)]
struct TransferCodings {
    present: bool,
    chunked: usize,
    /// A coding was seen after `chunked`.
    after_chunked: bool,
    /// A coding other than `chunked` was seen.
    other: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list_elements(value) {
            if self.chunked > 0 {
                self.after_chunked = true;
            }
            // RFC 9112 §7: "All transfer-coding names are case-insensitive".
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
            } else {
                self.other = true;
            }
        }
    }

    fn check(&self) -> Result<(), ParseError> {
        // RFC 9112 §6.1: "A server that receives a request message with a transfer coding it
        // does not understand SHOULD respond with 501 (Not Implemented)." We implement
        // chunked only; that covers "chunked, gzip" too, whose length could not be found
        // anyway (RFC 9112 §6.3: chunked must be the final coding).
        if self.other {
            return Err(ParseError::UnsupportedTransferCoding);
        }
        // RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more than once
        // to a message body".
        if self.chunked > 1 || self.after_chunked {
            return Err(ParseError::Malformed("chunked applied more than once"));
        }
        if self.chunked == 0 {
            return Err(ParseError::Malformed("empty Transfer-Encoding"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Chunked request bodies
// ---------------------------------------------------------------------------------------------

/// Where the decoder is in `chunked-body` (RFC 9112 §7.1):
///
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-size     = 1*HEXDIG
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// trailer-section = *( field-line CRLF )
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of chunk-size.
    Size,
    /// BWS after chunk-size, before the `;` of an extension.
    SizeWs,
    /// Inside chunk-ext, up to the CR.
    Ext,
    /// The CR ending the size line was read; expect LF.
    SizeLf,
    /// Inside chunk-data; `ChunkedDecoder::size` bytes left.
    Data,
    /// chunk-data done; expect CR.
    DataCr,
    /// Expect the LF after chunk-data.
    DataLf,
    /// At the start of a trailer field line or of the final CRLF.
    TrailerStart,
    /// Inside a trailer field line, up to the CR.
    Trailer,
    /// The CR ending a trailer line was read; expect LF.
    TrailerLf,
    /// The CR of the final CRLF was read; expect LF.
    FinalLf,
    /// The whole chunked body was read.
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1).
///
/// A hand-written state machine rather than `httparse::parse_chunk_size`, which needs the
/// whole size line in one slice: this one resumes anywhere, even mid-CRLF, so the caller never
/// has to buffer framing bytes. Line endings are strictly CRLF; lenient LF handling inside
/// chunk framing is a known request-smuggling vector.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// While in Size: the size parsed so far. While in Data: the bytes left in the chunk.
    size: u64,
    /// Bytes of the current size line (digits and extensions), bounded by MAX_CHUNK_LINE.
    line_len: usize,
    /// Bytes of the trailer section so far, bounded by MAX_TRAILER.
    trailer_len: usize,
    /// Declared chunk sizes so far, checked against max_body.
    total: u64,
    max_body: Option<u64>,
}

/// One step of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// How many bytes at the start of the input were consumed (framing and data alike).
    pub consumed: usize,
    /// Body bytes found in this step, as a range of the input (within `..consumed`).
    pub data: Option<Range<usize>>,
    /// The whole body, trailers and the final CRLF have been read.
    pub done: bool,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body whose decoded size may not exceed `max_body`.
    pub fn new(max_body: Option<u64>) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            line_len: 0,
            trailer_len: 0,
            total: 0,
            max_body,
        }
    }

    /// Decode from `input`. Returns how many bytes of `input` were consumed, and at most one range of
    /// body data within `input` (consumed covers it). done == true once the last-chunk and the trailer
    /// section (ignored, but bounded to 8 KiB → HeadTooLarge beyond) and final CRLF are consumed; after
    /// that, never consume more (leftover bytes belong to the next pipelined request).
    /// If input is exhausted without progress possible, return consumed (possibly 0) with data None and done false.
    /// Errors: bad hex / missing CRLF / size overflow → Malformed; total > max_body → BodyTooLarge.
    ///
    /// A step stops right after a data range, so the caller copies it out and calls again
    /// with the input after `consumed`. Framing bytes are always consumed whole (the state
    /// remembers partial lines), so `consumed < input.len()` without data means done.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ParseError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data => {
                    let avail = input.len() - pos;
                    // min(remaining, avail) <= avail, so it fits in usize.
                    let take = self.size.min(avail as u64) as usize;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: pos + take,
                        data: Some(pos..pos + take),
                        done: false,
                    });
                }
                _ => {
                    self.step(input[pos])?;
                    pos += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: pos,
            data: None,
            done: self.is_done(),
        })
    }

    /// Whether the whole chunked body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Advance over one framing byte.
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        use ChunkState as S;
        match self.state {
            S::Size => {
                if let Some(d) = hex_value(b) {
                    self.bump_line()?;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                        .ok_or(ParseError::Malformed("chunk size overflows"))?;
                } else if self.line_len == 0 {
                    return Err(ParseError::Malformed("invalid chunk size"));
                } else {
                    match b {
                        b'\r' => self.state = S::SizeLf,
                        b';' => {
                            self.bump_line()?;
                            self.state = S::Ext;
                        }
                        b' ' | b'\t' => {
                            self.bump_line()?;
                            self.state = S::SizeWs;
                        }
                        _ => return Err(ParseError::Malformed("invalid chunk size")),
                    }
                }
            }
            S::SizeWs => {
                self.bump_line()?;
                match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = S::Ext,
                    _ => return Err(ParseError::Malformed("invalid chunk extension")),
                }
            }
            S::Ext => {
                if b == b'\r' {
                    self.state = S::SizeLf;
                } else if is_field_byte(b) {
                    // The content of extensions is ignored (RFC 9112 §7.1.1: "A recipient
                    // MUST ignore unrecognized chunk extensions"); only its length matters.
                    self.bump_line()?;
                } else {
                    return Err(ParseError::Malformed("invalid chunk extension"));
                }
            }
            S::SizeLf => {
                if b != b'\n' {
                    return Err(ParseError::Malformed("chunk size line not ended by CRLF"));
                }
                self.begin_chunk()?;
            }
            S::DataCr => {
                if b != b'\r' {
                    return Err(ParseError::Malformed("chunk data not followed by CRLF"));
                }
                self.state = S::DataLf;
            }
            S::DataLf => {
                if b != b'\n' {
                    return Err(ParseError::Malformed("chunk data not followed by CRLF"));
                }
                self.state = S::Size;
                self.size = 0;
                self.line_len = 0;
            }
            S::TrailerStart => {
                self.bump_trailer()?;
                match b {
                    b'\r' => self.state = S::FinalLf,
                    // A line starting with whitespace is obs-fold (RFC 9112 §5.2).
                    b' ' | b'\t' => {
                        return Err(ParseError::Malformed("obsolete line folding in trailer"));
                    }
                    _ if is_field_byte(b) => self.state = S::Trailer,
                    _ => return Err(ParseError::Malformed("invalid byte in trailer")),
                }
            }
            S::Trailer => {
                self.bump_trailer()?;
                if b == b'\r' {
                    self.state = S::TrailerLf;
                } else if !is_field_byte(b) {
                    return Err(ParseError::Malformed("invalid byte in trailer"));
                }
            }
            S::TrailerLf => {
                self.bump_trailer()?;
                if b != b'\n' {
                    return Err(ParseError::Malformed("trailer line not ended by CRLF"));
                }
                self.state = S::TrailerStart;
            }
            S::FinalLf => {
                self.bump_trailer()?;
                if b != b'\n' {
                    return Err(ParseError::Malformed("chunked body not ended by CRLF"));
                }
                self.state = S::Done;
            }
            // decode() never steps in these states.
            S::Data | S::Done => unreachable!("ChunkedDecoder::step in state {:?}", self.state),
        }
        Ok(())
    }

    /// The size line is complete: start the chunk's data, or the trailer after last-chunk.
    fn begin_chunk(&mut self) -> Result<(), ParseError> {
        if self.size == 0 {
            self.state = ChunkState::TrailerStart;
            return Ok(());
        }
        // Refuse as soon as the declared size says the body will be too large, before any of
        // its data is read.
        self.total = self
            .total
            .checked_add(self.size)
            .ok_or(ParseError::BodyTooLarge)?;
        if self.max_body.is_some_and(|max| self.total > max) {
            return Err(ParseError::BodyTooLarge);
        }
        self.state = ChunkState::Data;
        Ok(())
    }

    fn bump_line(&mut self) -> Result<(), ParseError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(ParseError::Malformed("chunk size line too long"));
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), ParseError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER {
            return Err(ParseError::HeadTooLarge);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A byte allowed inside a field line or chunk extension: HTAB, SP, VCHAR or obs-text
/// (RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
/// dangerous").
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Response framing chosen by the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: N`. Also right for a response to HEAD, which then writes no body
    /// (RFC 9110 §9.3.2).
    Length(u64),
    /// `Transfer-Encoding: chunked`, for a streamed body to an HTTP/1.1 client. RFC 9112
    /// §6.1: "A server MUST NOT send a response containing Transfer-Encoding unless the
    /// corresponding request indicates HTTP/1.1 (or later minor revisions)."
    Chunked,
    /// No body allowed (1xx, 204, 304).
    NoBody,
    /// Body delimited by closing the connection (HTTP/1.0 client with streamed body).
    /// Requires `keep_alive == false`.
    CloseDelimited,
}

/// Append a response head to `out`, in this order:
///
/// 1. the status line `HTTP/1.1 <code> <reason>`, the reason from
///    [`http::StatusCode::canonical_reason`] or `Unknown` if it has none;
/// 2. `Server: ringsgi` and `Date: <date>`, `date` being the preformatted IMF-fixdate the
///    caller keeps (RFC 9110 §6.6.1: an origin server with a clock "MUST generate a Date
///    header field in all 2xx, 3xx, and 4xx responses");
/// 3. the caller's `headers`: a block of pre-serialized `Name: value\r\n` lines, copied as is;
/// 4. the framing: `Content-Length: N` for [`ResponseFraming::Length`],
///    `Transfer-Encoding: chunked` for [`ResponseFraming::Chunked`], nothing for
///    [`ResponseFraming::NoBody`] and [`ResponseFraming::CloseDelimited`];
/// 5. `Connection: close` if `!keep_alive`, or `Connection: keep-alive` if `keep_alive`
///    and `version` is [`Version::Http10`];
/// 6. the empty line ending the head.
///
/// The version token is always `HTTP/1.1`: RFC 9110 §6.2: "A server SHOULD send a response
/// version equal to the highest version to which the server is conformant that has a major
/// version less than or equal to the one received in the request." `version` is the
/// request's; it only decides whether keep-alive must be announced.
///
/// # Caller guarantees (checked by `debug_assert!`)
///
/// - `headers` contain no `Content-Length`, `Transfer-Encoding`, `Connection`, `Date` or
///   `Server`: this function writes those, and a duplicate framing field in a response is the
///   response-side smuggling hole (RFC 9112 §11.1).
/// - Header names and values contain no CR or LF (response splitting, RFC 9112 §11.1).
/// - `status` is three digits; 1xx and 204 use [`ResponseFraming::NoBody`] (RFC 9110 §8.6:
///   "A server MUST NOT send a Content-Length header field in any response with a status code
///   of 1xx (Informational) or 204 (No Content)").
/// - [`ResponseFraming::Chunked`] only to HTTP/1.1; [`ResponseFraming::CloseDelimited`] only
///   with `keep_alive == false`.
pub fn encode_head(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
    headers: &[u8],
    framing: ResponseFraming,
    keep_alive: bool,
    date: &[u8],
) {
    debug_assert!(
        (100..=999).contains(&status),
        "status {status} is not 3 digits"
    );
    debug_assert!(
        !((100..200).contains(&status) || status == 204) || framing == ResponseFraming::NoBody,
        "status {status} must not have a body"
    );
    debug_assert!(
        !(framing == ResponseFraming::Chunked && version == Version::Http10),
        "chunked response to an HTTP/1.0 request"
    );
    debug_assert!(
        !(framing == ResponseFraming::CloseDelimited && keep_alive),
        "close-delimited body on a kept-alive connection"
    );
    debug_assert!(
        headers.is_empty() || headers.ends_with(b"\r\n"),
        "header block must end with CRLF"
    );
    debug_assert!(
        headers
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .all(|line| {
                const OWN: [&[u8]; 5] = [
                    b"content-length:",
                    b"transfer-encoding:",
                    b"connection:",
                    b"date:",
                    b"server:",
                ];
                let body = line.strip_suffix(b"\r").unwrap_or(line);
                !body.contains(&b'\r')
                    && !OWN.iter().any(|own| {
                        body.len() >= own.len() && body[..own.len()].eq_ignore_ascii_case(own)
                    })
            }),
        "caller header duplicates a framing field or contains a bare CR: {:?}",
        String::from_utf8_lossy(headers)
    );

    // One reservation for the whole head: the fixed lines, the app's headers and the date.
    out.reserve(HEAD_FIXED_MAX + headers.len() + date.len());
    if status == 200 {
        // The status line of almost every response, as one constant (no number to format).
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: ");
    } else {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\nServer: ringsgi\r\nDate: ");
    }
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    match framing {
        ResponseFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        ResponseFraming::NoBody | ResponseFraming::CloseDelimited => {}
    }
    if !keep_alive {
        // RFC 9112 §9.6: "A server that sends a "close" connection option MUST initiate
        // closure of the connection after it sends the response".
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        // HTTP/1.0 clients close unless told otherwise (RFC 9112 §C.2.2).
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a chunk header ("{len:x}\r\n") to out. Data and the trailing "\r\n" are written by the caller.
///
/// `len` must not be 0: a zero-size chunk is the last-chunk ([`LAST_CHUNK`]) and would end
/// the body early.
pub fn encode_chunk_header(out: &mut Vec<u8>, len: usize) {
    debug_assert!(len > 0, "an empty chunk would end the chunked body");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len as u64;
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Most bytes of a response head besides the app's headers and the date: the status line
/// with the longest reason phrase, `Server`, the framing and `Connection` lines.
const HEAD_FIXED_MAX: usize = 160;

/// Append `n` in decimal without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_head: 1024,
        max_body: Some(1000),
        max_headers: 8,
    };

    fn parse_with(buf: &[u8], limits: &Limits) -> (Result<Parsed<usize>, ParseError>, HeadIndex) {
        let mut idx = HeadIndex::default();
        let r = parse_head(buf, limits, &mut idx);
        (r, idx)
    }

    fn parse(buf: &[u8]) -> (Result<Parsed<usize>, ParseError>, HeadIndex) {
        parse_with(buf, &LIMITS)
    }

    #[test]
    fn forwarded_flag_marks_either_proxy_header_and_clears() {
        let (_, idx) = parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!idx.forwarded);
        let (_, mut idx) = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
        assert!(idx.forwarded);
        idx.clear();
        assert!(!idx.forwarded);
        let (_, idx) = parse(b"GET / HTTP/1.1\r\nFORWARDED: for=1.2.3.4\r\nHost: a\r\n\r\n");
        assert!(idx.forwarded);
    }

    /// Status code of a parse result: 200 for a complete head.
    fn status_of(r: Result<Parsed<usize>, ParseError>) -> u16 {
        match r {
            Ok(Parsed::Complete(_)) => 200,
            Ok(Parsed::Partial) => 0,
            Err(e) => e.status(),
        }
    }

    const M: ParseError = ParseError::Malformed("");

    /// (name, whole head, expected result, expected status)
    type HeadCase<'a> = (&'a str, &'a [u8], Result<(), ParseError>, u16);
    /// (target, expected path, expected query)
    type TargetCase = (&'static [u8], &'static [u8], Option<&'static [u8]>);
    /// (name, chunked body, max_body, expected result)
    type ChunkCase<'a> = (&'a str, &'a [u8], Option<u64>, Result<(), ParseError>);

    /// Compare results, ignoring the text of `Malformed`.
    fn same(a: Result<Parsed<usize>, ParseError>, b: Result<Parsed<usize>, ParseError>) -> bool {
        match (a, b) {
            (Err(ParseError::Malformed(_)), Err(ParseError::Malformed(_))) => true,
            (a, b) => a == b,
        }
    }

    /// Every case is one whole head: `Ok(())` means `Complete(input.len())`.
    #[test]
    fn table() {
        use ParseError::*;
        let long_uri = [
            &b"GET /"[..],
            &[b'a'; 2000],
            b" HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
        .concat();
        let long_header = [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: "[..],
            &[b'b'; 2000],
            b"\r\n\r\n",
        ]
        .concat();
        let many_headers = [
            &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
            &b"X: 1\r\n".repeat(8),
            b"\r\n",
        ]
        .concat();
        let eight_headers = [
            &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
            &b"X: 1\r\n".repeat(7),
            b"\r\n",
        ]
        .concat();
        let cases: Vec<HeadCase<'_>> = vec![
            ("simple GET", b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n", Ok(()), 200),
            ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n", Ok(()), 200),
            ("leading CRLF", b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(()), 200),
            ("bare LF lines", b"GET / HTTP/1.1\nHost: a\n\n", Ok(()), 200),
            ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Ok(()), 200),
            ("absolute-form", b"GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n", Ok(()), 200),
            ("eight headers at max_headers 8", &eight_headers, Ok(()), 200),
            // 400
            ("control byte in target", b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("bad method token", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("double space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("relative target", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("authority-form", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("asterisk on GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("empty host in absolute-form", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("ftp scheme", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", Err(M), 400),
            ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(M), 400),
            ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", Err(M), 400),
            ("lowercase version", b"GET / http/1.1\r\nHost: a\r\n\r\n", Err(M), 400),
            ("garbage version", b"GET / HTTP/x\r\nHost: a\r\n\r\n", Err(M), 400),
            ("missing Host", b"GET / HTTP/1.1\r\nX: 1\r\n\r\n", Err(MissingHost), 400),
            ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", Err(M), 400),
            ("CL and TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Err(AmbiguousLength), 400),
            ("two different CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", Err(AmbiguousLength), 400),
            ("CL list differs", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", Err(AmbiguousLength), 400),
            ("two same CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", Ok(()), 200),
            ("CL list same", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 ,3\r\n\r\n", Ok(()), 200),
            ("CL with sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", Err(M), 400),
            ("CL with inner space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", Err(M), 400),
            ("CL hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n", Err(M), 400),
            ("CL empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", Err(M), 400),
            ("CL empty element", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,\r\n\r\n", Err(M), 400),
            ("TE on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(M), 400),
            ("chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Err(M), 400),
            ("chunked twice, two fields", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Err(M), 400),
            ("TE empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n", Err(M), 400),
            ("TE Chunked case", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", Ok(()), 200),
            // 413
            ("CL over limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", Err(BodyTooLarge), 413),
            ("CL at limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", Ok(()), 200),
            ("CL overflows u64", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", Err(BodyTooLarge), 413),
            // 414 / 431
            ("long URI", &long_uri, Err(UriTooLong), 414),
            ("long header", &long_header, Err(HeadTooLarge), 431),
            ("too many headers", &many_headers, Err(HeadTooLarge), 431),
            // 501
            ("TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Err(UnsupportedTransferCoding), 501),
            ("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(UnsupportedTransferCoding), 501),
            ("TE chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", Err(UnsupportedTransferCoding), 501),
            ("TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", Err(UnsupportedTransferCoding), 501),
            // 505
            ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(VersionNotSupported), 505),
            ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Err(VersionNotSupported), 505),
            ("HTTP/3", b"GET / HTTP/3\r\nHost: a\r\n\r\n", Err(VersionNotSupported), 505),
            ("HTTP/3 alone", b"GET / HTTP/3\r\n", Err(VersionNotSupported), 505),
            ("HTTP/0.9", b"GET / HTTP/0.9\r\n\r\n", Err(VersionNotSupported), 505),
        ];
        for (name, input, want, want_status) in cases {
            let want = want.map(|()| Parsed::Complete(input.len()));
            let (got, idx) = parse(input);
            assert!(same(got, want), "{name}: got {got:?}, want {want:?}");
            assert_eq!(status_of(got), want_status, "{name}");
            if let Ok(Parsed::Complete(n)) = got {
                assert_eq!(idx.head_len, n, "{name}");
            }
        }
    }

    #[test]
    fn simple_get_spans() {
        let buf =
            b"GET /a/b?x=1&y HTTP/1.1\r\nHost:  example.com \t\r\nX-Empty:\r\nAccept: */*\r\n\r\n";
        let (r, idx) = parse(buf);
        assert_eq!(r, Ok(Parsed::Complete(buf.len())));
        assert_eq!(idx.method.of(buf), b"GET");
        assert_eq!(idx.target.of(buf), b"/a/b?x=1&y");
        assert_eq!(idx.path.of(buf), b"/a/b");
        assert_eq!(idx.query.map(|q| q.of(buf)), Some(&b"x=1&y"[..]));
        assert_eq!(idx.version, Version::Http11);
        let headers: Vec<(&[u8], &[u8])> = idx
            .headers
            .iter()
            .map(|(n, v)| (n.of(buf), v.of(buf)))
            .collect();
        assert_eq!(
            headers,
            [
                (&b"Host"[..], &b"example.com"[..]),
                (b"X-Empty", b""),
                (b"Accept", b"*/*")
            ]
        );
        assert_eq!(idx.header(buf, "host"), Some(&b"example.com"[..]));
        assert_eq!(idx.header(buf, "ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(idx.header(buf, "missing"), None);
        assert_eq!(idx.framing, BodyFraming::None);
        assert!(idx.keep_alive);
        assert!(!idx.expect_continue);
    }

    #[test]
    fn query_forms() {
        let cases: [TargetCase; 7] = [
            (b"/", b"/", None),
            (b"/p?", b"/p", Some(b"")),
            (b"/p?a?b", b"/p", Some(b"a?b")),
            (b"http://h/p?q=1", b"/p", Some(b"q=1")),
            (b"HTTPS://h:8443/x/y", b"/x/y", None),
            (b"http://h", b"", None),
            (b"http://h?z", b"", Some(b"z")),
        ];
        for (target, path, query) in cases {
            let buf = [&b"GET "[..], target, b" HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
            let (r, idx) = parse(&buf);
            assert_eq!(r, Ok(Parsed::Complete(buf.len())), "{target:?}");
            assert_eq!(idx.target.of(&buf), target);
            assert_eq!(idx.path.of(&buf), path, "{target:?}");
            assert_eq!(idx.query.map(|q| q.of(&buf)), query, "{target:?}");
        }
        let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        let (_, idx) = parse(buf);
        assert_eq!(idx.path.of(buf), b"*");
        assert_eq!(idx.query, None);
    }

    #[test]
    fn http10_and_connection_tokens() {
        let cases: [(&[u8], Version, bool); 8] = [
            (b"GET / HTTP/1.0\r\n\r\n", Version::Http10, false),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                Version::Http10,
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n",
                Version::Http10,
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                Version::Http10,
                false,
            ),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Version::Http11, true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n",
                Version::Http11,
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade,,close \r\n\r\n",
                Version::Http11,
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
                Version::Http11,
                true,
            ),
        ];
        for (buf, version, keep_alive) in cases {
            let (r, idx) = parse(buf);
            assert_eq!(r, Ok(Parsed::Complete(buf.len())));
            assert_eq!(idx.version, version, "{:?}", String::from_utf8_lossy(buf));
            assert_eq!(
                idx.keep_alive,
                keep_alive,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn expect_continue() {
        let cases: [(&[u8], bool); 5] = [
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nexpect: 100-Continue\r\n\r\n",
                true,
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n", false),
            (b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            // RFC 9110 §10.1.1: ignored on HTTP/1.0.
            (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", false),
        ];
        for (buf, want) in cases {
            let (r, idx) = parse(buf);
            assert_eq!(r, Ok(Parsed::Complete(buf.len())));
            assert_eq!(
                idx.expect_continue,
                want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn framing() {
        let cases: [(&[u8], BodyFraming); 4] = [
            (b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", BodyFraming::None),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                BodyFraming::Length(0),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0042\r\n\r\n",
                BodyFraming::Length(42),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                BodyFraming::Chunked,
            ),
        ];
        for (buf, want) in cases {
            let (r, idx) = parse(buf);
            assert_eq!(r, Ok(Parsed::Complete(buf.len())));
            assert_eq!(idx.framing, want);
        }
        // No body limit: any length that fits u64 is accepted.
        let limits = Limits {
            max_body: None,
            ..LIMITS
        };
        let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n";
        let (r, idx) = parse_with(buf, &limits);
        assert_eq!(r, Ok(Parsed::Complete(buf.len())));
        assert_eq!(idx.framing, BodyFraming::Length(u64::MAX));
    }

    #[test]
    fn pipelined() {
        let first = &b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"[..];
        let second = &b"GET /two?x HTTP/1.1\r\nHost: b\r\n\r\n"[..];
        let buf = [first, second].concat();
        let (r, idx) = parse(&buf);
        assert_eq!(r, Ok(Parsed::Complete(first.len())));
        assert_eq!(idx.head_len, first.len());
        assert_eq!(idx.path.of(&buf), b"/one");

        let rest = &buf[idx.head_len..];
        let (r, idx) = parse(rest);
        assert_eq!(r, Ok(Parsed::Complete(second.len())));
        assert_eq!(idx.path.of(rest), b"/two");
        assert_eq!(idx.header(rest, "Host"), Some(&b"b"[..]));
    }

    #[test]
    fn partial_at_every_prefix() {
        let requests: [&[u8]; 4] = [
            b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
            b"\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
        ];
        for req in requests {
            for n in 0..req.len() {
                let (r, _) = parse(&req[..n]);
                assert_eq!(
                    r,
                    Ok(Parsed::Partial),
                    "prefix {n} of {:?}",
                    String::from_utf8_lossy(req)
                );
            }
            let (r, idx) = parse(req);
            assert_eq!(r, Ok(Parsed::Complete(req.len())));
            assert_eq!(idx.head_len, req.len());
        }
    }

    #[test]
    fn head_size_boundaries() {
        let req = &b"GET /abc HTTP/1.1\r\nHost: a\r\n\r\n"[..];
        let exact = Limits {
            max_head: req.len(),
            ..LIMITS
        };
        assert_eq!(parse_with(req, &exact).0, Ok(Parsed::Complete(req.len())));
        // One byte short of complete, and the buffer is below max_head: wait for more.
        assert_eq!(
            parse_with(&req[..req.len() - 1], &exact).0,
            Ok(Parsed::Partial)
        );
        // A buffer that reached max_head without a complete head: refuse.
        let short = Limits {
            max_head: req.len() - 1,
            ..LIMITS
        };
        assert_eq!(parse_with(req, &short).0, Err(ParseError::HeadTooLarge));
        assert_eq!(
            parse_with(&req[..req.len() - 1], &short).0,
            Err(ParseError::HeadTooLarge)
        );
        // The request line alone is longer than max_head: 414.
        let tiny = Limits {
            max_head: 10,
            ..LIMITS
        };
        assert_eq!(parse_with(req, &tiny).0, Err(ParseError::UriTooLong));
        // Leading empty lines are not part of the request line.
        let crlf = [&b"\r\n\r\n"[..], req].concat();
        let line_fits = Limits {
            max_head: 25,
            ..LIMITS
        };
        assert_eq!(
            parse_with(&crlf, &line_fits).0,
            Err(ParseError::HeadTooLarge)
        );
        let line_does_not = Limits {
            max_head: 20,
            ..LIMITS
        };
        assert_eq!(
            parse_with(&crlf, &line_does_not).0,
            Err(ParseError::UriTooLong)
        );
        // max_headers above MAX_HEADERS is capped, not an out-of-bounds slice.
        let many = Limits {
            max_headers: 10_000,
            ..LIMITS
        };
        assert_eq!(parse_with(req, &many).0, Ok(Parsed::Complete(req.len())));
    }

    #[test]
    fn clear_keeps_capacity() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        let mut idx = HeadIndex::default();
        assert_eq!(
            parse_head(buf, &LIMITS, &mut idx),
            Ok(Parsed::Complete(buf.len()))
        );
        let cap = idx.headers.capacity();
        assert!(cap >= 3);
        idx.clear();
        assert!(idx.headers.is_empty());
        assert_eq!(idx.headers.capacity(), cap);
        assert_eq!(idx.head_len, 0);
        assert!(!idx.keep_alive);
        // Reparsing a smaller head leaves nothing from the previous one.
        let small = b"GET /x HTTP/1.0\r\n\r\n";
        assert_eq!(
            parse_head(small, &LIMITS, &mut idx),
            Ok(Parsed::Complete(small.len()))
        );
        assert!(idx.headers.is_empty());
        assert_eq!(idx.version, Version::Http10);
        assert_eq!(idx.headers.capacity(), cap);
    }

    // --- chunked -------------------------------------------------------------------------

    /// Feed `input` to a fresh decoder in pieces of the given sizes (cycled), the way a
    /// connection does: unconsumed bytes stay in a pending buffer and more are appended.
    /// Returns (data, total consumed, done).
    fn decode_split(
        input: &[u8],
        max_body: Option<u64>,
        pieces: &[usize],
    ) -> Result<(Vec<u8>, usize, bool), ParseError> {
        let mut dec = ChunkedDecoder::new(max_body);
        let mut data = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut consumed = 0;
        let mut sizes = pieces.iter().copied().cycle();
        loop {
            // Drain what is pending.
            loop {
                let d = dec.decode(&pending)?;
                assert!(d.consumed <= pending.len());
                if let Some(r) = d.data.clone() {
                    assert!(r.end <= d.consumed && !r.is_empty(), "{d:?}");
                    data.extend_from_slice(&pending[r]);
                }
                assert_eq!(d.done, dec.is_done());
                pending.drain(..d.consumed);
                consumed += d.consumed;
                if d.done {
                    // Never consume past the end of the body.
                    let again = dec.decode(&pending)?;
                    assert_eq!(
                        again,
                        Decoded {
                            consumed: 0,
                            data: None,
                            done: true
                        }
                    );
                    return Ok((data, consumed, true));
                }
                if d.data.is_none() {
                    // No data and not done: everything pending was framing, all consumed.
                    assert!(pending.is_empty(), "stalled with {pending:?}");
                    break;
                }
            }
            if fed == input.len() {
                return Ok((data, consumed, false));
            }
            let n = sizes.next().unwrap_or(1).max(1).min(input.len() - fed);
            pending.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }

    const WIKI: &[u8] = b"4\r\nWiki\r\n5;name=value; flag\r\npedia\r\nE \t;q=\"a b\"\r\n in\r\n\r\nchunks.\r\n000;end\r\nExpires: never\r\nX-Checksum: 1\r\n\r\nGET / HTTP/1.1\r\n";
    const WIKI_BODY_LEN: usize = WIKI.len() - b"GET / HTTP/1.1\r\n".len();

    #[test]
    fn chunked_whole_and_bytewise() {
        let whole = decode_split(WIKI, None, &[WIKI.len()]).unwrap();
        assert_eq!(
            whole,
            (b"Wikipedia in\r\n\r\nchunks.".to_vec(), WIKI_BODY_LEN, true)
        );
        let bytewise = decode_split(WIKI, None, &[1]).unwrap();
        assert_eq!(bytewise, whole);
        let odd = decode_split(WIKI, None, &[3, 7, 2]).unwrap();
        assert_eq!(odd, whole);
    }

    #[test]
    fn chunked_steps() {
        let mut dec = ChunkedDecoder::new(Some(100));
        let input = b"3\r\nabc\r\n0\r\n\r\nrest";
        let d = dec.decode(input).unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 6,
                data: Some(3..6),
                done: false
            }
        );
        let d = dec.decode(&input[6..]).unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 7,
                data: None,
                done: true
            }
        );
        assert!(dec.is_done());
        assert_eq!(&input[13..], b"rest");
        // Exhausted input mid-frame: consumes all, no data, not done.
        let mut dec = ChunkedDecoder::new(None);
        assert_eq!(
            dec.decode(b"1").unwrap(),
            Decoded {
                consumed: 1,
                data: None,
                done: false
            }
        );
        assert_eq!(
            dec.decode(b"").unwrap(),
            Decoded {
                consumed: 0,
                data: None,
                done: false
            }
        );
        assert_eq!(
            dec.decode(b"0\r").unwrap(),
            Decoded {
                consumed: 2,
                data: None,
                done: false
            }
        );
        // "10" is 16 bytes of data, delivered in two pieces; a step stops after its data.
        assert_eq!(
            dec.decode(b"\n").unwrap(),
            Decoded {
                consumed: 1,
                data: None,
                done: false
            }
        );
        let d = dec.decode(b"0123456789").unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 10,
                data: Some(0..10),
                done: false
            }
        );
        let d = dec.decode(b"abcdef\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 6,
                data: Some(0..6),
                done: false
            }
        );
        let d = dec.decode(b"\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 7,
                data: None,
                done: true
            }
        );
    }

    #[test]
    fn chunked_errors() {
        use ParseError::*;
        let long_ext = [&b"1;"[..], &[b'x'; MAX_CHUNK_LINE], b"\r\nx\r\n0\r\n\r\n"].concat();
        let ok_ext = [
            &b"1;"[..],
            &[b'x'; MAX_CHUNK_LINE - 2],
            b"\r\nx\r\n0\r\n\r\n",
        ]
        .concat();
        let long_trailer = [&b"0\r\nX: "[..], &[b'y'; MAX_TRAILER], b"\r\n\r\n"].concat();
        let cases: Vec<ChunkCase<'_>> = vec![
            ("ok", b"1\r\nx\r\n0\r\n\r\n", Some(1), Ok(())),
            ("bad hex", b"g\r\n", None, Err(M)),
            ("bad hex after digit", b"1g\r\nx\r\n", None, Err(M)),
            ("empty size", b"\r\n", None, Err(M)),
            ("leading space", b" 1\r\nx\r\n", None, Err(M)),
            ("negative", b"-1\r\n", None, Err(M)),
            ("bare LF after size", b"1\nx\r\n0\r\n\r\n", None, Err(M)),
            ("CR without LF", b"1\rx", None, Err(M)),
            ("missing CRLF after data", b"1\r\nxy\r\n", None, Err(M)),
            ("LF only after data", b"1\r\nx\n0\r\n\r\n", None, Err(M)),
            ("whitespace then no ext", b"1 x\r\n", None, Err(M)),
            ("whitespace then CRLF", b"1 \r\nx\r\n", None, Err(M)),
            (
                "whitespace then ext",
                b"1 ;a=b\r\nx\r\n0\r\n\r\n",
                None,
                Ok(()),
            ),
            ("LF in ext", b"1;a\nb\r\n", None, Err(M)),
            ("long ext", &long_ext, None, Err(M)),
            ("ext at line limit", &ok_ext, None, Ok(())),
            ("overflow", b"ffffffffffffffffff\r\n", None, Err(M)),
            ("largest size", b"ffffffffffffffff\r\n", None, Ok(())),
            ("over limit at once", b"10\r\n", Some(15), Err(BodyTooLarge)),
            (
                "over limit summed",
                b"8\r\n12345678\r\n8\r\n",
                Some(15),
                Err(BodyTooLarge),
            ),
            (
                "at limit",
                b"8\r\n12345678\r\n7\r\n1234567\r\n0\r\n\r\n",
                Some(15),
                Ok(()),
            ),
            ("trailer obs-fold", b"0\r\nA: 1\r\n 2\r\n\r\n", None, Err(M)),
            ("trailer bare LF", b"0\r\nA: 1\n\r\n", None, Err(M)),
            ("final CR without LF", b"0\r\n\rx", None, Err(M)),
            ("trailer too long", &long_trailer, None, Err(HeadTooLarge)),
        ];
        for (name, input, max, want) in cases {
            for pieces in [&[input.len()][..], &[1]] {
                let got = decode_split(input, max, pieces).map(|_| ());
                let ok = match (&got, &want) {
                    (Err(Malformed(_)), Err(Malformed(_))) => true,
                    (a, b) => a == b,
                };
                assert!(ok, "{name} ({pieces:?}): got {got:?}, want {want:?}");
            }
        }
    }

    // --- encoding ------------------------------------------------------------------------

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn head(
        version: Version,
        status: u16,
        headers: &[u8],
        framing: ResponseFraming,
        keep_alive: bool,
    ) -> String {
        let mut out = b"existing".to_vec();
        encode_head(
            &mut out, version, status, headers, framing, keep_alive, DATE,
        );
        assert!(out.starts_with(b"existing"), "encode_head must append");
        String::from_utf8(out[8..].to_vec()).unwrap()
    }

    /// The status line and the `Content-Length` value, for every status (the 200 line is a
    /// constant, the others are formatted) and lengths of every digit count.
    #[test]
    fn encode_head_status_lines_and_lengths() {
        for status in 200..=599u16 {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Unknown");
            let framing = if status == 204 || status == 304 {
                ResponseFraming::NoBody
            } else {
                ResponseFraming::Length(7)
            };
            let h = head(Version::Http11, status, b"", framing, true);
            let want = format!("HTTP/1.1 {status} {reason}\r\nServer: ringsgi\r\nDate: ");
            assert!(h.starts_with(&want), "{status}: {h:?}");
        }
        const LENGTHS: [u64; 12] = [0, 7, 9, 10, 12, 99, 100, 101, 999, 1000, 65_536, u64::MAX];
        for n in LENGTHS {
            let h = head(Version::Http11, 200, b"", ResponseFraming::Length(n), true);
            assert!(
                h.ends_with(&format!("\r\nContent-Length: {n}\r\n\r\n")),
                "{n}: {h:?}"
            );
        }
    }

    #[test]
    fn encode_head_exact() {
        assert_eq!(
            head(
                Version::Http11,
                200,
                b"Content-Type: text/plain\r\nX-A: 1\r\n",
                ResponseFraming::Length(12),
                true
            ),
            "HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nX-A: 1\r\nContent-Length: 12\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http11, 404, b"", ResponseFraming::Chunked, false),
            "HTTP/1.1 404 Not Found\r\nServer: ringsgi\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http10, 200, b"", ResponseFraming::Length(0), true),
            "HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            head(
                Version::Http10,
                200,
                b"",
                ResponseFraming::CloseDelimited,
                false
            ),
            "HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http11, 204, b"", ResponseFraming::NoBody, true),
            "HTTP/1.1 204 No Content\r\nServer: ringsgi\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
        );
        assert_eq!(
            head(
                Version::Http11,
                599,
                b"",
                ResponseFraming::Length(u64::MAX),
                true
            ),
            "HTTP/1.1 599 Unknown\r\nServer: ringsgi\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Length: 18446744073709551615\r\n\r\n"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "framing field")]
    fn encode_head_rejects_own_headers() {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            Version::Http11,
            200,
            b"content-length: 3\r\n",
            ResponseFraming::Length(3),
            true,
            DATE,
        );
    }

    #[test]
    fn chunk_header() {
        for (len, want) in [
            (1usize, &b"1\r\n"[..]),
            (10, b"a\r\n"),
            (255, b"ff\r\n"),
            (4096, b"1000\r\n"),
            (usize::MAX, b"ffffffffffffffff\r\n"),
        ] {
            let mut out = vec![b'>'];
            encode_chunk_header(&mut out, len);
            assert_eq!(&out[1..], want, "{len}");
        }
        assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
        // What the encoder writes, the decoder reads.
        let mut body = Vec::new();
        encode_chunk_header(&mut body, 3);
        body.extend_from_slice(b"abc\r\n");
        body.extend_from_slice(LAST_CHUNK);
        let (data, consumed, done) = decode_split(&body, None, &[body.len()]).unwrap();
        assert_eq!(
            (data.as_slice(), consumed, done),
            (&b"abc"[..], body.len(), true)
        );
    }

    // --- properties ----------------------------------------------------------------------

    /// Bytes that look like the start of a request more often than uniform noise does.
    fn requestish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"GET "[..]),
            Just(&b"/"[..]),
            Just(&b"?"[..]),
            Just(&b" HTTP/1.1"[..]),
            Just(&b" HTTP/1.0"[..]),
            Just(&b" HTTP/2"[..]),
            Just(&b"\r\n"[..]),
            Just(&b"\n"[..]),
            Just(&b"Host: a"[..]),
            Just(&b"Content-Length: 5"[..]),
            Just(&b"Transfer-Encoding: chunked"[..]),
            Just(&b": "[..]),
            Just(&b"http://"[..]),
            Just(&b"*"[..]),
            Just(&b" "[..]),
        ]
        .prop_map(<[u8]>::to_vec);
        prop::collection::vec(
            prop_oneof![piece, prop::collection::vec(any::<u8>(), 0..4)],
            0..40,
        )
        .prop_map(|v| v.concat())
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    proptest! {
        #[test]
        fn parse_head_never_panics(
            buf in prop_oneof![prop::collection::vec(any::<u8>(), 0..600), requestish()],
            max_head in 0usize..700,
            max_headers in 0usize..200,
        ) {
            let limits = Limits { max_head, max_body: Some(10), max_headers };
            let mut idx = HeadIndex::default();
            if let Ok(Parsed::Complete(n)) = parse_head(&buf, &limits, &mut idx) {
                prop_assert_eq!(n, idx.head_len);
                prop_assert!(n <= buf.len() && n <= max_head);
                for span in [idx.method, idx.target, idx.path] {
                    prop_assert!(span.range().end <= n);
                }
                for (name, value) in &idx.headers {
                    prop_assert!(name.range().end <= n && value.range().end <= n);
                }
            }
        }

        #[test]
        fn parse_head_gives_back_parts(
            method in token(),
            path in "/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,40}",
            query in prop::option::of("[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,20}"),
            http10 in any::<bool>(),
            headers in prop::collection::vec(
                ("x-[a-z0-9-]{1,16}", "[!-~]([ \t!-~]{0,30}[!-~])?", " {0,2}", "[ \t]{0,2}"),
                0..6,
            ),
            leading_crlf in 0usize..3,
            body in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut buf = b"\r\n".repeat(leading_crlf);
            buf.extend_from_slice(method.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(path.as_bytes());
            if let Some(q) = &query {
                buf.push(b'?');
                buf.extend_from_slice(q.as_bytes());
            }
            buf.extend_from_slice(if http10 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
            buf.extend_from_slice(b"Host: example.com\r\n");
            for (name, value, pre, post) in &headers {
                buf.extend_from_slice(format!("{name}:{pre}{value}{post}\r\n").as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            let head_len = buf.len();
            buf.extend_from_slice(&body);

            let limits = Limits { max_head: 4096, max_body: None, max_headers: 16 };
            let mut idx = HeadIndex::default();
            prop_assert_eq!(parse_head(&buf, &limits, &mut idx), Ok(Parsed::Complete(head_len)));
            prop_assert_eq!(idx.method.of(&buf), method.as_bytes());
            prop_assert_eq!(idx.path.of(&buf), path.as_bytes());
            prop_assert_eq!(idx.query.map(|q| q.of(&buf)), query.as_ref().map(|q| q.as_bytes()));
            prop_assert_eq!(idx.version, if http10 { Version::Http10 } else { Version::Http11 });
            prop_assert_eq!(idx.keep_alive, !http10);
            prop_assert_eq!(idx.framing, BodyFraming::None);
            prop_assert_eq!(idx.headers.len(), headers.len() + 1);
            prop_assert_eq!(idx.header(&buf, "HOST"), Some(&b"example.com"[..]));
            for ((name, value), (n, v, _, _)) in idx.headers[1..].iter().zip(&headers) {
                prop_assert_eq!(name.of(&buf), n.as_bytes());
                prop_assert_eq!(value.of(&buf), v.as_bytes());
            }
        }

        #[test]
        fn chunked_roundtrip(
            data in prop::collection::vec(any::<u8>(), 0..3000),
            chunk_sizes in prop::collection::vec(1usize..400, 1..8),
            feed_sizes in prop::collection::vec(1usize..64, 1..8),
            ext in any::<bool>(),
            trailer in any::<bool>(),
            uppercase in any::<bool>(),
        ) {
            let mut body = Vec::new();
            let mut rest = &data[..];
            let mut sizes = chunk_sizes.iter().copied().cycle();
            while !rest.is_empty() {
                let n = sizes.next().unwrap().min(rest.len());
                let start = body.len();
                encode_chunk_header(&mut body, n);
                if uppercase {
                    body[start..].make_ascii_uppercase();
                }
                if ext {
                    // Put an extension before the CRLF the encoder wrote.
                    body.truncate(body.len() - 2);
                    body.extend_from_slice(b" ; name=\"v; x\"\r\n");
                }
                body.extend_from_slice(&rest[..n]);
                body.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            if trailer {
                body.extend_from_slice(b"0\r\nX-Sum: 1\r\nY: 2\r\n\r\n");
            } else {
                body.extend_from_slice(LAST_CHUNK);
            }
            let body_len = body.len();
            body.extend_from_slice(b"GET / HTTP/1.1\r\n");

            let limit = Some(data.len() as u64);
            let (got, consumed, done) = decode_split(&body, limit, &feed_sizes).unwrap();
            prop_assert!(done);
            prop_assert_eq!(consumed, body_len);
            prop_assert_eq!(got, data);
        }
    }
}
