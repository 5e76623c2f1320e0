//! Python WSGI apps (cargo feature `python`): embedded CPython, one interpreter per worker
//! process, initialised after the fork; each app is an [`App`](crate::App) in the registry,
//! so the connection loop does not know Python exists.
//!
//! - `wsgi`: the environ, `start_response`, `wsgi.input`, output and waits of one exchange.
//! - `greenlet`: the runner, the one place that switches into request greenlets.
//! - `uwsgi_module`: the `uwsgi` module (uWSGI's async API).
//! - `gevent`: the gevent engine's primitives (gevent's loop on the ring, `gevent_loop.py`).
//! - `ffi`: the raw C interfaces (thread state, greenlet's C API, `suspend`).
//! - `boot.py`: the Python half (runs a request, loads the app), module `_ringsgi`.
//!
//! docs/python.md describes the engine and its flags.

mod ffi;
mod gevent;
mod greenlet;
mod uwsgi_module;
mod wsgi;

use std::cell::OnceCell;
use std::ffi::CString;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyString, PyTuple};

use crate::app::{App, Apps, BoxFuture};
use crate::config::raw::{PythonApp, python_app};
use crate::config::{Config, PythonOptions};
use crate::{Request, Response};

use self::greenlet::KillOnDrop;
use self::wsgi::{Exchange, PyParts, Req};

const BOOT: &str = include_str!("boot.py");

/// What a worker's interpreter keeps for every request.
pub(crate) struct Engine {
    boot: Py<PyModule>,
    /// `boot.loop`, the body of every pooled greenlet.
    pub(crate) greenlet_loop: Py<PyAny>,
    run: Py<PyAny>,
    input: Py<PyAny>,
    /// `boot.EmptyInput()`: the `wsgi.input` of every request without a body.
    empty_input: Py<PyAny>,
    base: Py<PyDict>,
    harakiri: Py<PyAny>,
    greenlet: bool,
    /// --gevent-monkey-patch (done when the loop starts: in each worker after its app is
    /// loaded, before a --pyrun script).
    gevent_monkey_patch: bool,
    /// The gevent engine's loop module (`_ringsgi_gevent`), with --gevent.
    gevent: Option<Py<PyModule>>,
}

thread_local! {
    static ENGINE: OnceCell<Engine> = const { OnceCell::new() };
}

/// The `Harakiri` exception type (a `TimeoutError`) of this worker's interpreter.
pub(crate) fn harakiri_type(py: Python<'_>) -> Option<Py<PyAny>> {
    ENGINE.with(|e| e.get().map(|e| e.harakiri.clone_ref(py)))
}

pub(crate) fn engine<R>(f: impl FnOnce(&Engine) -> R) -> R {
    ENGINE.with(|e| f(e.get().expect("the Python engine is initialised")))
}

