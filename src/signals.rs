//! uWSGI's signal framework: numbered signals 0–255 that workers register handlers for and that
//! requests, background tasks or the master's timers raise.
//!
//! Flow: [`register_signal`] (in a worker, typically when an app is built) stores the handler
//! in the worker and the target in the shared [`SignalTable`], which the master reads.
//! [`signal`] writes the number to the worker's channel to the master (one `AF_UNIX` socket
//! pair per worker, non-blocking). The master routes it by target and writes the number to
//! the chosen workers' channels; a full channel is logged and counted, never waited on. Each
//! worker reads its channel on its own ring ([`receive_loop`]) and runs every handler in a
//! task of its own (as uWSGI does under gevent), covered by `--harakiri` like a request.
//!
//! Invariant: a byte from worker to master means "route signal N"; a byte from master to
//! worker means "run your handler for N". The directions never mix.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::harakiri::{self, Guarded, ReqCtx};
use crate::scoreboard::{self, SignalTable};
use crate::slot::SlotId;

/// Which workers run the handler of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalTarget {
    /// Any one worker (the master picks them in turn).
    Worker,
    /// Every worker.
    Workers,
    /// One worker, by uWSGI's 1-based number (`worker1` is the first).
    WorkerN(usize),
}

impl FromStr for SignalTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "worker" | "worker0" => Ok(SignalTarget::Worker),
            "workers" => Ok(SignalTarget::Workers),
            _ => s
                .strip_prefix("worker")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| (1..=(u32::MAX as usize - 3)).contains(&n))
                .map(SignalTarget::WorkerN)
                .ok_or_else(|| {
                    format!("unsupported signal target '{s}': expected worker, workers or workerN")
                }),
        }
    }
}

impl fmt::Display for SignalTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalTarget::Worker => f.write_str("worker"),
            SignalTarget::Workers => f.write_str("workers"),
            SignalTarget::WorkerN(n) => write!(f, "worker{n}"),
        }
    }
}

impl SignalTarget {
    /// The encoding in the shared table (see [`SignalTable`]).
    pub(crate) fn code(self) -> u32 {
        match self {
            SignalTarget::Worker => 1,
            SignalTarget::Workers => 2,
            SignalTarget::WorkerN(n) => 2 + n as u32,
        }
    }

    /// Decode a table entry; `None` for an unregistered signal.
    pub(crate) fn from_code(code: u32) -> Option<SignalTarget> {
        match code {
            0 => None,
            1 => Some(SignalTarget::Worker),
            2 => Some(SignalTarget::Workers),
            n => Some(SignalTarget::WorkerN(n as usize - 2)),
        }
    }
}

type Handler = Rc<dyn Fn(u8) -> Pin<Box<dyn Future<Output = ()>>>>;

thread_local! {
    static HANDLERS: RefCell<Vec<Option<Handler>>> = RefCell::new(vec![None; 256]);
}

/// This worker's end of its channel to the master (-1 outside a worker).
static CHANNEL: AtomicI32 = AtomicI32::new(-1);

/// Register `handler` for signal `num`, run by `target` (`"worker"`, `"workers"` or
/// `"workerN"`), like uWSGI's `uwsgi.register_signal`. Call it in every worker (for example
/// in the factory of an app, which each worker runs): the handler runs in the worker that
/// receives the signal, in a task of its own.
///
/// ```no_run
/// ringsgi::register_signal(17, "workers", |num| async move {
///     tracing::info!("signal {num}: reloading my cache");
/// })
/// .unwrap();
/// ```
pub fn register_signal<F, Fut>(num: u8, target: &str, handler: F) -> io::Result<()>
where
    F: Fn(u8) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let target: SignalTarget = target
        .parse()
        .map_err(|e: String| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let table = scoreboard::signal_table().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotConnected,
            "register_signal: not inside a ringsgi server",
        )
    })?;
    let h: Handler = Rc::new(move |n| Box::pin(handler(n)));
    HANDLERS.with(|hs| hs.borrow_mut()[num as usize] = Some(h));
    table.targets[num as usize].store(target.code(), Ordering::Release);
    Ok(())
}

