//! `echo`: returns what it was sent, for debugging clients and proxies.
//!
//! The body is the request line, the headers as received, an empty line, then the request
//! body (read whole first, so that a body over `--limit-post` is answered with 413).

use ringsgi::{App, BoxFuture, Request, Response};

/// Largest body echoed, whatever `--limit-post` allows.
const MAX_ECHO: usize = 64 << 20;

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
            let mut out = head.into_bytes();
            while let Some(chunk) = req.read_chunk().await? {
                if out.len() + chunk.len() > MAX_ECHO {
                    resp.header("Content-Type", "text/plain");
                    return resp.send(413, "echo: body over 64 MiB\n").await;
                }
                out.extend_from_slice(chunk);
            }
            resp.header("Content-Type", "text/plain; charset=utf-8");
            resp.send(200, out).await
        })
    }
}
