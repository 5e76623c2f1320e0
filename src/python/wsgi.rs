//! WSGI (PEP 3333) over a ringsgi request: the environ, the request object the Python half
//! (`boot.py`) talks to, and the Rust side of each exchange: what the app registered (output,
//! a wait) is done here with the worker's primitives, between two switches.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::harakiri::ReqCtx;
use crate::{Request, Response};

/// Under --gevent, the response bytes a request greenlet may have waiting in its exchange
/// before it switches out for them to be sent (its future sends them meanwhile whenever the
/// executor runs); a stream produced faster than the client takes it waits here.
pub(crate) const OUT_HIGH_WATER: usize = 64 * 1024;

/// What a request registered before switching out: the executor does it, then switches back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum Wait {
    /// Nothing: just let the other slots run (`uwsgi.suspend()` alone).
    #[default]
    None,
    /// At least this many more body bytes (or the body's end).
    Body(usize),
    /// `uwsgi.async_sleep`.
    Sleep(Duration),
    /// `uwsgi.wait_fd_read` / `wait_fd_write`, called once or more in succession (the
    /// descriptors are in the exchange); the first ready one ends the wait.
    Fds(Option<Duration>),
}

/// The Python objects of an exchange, dropped by the runner (with the GIL) when it ends.
pub(crate) struct PyParts {
    pub(crate) greenlet: Option<Py<PyAny>>,
    pub(crate) func: Py<PyAny>,
    pub(crate) args: Py<PyTuple>,
    pub(crate) environ: Option<Py<PyDict>>,
}

/// One request (or `--pyrun` script, or signal handler) as both halves see it.
pub(crate) struct Exchange {
    /// Running in a greenlet (waits suspend) or straight on the executor.
    pub(crate) greenlet: bool,
    /// `"METHOD URI"`, for log lines.
    pub(crate) label: String,
    /// The client connection (`uwsgi.connection_fd()`), -1 without one.
    pub(crate) conn_fd: i32,
    /// The harakiri context of the request, made current around every switch in.
    pub(crate) hctx: Option<Rc<ReqCtx>>,
    status: Cell<Option<u16>>,
    /// The app's response headers as head lines (`Name: value\r\n` each), checked.
    headers: RefCell<Vec<u8>>,
    content_length: Cell<Option<u64>>,
    /// The response head has gone to the client (or is on its way).
    sent: Cell<bool>,
    out: RefCell<Vec<u8>>,
    /// A file to send (wsgi.file_wrapper over a real file).
    file: RefCell<Option<OwnedFd>>,
    pub(crate) wait: Cell<Wait>,
    body: RefCell<Vec<u8>>,
    body_pos: Cell<usize>,
    body_eof: Cell<bool>,
    /// Raised as `OSError` at the next `check()` (client gone, body read failed).
    error: RefCell<Option<String>>,
    /// The app raised: 500 (or a cut response).
    pub(crate) failed: Cell<bool>,
    /// Harakiri or client gone: no more waiting.
    pub(crate) cancelled: Cell<bool>,
    /// `run` has returned.
    pub(crate) finished: Cell<bool>,
    pub(crate) ready_fd: Cell<i32>,
    /// The descriptors of a [`Wait::Fds`], with their poll events.
    fds: RefCell<Vec<(i32, u32)>>,
    pub(crate) timed_out: Cell<Option<bool>>,
    /// `--pyrun`: the script's exit status.
    pub(crate) exit: Cell<Option<i32>>,
    /// The runner has done the queued step.
    pub(crate) ran: Cell<bool>,
    pub(crate) waker: RefCell<Option<Waker>>,
    pub(crate) py: RefCell<Option<PyParts>>,
    /// Without --greenlet: the response iterable the engine pulls chunk by chunk.
    pub(crate) deferred: RefCell<Option<Deferred>>,
    /// A write to the client failed: the exceptions that follow are the client's doing.
    pub(crate) gone: Cell<bool>,
    /// --gevent: the request's greenlet switched out to have its registered I/O done.
    pub(crate) switched_out: Cell<bool>,
    /// --gevent: the request greenlet's address (its key for the `uwsgi` module), 0 if none.
    pub(crate) gkey: Cell<usize>,
    /// --gevent: the greenlet the runner switches into next (the hub, after it parked).
    pub(crate) resume_to: RefCell<Option<Py<PyAny>>>,
}

