//! An outbound HTTP client for handlers: HTTP/1.1 and HTTPS on the worker's own ring, with a
//! per-worker connection pool (cargo feature `client`, on by default). See `docs/client.md`.
//!
//! The protocol is hyper's client connection API (`hyper::client::conn::http1`); the bytes
//! travel over ringsgi's [`TcpStream`](crate::TcpStream) (our ring), through rustls (`ring`
//! provider) for `https`. Names resolve off the core ([`resolve`](crate::resolve)). Each
//! connection's protocol task runs on the worker's glommio executor; nothing here is `Send`,
//! as for ringsgi's other primitives: a [`Client`] lives on one worker, and so do its
//! futures. Build one per worker (in the app's factory) and keep it: clones share the pool.
//!
//! ```no_run
//! # async fn handler() -> Result<(), ringsgi::client::Error> {
//! use std::time::Duration;
//! let client = ringsgi::client::Client::builder()
//!     .timeout(Duration::from_secs(2))
//!     .build();
//! let mut resp = client.get("http://127.0.0.1:8000/items").send().await?;
//! println!("{}", resp.status());
//! while let Some(chunk) = resp.chunk().await? {
//!     println!("{} bytes", chunk.len());
//! }
//! # Ok(()) }
//! ```

mod body;
mod error;
mod io;
mod pool;
mod tls;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::BodyExt;

pub use body::Body;
pub use error::{Error, ErrorKind};
use pool::{Conn, Key, Pool};

/// A client's settings (see [`ClientBuilder`] for each one's meaning and default).
#[derive(Debug, Clone)]
struct Config {
    connect_timeout: Duration,
    timeout: Option<Duration>,
    pool_idle_timeout: Duration,
    pool_per_host: usize,
    redirects: usize,
    system_roots: bool,
    ca_files: Vec<PathBuf>,
    user_agent: Option<HeaderValue>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(30)),
            pool_idle_timeout: Duration::from_secs(30),
            pool_per_host: 64,
            redirects: 0,
            system_roots: true,
            ca_files: Vec::new(),
            user_agent: Some(HeaderValue::from_static(concat!(
                "ringsgi/",
                env!("CARGO_PKG_VERSION")
            ))),
        }
    }
}

/// Sets up a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: Config,
}

impl ClientBuilder {
    /// Time allowed for resolving, connecting and the TLS handshake of a new connection
    /// (default 5 s; the total timeout still applies).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Time allowed for a whole request, from `send` to the last byte of the response body
    /// (default 30 s; a `Duration`, or `None`: no limit, the handler's harakiri still
    /// applies). A stalled
    /// upstream ends with [`ErrorKind::Timeout`]. A request can set its own.
    pub fn timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.timeout = d.into();
        self
    }

    /// How long an unused pooled connection is kept (default 30 s).
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.config.pool_idle_timeout = d;
        self
    }

    /// At most this many connections to one scheme and authority at once, in use or idle
    /// (default 64, at least 1). A request beyond it waits for one, within its timeout.
    pub fn pool_max_per_host(mut self, n: usize) -> Self {
        self.config.pool_per_host = n.max(1);
        self
    }

    /// Follow up to `n` redirects (301, 302, 303, 307, 308; default 0: a redirect is returned
    /// as it is). More than `n` is [`ErrorKind::TooManyRedirects`]. 303, and 301/302 after a
    /// `POST`, continue as a `GET` without a body; 307/308 repeat the method and body (not
    /// possible with a streamed body: the redirect is returned). `Authorization` and
    /// `Cookie` are not sent to another host.
    pub fn redirects(mut self, n: usize) -> Self {
        self.config.redirects = n;
        self
    }

    /// Trust the system's certificate authorities (default `true`): the system store as
    /// OpenSSL finds it, or only `SSL_CERT_FILE` / `SSL_CERT_DIR` when those are set.
    pub fn system_roots(mut self, yes: bool) -> Self {
        self.config.system_roots = yes;
        self
    }

    /// Also trust the certificate authorities in this PEM file.
    pub fn add_root_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ca_files.push(path.into());
        self
    }

    /// The `User-Agent` sent when a request has none (default `ringsgi/VERSION`; `None`:
    /// none).
    pub fn user_agent(mut self, ua: Option<&str>) -> Self {
        self.config.user_agent = ua.and_then(|s| HeaderValue::from_str(s).ok());
        self
    }

    /// The client. Call on the worker (an app's factory runs there).
    pub fn build(self) -> Client {
        let pool = Pool::new(self.config.pool_idle_timeout, self.config.pool_per_host);
        Client(Rc::new(Shared {
            config: self.config,
            pool,
            tls: RefCell::new(None),
        }))
    }
}