/// Start this process's interpreter (once): paths, virtualenv, the `uwsgi` and `_ringsgi`
/// modules, greenlet when asked. Returns a one-line reason on failure.
fn init(opts: &PythonOptions, config: &Config) -> Result<(), String> {
    if ENGINE.with(|e| e.get().is_some()) {
        return Ok(());
    }
    Python::initialize();
    ffi::pin_thread_state();
    greenlet::set_pool_max(config.async_slots);
    let engine = Python::attach(|py| -> Result<Engine, String> {
        let describe = |e: PyErr| format!("{e}");
        let sys = py.import("sys").map_err(describe)?;
        sys.setattr("argv", PyList::new(py, ["ringsgi"]).map_err(describe)?)
            .map_err(describe)?;
        let code = CString::new(BOOT).expect("boot.py has no NUL");
        let boot =
            PyModule::from_code(py, &code, c"<ringsgi boot.py>", c"_ringsgi").map_err(describe)?;
        sys.getattr("modules")
            .and_then(|m| m.set_item("_ringsgi", &boot))
            .map_err(describe)?;
        let paths: Vec<String> = opts
            .pythonpath
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let venv = opts.virtualenv.as_ref().map(|p| p.display().to_string());
        boot.getattr("setup_paths")
            .and_then(|f| f.call1((paths, venv)))
            .map_err(|e| one_line(py, &boot, e))?;
        let mut suspend = ffi::suspend_function(py).map_err(describe)?;
        boot.setattr("suspend", &suspend).map_err(describe)?;
        boot.setattr("raw_suspend", &suspend).map_err(describe)?;
        let park = ffi::park_function(py).map_err(describe)?;
        boot.setattr("park", park).map_err(describe)?;
        let mut gevent_mod = None;
        if opts.gevent {
            let m = ffi::load_greenlet(py)
                .and_then(|()| gevent::install(py, &boot, opts.gevent_wait_for_hub))
                .map_err(|e| {
                    format!(
                        "--gevent: cannot load gevent ({}): install it (pip install gevent) in \
                         the --virtualenv or a --pythonpath",
                        one_line(py, &boot, e)
                    )
                })?;
            // A request's waits go through gevent's hub (gevent.rs).
            suspend = m.bind(py).getattr("gsuspend").map_err(describe)?.unbind();
            boot.setattr("suspend", &suspend).map_err(describe)?;
            gevent_mod = Some(m);
            if opts.gevent_early_monkey_patch {
                monkey_patch(py).map_err(|e| one_line(py, &boot, e))?;
            }
        }
        let uwsgi = uwsgi_module::create(py, suspend.bind(py), config).map_err(describe)?;
        sys.getattr("modules")
            .and_then(|m| m.set_item("uwsgi", &uwsgi))
            .map_err(describe)?;
        if opts.greenlet {
            ffi::load_greenlet(py).map_err(|e| {
                format!(
                    "--greenlet: cannot load greenlet ({}): install it (pip install greenlet) \
                     in the --virtualenv or a --pythonpath",
                    e.to_string().trim()
                )
            })?;
        }
        let base = PyDict::new(py);
        let set = |k: &str, v: Bound<'_, PyAny>| base.set_item(k, v);
        (|| -> PyResult<()> {
            set("wsgi.version", PyTuple::new(py, [1, 0])?.into_any())?;
            set(
                "wsgi.multithread",
                false.into_pyobject(py)?.to_owned().into_any(),
            )?;
            set(
                "wsgi.multiprocess",
                true.into_pyobject(py)?.to_owned().into_any(),
            )?;
            set(
                "wsgi.run_once",
                false.into_pyobject(py)?.to_owned().into_any(),
            )?;
            set(
                "wsgi.input_terminated",
                true.into_pyobject(py)?.to_owned().into_any(),
            )?;
            set(
                "wsgi.errors",
                Py::new(py, wsgi::Errors)?.into_bound(py).into_any(),
            )?;
            set("wsgi.file_wrapper", boot.getattr("FileWrapper")?)?;
            set("x-wsgiorg.fdevent.readable", uwsgi.getattr("wait_fd_read")?)?;
            set(
                "x-wsgiorg.fdevent.writable",
                uwsgi.getattr("wait_fd_write")?,
            )?;
            set("uwsgi.version", uwsgi.getattr("version")?)?;
            // uWSGI sets it to None at the start of every request; a wait sets it (True when
            // it timed out, or after an async_sleep).
            set("x-wsgiorg.fdevent.timeout", py.None().into_bound(py))?;
            // What every request sets (placeholders): its environ's key table is then cloned
            // at the size it needs (wsgi::REQUEST_KEYS).
            for k in wsgi::REQUEST_KEYS {
                base.set_item(PyString::intern(py, k), py.None())?;
            }
            Ok(())
        })()
        .map_err(describe)?;
        Ok(Engine {
            greenlet_loop: boot.getattr("loop").map_err(describe)?.unbind(),
            run: boot.getattr("run").map_err(describe)?.unbind(),
            input: boot.getattr("Input").map_err(describe)?.unbind(),
            empty_input: boot
                .getattr("EmptyInput")
                .and_then(|t| t.call0())
                .map_err(describe)?
                .unbind(),
            harakiri: boot.getattr("Harakiri").map_err(describe)?.unbind(),
            boot: boot.unbind(),
            base: base.unbind(),
            greenlet: opts.greenlet || opts.gevent,
            gevent: gevent_mod,
            gevent_monkey_patch: opts.gevent_monkey_patch,
        })
    })?;
    ENGINE.with(|e| {
        let _ = e.set(engine);
    });
    Ok(())
}

