//! tower services as apps: any `tower::Service<http::Request<RequestBody>>` (an axum
//! `Router`, a `tower::service_fn`, a stack of tower layers) served on the request slots like
//! an [`App`].
//!
//! ```
//! use std::convert::Infallible;
//!
//! use ringsgi::tower::RequestBody;
//!
//! let mut apps = ringsgi::Apps::new();
//! // Built in each worker after the fork; `--app hello` or `--mount /hello=hello` serves it.
//! apps.register("hello", || {
//!     ringsgi::tower::app(tower::service_fn(|req: http::Request<RequestBody>| async move {
//!         Ok::<_, Infallible>(http::Response::new(format!("hello from {}\n", req.uri().path())))
//!     }))
//! });
//! ```
//!
//! What the adapter does, per request (the `App` contract holds: harakiri, panics → `500`,
//! stats and the request log are the connection loop's, as for every app):
//!
//! - **Request.** Method, target (as the URI), version and headers become an
//!   `http::Request`; the body is a [`RequestBody`], read from the connection on demand. The
//!   client's address is the request extension [`Peer`](crate::Peer) (behind nginx's
//!   `uwsgi_pass` or a trusted proxy, the client they name), read in axum with
//!   `Extension<ringsgi::Peer>`. A head that `http` refuses (a target that is not a URI) is
//!   answered `400`.
//! - **Call.** The service is cloned for each request (axum's `Router` is an `Arc`), then
//!   `poll_ready` and `call`; its future runs in the request's slot. An `Err` from either, a
//!   panic anywhere in it, or a request body over `--limit-post` (`413`) ends this request
//!   alone, as for an `App`.
//! - **Response.** The head is checked (a final status 200-599; a `Content-Length` that is a
//!   number), hop-by-hop fields (`Connection`, `Transfer-Encoding`, `Keep-Alive`, `Upgrade`)
//!   and `Date`/`Server` (the server writes its own) are dropped; an invalid head is a `500`.
//!   The body's frames are written one by one, each an `.await` where the worker's other
//!   slots run. Framing: the service's `Content-Length` or the body's exact size hint, else
//!   `Content-Length` when the body ends with its first frame, else chunked (HTTP/1.1; closed
//!   connection for HTTP/1.0 and the uwsgi listener). Trailers are sent in a chunked body's last
//!   chunk and dropped otherwise (HTTP/1.1 carries them only there).
//!
//! Handlers of `Send` frameworks (axum) must return `Send` futures, and ringsgi's primitives
//! are not `Send` (they live on the worker's ring): wrap them in [`local`]. See
//! `docs/tower.md`.

mod body;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::rc::Rc;

use bytes::Buf;
use http::header::HeaderName;
use http_body::Body as HttpBody;
use tower_service::Service;

pub use body::RequestBody;

use crate::app::{App, BoxFuture};
use crate::proto::http::BodyFraming;
use crate::request::{Body, Request};
use crate::response::Response;

/// The error type services may return (tower's convention).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower service served as an [`App`]; made by [`app`].
pub struct TowerApp<S> {
    service: S,
}

impl<S> fmt::Debug for TowerApp<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TowerApp")
    }
}

/// Serve `service` as an app: register the result with [`Apps::register`](crate::Apps::register)
/// in a factory, which each worker calls once after the fork.
///
/// The service is cloned for each request and must be `Clone` (wrap one that is not in an
/// `Rc`-holding service of your own, or build it per request).
pub fn app<S>(service: S) -> TowerApp<S> {
    TowerApp { service }
}

impl<S, B> App for TowerApp<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<B>> + Clone + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: HttpBody + 'static,
    B::Error: Into<BoxError>,
{
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(serve(self.service.clone(), req, resp))
    }
}

