//! `sleep`: the seed article's Flask demo, a request that waits on a slow third party.
//!
//! Sleeps 1 s (or `?ms=N`, at most an hour) on a glommio timer, then answers "Hello World!".
//! While it sleeps the slot's worker serves every other slot. `?harakiri=SECS` sets this
//! request's own harakiri deadline first (`ringsgi::set_user_harakiri`; `0` removes it).

use std::time::Duration;

use ringsgi::{App, BoxFuture, Request, Response};

/// Default wait, as in the seed article.
const DEFAULT_MS: u64 = 1000;
/// Longest wait a client may ask for.
const MAX_MS: u64 = 3_600_000;

/// Sleeps, then answers "Hello World!".
pub(crate) struct Sleep;

impl App for Sleep {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            let ms = match req.query_param("ms") {
                None => DEFAULT_MS,
                Some(v) => match v.parse::<u64>() {
                    Ok(ms) if ms <= MAX_MS => ms,
                    _ => {
                        resp.header("Content-Type", "text/plain");
                        let why = format!("ms must be an integer 0..={MAX_MS}\n");
                        return Box::pin(resp.send(400, why)).await;
                    }
                },
            };
            if let Some(secs) = req
                .query_param("harakiri")
                .and_then(|v| v.parse::<f64>().ok())
            {
                let limit = (secs > 0.0 && secs.is_finite())
                    .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
                ringsgi::set_user_harakiri(limit);
            }
            ringsgi::sleep(Duration::from_millis(ms)).await;
            resp.header("Content-Type", "text/plain");
            // Boxed: a future is as large as its largest await, and the send's (~450 bytes)
            // would be held through the whole sleep by every request; boxed, it costs an
            // allocation only when it runs (mem10k).
            Box::pin(resp.send(200, "Hello World!")).await
        })
    }
}
