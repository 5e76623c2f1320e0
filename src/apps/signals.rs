//! `signals`: the uWSGI signal framework end to end. Each worker registers, when it builds
//! this app:
//!
//! - signal 10 → `workers` (every worker logs it),
//! - signal 11 → `worker` (one worker, in turn),
//! - signal 12 → `worker1` (the first worker only),
//! - signal 13 → `worker`, a slow handler: it sleeps `SLOW` between two log lines, to show
//!   that a handler runs in a task of its own while requests go on.
//!
//! `GET ?raise=N` raises signal N from the request.

use std::time::Duration;

use ringsgi::{App, BoxFuture, Request, Response};

/// How long the handler of signal 13 sleeps.
const SLOW: Duration = Duration::from_millis(1500);

/// Raises signals on request; registers the handlers above.
pub(crate) struct Signals;

impl Signals {
    /// Build the app and register its handlers in this worker.
    pub(crate) fn new() -> Signals {
        let log = |num: u8| async move {
            tracing::info!(
                "signal {num} handled by worker {}",
                ringsgi::worker_id().unwrap_or(usize::MAX)
            );
        };
        let registered = ringsgi::register_signal(10, "workers", log)
            .and_then(|()| ringsgi::register_signal(11, "worker", log))
            .and_then(|()| ringsgi::register_signal(12, "worker1", log))
            .and_then(|()| {
                ringsgi::register_signal(13, "worker", |num| async move {
                    let w = ringsgi::worker_id().unwrap_or(usize::MAX);
                    tracing::info!("signal {num} slow handler started on worker {w}");
                    ringsgi::sleep(SLOW).await;
                    tracing::info!("signal {num} slow handler done on worker {w}");
                })
            });
        if let Err(e) = registered {
            tracing::error!("signals app: cannot register its handlers: {e}");
        }
        Signals
    }
}

impl App for Signals {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            resp.header("Content-Type", "text/plain");
            let Some(num) = req.query_param("raise").and_then(|v| v.parse::<u8>().ok()) else {
                return resp
                    .send(400, "expected ?raise=N with N in 0..=255\n")
                    .await;
            };
            match ringsgi::signal(num) {
                Ok(()) => resp.send(200, format!("raised signal {num}\n")).await,
                Err(e) => {
                    resp.send(503, format!("cannot raise signal {num}: {e}\n"))
                        .await
                }
            }
        })
    }
}
