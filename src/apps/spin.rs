//! `spin`: burns CPU for `?ms=N` (default 1000, at most 600 000) without ever yielding: the
//! executor is stuck for that long. Exists to test harakiri.

use std::time::{Duration, Instant};

use ringsgi::{App, BoxFuture, Request, Response};

/// Spins, then answers how long it spun.
pub(crate) struct Spin;

impl App for Spin {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            let ms = req
                .query_param("ms")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|ms| *ms <= 600_000)
                .unwrap_or(1000);
            tracing::info!(
                "spin: burning CPU for {ms} ms without yielding (worker {} slot {})",
                req.worker_id(),
                req.slot_id()
            );
            let until = Instant::now() + Duration::from_millis(ms);
            let mut x = 0u64;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            resp.header("Content-Type", "text/plain");
            resp.send(200, format!("spun {ms} ms\n")).await
        })
    }
}