/// Wrap a future that is not `Send` (ringsgi's primitives: [`sleep`](crate::sleep),
/// [`connect`](crate::connect), [`wait_fd_read`](crate::wait_fd_read), ...) so that a `Send`
/// handler (axum's) may await it.
///
/// ringsgi never moves a request to another thread, so this only lifts the type check: the
/// wrapper records the thread that made it, and polling or dropping it on any other thread
/// panics ([`send_wrapper`](https://docs.rs/send_wrapper)) instead of being undefined
/// behaviour. Wrap a whole block that holds non-`Send` values (a
/// [`TcpStream`](crate::TcpStream)) across its awaits, and return `Send` data from it:
///
/// ```no_run
/// use std::time::Duration;
///
/// async fn slow() -> String {
///     ringsgi::tower::local(ringsgi::sleep(Duration::from_millis(100))).await;
///     let reply = ringsgi::tower::local(async {
///         use futures_lite::{AsyncReadExt, AsyncWriteExt};
///         let addr = ringsgi::resolve("localhost", 6379).await?[0];
///         let mut conn = ringsgi::connect(addr, Some(Duration::from_secs(1))).await?;
///         conn.write_all(b"PING\r\n").await?;
///         let mut reply = [0u8; 7];
///         conn.read_exact(&mut reply).await?;
///         std::io::Result::Ok(reply)
///     })
///     .await;
///     format!("{reply:?}")
/// }
/// ```
pub fn local<F: Future>(future: F) -> impl Future<Output = F::Output> + Send {
    send_wrapper::SendWrapper::new(future)
}

/// Puts the connection's body stream back into the [`Request`] when the request ends, however
/// it ends (returned, failed, panicked, cancelled by harakiri): the connection loop reads the
/// rest of it (keep-alive) or knows it must close.
struct BodyGuard<'a> {
    slot: &'a mut Body,
    shared: body::Shared,
    /// Stops a read still in progress after the request (see `Body::revoked`).
    revoked: Rc<Cell<bool>>,
}

impl<'a> BodyGuard<'a> {
    fn take(slot: &'a mut Body) -> BodyGuard<'a> {
        // The placeholder says "unread input that cannot be drained": if the stream cannot be
        // put back (a read of it is in progress), the connection is closed.
        let mut placeholder = Body::new(slot.fd, Vec::new(), 0, BodyFraming::Length(1), None);
        placeholder.broken = true;
        let mut body = std::mem::replace(slot, placeholder);
        let revoked = Rc::new(Cell::new(false));
        body.revoked = Some(revoked.clone());
        BodyGuard {
            slot,
            shared: Rc::new(RefCell::new(body::Stream::Idle(body))),
            revoked,
        }
    }

    /// The framing error the body met (`413` over `--limit-post`, `400` malformed), if any.
    fn framing_error(&self) -> Option<crate::proto::ParseError> {
        match &*self.shared.borrow() {
            body::Stream::Idle(b) => b.error,
            body::Stream::Reading | body::Stream::Over => None,
        }
    }
}

impl Drop for BodyGuard<'_> {
    fn drop(&mut self) {
        self.revoked.set(true);
        if let body::Stream::Idle(mut body) = self.shared.replace(body::Stream::Over) {
            body.revoked = None;
            *self.slot = body;
        }
    }
}

/// One request through `service`.
async fn serve<S, B>(mut service: S, req: &mut Request, resp: &mut Response) -> io::Result<()>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    let parts = match head(req) {
        Ok(parts) => parts,
        Err(why) => {
            tracing::warn!("{} {}: {why}: 400", req.method(), req.target());
            return resp.send_error(400).await;
        }
    };
    let guard = BodyGuard::take(&mut req.body);
    let request = http::Request::from_parts(parts, RequestBody::new(guard.shared.clone()));
    crate::harakiri::note_wait("the service");
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(service_error)?;
    let response = service.call(request).await.map_err(service_error)?;
    if let Some(e) = guard.framing_error() {
        // The connection loop answers with the error's status (the body is put back first).
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request body: {}", e.describe()),
        ));
    }
    write_response(resp, response).await
}

fn service_error(e: impl Into<BoxError>) -> io::Error {
    io::Error::other(e.into())
}

/// The `http` head of `req`.
fn head(req: &Request) -> Result<http::request::Parts, String> {
    let mut builder = http::Request::builder()
        .method(
            http::Method::from_bytes(req.method().as_bytes())
                .map_err(|_| format!("method {:?} refused by http", req.method()))?,
        )
        .uri(
            http::Uri::try_from(req.target())
                .map_err(|e| format!("target {:?}: {e}", req.target()))?,
        )
        .version(match req.version() {
            "HTTP/1.0" => http::Version::HTTP_10,
            _ => http::Version::HTTP_11,
        });
    let headers = builder.headers_mut().expect("the builder has no error yet");
    headers.reserve(req.index.headers.len());
    for (name, value) in req.headers() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name {name:?} refused by http"))?;
        let value = http::HeaderValue::from_bytes(value)
            .map_err(|_| format!("header {name} has a value refused by http"))?;
        headers.append(name, value);
    }
    let builder = builder.extension(req.peer().clone());
    let (parts, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
    Ok(parts)
}

