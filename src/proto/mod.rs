//! Wire protocols as pure functions over bytes.
//!
//! Invariant: nothing in `proto` does I/O or knows about glommio, the ring or slots. Every
//! parser takes a byte slice (plus a small state value where it must resume) and returns
//! [`Parsed::Partial`] when more bytes are needed. This keeps the parsers fuzzable and benchable.

pub mod forwarded;
pub mod http;
pub mod proxy;
pub mod uwsgi;

/// The outcome of feeding bytes to a parser that can be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole unit was parsed.
    Complete(T),
    /// The input ends before the unit does: read more bytes and call again.
    Partial,
}

/// Why a request was refused. Small and `Copy`: this is a hot-path error.
///
/// Each kind knows its HTTP status; the connection answers with that status and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Syntax error in the request line, a header, or chunked framing (400).
    Malformed(&'static str),
    /// `Content-Length` and `Transfer-Encoding` together, or two different lengths (400).
    /// Accepting either would open a request-smuggling hole (RFC 9112 §6.3).
    AmbiguousLength,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2 requires a 400).
    MissingHost,
    /// The request line alone does not fit in `--buffer-size` (414).
    UriTooLong,
    /// The request head does not fit in `--buffer-size`, or has too many headers (431).
    HeadTooLarge,
    /// The declared or decoded body is larger than `--limit-post` (413).
    BodyTooLarge,
    /// A transfer coding other than `chunked` (501, RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
    /// A uwsgi packet whose vars block is larger than `--buffer-size` (431).
    UwsgiTooLarge,
    /// A uwsgi packet with more vars than `--max-vars` (431).
    TooManyVars,
    /// A uwsgi `modifier1` other than 0 (request) and 100 (ping) (501).
    UnsupportedModifier(u8),
}

impl ParseError {
    /// The HTTP status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::Malformed(_) | ParseError::AmbiguousLength | ParseError::MissingHost => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeadTooLarge | ParseError::UwsgiTooLarge | ParseError::TooManyVars => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::UnsupportedTransferCoding | ParseError::UnsupportedModifier(_) => 501,
            ParseError::VersionNotSupported => 505,
        }
    }

    /// A short description for the log line.
    pub fn describe(self) -> &'static str {
        match self {
            ParseError::Malformed(what) => what,
            ParseError::AmbiguousLength => "conflicting Content-Length / Transfer-Encoding",
            ParseError::MissingHost => "HTTP/1.1 request without Host",
            ParseError::UriTooLong => "request line longer than --buffer-size",
            ParseError::HeadTooLarge => "request head larger than --buffer-size",
            ParseError::BodyTooLarge => "body larger than --limit-post",
            ParseError::UnsupportedTransferCoding => "unsupported transfer coding",
            ParseError::VersionNotSupported => "unsupported HTTP version",
            ParseError::UwsgiTooLarge => "uwsgi vars block larger than --buffer-size",
            ParseError::TooManyVars => "more uwsgi vars than --max-vars",
            ParseError::UnsupportedModifier(_) => {
                "unsupported uwsgi modifier1 (only 0, a request, and 100, a ping, are served)"
            }
        }
    }
}