/// --gevent-wait-for-hub: whether this worker's gevent hub still has something to run
/// (background greenlets, timers): a stopping worker waits for it within --reload-mercy.
pub(crate) fn gevent_hub_busy() -> bool {
    gevent::hub_busy()
}

/// A stopping worker's --reload-mercy passed: cancel the gevent request greenlets still
/// running (their `close()` runs); how many.
pub(crate) fn gevent_cancel_requests() -> usize {
    if !gevent::active() {
        return 0;
    }
    gevent::cancel_requests()
}

/// `gevent.monkey.patch_all()`.
fn monkey_patch(py: Python<'_>) -> PyResult<()> {
    py.import("gevent.monkey")?.getattr("patch_all")?.call0()?;
    Ok(())
}

/// An exception as one line: its type, message and where it was raised.
fn one_line(py: Python<'_>, boot: &Bound<'_, PyModule>, e: PyErr) -> String {
    boot.getattr("describe")
        .and_then(|d| d.call1((e.value(py), e.traceback(py))))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| e.to_string())
}

/// Import the app `spec` names; returns the WSGI callable.
fn load(spec: &PythonApp, default_callable: &str) -> Result<Py<PyAny>, String> {
    let (file, module, callable) = match spec {
        PythonApp::File(f, c) => (Some(f.as_str()), None, c.as_deref()),
        PythonApp::Module(m, c) => (None, Some(m.as_str()), Some(c.as_str())),
    };
    let callable = callable.unwrap_or(default_callable);
    engine(|e| {
        Python::attach(|py| {
            let boot = e.boot.bind(py);
            boot.getattr("load")
                .and_then(|l| l.call1((file, module, callable)))
                .map(Bound::unbind)
                .map_err(|err| one_line(py, boot, err))
        })
    })
}

/// A WSGI app mounted in the registry.
struct PyApp {
    app: Py<PyAny>,
    /// The prefixes it is mounted at, longest first (SCRIPT_NAME).
    prefixes: Vec<String>,
    /// Each request in a greenlet (--greenlet or --gevent).
    greenlet: bool,
    /// The gevent engine (--gevent).
    gevent: bool,
}

impl App for PyApp {
    fn reads_connection(&self) -> bool {
        // `uwsgi.connection_fd()` hands the socket to Python.
        true
    }

    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(self.serve(req, resp))
    }
}

impl PyApp {
    fn script_name(&self, path: &str) -> &str {
        self.prefixes
            .iter()
            .find(|p| {
                p.as_str() != "/"
                    && path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            })
            .map_or("", |p| p.as_str())
    }

