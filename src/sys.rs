//! System-call glue that has no safe wrapper: fork, signal dispositions, parent-death signal,
//! resource limits. With `uring/`, the only module allowed `unsafe`.
#![allow(unsafe_code)]

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::unistd::{ForkResult, Pid};

/// The result of [`fork`].
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Fork the process.
///
/// Invariant: only the master calls this, and the master never creates a thread, so the
/// child is a complete copy of a single-threaded process and may run any code.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the master is single-threaded (see the invariant above): no lock can be held
    // by a thread that does not exist in the child.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// In a freshly forked worker: restore default dispositions for the signals the master
/// handles, unblock everything, and ask the kernel to SIGKILL us if the master dies.
pub(crate) fn worker_signal_setup() -> io::Result<()> {
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: installing SIG_DFL runs no handler code; the worker is single-threaded here.
        unsafe { signal(sig, SigHandler::SigDfl) }.map_err(io::Error::from)?;
    }
    // SAFETY: SIG_IGN for SIGPIPE: sends use MSG_NOSIGNAL, this covers any other write.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    SigSet::all().thread_unblock().map_err(io::Error::from)?;
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and has no memory arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raise `RLIMIT_NOFILE` to its hard limit, and `RLIMIT_MEMLOCK` to `memlock` bytes where
/// allowed (root). Returns the resulting (nofile, memlock) soft limits.
pub(crate) fn raise_limits(memlock: u64) -> (u64, u64) {
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK)
        && soft < memlock
    {
        let new_hard = hard.max(memlock);
        if setrlimit(Resource::RLIMIT_MEMLOCK, memlock, new_hard).is_err() && hard > soft {
            let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
        }
    }
    let nofile = getrlimit(Resource::RLIMIT_NOFILE).map(|l| l.0).unwrap_or(0);
    let memlock = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map(|l| l.0)
        .unwrap_or(0);
    (nofile, memlock)
}

/// Types that may live in memory shared between the master and the workers.
///
/// # Safety
///
/// All-zero bytes must be a valid value, and every field must be safe to access from several
/// processes at once (atomics only, `repr(C)`).
pub(crate) unsafe trait Shareable {}

// SAFETY: `WorkerBoard` is `repr(C)` and made only of atomics (and arrays of them), for which
// all-zero bytes are valid and which are lock-free on x86-64 and aarch64.
unsafe impl Shareable for crate::scoreboard::WorkerBoard {}
// SAFETY: as above: `repr(C)`, atomics only.
unsafe impl Shareable for crate::scoreboard::SignalTable {}
// SAFETY: as above: `repr(C)`, atomics only.
unsafe impl Shareable for crate::scoreboard::SlotBoard {}

/// Borrow a raw descriptor for a call that needs a `BorrowedFd` (the master's `poll`).
///
/// The caller owns `fd` (through an `OwnedFd` or socket it keeps) for longer than the borrow.
pub(crate) fn borrow_fd<'a>(fd: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'a> {
    // SAFETY: see above: the descriptor stays open while the borrow lives; the master is
    // single-threaded, so nothing closes it meanwhile.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// A zero-filled `MAP_SHARED | MAP_ANONYMOUS` array of `n` values, created by the master before
/// it forks so that every worker writes its own entry and the master reads them all.
///
/// The mapping lives as long as the process (it is never unmapped), hence `'static`.
pub(crate) fn shared_zeroed<T: Shareable>(n: usize) -> io::Result<&'static [T]> {
    let len = std::mem::size_of::<T>() * n.max(1);
    // SAFETY: an anonymous shared mapping with no address hint; the result is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is `len` bytes, page-aligned (so aligned for `T`), zero filled by
    // the kernel, and never unmapped; `T: Shareable` makes zeroed bytes a valid, shareable `T`.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<T>(), n) })
}

