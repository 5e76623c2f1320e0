//! `panic`: panics on purpose, to show (and test) that a handler panic becomes a 500 for its
//! request alone. Not mounted by the default config.

use ringsgi::{App, BoxFuture, Request, Response};

/// Always panics.
pub(crate) struct Panic;

impl App for Panic {
    fn call<'a>(&'a self, req: &'a mut Request, _resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            ringsgi::suspend().await;
            panic!("the panic app panicked on purpose ({})", req.target())
        })
    }
}