/// A response iterable pulled by the engine (no greenlet): the iterator, the iterable (for
/// its `close()`), and the request object.
pub(crate) struct Deferred {
    pub(crate) it: Py<PyAny>,
    pub(crate) result: Option<Py<PyAny>>,
    pub(crate) r: Py<PyAny>,
}

impl Exchange {
    pub(crate) fn new(greenlet: bool, label: String, conn_fd: i32) -> Exchange {
        Exchange {
            greenlet,
            label,
            conn_fd,
            hctx: crate::harakiri::current(),
            status: Cell::new(None),
            headers: RefCell::new(Vec::new()),
            content_length: Cell::new(None),
            sent: Cell::new(false),
            out: RefCell::new(Vec::new()),
            file: RefCell::new(None),
            wait: Cell::new(Wait::None),
            body: RefCell::new(Vec::new()),
            body_pos: Cell::new(0),
            body_eof: Cell::new(false),
            error: RefCell::new(None),
            failed: Cell::new(false),
            cancelled: Cell::new(false),
            finished: Cell::new(false),
            ready_fd: Cell::new(-1),
            fds: RefCell::new(Vec::new()),
            timed_out: Cell::new(None),
            exit: Cell::new(None),
            ran: Cell::new(false),
            waker: RefCell::new(None),
            py: RefCell::new(None),
            deferred: RefCell::new(None),
            gone: Cell::new(false),
            switched_out: Cell::new(false),
            gkey: Cell::new(0),
            resume_to: RefCell::new(None),
        }
    }

    /// Before switching back in after a wait: `x-wsgiorg.fdevent.timeout` and
    /// `uwsgi.ready_fd` in the environ.
    pub(crate) fn set_fdevent_timeout(&self, py: Python<'_>, environ: &Option<Py<PyDict>>) {
        let (Some(t), Some(env)) = (self.timed_out.take(), environ) else {
            return;
        };
        let env = env.bind(py);
        // As uWSGI: True after a wait that timed out (and after async_sleep, whose wait always
        // runs out), None after a ready fd.
        let flag = if t {
            true.into_pyobject(py).map(|b| b.to_owned().into_any()).ok()
        } else {
            Some(py.None().into_bound(py))
        };
        if let Some(flag) = flag {
            let _ = env.set_item(intern!(py, "x-wsgiorg.fdevent.timeout"), flag);
        }
        let _ = env.set_item(intern!(py, "uwsgi.ready_fd"), self.ready_fd.get());
    }