/// Raise signal `num` (uWSGI's `uwsgi.signal`): the master delivers it to the target its
/// handler was registered with. Returns at once; fails with `WouldBlock` when the channel to
/// the master is full, and with `NotConnected` outside a worker.
pub fn signal(num: u8) -> io::Result<()> {
    let fd = CHANNEL.load(Ordering::Relaxed);
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "signal: not inside a ringsgi worker",
        ));
    }
    let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
    match nix::sys::socket::send(fd, &[num], flags) {
        Ok(_) => Ok(()),
        Err(nix::errno::Errno::EAGAIN) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("signal {num}: the channel to the master is full"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whether this worker registered a handler for `num`.
pub fn signal_registered(num: u8) -> bool {
    HANDLERS.with(|hs| hs.borrow()[num as usize].is_some())
}

/// Record this worker's channel end (worker start).
pub(crate) fn set_channel(fd: RawFd) {
    CHANNEL.store(fd, Ordering::Relaxed);
}

/// The registered target of `num`, read by the master.
pub(crate) fn target_of(table: &SignalTable, num: u8) -> Option<SignalTarget> {
    SignalTarget::from_code(table.targets[num as usize].load(Ordering::Acquire))
}

/// Read signal numbers from the master and run each handler in its own task. Returns when the
/// master closes the channel.
pub(crate) async fn receive_loop(fd: RawFd, worker: usize, harakiri_after: Option<Duration>) {
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let (r, b) = crate::uring::recv::recv(fd, buf, None).await;
        buf = b;
        match r {
            Ok(0) => {
                tracing::info!(
                    "worker {worker}: signal channel closed by the master (reload or stop)"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("worker {worker}: signal channel: {e}");
                return;
            }
        }
        for &num in &buf {
            run(num, worker, harakiri_after);
        }
    }
}

/// Run the handler of `num` in a task of its own.
fn run(num: u8, worker: usize, harakiri_after: Option<Duration>) {
    let Some(handler) = HANDLERS.with(|hs| hs.borrow()[num as usize].clone()) else {
        tracing::error!("error managing signal {num} on worker {worker}: no handler registered");
        return;
    };
    if let Some(b) = scoreboard::mine() {
        b.signals.fetch_add(1, Ordering::Relaxed);
    }
    crate::primitives::spawn(async move {
        let started = Instant::now();
        let hctx = Rc::new(ReqCtx::new(
            SlotId(u32::MAX),
            started,
            harakiri_after,
            if harakiri_after.is_some() {
                format!("signal {num} handler").into_bytes()
            } else {
                Vec::new()
            },
            scoreboard::mine(),
        ));
        let call = Guarded::new(hctx.clone(), handler(num));
        let done = futures_lite::future::or(
            async {
                call.await;
                true
            },
            async {
                harakiri::expired(&hctx).await;
                false
            },
        )
        .await;
        if !done {
            if let Some(b) = scoreboard::mine() {
                b.harakiri_count.fetch_add(1, Ordering::Relaxed);
            }
            tracing::error!(
                "HARAKIRI ON WORKER {worker} (pid {}): signal {num} handler after {} ms",
                std::process::id(),
                started.elapsed().as_millis()
            );
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_round_trip_through_the_table_code() {
        for (s, t) in [
            ("worker", SignalTarget::Worker),
            ("workers", SignalTarget::Workers),
            ("worker1", SignalTarget::WorkerN(1)),
            ("worker12", SignalTarget::WorkerN(12)),
        ] {
            let parsed: SignalTarget = s.parse().unwrap();
            assert_eq!(parsed, t);
            assert_eq!(SignalTarget::from_code(parsed.code()), Some(t));
            if s != "worker0" {
                assert_eq!(parsed.to_string(), s);
            }
        }
        assert_eq!(SignalTarget::from_code(0), None);
        for bad in ["", "mule", "workerx", "workers2", "spooler"] {
            assert!(bad.parse::<SignalTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn signal_outside_a_worker_is_not_connected() {
        assert_eq!(signal(3).unwrap_err().kind(), io::ErrorKind::NotConnected);
    }
}
