//! ringsgi: uWSGI's asynchronous mode rebuilt as a thread-per-core io_uring application server.
//!
//! # Layout
//!
//! - [`config`]: options as written (CLI + TOML) and the validated, immutable [`config::Config`].
//! - `server`: the master process (binds, forks, supervises) and the per-core worker runtime.
//! - `uring`: each worker's own io_uring ring, one operation per file, and the pump task that
//!   bridges its completions into the glommio executor.
//! - `slot`: the fixed pool of request slots (uWSGI's "async cores").
//! - `conn`: the one loop that orders the steps of a connection: read, parse, call the app,
//!   write, keep-alive or close.
//! - [`proto`]: HTTP/1.1 and the uwsgi binary protocol as pure functions over bytes.
//! - `static_files`: `--static-map` directories, served before the apps (path safety,
//!   validators, ranges as pure functions; file I/O on the ring).
//! - [`Request`], [`Response`], [`App`]: the application API.
//! - [`tower`]: tower services (an axum `Router`) served as apps.
//! - `primitives`: uWSGI's async primitives ([`wait_fd_read`], [`wait_fds`], ...).
//! - `client` (feature `client`): an outbound HTTP/1.1 + HTTPS client on the worker's ring,
//!   with a per-worker connection pool (hyper's client connection API, rustls).
//! - `harakiri`, `scoreboard`: per-request deadlines in the worker; the shared-memory board
//!   the master reads to kill a worker stuck in a handler that never yields.
//! - [`stats`]: the uWSGI-compatible stats document (JSON, HTTP, Prometheus) the master
//!   publishes, and the `/proc` and `TCP_INFO` readers that feed it.
//! - [`logsink`]: where log lines go (`--logto`, reopen, a logger thread per worker so a
//!   core never waits for the disk) and the request-log formats (`--logformat`).
//! - [`cron`]: uWSGI cron specs and the `--timer`/`--cron`/`--file-monitor` option values of
//!   the signal framework.
//! - `sys`: the system-call glue (affinity, rlimits, fork); with `uring`, the only `unsafe`.
//!
//! # Writing an application
//!
//! ```no_run
//! use ringsgi::{App, BoxFuture, Request, Response};
//!
//! struct Hello;
//!
//! impl App for Hello {
//!     fn call<'a>(&'a self, _req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
//!         Box::pin(async move { resp.send(200, "Hello World!").await })
//!     }
//! }
//! ```
//!
//! # Cancel safety
//!
//! A request future can be dropped at any `.await` (harakiri, client gone). Every ring
//! operation owns its buffers; a dropped operation hands them to the ring, which keeps them
//! until the kernel's final completion and cancels the operation. A connection whose read or
//! write was cancelled is closed, because bytes may have landed in the orphaned buffer.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod cron;
pub mod logsink;
pub mod proto;
#[cfg(feature = "python")]
pub mod python;
pub mod server;
pub mod stats;
pub mod tower;

mod app;
mod conn;
mod harakiri;
mod primitives;
mod request;
mod response;
mod scoreboard;
mod signals;
mod slot;
mod static_files;
mod sys;
pub mod uring;
mod writer;

pub use app::{App, AppFn, Apps, BoxFuture, app_fn};
pub use harakiri::{set_user_harakiri, slot_id, worker_id};
pub use primitives::{
    Ready, Task, TcpStream, background_tasks, connect, join_all_timeout, resolve, sleep, spawn,
    suspend, wait_fd_read, wait_fd_write, wait_fds,
};
pub use request::{Peer, Request};
pub use response::Response;
pub use signals::{SignalTarget, register_signal, signal, signal_registered};
pub use slot::SlotId;