    /// Body bytes (or a file) the app produced that have not been sent yet.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.borrow().is_empty() || self.file.borrow().is_some()
    }

    /// Under --gevent: send what the request greenlet produced while it runs on (no wait
    /// registered, no switch back). A failed write is reported at the greenlet's next push
    /// or switch, as after [`Exchange::service`].
    pub(crate) async fn send_output(&self, resp: &mut Response) {
        if let Err(e) = self.flush(resp, false).await {
            self.gone.set(true);
            *self.error.borrow_mut() = Some(format!("client gone: {e}"));
            self.out.borrow_mut().clear();
        }
    }

    /// Register a wait (from the `uwsgi` API).
    pub(crate) fn register(&self, wait: Wait) {
        if !matches!(self.wait.get(), Wait::Fds(_)) {
            self.fds.borrow_mut().clear();
        }
        self.wait.set(wait);
    }

    /// Register a wait on `fd` (one more, if some are registered already).
    pub(crate) fn register_fd(&self, fd: i32, write: bool, timeout: Option<Duration>) {
        let timeout = match self.wait.get() {
            Wait::Fds(prev) => match (prev, timeout) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => {
                self.fds.borrow_mut().clear();
                timeout
            }
        };
        let events = if write { libc::POLLOUT } else { libc::POLLIN } as u32;
        self.fds.borrow_mut().push((fd, events));
        self.wait.set(Wait::Fds(timeout));
    }

    /// Read the whole body into the exchange (no greenlet: the app cannot wait).
    pub(crate) async fn read_all_body(&self, req: &mut Request) -> io::Result<()> {
        while let Some(chunk) = req.read_chunk().await? {
            self.body.borrow_mut().extend_from_slice(chunk);
        }
        self.body_eof.set(true);
        Ok(())
    }

    /// Do what the app registered before it switched out: write its output, then its wait.
    pub(crate) async fn service(&self, req: &mut Request, resp: &mut Response) {
        let pending = self.file.borrow().is_some() || !self.out.borrow().is_empty();
        if pending && let Err(e) = self.flush(resp, false).await {
            self.gone.set(true);
            *self.error.borrow_mut() = Some(format!("client gone: {e}"));
            self.out.borrow_mut().clear();
            return;
        }
        match self.wait.take() {
            // Output went out: the other slots ran while the socket took it.
            Wait::None if pending => {}
            Wait::None => futures_lite::future::yield_now().await,
            Wait::Body(n) => self.fill_body(req, n).await,
            Wait::Sleep(d) => {
                crate::primitives::sleep(d).await;
                // uWSGI's async_sleep is a timeout on no fd: it ends "timed out".
                self.ready_fd.set(-1);
                self.timed_out.set(Some(true));
            }
            Wait::Fds(timeout) => self.wait_fds(timeout).await,
        }
    }

    /// A wait outside a request (signal handler, --pyrun): only the `uwsgi` waits.
    pub(crate) async fn service_bare(&self) {
        match self.wait.take() {
            Wait::None | Wait::Body(_) => futures_lite::future::yield_now().await,
            Wait::Sleep(d) => crate::primitives::sleep(d).await,
            Wait::Fds(timeout) => self.wait_fds(timeout).await,
        }
    }

    async fn wait_fds(&self, timeout: Option<Duration>) {
        let fds = std::mem::take(&mut *self.fds.borrow_mut());
        let borrowed: Vec<_> = fds
            .iter()
            .map(|&(fd, ev)| (crate::sys::borrow_fd(fd), ev))
            .collect();
        let r = crate::primitives::wait_fds(&borrowed, timeout).await;
        let fd = match &r {
            Ok(ready) => fds[ready.index].0,
            Err(_) => -1,
        };
        match r {
            Ok(_) => {
                self.ready_fd.set(fd);
                self.timed_out.set(Some(false));
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.ready_fd.set(-1);
                self.timed_out.set(Some(true));
            }
            Err(e) => {
                self.ready_fd.set(-1);
                self.timed_out.set(Some(false));
                *self.error.borrow_mut() = Some(format!("waiting on fds {fds:?}: {e}"));
            }
        }
    }

    async fn fill_body(&self, req: &mut Request, want: usize) {
        let mut got = 0;
        {
            // Drop what was read already.
            let mut b = self.body.borrow_mut();
            let pos = self.body_pos.get();
            if pos > 0 {
                b.drain(..pos);
                self.body_pos.set(0);
            }
        }
        while got < want {
            match req.read_chunk().await {
                Ok(Some(c)) => {
                    got += c.len();
                    self.body.borrow_mut().extend_from_slice(c);
                }
                Ok(None) => {
                    self.body_eof.set(true);
                    break;
                }
                Err(e) => {
                    *self.error.borrow_mut() = Some(format!("reading the request body: {e}"));
                    self.body_eof.set(true);
                    break;
                }
            }
        }
    }

    /// Send what the app produced. `last`: the app has returned; complete the response.
    pub(crate) async fn flush(&self, resp: &mut Response, last: bool) -> io::Result<()> {
        let data = std::mem::take(&mut *self.out.borrow_mut());
        let file = self.file.borrow_mut().take();
        if !self.sent.get() {
            if data.is_empty() && file.is_none() && !last {
                // PEP 3333: the head waits for the first non-empty chunk.
                return Ok(());
            }
            let Some(status) = self.status.get() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the app returned without calling start_response",
                ));
            };
            resp.extend_headers(&self.headers.borrow());
            self.sent.set(true);
            let mut len = self.content_length.get();
            let mut file_len = None;
            if let Some(f) = &file {
                let n = file_remaining(f)?;
                file_len = Some(n);
                if len.is_none() {
                    len = Some(data.len() as u64 + n);
                }
            }
            match len {
                None if last => return resp.send(status, &data).await,
                None => resp.start(status)?,
                Some(n) => resp.start_sized(status, n)?,
            }
            let _ = file_len;
        }
        if !data.is_empty() {
            self.write(resp, data).await?;
        }
        if let Some(f) = file {
            self.send_file(resp, f).await?;
        }
        if last {
            resp.finish().await?;
        }
        Ok(())
    }

    async fn write(&self, resp: &mut Response, data: Vec<u8>) -> io::Result<()> {
        if resp.head_only {
            return Ok(());
        }
        match self.content_length.get().is_some() || resp_sized(resp) {
            true => {
                resp.write_filled(|mut out| async move {
                    out.extend_from_slice(&data);
                    (Ok(data.len()), out)
                })
                .await?;
                Ok(())
            }
            false => resp.write(&data).await,
        }
    }

    async fn send_file(&self, resp: &mut Response, file: OwnedFd) -> io::Result<()> {
        if resp.head_only {
            return Ok(());
        }
        let offset = current_offset(&file)?;
        let len = file_remaining(&file)?;
        let len = match self.content_length.get() {
            Some(cl) => len.min(cl.saturating_sub(resp.body_bytes)),
            None => len,
        };
        if len == 0 {
            return Ok(());
        }
        let pipe = crate::uring::splice::Pipe::take()?;
        resp.splice_body(&Rc::new(file), offset, len, pipe).await
    }
}