/// An HTTP client on one worker: settings, a TLS configuration (built on first use, off the
/// core) and a connection pool keyed by scheme and authority. Cloning shares all three.
#[derive(Clone)]
pub struct Client(Rc<Shared>);

struct Shared {
    config: Config,
    pool: Rc<Pool>,
    /// The rustls configuration, once a first `https` request has built it.
    tls: RefCell<Option<Arc<rustls::ClientConfig>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.0.config)
            .field("pool", &self.0.pool.stats())
            .finish()
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

/// Counters of a client's pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened (TCP connect, and TLS handshake for `https`, succeeded).
    pub opened: u64,
    /// Requests sent on a connection taken from the pool.
    pub reused: u64,
    /// Requests sent again on a new connection after a pooled one turned out dead.
    pub retried: u64,
    /// Connections idle in the pool now.
    pub idle: usize,
}

impl Client {
    /// A client with the default settings.
    pub fn new() -> Client {
        ClientBuilder::default().build()
    }

    /// This worker's shared client with the default settings (a thread-local, built on first
    /// use): for code that has no place to keep its own, such as an axum handler.
    pub fn worker_default() -> Client {
        thread_local! {
            // Never dropped: its connections' tasks belong to the worker's executor, which is
            // gone by the time thread-locals are destroyed (a worker lives as long as its
            // process anyway).
            static DEFAULT: std::mem::ManuallyDrop<Client> =
                std::mem::ManuallyDrop::new(Client::new());
        }
        DEFAULT.with(|c| Client::clone(c))
    }

