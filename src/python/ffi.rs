//! The raw CPython and greenlet C interfaces the engine needs beyond PyO3's safe API: the
//! worker thread's permanent thread state, greenlet's C API (`greenlet._C_API`), and the one
//! switch out of a request greenlet (`suspend`), a raw `METH_FASTCALL` function.
//!
//! Why raw: a PyO3 `#[pyfunction]` that switches greenlets leaves PyO3's per-thread attach
//! count raised while its frame is suspended, and the next `Python::attach` then runs without
//! the GIL (python-embedding-notes.md, trap 1). `suspend` touches no PyO3 state at all.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;

type Obj = *mut ffi::PyObject;
/// `PyGreenlet *PyGreenlet_New(PyObject *run, PyGreenlet *parent)`.
type NewFn = unsafe extern "C" fn(Obj, Obj) -> Obj;
/// `PyGreenlet *PyGreenlet_GetCurrent(void)`.
type CurrentFn = unsafe extern "C" fn() -> Obj;
/// `PyObject *PyGreenlet_Throw(PyGreenlet *g, PyObject *typ, PyObject *val, PyObject *tb)`.
type ThrowFn = unsafe extern "C" fn(Obj, Obj, Obj, Obj) -> Obj;
/// `PyObject *PyGreenlet_Switch(PyGreenlet *g, PyObject *args, PyObject *kwargs)`.
type SwitchFn = unsafe extern "C" fn(Obj, Obj, Obj) -> Obj;

/// greenlet's exported function table (`greenlet.h`, `PyGreenlet_API_pointers`).
#[derive(Clone, Copy)]
struct Api {
    new: NewFn,
    current: CurrentFn,
    throw: ThrowFn,
    switch: SwitchFn,
}

thread_local! {
    static API: Cell<Option<Api>> = const { Cell::new(None) };
    /// The thread's main greenlet (the executor), a strong reference held for the thread's
    /// life; null until [`load_greenlet`].
    static MAIN: Cell<*mut ffi::PyObject> = const { Cell::new(ptr::null_mut()) };
}

/// Give the calling thread a permanent Python thread state and release the GIL: every later
/// `Python::attach` on this thread reuses that state (python-embedding-notes.md, trap 2).
pub(crate) fn pin_thread_state() {
    // SAFETY: the interpreter is initialised (Python::initialize ran before); Ensure creates
    // or reuses this thread's state and takes the GIL, SaveThread releases it again. The
    // Ensure is never undone, so the thread state outlives every greenlet pointing at it.
    unsafe {
        let _ = ffi::PyGILState_Ensure();
        ffi::PyEval_SaveThread();
    }
}

/// Import greenlet's C API and remember this thread's main greenlet. Call with the GIL held,
/// on the executor's thread, outside any greenlet.
pub(crate) fn load_greenlet(py: Python<'_>) -> PyResult<()> {
    // Import the package first: it loads the extension that creates the capsule.
    py.import("greenlet")?;
    // SAFETY: the GIL is held (`py`); PyCapsule_Import returns the pointer stored in the
    // capsule or null with an exception set.
    let table = unsafe { ffi::PyCapsule_Import(c"greenlet._C_API".as_ptr(), 0) };
    if table.is_null() {
        return Err(PyErr::fetch(py));
    }
    let table = table as *const *mut c_void;
    // SAFETY: greenlet.h documents a table of PyGreenlet_API_pointers (12) function and
    // object pointers with these indices and signatures; greenlet 2 and 3 keep them.
    let api = unsafe {
        Api {
            new: std::mem::transmute::<*mut c_void, NewFn>(*table.add(3)),
            current: std::mem::transmute::<*mut c_void, CurrentFn>(*table.add(4)),
            throw: std::mem::transmute::<*mut c_void, ThrowFn>(*table.add(5)),
            switch: std::mem::transmute::<*mut c_void, SwitchFn>(*table.add(6)),
        }
    };
    API.with(|a| a.set(Some(api)));
    // SAFETY: GIL held; `current` returns a new reference to the running (main) greenlet,
    // which we keep for the thread's life.
    let main = unsafe { (api.current)() };
    if main.is_null() {
        return Err(PyErr::fetch(py));
    }
    MAIN.with(|m| m.set(main));
    Ok(())
}

fn api() -> Option<Api> {
    API.with(|a| a.get())
}

/// A new greenlet running `run`, child of the thread's main greenlet.
pub(crate) fn new_greenlet(py: Python<'_>, run: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let api = api().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no greenlet"))?;
    let main = MAIN.with(|m| m.get());
    // SAFETY: GIL held; `run` is a live object; `main` is the strong reference kept in MAIN;
    // the result is a new reference or null with an exception set.
    unsafe {
        let g = (api.new)(run.as_ptr(), main);
        Bound::from_owned_ptr_or_err(py, g).map(Bound::unbind)
    }
}