/// Whether the response was started with a length (`start_sized`).
fn resp_sized(resp: &Response) -> bool {
    resp.is_sized()
}

fn current_offset(f: &OwnedFd) -> io::Result<u64> {
    let off = nix::unistd::lseek(f.as_raw_fd(), 0, nix::unistd::Whence::SeekCur)
        .map_err(io::Error::from)?;
    Ok(off.max(0) as u64)
}

fn file_remaining(f: &OwnedFd) -> io::Result<u64> {
    let st = nix::sys::stat::fstat(f.as_raw_fd()).map_err(io::Error::from)?;
    Ok((st.st_size as u64).saturating_sub(current_offset(f)?))
}

/// The request object of `boot.py` (`r`): every call is short and never switches.
#[pyclass(unsendable, module = "_ringsgi")]
pub(crate) struct Req {
    pub(crate) ex: Rc<Exchange>,
}

/// Bytes of a body chunk: `bytes`, or `str` encoded as UTF-8 (uWSGI accepts both; `yield ""`
/// after registering a wait is the seed's idiom).
fn chunk_bytes<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, [u8]>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(std::borrow::Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(std::borrow::Cow::Borrowed(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = data.extract::<Vec<u8>>() {
        return Ok(std::borrow::Cow::Owned(b));
    }
    Err(PyTypeError::new_err(format!(
        "a WSGI body chunk must be bytes, not {}",
        data.get_type().name()?
    )))
}

/// The bytes of an HTTP token (a header name): visible ASCII but the separators.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = true;
        b += 1;
    }
    let seps = b"()<>@,;:\\\"/[]?={}";
    let mut i = 0;
    while i < seps.len() {
        t[seps[i] as usize] = false;
        i += 1;
    }
    t
};

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| TOKEN[b as usize])
}

/// Headers the server writes itself: an app's value is ignored (Content-Length is used).
const SERVER_HEADERS: [&str; 5] = [
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
    "server",
];