    /// Settings for a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.0.pool.stats()
    }

    /// A request with `method` to `url` (`http://` or `https://`).
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let (uri, error) = match url.parse::<Uri>() {
            Ok(u) => (u, None),
            Err(e) => (Uri::default(), Some(Error::with(ErrorKind::InvalidUrl, e))),
        };
        RequestBuilder {
            client: self.clone(),
            method,
            uri,
            headers: HeaderMap::new(),
            body: Body::empty(),
            timeout: self.0.config.timeout,
            error,
        }
    }

    /// A `GET` request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `HEAD` request.
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `DELETE` request.
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    async fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        if let Some(c) = self.0.tls.borrow().as_ref() {
            return Ok(c.clone());
        }
        // Reading the system store is file I/O: off the core, as name resolution is.
        let system = self.0.config.system_roots;
        let files = self.0.config.ca_files.clone();
        crate::harakiri::note_wait("client: loading CA certificates");
        let config = glommio::executor()
            .spawn_blocking(move || tls::config(system, &files))
            .await?;
        *self.0.tls.borrow_mut() = Some(config.clone());
        Ok(config)
    }

    /// A connection for `key`: an idle pooled one, or a new one once the host is below its
    /// limit.
    async fn conn(&self, target: &Target, deadline: Option<Instant>) -> Result<Conn, Error> {
        let pool = &self.0.pool;
        let acquired = match within(deadline, pool.acquire(&target.key)).await {
            Some(a) => a,
            None => {
                return Err(Error::with(
                    ErrorKind::Timeout,
                    "waiting for a connection (pool limit)",
                ));
            }
        };
        match acquired {
            pool::Acquired::Idle(conn) => Ok(conn),
            pool::Acquired::New(slot) => self.open(target, slot, deadline).await,
        }
    }

    /// Open a new connection (the host slot is already taken).
    async fn open(
        &self,
        target: &Target,
        slot: pool::HostSlot,
        deadline: Option<Instant>,
    ) -> Result<Conn, Error> {
        let mut timeout = self.0.config.connect_timeout;
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        let tls = if target.key.https {
            Some(self.tls_config().await?)
        } else {
            None
        };
        let stream = io::open(&target.host, target.port, tls, timeout).await?;
        if !stream.is_http11() {
            return Err(Error::with(
                ErrorKind::Protocol,
                "the server chose a protocol other than http/1.1 (ALPN)",
            ));
        }
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, Body>(stream)
            .await
            .map_err(error::send_error)?;
        let task = glommio::spawn_local(async move {
            if let Err(e) = connection.await {
                tracing::debug!("client connection ended: {e}");
            }
        });
        Ok(self.0.pool.opened(sender, task, slot))
    }

    /// Send one request (no redirects); retries once on a new connection when a pooled one
    /// turns out dead and the request can be sent again.
    async fn send_once(
        &self,
        parts: &RequestParts,
        body: Body,
        deadline: Option<Instant>,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, Conn), Error> {
        let target = Target::parse(&parts.uri)?;
        let replay = if is_idempotent(&parts.method) {
            body.try_clone()
        } else {
            None
        };
        let mut conn = self.conn(&target, deadline).await?;
        let req = self.hyper_request(parts, &target, body)?;
        let reused = conn.reused;
        let first = within(deadline, conn.sender.try_send_request(req)).await;
        let err = match first {
            None => return Err(Error::with(ErrorKind::Timeout, "waiting for the response")),
            Some(Ok(resp)) => return Ok((resp, conn)),
            Some(Err(e)) => e,
        };
        let mut err = err;
        drop(conn);
        // A pooled connection the upstream had closed (idle timeout on its side): hyper hands
        // the request back if nothing was written; an idempotent request with a body we still
        // have is sent again anyway.
        let again = if reused && is_dead_connection(err.error()) {
            match err.take_message() {
                Some(req) => Some(req),
                None => match replay {
                    Some(b) => Some(self.hyper_request(parts, &target, b)?),
                    None => None,
                },
            }
        } else {
            None
        };
        let Some(req) = again else {
            return Err(error::send_error(err.into_error()));
        };
        self.0.pool.note_retry();
        let slot = match within(deadline, self.0.pool.acquire_new(&target.key)).await {
            Some(s) => s,
            None => return Err(Error::with(ErrorKind::Timeout, "waiting for a connection")),
        };
        let mut conn = self.open(&target, slot, deadline).await?;
        match within(deadline, conn.sender.send_request(req)).await {
            None => Err(Error::with(ErrorKind::Timeout, "waiting for the response")),
            Some(Ok(resp)) => Ok((resp, conn)),
            Some(Err(e)) => Err(error::send_error(e)),
        }
    }

    fn hyper_request(
        &self,
        parts: &RequestParts,
        target: &Target,
        body: Body,
    ) -> Result<hyper::Request<Body>, Error> {
        let mut req = hyper::Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = target.origin_form.clone();
        let headers = req.headers_mut();
        *headers = parts.headers.clone();
        if !headers.contains_key(header::HOST) {
            let host = HeaderValue::from_str(&target.host_header)
                .map_err(|e| Error::with(ErrorKind::InvalidUrl, e))?;
            headers.insert(header::HOST, host);
        }
        if let Some(ua) = &self.0.config.user_agent
            && !headers.contains_key(header::USER_AGENT)
        {
            headers.insert(header::USER_AGENT, ua.clone());
        }
        Ok(req)
    }
}

/// Method, URL and headers of a request: what a retry or a redirect sends again.
#[derive(Debug, Clone)]
struct RequestParts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

/// A request being set up; [`send`](RequestBuilder::send) it.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    timeout: Option<Duration>,
    /// The first mistake made while building (bad URL, header or JSON), reported by `send`.
    error: Option<Error>,
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish()
    }
}

