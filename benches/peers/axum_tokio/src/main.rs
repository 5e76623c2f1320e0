//! The Tokio peer of `benches/axum_vs_tokio.py`: the Router of `examples/axum.rs` (its routes
//! that need no ringsgi primitive) on axum's own server, one current-thread Tokio runtime.
//!
//! Run: `axum-tokio-peer 127.0.0.1:8080` (pin it with `taskset -c 0`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone)]
struct Counter(Arc<AtomicU64>);

#[derive(Deserialize)]
struct Name {
    name: String,
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "Hello World!" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { Json(json!({ "id": id })) }),
        )
        .route("/json", post(|Json(v): Json<Value>| async move { Json(v) }))
        .route(
            "/query",
            get(|Query(q): Query<Name>| async move { format!("hello {}", q.name) }),
        )
        .route(
            "/count",
            get(|State(Counter(n)): State<Counter>| async move {
                let count = n.fetch_add(1, Ordering::Relaxed) + 1;
                Json(json!({ "worker": 0, "count": count }))
            }),
        )
        .with_state(Counter(Arc::new(AtomicU64::new(0))))
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            eprintln!("listening on {addr}");
            axum::serve(listener, router()).await.expect("serve");
        });
}
