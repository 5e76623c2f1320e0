//! `hello`: the smallest useful app, the benchmark's baseline.

use ringsgi::{App, BoxFuture, Request, Response};

/// Answers every request with "Hello World!".
pub(crate) struct Hello;

impl App for Hello {
    fn call<'a>(&'a self, _req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            resp.header("Content-Type", "text/plain");
            resp.send(200, "Hello World!").await
        })
    }
}