fn invalid(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("invalid response: {why}"),
    )
}

/// Header fields that describe one connection (RFC 9110 §7.6.1), which the server sets itself,
/// or that the server writes itself (`Date`, `Server`).
fn dropped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "date"
            | "server"
    )
}

/// Fields a trailer may not carry (RFC 9110 §6.5.1: framing, routing, and what the server
/// manages).
fn refused_in_trailer(name: &HeaderName) -> bool {
    dropped(name) || matches!(name.as_str(), "content-length" | "host" | "te" | "trailer")
}

/// The next frame of `body`, its error as an `io::Error`.
async fn next_frame<B>(
    body: &mut std::pin::Pin<&mut B>,
) -> io::Result<Option<http_body::Frame<B::Data>>>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    crate::harakiri::note_wait("the response body");
    match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        None => Ok(None),
        Some(Ok(frame)) => Ok(Some(frame)),
        Some(Err(e)) => Err(io::Error::other(format!(
            "response body: {}",
            Into::<BoxError>::into(e)
        ))),
    }
}

/// Write the service's response on `resp`, frame by frame.
async fn write_response<B>(resp: &mut Response, response: http::Response<B>) -> io::Result<()>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    if !(200..=599).contains(&status) {
        return Err(invalid(format!("status {status} is not a final status")));
    }
    let mut declared: Option<u64> = None;
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH {
            let n = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid(format!("Content-Length {value:?}")))?;
            if declared.is_some_and(|d| d != n) {
                return Err(invalid("two different Content-Lengths".into()));
            }
            declared = Some(n);
        } else if name == http::header::CONNECTION {
            if value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                resp.keep_alive = false;
            }
        } else if !dropped(name) {
            resp.header(name.as_str(), value.as_bytes());
        }
    }
    let mut body = pin!(body);
    let no_body = resp.head_only || status == 204 || status == 304;
    if no_body {
        // No byte of the body is ever sent: do not run it.
        match declared.or_else(|| body.size_hint().exact()) {
            Some(n) => resp.start_sized(status, n)?,
            None => resp.start(status)?,
        }
        return resp.finish().await;
    }
    // The size hint before any frame is taken (after one, it counts what is left). The first
    // frame before the head: an error there is still a clean 500, and a body that ends with it
    // gets a Content-Length.
    let mut length = declared.or_else(|| body.size_hint().exact());
    let mut pending = next_frame(&mut body).await?;
    if length.is_none() && (pending.is_none() || body.is_end_stream()) {
        length = Some(match &pending {
            Some(frame) => frame.data_ref().map_or(0, |d| d.remaining() as u64),
            None => 0,
        });
    }
    match length {
        Some(n) => resp.start_sized(status, n)?,
        None => resp.start(status)?,
    }
    let mut trailers = Vec::new();
    while let Some(frame) = pending.take() {
        match frame.into_data() {
            Ok(mut data) => {
                let bytes = data.copy_to_bytes(data.remaining());
                if !bytes.is_empty() {
                    if length.is_some() {
                        resp.write_filled(|mut out| async move {
                            out.extend_from_slice(&bytes);
                            (Ok(bytes.len()), out)
                        })
                        .await?;
                    } else {
                        resp.write(&bytes).await?;
                    }
                }
            }
            Err(frame) => {
                if let Ok(fields) = frame.into_trailers() {
                    for (name, value) in &fields {
                        let value = value.as_bytes();
                        if refused_in_trailer(name)
                            || value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
                        {
                            continue;
                        }
                        trailers.extend_from_slice(name.as_str().as_bytes());
                        trailers.extend_from_slice(b": ");
                        trailers.extend_from_slice(value);
                        trailers.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
        pending = next_frame(&mut body).await?;
    }
    resp.finish_with_trailers(&trailers).await
}
