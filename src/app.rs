//! The application interface: the `App` trait and the registry of named apps.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;

use crate::{Request, Response};

/// The future an [`App`] returns. Not `Send`: a request never leaves its worker's thread.
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + 'a>>;

/// An application: an async handler called once per request.
///
/// The handler reads the request (its body is a stream) and either [`Response::send`]s a
/// whole response or [`Response::start`]s a stream and writes chunks. Every `.await` is a
/// point where the worker's other request slots run. A panic becomes a `500` for this
/// request alone; an `Err` becomes a `500` if nothing was sent yet, else the connection is
/// closed.
///
/// ```
/// use ringsgi::{App, BoxFuture, Request, Response};
///
/// struct Greeter;
///
/// impl App for Greeter {
///     fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
///         Box::pin(async move {
///             let who = req.query_param("name").unwrap_or("world").to_owned();
///             resp.header("Content-Type", "text/plain");
///             resp.send(200, format!("hello, {who}\n")).await
///         })
///     }
/// }
/// ```
pub trait App: 'static {
    /// Handle one request.
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a>;

    /// Whether the app may read the client connection itself, outside the request body (a
    /// Python app can, through `uwsgi.connection_fd()`). The worker then keeps no multishot
    /// receive armed on its kept-alive connections: it would take the app's bytes.
    fn reads_connection(&self) -> bool {
        false
    }
}

/// An [`App`] made from a closure; see [`app_fn`].
pub struct AppFn<F>(F);

impl<F> fmt::Debug for AppFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppFn")
    }
}

impl<F> App for AppFn<F>
where
    F: for<'a> Fn(&'a mut Request, &'a mut Response) -> BoxFuture<'a> + 'static,
{
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        (self.0)(req, resp)
    }
}

/// Make an [`App`] from a closure returning a boxed future.
///
/// ```
/// let hello = ringsgi::app_fn(|_req, resp| Box::pin(async move { resp.send(200, "hi").await }));
/// # let _ = hello;
/// ```
pub fn app_fn<F>(f: F) -> AppFn<F>
where
    F: for<'a> Fn(&'a mut Request, &'a mut Response) -> BoxFuture<'a> + 'static,
{
    AppFn(f)
}

type Factory = Box<dyn Fn() -> Rc<dyn App>>;
type Check = Box<dyn Fn() -> std::io::Result<()>>;

/// Named applications the configuration can mount (`--app NAME`, `--mount /PREFIX=NAME`).
///
/// Each worker process builds its own instances after the fork, by calling the factory.
#[derive(Default)]
pub struct Apps {
    factories: Vec<(String, Factory)>,
    /// Startup checks by app name (run by the master's preflight, also before a reload).
    checks: Vec<(String, Check)>,
}

impl fmt::Debug for Apps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Apps {
    /// An empty registry.
    pub fn new() -> Apps {
        Apps::default()
    }

    /// Register `name`; `factory` is called once in each worker.
    pub fn register<A: App>(&mut self, name: &str, factory: impl Fn() -> A + 'static) -> &mut Self {
        self.factories.push((
            name.to_owned(),
            Box::new(move || Rc::new(factory()) as Rc<dyn App>),
        ));
        self
    }

    /// Register `name` with a startup check: `check` runs in the master before any worker
    /// starts (and before a reload is accepted); an `Err` stops the start with its message.
    /// Python apps use it to import the app in a forked child.
    pub fn register_checked<A: App>(
        &mut self,
        name: &str,
        check: impl Fn() -> std::io::Result<()> + 'static,
        factory: impl Fn() -> A + 'static,
    ) -> &mut Self {
        self.checks.push((name.to_owned(), Box::new(check)));
        self.register(name, factory)
    }

    /// Run the startup check of `name`, if it has one.
    pub(crate) fn check(&self, name: &str) -> std::io::Result<()> {
        match self.checks.iter().find(|(n, _)| n == name) {
            Some((_, c)) => c(),
            None => Ok(()),
        }
    }

    /// Registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.iter().map(|(n, _)| n.as_str())
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.iter().any(|(n, _)| n == name)
    }

    /// Build an instance of `name`.
    pub(crate) fn build(&self, name: &str) -> Option<Rc<dyn App>> {
        self.factories
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f())
    }
}
