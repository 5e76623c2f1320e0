//! may_minihttp hello world for `benches/hello_vs_nginx.py --peers may_minihttp`.
//! Usage: peer-may-minihttp 127.0.0.1:PORT
use std::io;

use may_minihttp::{HttpServer, HttpService, Request, Response};

#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, _req: Request, rsp: &mut Response) -> io::Result<()> {
        rsp.header("Content-Type: text/plain");
        rsp.body("Hello World!");
        Ok(())
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: peer-may-minihttp ADDR");
    may::config().set_workers(1);
    let server = HttpServer(Hello).start(addr).expect("listen");
    server.wait();
}
