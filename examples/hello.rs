//! The smallest ringsgi application.
//!
//! Run: `cargo run --release --example hello -- --http 127.0.0.1:8080 --cores 1`
//! then `curl http://127.0.0.1:8080/`. Every ringsgi flag works (`--async`, `--harakiri`...).

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
    // Serve this example's app at "/" unless the command line picks another.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if !args.iter().any(|a| a == "--app") {
        args.extend(["--app".into(), "hello".into()]);
    }
    let config = ringsgi::config::load_from_args(args).unwrap_or_else(|e| e.print_and_exit());
    tracing_subscriber::fmt().with_target(false).init();
    let mut apps = Apps::new();
    apps.register("hello", || Hello);
    std::process::exit(ringsgi::server::run(&config, &apps).unwrap_or_else(|e| {
        eprintln!("hello: {e}");
        1
    }));
}
