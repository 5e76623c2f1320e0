//! The smallest ringsgi application.
//!
//! Run: `cargo run --release --example hello -- --http 127.0.0.1:8080 --cores 1`
//! then `curl http://127.0.0.1:8080/`. Every ringsgi flag works (`--async`, `--harakiri`...).

mod common;

use ringsgi::{App, Apps, BoxFuture, Request, Response};

struct Hello;

impl App for Hello {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            let who = req.query_param("name").unwrap_or("World").to_owned();
            resp.header("Content-Type", "text/plain");
            resp.send(200, format!("Hello {who}!\n")).await
        })
    }
}

fn main() {
    let mut apps = Apps::new();
    apps.register("hello", || Hello);
    common::serve("hello", apps)
}