impl RequestBuilder {
    /// Add a header (an invalid name or value is reported by `send`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            (Err(e), _) => {
                self.error.get_or_insert(Error::with(ErrorKind::Request, e));
            }
            (_, Err(e)) => {
                self.error.get_or_insert(Error::with(ErrorKind::Request, e));
            }
        }
        self
    }

    /// The request body: bytes, a string, or a stream ([`Body::from_stream`]).
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body (`serde_json`), with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => {
                self.body = Body::from(v);
                self.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Err(e) => {
                self.error.get_or_insert(Error::with(ErrorKind::Json, e));
            }
        }
        self
    }

    /// This request's total timeout (a `Duration`, or `None` for no limit), instead of the
    /// client's.
    pub fn timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.timeout = d.into();
        self
    }

    /// Send the request; the result comes when the response head has arrived (read the body
    /// from the [`Response`]). Errors: see [`ErrorKind`].
    pub async fn send(self) -> Result<Response, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        crate::harakiri::note_wait("client request");
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let client = self.client;
        let mut parts = RequestParts {
            method: self.method,
            uri: self.uri,
            headers: self.headers,
        };
        let mut body = self.body;
        let limit = client.0.config.redirects;
        let mut followed = 0;
        loop {
            let replay = if limit > 0 { body.try_clone() } else { None };
            let (resp, conn) = client.send_once(&parts, body, deadline).await?;
            let status = resp.status();
            let url = parts.uri.clone();
            let resp = Response::new(resp, (client.0.pool.clone(), conn), url, deadline);
            if limit == 0 || !status.is_redirection() {
                return Ok(resp);
            }
            let Some(next) = redirect(&parts, status, resp.headers(), replay) else {
                return Ok(resp);
            };
            // An empty redirect body leaves the connection reusable; otherwise it is closed.
            drop(resp);
            if followed == limit {
                return Err(Error::with(
                    ErrorKind::TooManyRedirects,
                    format!("more than {limit}, last to {}", next.0.uri),
                ));
            }
            followed += 1;
            (parts, body) = next;
        }
    }
}

/// The request a redirect asks for, if the client can make it.
fn redirect(
    prev: &RequestParts,
    status: StatusCode,
    headers: &HeaderMap,
    body: Option<Body>,
) -> Option<(RequestParts, Body)> {
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    let uri = join_url(&prev.uri, location)?;
    let mut headers = prev.headers.clone();
    if uri.authority() != prev.uri.authority() || uri.scheme() != prev.uri.scheme() {
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::COOKIE);
    }
    headers.remove(header::HOST);
    let (method, body) = match status.as_u16() {
        303 => (Method::GET, Body::empty()),
        301 | 302 if prev.method == Method::POST => (Method::GET, Body::empty()),
        301 | 302 | 307 | 308 => (prev.method.clone(), body?),
        _ => return None,
    };
    if method == Method::GET && prev.method != Method::GET {
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
    }
    Some((
        RequestParts {
            method,
            uri,
            headers,
        },
        body,
    ))
}

/// `location` (absolute, scheme-relative, absolute-path or relative-path) against `base`.
fn join_url(base: &Uri, location: &str) -> Option<Uri> {
    if location.contains("://") {
        return location.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let url = if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    };
    url.parse().ok()
}

/// RFC 9110 §9.2.2: a request that can be repeated without a different effect.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// The errors of a pooled connection that the upstream had already closed.
fn is_dead_connection(e: &hyper::Error) -> bool {
    use std::io::ErrorKind as K;
    if e.is_canceled() || e.is_incomplete_message() || e.is_closed() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof
            );
        }
        cause = c.source();
    }
    false
}

/// Where a request goes, from its URL.
#[derive(Debug)]
struct Target {
    key: Key,
    /// Host as written (an IPv6 literal keeps its brackets).
    host: String,
    port: u16,
    /// The `Host` header: the authority without user information.
    host_header: String,
    /// `/path?query`, what goes on the request line.
    origin_form: Uri,
}

