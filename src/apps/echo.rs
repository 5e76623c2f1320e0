//! `echo`: returns what it was sent, for debugging clients and proxies.
//!
//! The body is the request line, the headers as received, an empty line, then the request
//! body, streamed back chunk by chunk as it arrives.

use ringsgi::{App, BoxFuture, Request, Response};

/// Echoes method, target, headers and body.
pub(crate) struct Echo;

impl App for Echo {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            let mut head = format!("{} {} {}\n", req.method(), req.target(), req.version());
            for (name, value) in req.headers() {
                head.push_str(name);
                head.push_str(": ");
                head.push_str(&String::from_utf8_lossy(value));
                head.push('\n');
            }
            head.push('\n');
            resp.header("Content-Type", "text/plain; charset=utf-8");
            resp.start(200)?;
            resp.write(head).await?;
            while let Some(chunk) = req.read_chunk().await? {
                let chunk = chunk.to_vec();
                resp.write(chunk).await?;
            }
            resp.finish().await
        })
    }
}
