//! The `uwsgi` module: uWSGI's async API for apps written for its async mode.
//!
//! The wait functions register what the current request waits for and return `""`; the wait
//! happens when the app then suspends (`uwsgi.suspend()`) or yields, as in uWSGI. None of
//! these functions switches greenlets itself (only `suspend`, a raw C function, does).

use std::rc::Rc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use super::greenlet;
use super::wsgi::Wait;
use crate::config::Config;

fn secs(timeout: f64) -> Option<Duration> {
    (timeout > 0.0 && timeout.is_finite()).then(|| Duration::from_secs_f64(timeout))
}

fn register(wait: Wait) {
    if let Some(ex) = greenlet::current() {
        ex.register(wait);
    }
}

/// Register a wait until `fd` is readable (at most `timeout` seconds; 0: no limit). Called
/// in succession, the wait ends when the first of the registered descriptors is ready.
#[pyfunction]
#[pyo3(signature = (fd, timeout=0.0))]
fn wait_fd_read(fd: i32, timeout: f64) -> &'static str {
    if let Some(ex) = greenlet::current() {
        ex.register_fd(fd, false, secs(timeout));
    }
    ""
}

/// Register a wait until `fd` is writable (at most `timeout` seconds; 0: no limit).
#[pyfunction]
#[pyo3(signature = (fd, timeout=0.0))]
fn wait_fd_write(fd: i32, timeout: f64) -> &'static str {
    if let Some(ex) = greenlet::current() {
        ex.register_fd(fd, true, secs(timeout));
    }
    ""
}

/// Register a sleep of `secs` seconds (fractions allowed), done at the next suspend/yield.
#[pyfunction]
fn async_sleep(secs: f64) -> PyResult<&'static str> {
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(PyValueError::new_err("async_sleep: seconds must be >= 0"));
    }
    register(Wait::Sleep(Duration::from_secs_f64(secs)));
    Ok("")
}

/// The fd that ended the last wait, -1 after a timeout.
#[pyfunction]
fn ready_fd() -> i32 {
    greenlet::current().map_or(-1, |ex| ex.ready_fd.get())
}

/// The current request's client connection.
#[pyfunction]
fn connection_fd() -> i32 {
    greenlet::current().map_or(-1, |ex| ex.conn_fd)
}

/// Start a non-blocking TCP connect to "HOST:PORT" (or a unix socket path); returns the fd.
/// Wait for it with `wait_fd_write`, then check `is_connected`.
#[pyfunction]
fn async_connect(addr: &str) -> PyResult<i32> {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::net::ToSocketAddrs;
    use std::os::fd::IntoRawFd;
    let (domain, target) = if addr.starts_with('/') {
        (
            Domain::UNIX,
            SockAddr::unix(addr).map_err(|e| PyOSError::new_err(e.to_string()))?,
        )
    } else {
        let a = addr
            .to_socket_addrs()
            .map_err(|e| PyOSError::new_err(format!("async_connect {addr}: {e}")))?
            .next()
            .ok_or_else(|| PyOSError::new_err(format!("async_connect {addr}: no address")))?;
        (Domain::for_address(a), SockAddr::from(a))
    };
    let s = Socket::new(domain, Type::STREAM.cloexec(), None)
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
    s.set_nonblocking(true)
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
    match s.connect(&target) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(PyOSError::new_err(format!("async_connect {addr}: {e}"))),
    }
    Ok(s.into_raw_fd())
}

/// Whether the connect started on `fd` has completed successfully.
#[pyfunction]
fn is_connected(fd: i32) -> bool {
    let b = crate::sys::borrow_fd(fd);
    let s = socket2::SockRef::from(&b);
    matches!(s.take_error(), Ok(None)) && s.peer_addr().is_ok()
}

/// This worker's id, 1-based as in uWSGI (0 outside a worker).
#[pyfunction]
fn worker_id() -> usize {
    crate::harakiri::worker_id().map_or(0, |w| w + 1)
}

/// The master's pid.
#[pyfunction]
fn masterpid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// Raise signal `num` (delivered by the master to its registered target).
#[pyfunction]
fn signal(num: u8) -> PyResult<()> {
    crate::signals::signal(num).map_err(|e| PyOSError::new_err(format!("signal {num}: {e}")))
}

/// Register `handler(num)` for signal `num` on `target` ("worker", "workers", "worker1", ...);
/// it runs in its own greenlet, under --harakiri.
#[pyfunction]
fn register_signal(num: u8, target: &str, handler: Py<PyAny>) -> PyResult<()> {
    if crate::harakiri::worker_id().is_none() {
        // The master's import check (no worker, no signal table): nothing to register.
        return Ok(());
    }
    let handler = Rc::new(handler);
    crate::signals::register_signal(num, target, move |n| {
        super::run_signal_handler(handler.clone(), n)
    })
    .map_err(|e| PyOSError::new_err(format!("register_signal {num}: {e}")))
}

/// Set the current request's harakiri to `secs` from now (0 removes it).
#[pyfunction]
fn set_user_harakiri(secs: f64) -> bool {
    crate::harakiri::set_user_harakiri(self::secs(secs))
}

/// The `uwsgi` module of this worker.
pub(crate) fn create<'py>(
    py: Python<'py>,
    suspend: &Bound<'py, PyAny>,
    config: &Config,
) -> PyResult<Bound<'py, PyModule>> {
    let m = PyModule::new(py, "uwsgi")?;
    m.add_function(wrap_pyfunction!(wait_fd_read, &m)?)?;
    m.add_function(wrap_pyfunction!(wait_fd_write, &m)?)?;
    m.add_function(wrap_pyfunction!(async_sleep, &m)?)?;
    m.add_function(wrap_pyfunction!(ready_fd, &m)?)?;
    m.add_function(wrap_pyfunction!(connection_fd, &m)?)?;
    m.add_function(wrap_pyfunction!(async_connect, &m)?)?;
    m.add_function(wrap_pyfunction!(is_connected, &m)?)?;
    m.add_function(wrap_pyfunction!(worker_id, &m)?)?;
    m.add_function(wrap_pyfunction!(masterpid, &m)?)?;
    m.add_function(wrap_pyfunction!(signal, &m)?)?;
    m.add_function(wrap_pyfunction!(register_signal, &m)?)?;
    m.add_function(wrap_pyfunction!(set_user_harakiri, &m)?)?;
    m.add("suspend", suspend)?;
    m.add("green_schedule", suspend)?;
    m.add("numproc", config.cores)?;
    m.add("version", concat!("ringsgi ", env!("CARGO_PKG_VERSION")))?;
    m.add("SPOOL_OK", -2)?;
    // uwsgi.opt: the options as given on the command line (`--key value` / `--flag`).
    let opt = PyDict::new(py);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            break;
        }
        if let Some(key) = a.strip_prefix("--") {
            if let Some((k, v)) = key.split_once('=') {
                opt.set_item(k, v)?;
            } else if let Some(v) = args.get(i + 1).filter(|v| !v.starts_with('-')) {
                opt.set_item(key, v)?;
                i += 1;
            } else {
                opt.set_item(key, true)?;
            }
        }
        i += 1;
    }
    m.add("opt", opt)?;
    Ok(m)
}
