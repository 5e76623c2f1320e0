//! `sleeping`: uWSGI's `tests/sleeping_async.py`: an async sleep, then a small page.
//!
//! `?secs=N` (fractions allowed, default 5, at most 3600) sets the sleep.

use std::time::Duration;

use ringsgi::{App, BoxFuture, Request, Response};

/// Sleeps, then answers `<h1>Hello World</h1>`.
pub(crate) struct Sleeping;

impl App for Sleeping {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            let secs = match req.query_param("secs").map(str::parse::<f64>) {
                None => 5.0,
                Some(Ok(s)) if (0.0..=3600.0).contains(&s) => s,
                Some(_) => {
                    resp.header("Content-Type", "text/plain");
                    return resp.send(400, "secs must be a number 0..=3600\n").await;
                }
            };
            resp.header("Content-Type", "text/html");
            resp.start(200)?;
            ringsgi::sleep(Duration::from_secs_f64(secs)).await;
            resp.write("<h1>Hello World</h1>").await?;
            resp.finish().await
        })
    }
}