    async fn serve(&self, req: &mut Request, resp: &mut Response) -> io::Result<()> {
        let label = format!("{} {}", req.method(), req.target());
        let ex = Rc::new(Exchange::new(self.greenlet, label, req.body.fd));
        // No body at all: the shared empty wsgi.input, no object per request.
        let no_body = req.body.is_done();
        if !self.greenlet {
            // Straight on the executor the app cannot wait: give it the whole body.
            ex.read_all_body(req).await?;
        }
        let script_name = self.script_name(req.path());
        let parts = engine(|e| {
            Python::attach(|py| -> PyResult<PyParts> {
                let environ = wsgi::environ(py, e.base.bind(py), req, script_name)?;
                let r = Py::new(py, Req { ex: ex.clone() })?;
                let input = if no_body {
                    e.empty_input.bind(py).clone()
                } else {
                    e.input.bind(py).call1((&r,))?
                };
                environ.set_item(pyo3::intern!(py, "wsgi.input"), input)?;
                let args = PyTuple::new(
                    py,
                    [
                        self.app.bind(py).as_any(),
                        environ.as_any(),
                        r.bind(py).as_any(),
                    ],
                )?;
                Ok(PyParts {
                    greenlet: None,
                    func: e.run.clone_ref(py),
                    args: args.unbind(),
                    environ: Some(environ.unbind()),
                })
            })
        })
        .map_err(|e| io::Error::other(format!("building the WSGI environ: {e}")))?;
        *ex.py.borrow_mut() = Some(parts);
        if self.gevent {
            gevent::drive_request(&ex, Some((req, &mut *resp))).await;
        } else {
            drive(&ex, Some((req, &mut *resp))).await;
        }
        let deferred = ex.deferred.borrow_mut().take();
        if let Some(d) = deferred {
            pull(&ex, d, resp).await;
        }
        if ex.failed.get() {
            return Err(io::Error::other(
                "the Python app raised (traceback in the log)",
            ));
        }
        ex.flush(resp, true).await
    }
}

/// Run an exchange to its end: in its greenlet (each switch out serviced on the ring), or
/// straight on the executor without --greenlet.
async fn drive(ex: &Rc<Exchange>, mut io: Option<(&mut Request, &mut Response)>) {
    if ex.greenlet {
        let guard = KillOnDrop(ex.clone());
        loop {
            greenlet::resume(ex).await;
            if ex.finished.get() {
                break;
            }
            match io.as_mut() {
                Some((req, resp)) => ex.service(req, resp).await,
                None => ex.service_bare().await,
            }
        }
        drop(guard);
    } else {
        Python::attach(|py| {
            let parts = ex.py.borrow_mut().take();
            if let Some(p) = parts {
                let r = greenlet::with_current(ex, || p.func.bind(py).call1(p.args.bind(py)));
                if let Err(e) = r {
                    tracing::error!("{}: {e}", ex.label);
                    ex.failed.set(true);
                }
                drop(p);
            }
        });
        ex.finished.set(true);
    }
}

/// Without --greenlet: pull the response iterable chunk by chunk, each written before the
/// next is asked for, then `close()` it (also when this future is dropped: harakiri).
async fn pull(ex: &Rc<Exchange>, d: wsgi::Deferred, resp: &mut Response) {
    let mut closer = Closer(ex.clone(), Some(d));
    loop {
        let more = Python::attach(|py| {
            let Some(d) = closer.1.as_ref() else {
                return false;
            };
            engine(|e| {
                greenlet::with_current(ex, || {
                    e.boot
                        .bind(py)
                        .getattr("step")
                        .and_then(|s| s.call1((d.it.bind(py), d.r.bind(py))))
                        .and_then(|m| m.extract::<bool>())
                })
            })
            .unwrap_or_else(|err| {
                tracing::error!("{}: {err}", ex.label);
                ex.failed.set(true);
                false
            })
        });
        if !more || ex.failed.get() {
            break;
        }
        if let Err(err) = ex.flush(resp, false).await {
            tracing::info!("{}: client gone: {err}", ex.label);
            ex.gone.set(true);
            ex.failed.set(true);
            break;
        }
    }
    closer.close();
}

/// Closes a pulled response iterable once, on every path.
struct Closer(Rc<Exchange>, Option<wsgi::Deferred>);

impl Closer {
    fn close(&mut self) {
        let Some(d) = self.1.take() else {
            return;
        };
        Python::attach(|py| {
            if let Some(result) = &d.result {
                let r = engine(|e| {
                    greenlet::with_current(&self.0, || {
                        e.boot
                            .bind(py)
                            .getattr("finish")
                            .and_then(|f| f.call1((result.bind(py), d.r.bind(py))))
                    })
                });
                if let Err(err) = r {
                    tracing::error!("{}: close(): {err}", self.0.label);
                }
            }
            drop(d);
        });
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        // Dropped on the executor (harakiri): no greenlet is running here.
        self.close();
    }
}