/// The running greenlet's address (an identity while the greenlet is alive), 0 without
/// greenlet.
pub(crate) fn current_addr(_py: Python<'_>) -> usize {
    let Some(api) = api() else {
        return 0;
    };
    // SAFETY: the GIL is held (`_py`);
    // `current` returns a new reference, released at once: the address is only compared.
    unsafe {
        let cur = (api.current)();
        ffi::Py_XDECREF(cur);
        cur as usize
    }
}

/// The running greenlet (a new reference).
pub(crate) fn current(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let api = api().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no greenlet"))?;
    // SAFETY: GIL held (`py`); `current` returns a new reference or null with an exception.
    unsafe { Bound::from_owned_ptr_or_err(py, (api.current)()).map(Bound::unbind) }
}

/// Switch into greenlet `g` (starting it with `args` the first time). Returns what it switched
/// back with (its result when it ended), or the exception it ended with.
///
/// The caller holds a `Python` token and nothing else that points into this stack; the
/// greenlet runs until it suspends or ends.
pub(crate) fn switch(
    py: Python<'_>,
    g: &Py<PyAny>,
    args: Option<&Bound<'_, pyo3::types::PyTuple>>,
) -> PyResult<Py<PyAny>> {
    let api = api().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no greenlet"))?;
    let args = args.map_or(ptr::null_mut(), |a| a.as_ptr());
    // SAFETY: GIL held; `g` is a greenlet created by `new_greenlet`; args is null or a tuple;
    // the result is a new reference or null with an exception set.
    unsafe {
        let r = (api.switch)(g.as_ptr(), args, ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, r).map(Bound::unbind)
    }
}

/// Raise `exc` (an exception type) inside the suspended greenlet `g` and run it until it
/// suspends or ends.
pub(crate) fn throw(py: Python<'_>, g: &Py<PyAny>, exc: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let api = api().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no greenlet"))?;
    // SAFETY: GIL held; `g` is a greenlet, `exc` an exception type (the value and traceback
    // may be null); the result is a new reference or null with an exception set.
    unsafe {
        let r = (api.throw)(g.as_ptr(), exc.as_ptr(), ptr::null_mut(), ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, r).map(Bound::unbind)
    }
}

/// `uwsgi.suspend()` and the engine's own switch out of a request greenlet: switch to the
/// executor (the main greenlet), which performs what the request registered and switches
/// back. A no-op on the main greenlet (no `--greenlet`, or outside a request); raises
/// `RuntimeError` when the request was cancelled (harakiri) and must not wait any more.
unsafe extern "C" fn suspend(
    _module: *mut ffi::PyObject,
    _args: *mut *mut ffi::PyObject,
    _nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: called by the interpreter with the GIL held.
    let r = unsafe { switch_out(true) };
    if r.is_null() {
        return r;
    }
    // uWSGI's suspend() answers True, whatever the switch back passed.
    // SAFETY: GIL held; `r` is the new reference the switch returned, released here; Py_True
    // is immortal, and the caller gets a new reference to it.
    unsafe {
        ffi::Py_DECREF(r);
        let t = ffi::Py_True();
        ffi::Py_IncRef(t);
        t
    }
}

/// The pooled greenlet's switch out after its job ended (`boot.loop`): like `suspend`, but
/// also for a cancelled request (its job is over); the executor switches back in with the
/// next job.
unsafe extern "C" fn park(
    _module: *mut ffi::PyObject,
    _args: *mut *mut ffi::PyObject,
    _nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: called by the interpreter with the GIL held.
    unsafe { switch_out(false) }
}

/// Switch from the running request greenlet to the main one.
///
/// # Safety
/// The GIL must be held (a Python-called C function).
unsafe fn switch_out(check_cancel: bool) -> *mut ffi::PyObject {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let main = MAIN.with(|m| m.get());
        let Some(api) = api() else {
            // SAFETY: GIL held (caller).
            return unsafe { none() };
        };
        // SAFETY: GIL held; `current` returns a new reference, released at once.
        let on_main = unsafe {
            let cur = (api.current)();
            let on_main = cur == main;
            ffi::Py_XDECREF(cur);
            on_main
        };
        if main.is_null() || on_main {
            // SAFETY: GIL held.
            return unsafe { none() };
        }
        if check_cancel && super::greenlet::cancelled() {
            // SAFETY: GIL held; PyErr_SetString copies the message.
            unsafe {
                ffi::PyErr_SetString(
                    ffi::PyExc_RuntimeError,
                    c"ringsgi: the request was cancelled (harakiri or client gone): it cannot wait"
                        .as_ptr(),
                );
            }
            return ptr::null_mut();
        }
        // SAFETY: GIL held; `main` is the thread's main greenlet (strong reference in MAIN);
        // this frame holds no PyO3 guard or reference into the executor's stack.
        unsafe { (api.switch)(main, ptr::null_mut(), ptr::null_mut()) }
    }));
    r.unwrap_or_else(|_| {
        // SAFETY: GIL held (caller).
        unsafe {
            ffi::PyErr_SetString(
                ffi::PyExc_SystemError,
                c"ringsgi: panic in a greenlet switch".as_ptr(),
            );
        }
        ptr::null_mut()
    })
}