/// Zero part of a [`shared_zeroed`] mapping without touching it: the whole pages that `items`
/// covers are given back to the kernel (`MADV_REMOVE`: they read as zeros again and are no
/// longer resident in any process). Returns the indices of the items that are now zero; the
/// caller clears the others (those sharing a page with what lies outside `items`), or all of
/// them if the kernel refused (an empty range).
///
/// Why: the master zeroes a worker's per-slot stats records before forking it, and writing
/// `--async` records made every page of them resident in the master (2.5 MB at
/// `--async 10000` on two workers), pages only the worker needs.
pub(crate) fn zero_shared_pages<T: Shareable>(items: &[T]) -> std::ops::Range<usize> {
    let size = std::mem::size_of::<T>();
    if size == 0 || items.is_empty() {
        return 0..0;
    }
    let page = page_size() as usize;
    let start = items.as_ptr() as usize;
    let end = start + std::mem::size_of_val(items);
    let (from, to) = (start.next_multiple_of(page), end / page * page);
    if to <= from {
        return 0..0;
    }
    // SAFETY: [from, to) is page-aligned and lies inside `items`, which is part of a shared
    // anonymous mapping made by `shared_zeroed` and never unmapped; `T: Shareable` makes the
    // zeros the kernel leaves there a valid `T`. Only the caller's process writes these
    // records at this point (the master, before it forks the worker that will use them).
    let rc = unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_REMOVE) };
    if rc != 0 {
        return 0..0;
    }
    (from - start).div_ceil(size)..(to - start) / size
}

/// Give the heap's free pages back to the kernel (`malloc_trim(0)`): glibc returns freed memory
/// only from the top of the heap on its own, so memory freed in the middle (connection tasks
/// and buffers of connections that were then parked) would otherwise stay resident.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a size and only walks and releases glibc's own free chunks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Milliseconds on the coarse monotonic clock: one clock that the master and every worker
/// agree on (scoreboard heartbeats and harakiri deadlines, compared at 100 ms granularity).
pub(crate) fn monotonic_ms() -> u64 {
    coarse_monotonic_ms()
}

/// `CLOCK_MONOTONIC_COARSE` in milliseconds: the time of the last clock tick (a jiffy, 1-10
/// ms), read from the vDSO page without touching the TSC. Cheap enough for every operation;
/// master and workers compare scoreboard times on this one clock.
pub(crate) fn coarse_monotonic_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .expect("CLOCK_MONOTONIC_COARSE is always available on Linux");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// `CLOCK_REALTIME_COARSE` in whole seconds since the epoch (stats timestamps).
pub(crate) fn coarse_epoch_secs() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .map_or(0, |ts| ts.tv_sec().max(0) as u64)
}

/// The write end of the worker's stop pipe, for the SIGTERM handler (-1: none).
static STOP_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // The interrupted code may be between a failing call and its read of errno.
    let saved = nix::errno::Errno::last_raw();
    let fd = STOP_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte. A full pipe
        // (EAGAIN) is fine: one byte is enough to wake the worker.
        let _ = unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    nix::errno::Errno::set_raw(saved);
}

/// In a worker: make SIGTERM write a byte to `tx` (the read end is the worker's graceful stop
/// signal) instead of killing the process.
///
/// signal-hook cannot be used here: its registry was inherited from the master, which
/// registered SIGTERM, so it would not reinstall the handler that `worker_signal_setup` reset.
pub(crate) fn worker_stop_on_sigterm(tx: std::os::fd::OwnedFd) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    STOP_PIPE.store(tx.into_raw_fd(), std::sync::atomic::Ordering::Relaxed);
    let action = nix::sys::signal::SigAction::new(
        SigHandler::Handler(on_stop_signal),
        nix::sys::signal::SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only loads an atomic and calls write(2), both async-signal-safe.
    unsafe { nix::sys::signal::sigaction(Signal::SIGTERM, &action) }.map_err(io::Error::from)?;
    Ok(())
}

/// `TCP_LISTEN` from the kernel's `include/net/tcp_states.h` (libc does not export the enum).
const TCP_LISTEN: u8 = 10;

/// The accept queue of a listening TCP socket: (connections waiting for `accept`, backlog).
///
/// `Ok(None)` when the socket is not a TCP listener: only in `LISTEN` does the kernel
/// (`tcp_get_info`, `net/ipv4/tcp.c`) alias `tcpi_unacked` to the accept queue length and
/// `tcpi_sacked` to its maximum; on any other socket those fields mean something else.
pub(crate) fn tcp_listen_queue(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain integers, for which all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a live, writable `tcp_info` and `len` holds its size; the kernel writes
    // at most `len` bytes and stores the written length back in `len`. `fd` is borrowed, so it
    // stays open for the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // The three fields read below sit in the first 32 bytes, which every kernel that has
    // TCP_INFO fills; a shorter answer would be a kernel bug, reported as "not a listener".
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_sacked) + 4;
    if (len as usize) < needed || info.tcpi_state != TCP_LISTEN {
        return Ok(None);
    }
    Ok(Some((info.tcpi_unacked, info.tcpi_sacked)))
}