impl Target {
    fn parse(uri: &Uri) -> Result<Target, Error> {
        let bad = |why: &str| Error::with(ErrorKind::InvalidUrl, format!("{uri}: {why}"));
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(_) => return Err(bad("not http or https")),
            None => return Err(bad("no scheme")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host_header = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, h)| h)
            .to_owned();
        let host = authority.host().to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let origin_form = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse::<Uri>()
            .map_err(|e| Error::with(ErrorKind::InvalidUrl, e))?;
        let origin_form = if origin_form.path().is_empty() {
            Uri::from_static("/")
        } else {
            origin_form
        };
        Ok(Target {
            key: Key {
                https,
                host: host.to_ascii_lowercase(),
                port,
            },
            host,
            port,
            host_header,
            origin_form,
        })
    }
}

/// A response whose head has arrived; the body is read from it (streamed, or whole).
///
/// The request's total timeout goes on applying while the body is read. Dropping a response
/// before the end of its body closes its connection; reading to the end returns the
/// connection to the pool.
pub struct Response {
    head: http::response::Parts,
    body: hyper::body::Incoming,
    /// The connection, until the body has been read to its end (then it goes back to the
    /// pool) or the response is dropped before (then it is closed).
    conn: Option<(Rc<Pool>, Conn)>,
    url: Uri,
    deadline: Option<Instant>,
}

impl Drop for Response {
    fn drop(&mut self) {
        if let Some((pool, conn)) = self.conn.take()
            && http_body::Body::is_end_stream(&self.body)
        {
            pool.give_back(conn);
        }
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url)
            .field("status", &self.head.status)
            .field("headers", &self.head.headers)
            .finish()
    }
}

impl Response {
    fn new(
        resp: hyper::Response<hyper::body::Incoming>,
        conn: (Rc<Pool>, Conn),
        url: Uri,
        deadline: Option<Instant>,
    ) -> Response {
        let (head, body) = resp.into_parts();
        Response {
            head,
            body,
            conn: Some(conn),
            url,
            deadline,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The URL that answered (after redirects).
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The next piece of the body as it arrives (`None` at its end). Trailers are skipped.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            crate::harakiri::note_wait("client response body");
            let frame = match within(self.deadline, self.body.frame()).await {
                None => {
                    return Err(Error::with(ErrorKind::Timeout, "reading the response body"));
                }
                Some(None) => {
                    if let Some((pool, conn)) = self.conn.take() {
                        pool.give_back(conn);
                    }
                    return Ok(None);
                }
                Some(Some(f)) => f.map_err(error::body_error)?,
            };
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.bytes_limited(usize::MAX).await
    }

    /// The whole body, or [`ErrorKind::TooLarge`] once it passes `max` bytes.
    pub async fn bytes_limited(mut self, max: usize) -> Result<Bytes, Error> {
        let mut first: Option<Bytes> = None;
        let mut all: Vec<u8> = Vec::new();
        while let Some(c) = self.chunk().await? {
            let have = all.len() + first.as_ref().map_or(0, Bytes::len);
            if have + c.len() > max {
                return Err(Error::with(
                    ErrorKind::TooLarge,
                    format!("more than {max} bytes"),
                ));
            }
            match first.take() {
                None if all.is_empty() => first = Some(c),
                None => all.extend_from_slice(&c),
                Some(f) => {
                    all.extend_from_slice(&f);
                    all.extend_from_slice(&c);
                }
            }
        }
        Ok(first.unwrap_or_else(|| Bytes::from(all)))
    }

    /// The whole body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String, Error> {
        let b = self.bytes().await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// The whole body decoded as JSON (`serde_json`).
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let b = self.bytes().await?;
        serde_json::from_slice(&b).map_err(|e| Error::with(ErrorKind::Json, e))
    }
}

/// `fut`'s output, or `None` if `deadline` passes first (`None` deadline: no limit).
///
/// The timer is made only if `fut` is not ready at its first poll: a pooled connection, or
/// body bytes hyper has already buffered, cost no timer.
pub(crate) async fn within<F: Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    let Some(deadline) = deadline else {
        return Some(fut.await);
    };
    let mut fut = pin!(fut);
    let mut timer = pin!(None::<glommio::timer::Timer>);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            timer.set(Some(glommio::timer::Timer::new(left)));
        }
        match timer.as_mut().as_pin_mut().map(|t| t.poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(None),
        }
    })
    .await
}
