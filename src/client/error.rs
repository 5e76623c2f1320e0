//! The client's one error type: opaque, with a kind a handler can branch on.

use std::fmt;
use std::io;

/// What went wrong, in the terms a handler acts on (retry later, report a bad gateway, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL cannot be requested: not `http`/`https`, no host, bad characters.
    InvalidUrl,
    /// The host name did not resolve, or resolved to no address.
    Resolve,
    /// No TCP connection could be made (refused, unreachable, ...).
    Connect,
    /// The TLS handshake failed; a certificate that does not verify is one case.
    Tls,
    /// The connect timeout or the request's total timeout passed (a stalled upstream).
    Timeout,
    /// The upstream's response is not valid HTTP/1.1 (status line, headers, framing).
    Protocol,
    /// The connection closed before the response head was complete.
    ClosedBeforeResponse,
    /// The connection closed, or failed, in the middle of the response body.
    ClosedMidBody,
    /// Writing the request (or reading its streamed body) failed.
    Request,
    /// More redirects than the client's limit.
    TooManyRedirects,
    /// The body is not the JSON that was asked for (or a value could not be encoded).
    Json,
    /// The response body is larger than the limit given to `bytes_limited`.
    TooLarge,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid URL",
            ErrorKind::Resolve => "name resolution failed",
            ErrorKind::Connect => "connection failed",
            ErrorKind::Tls => "TLS handshake failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Protocol => "malformed response",
            ErrorKind::ClosedBeforeResponse => "connection closed before the response",
            ErrorKind::ClosedMidBody => "connection closed in the response body",
            ErrorKind::Request => "sending the request failed",
            ErrorKind::TooManyRedirects => "too many redirects",
            ErrorKind::Json => "JSON error",
            ErrorKind::TooLarge => "response body too large",
        }
    }
}

/// An error of [`Client`](super::Client): a kind and the underlying cause, if any.
///
/// `Display` gives one line: the kind's description, then the cause (`connection failed:
/// Connection refused (os error 111)`). The exact text may change; branch on [`Error::kind`]
/// or the `is_*` predicates.
pub struct Error {
    kind: ErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error { kind, source: None }
    }

    pub(crate) fn with(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error {
            kind,
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The connect or total timeout passed.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// No connection could be made (resolution, TCP connect or TLS handshake).
    pub fn is_connect(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Resolve | ErrorKind::Connect | ErrorKind::Tls
        )
    }

    /// The upstream broke the protocol or the connection (malformed or truncated response).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Protocol | ErrorKind::ClosedBeforeResponse | ErrorKind::ClosedMidBody
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("client::Error");
        d.field("kind", &self.kind);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        // The innermost cause says the most (`hyper: connection error: ... reset by peer`).
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        let mut parts: Vec<String> = Vec::new();
        while let Some(c) = cause {
            let text = c.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            cause = c.source();
        }
        for p in parts {
            write!(f, ": {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    /// For handlers that use `?` into `io::Result` (an [`App`](crate::App)'s return type).
    fn from(e: Error) -> io::Error {
        let kind = match e.kind {
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::InvalidUrl => io::ErrorKind::InvalidInput,
            ErrorKind::Connect => io::ErrorKind::ConnectionRefused,
            ErrorKind::Json => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Classify an I/O error of the connect phase.
pub(crate) fn connect_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::TimedOut {
        return Error::with(ErrorKind::Timeout, e);
    }
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls || e.kind() == io::ErrorKind::InvalidData {
        Error::with(ErrorKind::Tls, e)
    } else {
        Error::with(ErrorKind::Connect, e)
    }
}

/// Classify an error from hyper while sending a request or waiting for the head.
pub(crate) fn send_error(e: hyper::Error) -> Error {
    if e.is_parse() {
        Error::with(ErrorKind::Protocol, e)
    } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        Error::with(ErrorKind::ClosedBeforeResponse, e)
    } else if e.is_user() || e.is_body_write_aborted() {
        Error::with(ErrorKind::Request, e)
    } else if io_kind(&e) == Some(io::ErrorKind::TimedOut) {
        Error::with(ErrorKind::Timeout, e)
    } else {
        Error::with(ErrorKind::ClosedBeforeResponse, e)
    }
}

/// Classify an error from hyper while reading the response body.
pub(crate) fn body_error(e: hyper::Error) -> Error {
    if e.is_parse() {
        Error::with(ErrorKind::Protocol, e)
    } else if io_kind(&e) == Some(io::ErrorKind::TimedOut) {
        Error::with(ErrorKind::Timeout, e)
    } else {
        Error::with(ErrorKind::ClosedMidBody, e)
    }
}

/// The kind of the I/O error at the bottom of `e`'s causes, if there is one.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cause = c.source();
    }
    None
}
