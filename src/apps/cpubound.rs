//! `cpubound`: the seed's `tests.cpubound_async`, a long response streamed one small chunk
//! per write, each write a point where the worker's other slots run.

use ringsgi::{App, BoxFuture, Request, Response};

/// Streams `<h1>i</h1>` for i in 1..10000 (9 999 chunks).
pub(crate) struct CpuBound;

impl App for CpuBound {
    fn call<'a>(&'a self, _req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            resp.header("Content-Type", "text/html");
            resp.start(200)?;
            for i in 1..10000 {
                resp.write(format!("<h1>{i}</h1>")).await?;
            }
            resp.finish().await
        })
    }
}
