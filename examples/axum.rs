//! An axum `Router` served by ringsgi (axum without its `tokio` feature), and a plain tower
//! service that fails, mounted beside it.
//!
//! Run: `cargo run --release --example axum -- --http 127.0.0.1:8080 --cores 1 --async 100
//! --mount /fail=failing` then:
//!
//! - `curl localhost:8080/users/42` → `{"id":42}`
//! - `curl -d '{"a":[1,2]}' -H 'Content-Type: application/json' localhost:8080/json` → the
//!   JSON body echoed
//! - `curl 'localhost:8080/query?name=ringsgi'` → `hello ringsgi`
//! - `curl localhost:8080/count` → `{"worker":0,"count":1}`, counted per worker (`State`
//!   built in each worker after the fork)
//! - `curl --raw localhost:8080/stream` → 120,000 bytes in 12 chunks and a trailer
//!   (`?delay_ms=N`: a ringsgi sleep between chunks)
//! - `curl localhost:8080/panic` → `500`, this request alone
//! - `curl 'localhost:8080/sleep?ms=250'` → `slept 250 ms` (ringsgi's `sleep` from a `Send`
//!   handler, through `ringsgi::tower::local`)
//! - `curl localhost:8080/client` → the client's address (the `ringsgi::Peer` extension)
//! - `curl --data-binary @big.file localhost:8080/echo` → the body streamed back as it is read
//! - `curl localhost:8080/fail` → `500` (the service returns an error),
//!   `curl localhost:8080/fail/head` → `500` (an invalid response head),
//!   `curl localhost:8080/fail/body` → `500` (a body that fails before its first byte),
//!   `curl -d x localhost:8080/fail/keep-body` → `kept` (a body kept past its request)
//!
//! Every ringsgi flag works (`--harakiri`, `--limit-post`, `--socket` for nginx's `uwsgi_pass`,
//! `--logformat`...).

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body::Frame;
use ringsgi::Apps;
use ringsgi::tower::{RequestBody, local};
use serde::Deserialize;
use serde_json::{Value, json};

/// The state of one worker's router (each worker builds its own after the fork).
#[derive(Clone)]
struct Counter(Arc<AtomicU64>);

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "Hello World!" }))
        .route("/users/{id}", get(user))
        .route("/json", post(echo_json))
        .route("/query", get(query))
        .route("/count", get(count))
        .route("/stream", get(stream))
        .route("/panic", get(panics))
        .route("/sleep", get(sleep))
        .route("/client", get(client))
        .route("/echo", post(echo))
        .with_state(Counter(Arc::new(AtomicU64::new(0))))
}

async fn user(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({ "id": id }))
}

async fn echo_json(Json(body): Json<Value>) -> Json<Value> {
    Json(body)
}

#[derive(Deserialize)]
struct Name {
    name: String,
}

async fn query(Query(q): Query<Name>) -> String {
    format!("hello {}", q.name)
}

async fn count(State(Counter(n)): State<Counter>) -> Json<Value> {
    let count = n.fetch_add(1, Ordering::Relaxed) + 1;
    Json(json!({ "worker": ringsgi::worker_id(), "count": count }))
}

#[derive(Deserialize)]
struct Delay {
    #[serde(default)]
    delay_ms: u64,
}

async fn stream(Query(d): Query<Delay>) -> axum::body::Body {
    axum::body::Body::new(Chunks {
        sent: 0,
        delay: Duration::from_millis(d.delay_ms),
        wait: None,
    })
}

/// Frames in `/stream`'s body, and bytes in each.
const FRAMES: usize = 12;
const FRAME: usize = 10_000;

/// `/stream`'s body: `FRAMES` frames of `FRAME` bytes (frame `i` is letter `a + i`, ending in
/// a newline), each sent as it is produced, then a trailer `x-stream-bytes`.
struct Chunks {
    sent: usize,
    delay: Duration,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.sent > FRAMES {
            return Poll::Ready(None);
        }
        if this.sent == FRAMES {
            this.sent += 1;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-stream-bytes", (FRAMES * FRAME).into());
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if this.sent > 0 && !this.delay.is_zero() {
            let delay = this.delay;
            let wait = this
                .wait
                .get_or_insert_with(|| Box::pin(local(ringsgi::sleep(delay))));
            ready!(wait.as_mut().poll(cx));
            this.wait = None;
        }
        let mut frame = vec![b'a' + (this.sent % 26) as u8; FRAME];
        frame[FRAME - 1] = b'\n';
        this.sent += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))))
    }
}

async fn panics() -> &'static str {
    panic!("the /panic route panics")
}

#[derive(Deserialize)]
struct Ms {
    ms: u64,
}

async fn sleep(Query(q): Query<Ms>) -> String {
    // ringsgi::sleep is not Send (a timer on the worker's executor): `local` lets this Send
    // handler await it; it is checked to run on this worker's thread.
    local(ringsgi::sleep(Duration::from_millis(q.ms))).await;
    format!("slept {} ms", q.ms)
}

/// The request body streamed straight back, frame by frame, as it is read: constant memory
/// whatever its size (axum's 2 MB limit is for the extractors that buffer).
async fn echo(body: axum::body::Body) -> axum::body::Body {
    body
}

async fn client(Extension(peer): Extension<ringsgi::Peer>) -> String {
    format!("{peer}")
}

/// A body that fails before its first byte.
struct Broken;

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other(
            "the body's source is gone",
        ))))
    }
}

/// A plain tower service (no axum, so no `Send` needed) that misbehaves: `/fail/head` answers
/// with an invalid head (a 1xx status as the final response), `/fail/body` with a body that
/// fails at once, and anything else returns an error (all three become a `500`), except `/fail/keep-body`, which hands the request body to a
/// background task that reads it after the response: the read fails, the connection is not
/// touched.
async fn failing(
    req: http::Request<RequestBody>,
) -> Result<http::Response<axum::body::Body>, std::io::Error> {
    if req.uri().path() == "/fail/body" {
        return Ok(http::Response::new(axum::body::Body::new(Broken)));
    }
    if req.uri().path() == "/fail/keep-body" {
        let mut body = req.into_body();
        ringsgi::spawn(async move {
            ringsgi::sleep(Duration::from_millis(50)).await;
            let r = std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx))
                .await;
            let what = match r {
                Some(Ok(_)) => "data".to_owned(),
                Some(Err(e)) => format!("error: {e}"),
                None => "the end".to_owned(),
            };
            tracing::info!("kept body read after its request: {what}");
        })
        .detach();
        return Ok(http::Response::new("kept\n".into()));
    }
    if req.uri().path() == "/fail/head" {
        let resp = http::Response::builder()
            .status(http::StatusCode::EARLY_HINTS)
            .body(axum::body::Body::empty())
            .expect("a valid response");
        return Ok(resp);
    }
    Err(std::io::Error::other("the upstream is down"))
}

fn main() {
    let mut apps = Apps::new();
    apps.register("axum", || ringsgi::tower::app(router()))
        .register("failing", || {
            ringsgi::tower::app(tower::service_fn(failing))
        });
    common::serve("axum", apps)
}