#[pymethods]
impl Req {
    /// start_response's work (PEP 3333, with exc_info).
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn start(
        &self,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ex = &self.ex;
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(info) = exc_info {
            // Body bytes waiting to be sent count as sent: they go out with this head.
            if ex.sent.get() || ex.has_output() {
                // Too late to change the response: re-raise the app's exception.
                let value = info.get_item(1)?;
                return Err(PyErr::from_value(value));
            }
        } else if ex.status.get().is_some() {
            return Err(pyo3::exceptions::PyAssertionError::new_err(
                "start_response() called twice without exc_info",
            ));
        }
        let status: &Bound<'_, PyString> = status
            .cast()
            .map_err(|_| PyTypeError::new_err("the WSGI status must be a str"))?;
        let s = status.to_str()?;
        let code = s
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=999).contains(c) && (s.len() == 3 || s.as_bytes()[3] == b' '))
            .ok_or_else(|| PyValueError::new_err(format!("invalid WSGI status {s:?}")))?;
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(PyValueError::new_err(format!("invalid WSGI status {s:?}")));
        }
        let list: &Bound<'_, PyList> = headers
            .cast()
            .map_err(|_| PyTypeError::new_err("the WSGI response headers must be a list"))?;
        let mut out = Vec::with_capacity(list.len() * 32);
        let mut length = None;
        for item in list.iter() {
            let tuple: &Bound<'_, PyTuple> = item.cast().map_err(|_| {
                PyTypeError::new_err("each WSGI response header must be a (name, value) tuple")
            })?;
            if tuple.len() != 2 {
                return Err(PyTypeError::new_err(
                    "each WSGI response header must be a (name, value) tuple",
                ));
            }
            let name = tuple.get_item(0)?;
            let name = name
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("a WSGI response header name must be a str"))?
                .to_str()?;
            let value = tuple.get_item(1)?;
            let value = value
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("a WSGI response header value must be a str"))?
                .to_str()?;
            if !valid_name(name) {
                return Err(PyValueError::new_err(format!(
                    "invalid response header name {name:?}"
                )));
            }
            if value
                .chars()
                .any(|c| c == '\r' || c == '\n' || c == '\0' || c as u32 > 0xff)
            {
                return Err(PyValueError::new_err(format!(
                    "invalid characters in the value of response header {name}"
                )));
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<u64>().map_err(|_| {
                    PyValueError::new_err(format!("invalid Content-Length {value:?}"))
                })?);
                continue;
            }
            if SERVER_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            if value.is_ascii() {
                out.extend_from_slice(value.as_bytes());
            } else {
                // Latin-1, as PEP 3333 says.
                out.extend(value.chars().map(|c| c as u32 as u8));
            }
            out.extend_from_slice(b"\r\n");
        }
        ex.status.set(Some(code));
        *ex.headers.borrow_mut() = out;
        ex.content_length.set(length);
        Ok(())
    }

    /// A body chunk (or write()); returns whether to switch out now (each chunk is a switch
    /// point with --greenlet; under --gevent only a full buffer or a failed write is, see
    /// [`OUT_HIGH_WATER`]).
    fn push(&self, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = chunk_bytes(data)?;
        let ex = &self.ex;
        if !bytes.is_empty() {
            if ex.status.get().is_none() {
                return Err(pyo3::exceptions::PyAssertionError::new_err(
                    "a body chunk before start_response()",
                ));
            }
            ex.out.borrow_mut().extend_from_slice(&bytes);
        }
        if ex.greenlet && super::gevent::active() {
            // The request's future sends the chunk as soon as the executor runs (at the
            // latest when the greenlet next waits in gevent) while the greenlet goes on: no
            // round trip through the hub per chunk. It switches out only for a full buffer,
            // to get the error of a write that failed meanwhile, for a wait registered with
            // the `uwsgi` API, and at an empty chunk (the seed's `yield ""` after such a
            // wait, or to let the others run, as before).
            let full = ex.out.borrow().len() >= OUT_HIGH_WATER;
            if bytes.is_empty()
                || full
                || ex.error.borrow().is_some()
                || ex.wait.get() != Wait::None
            {
                return Ok(true);
            }
            if let Some(w) = ex.waker.borrow_mut().take() {
                w.wake();
            }
            return Ok(false);
        }
        Ok(ex.greenlet)
    }

    /// A list or tuple response: all chunks at once, sent when the app returns.
    fn push_all(&self, seq: &Bound<'_, PyAny>) -> PyResult<()> {
        // By index (no iterator object): `run` passes only a list or a tuple.
        if let Ok(list) = seq.cast::<PyList>() {
            for item in list.iter() {
                self.push(&item)?;
            }
            return Ok(());
        }
        if let Ok(tuple) = seq.cast::<PyTuple>() {
            for item in tuple.iter() {
                self.push(&item)?;
            }
            return Ok(());
        }
        for item in seq.try_iter()? {
            let item = item?;
            self.push(&item)?;
        }
        Ok(())
    }

    /// wsgi.file_wrapper over a file with a descriptor: the engine sends it (splice).
    fn sendfile(&self, f: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(fd) = f.call_method0("fileno").and_then(|n| n.extract::<i32>()) else {
            return Ok(false);
        };
        if self.ex.status.get().is_none() {
            return Err(pyo3::exceptions::PyAssertionError::new_err(
                "wsgi.file_wrapper returned before start_response()",
            ));
        }
        let borrowed = crate::sys::borrow_fd(fd);
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        // Only regular files are spliced; anything else is iterated.
        match nix::sys::stat::fstat(owned.as_raw_fd()) {
            Ok(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFREG => {}
            _ => return Ok(false),
        }
        *self.ex.file.borrow_mut() = Some(owned);
        Ok(true)
    }

    /// wsgi.input.read(size): bytes, or None after registering a wait for more.
    fn input_read<'py>(&self, py: Python<'py>, size: isize) -> Option<Bound<'py, PyBytes>> {
        let ex = &self.ex;
        let body = ex.body.borrow();
        let pos = ex.body_pos.get();
        let avail = body.len() - pos;
        let eof = ex.body_eof.get() || ex.cancelled.get();
        let n = if size < 0 {
            if !eof {
                ex.wait.set(Wait::Body(usize::MAX));
                return None;
            }
            avail
        } else {
            let size = size as usize;
            if avail < size && !eof {
                ex.wait.set(Wait::Body(size - avail));
                return None;
            }
            size.min(avail)
        };
        ex.body_pos.set(pos + n);
        Some(PyBytes::new(py, &body[pos..pos + n]))
    }

    /// wsgi.input.readline(size): a line (with its `\n`), or None after registering a wait.
    fn input_readline<'py>(&self, py: Python<'py>, size: isize) -> Option<Bound<'py, PyBytes>> {
        let ex = &self.ex;
        let body = ex.body.borrow();
        let pos = ex.body_pos.get();
        let avail = &body[pos..];
        let limit = if size < 0 {
            avail.len()
        } else {
            (size as usize).min(avail.len())
        };
        let n = match avail[..limit].iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if size >= 0 && avail.len() >= size as usize => limit,
            None if ex.body_eof.get() || ex.cancelled.get() => limit,
            None => {
                ex.wait.set(Wait::Body(1));
                return None;
            }
        };
        ex.body_pos.set(pos + n);
        Some(PyBytes::new(py, &avail[..n]))
    }

    /// After a switch back in: raise what went wrong meanwhile.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(e) = self.ex.error.borrow_mut().take() {
            return Err(PyOSError::new_err(e));
        }
        if self.ex.cancelled.get()
            && let Some(t) = super::harakiri_type(py)
        {
            return Err(PyErr::from_type(
                t.bind(py).cast::<pyo3::types::PyType>()?.clone(),
                "harakiri",
            ));
        }
        Ok(())
    }

    /// The app raised: log its traceback; 500 if nothing was sent.
    fn fail(&self, _e: &Bound<'_, PyAny>, traceback: &str) {
        let ex = &self.ex;
        ex.failed.set(true);
        if ex.cancelled.get() || ex.gone.get() {
            tracing::info!(
                "{} ({}): the request ended with: {}",
                ex.label,
                if ex.gone.get() {
                    "client gone"
                } else {
                    "cancelled"
                },
                traceback.trim_end().lines().last().unwrap_or("")
            );
        } else {
            // Counted as uWSGI counts exceptions (the stats' `exceptions`).
            if let Some(b) = crate::scoreboard::mine() {
                b.exceptions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::error!(
                "{}: Python exception in the app:\n{}",
                ex.label,
                traceback.trim_end()
            );
        }
    }

    /// Whether the request runs in a greenlet.
    #[getter]
    fn greenlet(&self) -> bool {
        self.ex.greenlet
    }

    /// Without --greenlet: the engine pulls the iterator `it` chunk by chunk.
    fn defer(slf: &Bound<'_, Self>, it: &Bound<'_, PyAny>) {
        *slf.borrow().ex.deferred.borrow_mut() = Some(Deferred {
            it: it.clone().unbind(),
            result: None,
            r: slf.clone().into_any().unbind(),
        });
    }

    /// ... and closes `result` at the end, whatever happens.
    fn defer_close(&self, result: &Bound<'_, PyAny>) {
        if let Some(d) = self.ex.deferred.borrow_mut().as_mut() {
            d.result = Some(result.clone().unbind());
        }
    }

    /// An exception that does not change the response (in `close()`): logged and counted.
    fn log_exception(&self, traceback: &str) {
        if let Some(b) = crate::scoreboard::mine() {
            b.exceptions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::error!(
            "{}: Python exception in close():\n{}",
            self.ex.label,
            traceback.trim_end()
        );
    }

    fn done(&self) {
        self.ex.finished.set(true);
        super::gevent::unbind(&self.ex);
        if let Some(w) = self.ex.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn exit_status(&self, status: i32) {
        self.ex.exit.set(Some(status));
    }
}

/// `wsgi.errors`: lines written go to the log.
#[pyclass(module = "_ringsgi")]
pub(crate) struct Errors;

#[pymethods]
impl Errors {
    fn write(&self, s: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = s.str()?;
        let text = text.to_str()?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!("wsgi.errors: {line}");
        }
        Ok(text.len())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for l in lines.try_iter()? {
            self.write(&l?)?;
        }
        Ok(())
    }

    fn flush(&self) {}
}

/// Percent-decode a path (PATH_INFO is decoded, as uWSGI and CGI do).
fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

use super::ffi::latin1_str;

/// FNV-1a: header names are short, and SipHash cost more than the rest of their lookup.
/// The table it hashes for is bounded ([`HEADER_KEYS_MAX`]), so colliding names a client
/// invents cost at most a scan of that many entries.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type HeaderKeys =
    std::collections::HashMap<String, Py<PyString>, std::hash::BuildHasherDefault<Fnv>>;

thread_local! {
    /// The environ key of each header name seen (`HTTP_X_FOO`), interned once per worker.
    static HEADER_KEYS: RefCell<HeaderKeys> = RefCell::new(HeaderKeys::default());
}

/// Most header names whose environ key is cached (a client inventing names cannot grow it).
const HEADER_KEYS_MAX: usize = 512;

/// The environ key of header `name`: `CONTENT_TYPE`, `CONTENT_LENGTH` or `HTTP_*`.
fn header_key<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyString> {
    if name.eq_ignore_ascii_case("content-type") {
        return intern!(py, "CONTENT_TYPE").clone();
    }
    if name.eq_ignore_ascii_case("content-length") {
        return intern!(py, "CONTENT_LENGTH").clone();
    }
    HEADER_KEYS.with(|keys| {
        if let Some(k) = keys.borrow().get(name) {
            return k.bind(py).clone();
        }
        let mut key = String::with_capacity(name.len() + 5);
        key.push_str("HTTP_");
        key.extend(name.chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        let k = PyString::intern(py, &key);
        let mut keys = keys.borrow_mut();
        if keys.len() < HEADER_KEYS_MAX {
            keys.insert(name.to_owned(), k.clone().unbind());
        }
        k
    })
}

/// The keys every request sets, in the worker's base environ with a placeholder (`None`)
/// value: a request's environ is a copy of the base (one clone of its key table, sized for
/// these keys and about 15 headers more: no resize while it is filled), and setting one of
/// these keys replaces a value instead of inserting. [`environ`] sets or removes each one.
pub(crate) const REQUEST_KEYS: [&str; 14] = [
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "REQUEST_SCHEME",
    "uwsgi.core",
    "wsgi.input",
];

/// Environ values that repeat from one request to the next (the server name and port, the
/// client's address), kept as Python strings for the next request that has the same one.
#[derive(Default)]
struct Repeats {
    server_name: Option<(String, Py<PyString>)>,
    server_port: Option<(u16, Py<PyString>)>,
    remote_ip: Option<(std::net::IpAddr, Py<PyString>)>,
}

thread_local! {
    static REPEATS: RefCell<Repeats> = RefCell::new(Repeats::default());
}

/// `n` in decimal as a Python string, without a Rust `String` in between.
fn decimal<'py>(py: Python<'py>, n: u16) -> Bound<'py, PyString> {
    let mut buf = [0u8; 5];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits are ASCII.
    PyString::new(py, std::str::from_utf8(&buf[i..]).unwrap_or("0"))
}