/// Broken-down local time of `epoch_secs`, and the zone's offset from UTC in seconds.
///
/// `localtime_r` rather than `localtime`: the result lands in our own buffer, not in libc's
/// static one. glibc's `localtime_r` loads the time zone (`TZ`, `/etc/localtime`) itself.
pub(crate) fn local_time(epoch_secs: i64) -> Option<(crate::cron::BrokenDownTime, i64)> {
    let t: libc::time_t = epoch_secs;
    // SAFETY: `tm` is plain integers plus a `tm_zone` pointer, for which null is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals of the right types; `localtime_r` writes only
    // into `tm` and returns null on failure (checked).
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    let when = crate::cron::BrokenDownTime {
        minute: tm.tm_min,
        hour: tm.tm_hour,
        mday: tm.tm_mday,
        month: tm.tm_mon + 1,
        wday: tm.tm_wday,
    };
    Some((when, tm.tm_gmtoff))
}

/// `epoch_secs` as local time in the Apache log style: `06/Dec/2026:21:40:00 +0000`.
pub(crate) fn apache_time(epoch_secs: i64) -> String {
    let t: libc::time_t = epoch_secs;
    // SAFETY: `tm` is plain integers plus a `tm_zone` pointer, for which null is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals of the right types; null return is checked.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return String::from("-");
    }
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is writable for its length, the format is a NUL-terminated literal and
    // `tm` was filled above; strftime writes at most `buf.len()` bytes and returns how many.
    let n = unsafe {
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%d/%b/%Y:%H:%M:%S %z".as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The size of a memory page in bytes (`/proc/PID/statm` counts pages).
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer name and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // POSIX requires _SC_PAGESIZE; 4096 is every Linux target's smallest page, if it ever fails.
    if n > 0 { n as u64 } else { 4096 }
}

/// Remove an environment variable (the master's handover variable, read at start).
///
/// Only called by the master before it forks or spawns anything: it has one thread.
pub(crate) fn remove_env(key: &str) {
    // SAFETY: the master is single-threaded here (see `fork`'s invariant), so no other
    // thread can read or write the environment at the same time.
    unsafe { std::env::remove_var(key) };
}

/// Take ownership of a descriptor handed over by the master's previous image (see
/// `server::reexec`), after checking that it is open; it is made close-on-exec again.
pub(crate) fn adopt_fd(fd: std::os::fd::RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(io::Error::from)?;
    // SAFETY: the descriptor is open (checked above) and was handed to this image by its
    // previous one for this purpose alone: nothing else in the process owns it, and each
    // handed-over number is adopted at most once (`Handover::adopt` removes it).
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    set_cloexec(fd, true)?;
    Ok(owned)
}

/// Set or clear `FD_CLOEXEC` on a descriptor the caller owns.
pub(crate) fn set_cloexec(fd: std::os::fd::RawFd, on: bool) -> io::Result<()> {
    let flags = if on {
        nix::fcntl::FdFlag::FD_CLOEXEC
    } else {
        nix::fcntl::FdFlag::empty()
    };
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// A blocking, close-on-exec eventfd (counter 0), read through glommio ([`glommio_file`]).
#[cfg(feature = "python")]
pub(crate) fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new descriptor that
    // nothing else owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Add `n` to eventfd `fd`'s counter; callable from any thread. A failure (a saturated
/// counter: the reader is woken anyway) is ignored.
#[cfg(feature = "python")]
pub(crate) fn eventfd_write(fd: std::os::fd::RawFd, n: u64) {
    let buf = n.to_ne_bytes();
    // SAFETY: `buf` is 8 valid bytes for the duration of the call; the caller keeps `fd` open.
    let _ = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// A descriptor as a glommio file, read on glommio's own ring (whose sleep a write from
/// another thread wakes, as the pump's eventfd does).
#[cfg(feature = "python")]
pub(crate) fn glommio_file(fd: std::os::fd::OwnedFd) -> glommio::io::BufferedFile {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the BufferedFile takes ownership of the descriptor, which the OwnedFd gave up.
    unsafe { glommio::io::BufferedFile::from_raw_fd(fd.into_raw_fd()) }
}