/// Run a `uwsgi.register_signal` handler (in its own greenlet with --greenlet).
pub(crate) async fn run_signal_handler(handler: Rc<Py<PyAny>>, num: u8) {
    let greenlet = engine(|e| e.greenlet);
    let ex = Rc::new(Exchange::new(greenlet, format!("signal {num}"), -1));
    let parts = engine(|e| {
        Python::attach(|py| -> PyResult<PyParts> {
            let r = Py::new(py, Req { ex: ex.clone() })?;
            let args = PyTuple::new(
                py,
                [
                    handler.bind(py).as_any(),
                    num.into_pyobject(py)?.as_any(),
                    r.bind(py).as_any(),
                ],
            )?;
            Ok(PyParts {
                greenlet: None,
                func: e.boot.bind(py).getattr("run_handler")?.unbind(),
                args: args.unbind(),
                environ: None,
            })
        })
    });
    match parts {
        Ok(p) => {
            *ex.py.borrow_mut() = Some(p);
            if engine(|e| e.gevent.is_some()) {
                // Under --gevent, in a greenlet of the hub like a request.
                gevent::drive_request(&ex, None).await;
            } else {
                drive(&ex, None).await;
            }
        }
        Err(e) => tracing::error!("signal {num}: cannot run the Python handler: {e}"),
    }
}

/// Register every Python app the configuration mounts (`--wsgi-file`, `--module`, mounts
/// naming `FILE.py` or `MOD:CALLABLE`). Each is imported in each worker after the fork, and
/// first in a forked preflight child ([`Apps`]' check), so that an app that cannot be
/// imported stops the start (or a reload) with one line.
pub fn register(config: &Config, apps: &mut Apps) {
    let mut seen: Vec<&str> = Vec::new();
    for m in &config.mounts {
        let Some(spec) = python_app(&m.app) else {
            continue;
        };
        if seen.contains(&m.app.as_str()) {
            continue;
        }
        seen.push(&m.app);
        let mut prefixes: Vec<String> = config
            .mounts
            .iter()
            .filter(|x| x.app == m.app)
            .map(|x| x.prefix.clone())
            .collect();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let (opts, cfg) = (config.python.clone(), config.clone());
        let (check_spec, check_opts, check_cfg) = (spec.clone(), opts.clone(), cfg.clone());
        let name = m.app.clone();
        apps.register_checked(
            &m.app,
            move || preflight(&name, &check_spec, &check_opts, &check_cfg),
            move || {
                let app = init(&opts, &cfg)
                    .and_then(|()| load(&spec, &opts.callable))
                    .and_then(|app| {
                        // --gevent-monkey-patch: when the worker's loop starts, after the app
                        // is loaded (the hub itself starts at the first request).
                        if opts.gevent && opts.gevent_monkey_patch {
                            Python::attach(monkey_patch)
                                .map_err(|e| format!("--gevent-monkey-patch: {e}"))?;
                        }
                        Ok(app)
                    });
                match app {
                    Ok(app) => PyApp {
                        app,
                        prefixes: prefixes.clone(),
                        greenlet: opts.greenlet || opts.gevent,
                        gevent: opts.gevent,
                    },
                    Err(e) => {
                        tracing::error!("cannot load the WSGI app: {e}");
                        std::process::exit(1);
                    }
                }
            },
        );
    }
}