/// The environ of `req` mounted at `script_name`: a copy of the worker's base environ (the
/// constant keys, and the [`REQUEST_KEYS`] to fill) plus the request's CGI variables (uWSGI's
/// set). `wsgi.input` is left for the caller.
pub(crate) fn environ<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyDict>,
    req: &Request,
    script_name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let env = base.copy()?;
    let method = match req.method() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        m => latin1_str(py, m.as_bytes())?,
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), method)?;
    let target = req.target();
    let uri = latin1_str(py, target.as_bytes())?;
    let path = req.path();
    let rest = path.get(script_name.len()..).unwrap_or("");
    if script_name.is_empty() {
        env.set_item(intern!(py, "SCRIPT_NAME"), intern!(py, ""))?;
    } else {
        env.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
    }
    if rest.contains('%') {
        env.set_item(
            intern!(py, "PATH_INFO"),
            latin1_str(py, &percent_decode(rest.as_bytes()))?,
        )?;
    } else if rest == target {
        // The whole target is the path (no query, nothing mounted): one string for both.
        env.set_item(intern!(py, "PATH_INFO"), &uri)?;
    } else {
        env.set_item(intern!(py, "PATH_INFO"), latin1_str(py, rest.as_bytes())?)?;
    }
    env.set_item(intern!(py, "REQUEST_URI"), uri)?;
    match req.query() {
        Some(q) if !q.is_empty() => {
            env.set_item(intern!(py, "QUERY_STRING"), latin1_str(py, q.as_bytes())?)?
        }
        _ => env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?,
    }
    let version = match req.version() {
        "HTTP/1.1" => intern!(py, "HTTP/1.1"),
        _ => intern!(py, "HTTP/1.0"),
    };
    env.set_item(intern!(py, "SERVER_PROTOCOL"), version)?;
    let name = req.server_name();
    let name = if name.is_empty() { "localhost" } else { name };
    // The port the request arrived on (CGI, RFC 3875 4.1.15; uWSGI's http-socket), not the
    // Host header's: a uwsgi request's SERVER_PORT var, else the connection's local port.
    let port = match req.local_port() {
        Some(p) => p,
        None => req.server_port().unwrap_or(80),
    };
    let peer = match req.peer() {
        crate::Peer::Tcp(a) => Some(*a),
        crate::Peer::Unix => None,
    };
    let (name, port, ip) = REPEATS.with(|r| {
        let mut r = r.borrow_mut();
        let name = match &r.server_name {
            Some((n, s)) if n == name => s.bind(py).clone(),
            _ => {
                let s = PyString::new(py, name);
                r.server_name = Some((name.to_owned(), s.clone().unbind()));
                s
            }
        };
        let port = match &r.server_port {
            Some((p, s)) if *p == port => s.bind(py).clone(),
            _ => {
                let s = decimal(py, port);
                r.server_port = Some((port, s.clone().unbind()));
                s
            }
        };
        let ip = peer.map(|a| match &r.remote_ip {
            Some((ip, s)) if *ip == a.ip() => s.bind(py).clone(),
            _ => {
                let s = PyString::new(py, &a.ip().to_string());
                r.remote_ip = Some((a.ip(), s.clone().unbind()));
                s
            }
        });
        (name, port, ip)
    });
    env.set_item(intern!(py, "SERVER_NAME"), name)?;
    env.set_item(intern!(py, "SERVER_PORT"), port)?;
    match (peer, ip) {
        (Some(a), Some(ip)) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), ip)?;
            env.set_item(intern!(py, "REMOTE_PORT"), decimal(py, a.port()))?;
        }
        _ => {
            env.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, ""))?;
            env.del_item(intern!(py, "REMOTE_PORT"))?;
        }
    }
    let scheme = req.scheme();
    let scheme_str = if scheme == "https" {
        intern!(py, "https")
    } else {
        intern!(py, "http")
    };
    env.set_item(intern!(py, "wsgi.url_scheme"), scheme_str)?;
    env.set_item(intern!(py, "REQUEST_SCHEME"), scheme_str)?;
    if scheme == "https" {
        env.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
    }
    env.set_item(intern!(py, "uwsgi.core"), req.slot_id().0)?;
    for (name, value) in req.headers() {
        let k = header_key(py, name);
        let v = latin1_str(py, value)?;
        // The base environ has no header key: one already there is a repeated header (rare),
        // joined as CGI does (CONTENT_TYPE and CONTENT_LENGTH: the last one wins).
        let prev = super::ffi::dict_setdefault(&env, &k, &v)?;
        if !prev.is(&v) {
            if k.to_str()?.starts_with("HTTP_") {
                let joined = format!("{}, {}", prev.extract::<String>()?, v.to_str()?);
                env.set_item(k, joined)?;
            } else {
                env.set_item(k, v)?;
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_info_is_percent_decoded() {
        assert_eq!(percent_decode(b"/a%20b/%zz%2F"), b"/a b/%zz/".to_vec());
        assert_eq!(percent_decode(b"/x%4"), b"/x%4".to_vec());
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(valid_name("X-Ok"));
        assert!(!valid_name("Bad Name"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name(""));
    }
}