/// A new reference to `None`.
///
/// # Safety
/// The GIL must be held.
unsafe fn none() -> *mut ffi::PyObject {
    // SAFETY: GIL held (caller); Py_None is immortal in 3.12+, counted before.
    unsafe {
        let n = ffi::Py_None();
        ffi::Py_IncRef(n);
        n
    }
}

/// greenlet's trace function under --gevent (`greenlet.settrace`), called by greenlet on every
/// switch of the thread as `trace(event, (origin, target))`: hands the target greenlet's
/// address to [`super::gevent::switched_to`]. Raw (no PyO3 argument handling): it runs on
/// every switch, several times per request.
unsafe extern "C" fn switch_trace(
    _module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if nargs >= 2 {
            // SAFETY: the interpreter passes `nargs` valid borrowed references in `args`.
            let pair = unsafe { *args.add(1) };
            // SAFETY: GIL held (called by the interpreter); `pair` is a live object; a tuple
            // of at least 2 items is indexed within its size (borrowed references).
            let target = unsafe {
                if ffi::PyTuple_Check(pair) != 0 && ffi::PyTuple_Size(pair) >= 2 {
                    ffi::PyTuple_GetItem(pair, 1)
                } else {
                    ptr::null_mut()
                }
            };
            if !target.is_null() {
                super::gevent::switched_to(target as usize);
            }
        }
    }));
    if r.is_err() {
        // Nothing to report to: a trace function must not raise (greenlet would print it
        // and remove the trace); the scoreboard keeps its last request.
        tracing::error!("panic in the greenlet switch trace");
    }
    // SAFETY: GIL held (called by the interpreter).
    unsafe { none() }
}

/// The switch trace (see [`switch_trace`]) as a Python callable.
pub(crate) fn switch_trace_function(py: Python<'_>) -> PyResult<Py<PyAny>> {
    function(
        py,
        c"switch_trace",
        switch_trace,
        c"switch_trace(event, args)\n--\n\ngreenlet's trace: the request whose greenlet runs next becomes current.",
    )
}

/// The `suspend` function as a Python callable (a builtin function object).
pub(crate) fn suspend_function(py: Python<'_>) -> PyResult<Py<PyAny>> {
    function(
        py,
        c"suspend",
        suspend,
        c"suspend()\n--\n\nSwitch to the executor until what this request registered (a wait on an fd, a sleep) is done.",
    )
}

/// The `park` function (see [`park`]) as a Python callable.
pub(crate) fn park_function(py: Python<'_>) -> PyResult<Py<PyAny>> {
    function(
        py,
        c"park",
        park,
        c"park()\n--\n\nSwitch to the executor after a job; returns the next job.",
    )
}

type Fast = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut *mut ffi::PyObject,
    ffi::Py_ssize_t,
) -> *mut ffi::PyObject;

fn function(
    py: Python<'_>,
    name: &'static std::ffi::CStr,
    f: Fast,
    doc: &'static std::ffi::CStr,
) -> PyResult<Py<PyAny>> {
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFast: f },
        ml_flags: ffi::METH_FASTCALL,
        ml_doc: doc.as_ptr(),
    }));
    // SAFETY: GIL held; `def` is leaked, so it lives as long as the function object needs;
    // the result is a new reference or null with an exception set.
    unsafe {
        let f = ffi::PyCFunction_NewEx(def, ptr::null_mut(), ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, f).map(Bound::unbind)
    }
}

/// `dict.setdefault(key, value)`: the value now under `key` (`value` itself if the key was
/// missing), with one hash lookup.
pub(crate) fn dict_setdefault<'py>(
    dict: &Bound<'py, pyo3::types::PyDict>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = dict.py();
    // SAFETY: the GIL is held (`py`); the three objects are alive; PyDict_SetDefault returns
    // a borrowed reference (or null with an exception set), made owned here.
    unsafe {
        let r = ffi::PyDict_SetDefault(dict.as_ptr(), key.as_ptr(), value.as_ptr());
        Bound::from_borrowed_ptr_or_err(py, r)
    }
}

/// Bytes as a Python native string, each byte the character of the same number (latin-1,
/// as PEP 3333 wants the environ's strings); ASCII in one copy, without a UTF-8 decoding.
pub(crate) fn latin1_str<'py>(
    py: Python<'py>,
    b: &[u8],
) -> PyResult<Bound<'py, pyo3::types::PyString>> {
    // SAFETY: the GIL is held (`py`); `b` is valid for its length; PyUnicode_DecodeLatin1
    // copies it and returns a new reference to a str, or null with an exception set.
    unsafe {
        let s =
            ffi::PyUnicode_DecodeLatin1(b.as_ptr().cast(), b.len() as ffi::Py_ssize_t, ptr::null());
        Bound::from_owned_ptr_or_err(py, s).map(|s| s.cast_into_unchecked())
    }
}