/// Import `spec` in a forked child (the master stays free of Python): `Err` with the one-line
/// reason when it cannot be imported.
fn preflight(
    name: &str,
    spec: &PythonApp,
    opts: &PythonOptions,
    config: &Config,
) -> io::Result<()> {
    let (rx, tx) = nix::unistd::pipe().map_err(io::Error::from)?;
    match crate::sys::fork()? {
        crate::sys::Forked::Child => {
            drop(rx);
            if let Some(dir) = &config.chdir {
                let _ = std::env::set_current_dir(dir);
            }
            let r = init(opts, config).and_then(|()| load(spec, &opts.callable));
            let code = match r {
                Ok(_) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&tx, e.as_bytes());
                    1
                }
            };
            drop(tx);
            std::process::exit(code);
        }
        crate::sys::Forked::Parent(child) => {
            drop(tx);
            let mut msg = Vec::new();
            let mut f = std::fs::File::from(rx);
            let _ = io::Read::read_to_end(&mut f, &mut msg);
            let status = nix::sys::wait::waitpid(child, None).map_err(io::Error::from)?;
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
                other => {
                    let why = if msg.is_empty() {
                        format!("the import check ended with {other:?}")
                    } else {
                        String::from_utf8_lossy(&msg).into_owned()
                    };
                    Err(io::Error::other(format!(
                        "cannot load the WSGI app {name}: {why}"
                    )))
                }
            }
        }
    }
}

/// `--pyrun` under --gevent: the script runs in the hub's parent greenlet, so that
/// `gevent.wait()` and `Hub.join()` work in it; the hub waits on this executor's ring.
async fn run_script_gevent(path: PathBuf, args: Vec<String>) -> i32 {
    let ex = Rc::new(Exchange::new(
        true,
        format!("--pyrun {}", path.display()),
        -1,
    ));
    let patch = engine(|e| e.gevent_monkey_patch);
    let parts = Python::attach(|py| -> PyResult<PyParts> {
        if patch {
            monkey_patch(py)?;
        }
        let r = Py::new(py, Req { ex: ex.clone() })?;
        gevent::script_parts(
            py,
            r.into_bound(py).into_any(),
            path.display().to_string(),
            &args,
        )
    });
    match parts {
        Ok(p) => *ex.py.borrow_mut() = Some(p),
        Err(e) => {
            eprintln!("ringsgi: --pyrun: {e}");
            return 1;
        }
    }
    gevent::run_script(ex.clone()).await;
    ex.exit.get().unwrap_or(1)
}

/// `--pyrun FILE [-- ARGS...]`: run FILE as `__main__` in a one-core ringsgi runtime with
/// the configured engine; returns its exit status.
pub fn pyrun(config: &Config) -> i32 {
    let opts = config.python.clone();
    let Some(path) = opts.pyrun.clone() else {
        return 2;
    };
    if let Err(e) = init(&opts, config) {
        eprintln!("ringsgi: {e}");
        return 1;
    }
    let args = opts.pyrun_args.clone();
    let r = crate::server::worker::block_on(async move { run_script(path, args).await });
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringsgi: --pyrun: {e}");
            1
        }
    }
}

async fn run_script(path: PathBuf, args: Vec<String>) -> i32 {
    if engine(|e| e.gevent.is_some()) {
        return run_script_gevent(path, args).await;
    }
    let greenlet = engine(|e| e.greenlet);
    let ex = Rc::new(Exchange::new(
        greenlet,
        format!("--pyrun {}", path.display()),
        -1,
    ));
    let parts = engine(|e| {
        Python::attach(|py| -> PyResult<PyParts> {
            let r = Py::new(py, Req { ex: ex.clone() })?;
            let args = PyTuple::new(
                py,
                [
                    path.display().to_string().into_pyobject(py)?.into_any(),
                    PyList::new(py, &args)?.into_any(),
                    r.into_bound(py).into_any(),
                ],
            )?;
            Ok(PyParts {
                greenlet: None,
                func: e.boot.bind(py).getattr("run_script")?.unbind(),
                args: args.unbind(),
                environ: None,
            })
        })
    });
    match parts {
        Ok(p) => *ex.py.borrow_mut() = Some(p),
        Err(e) => {
            eprintln!("ringsgi: --pyrun: {e}");
            return 1;
        }
    }
    drive(&ex, None).await;
    ex.exit.get().unwrap_or(1)
}
