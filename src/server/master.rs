//! The master: binds, forks one worker per core, respawns the ones that die, stops them all.
//!
//! Invariant: the master never creates a thread (see `sys::fork`). It waits in `poll(2)` on a
//! self-pipe written by its signal handlers, with a 100 ms tick for timed work.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::app::Apps;
use crate::config::Config;
use crate::scoreboard::WorkerBoard;
use crate::server::listener::Listener;
use crate::server::worker;
use crate::sys::{self, Forked};

/// A worker that dies sooner than this after its start counts toward the fork-bomb guard.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// How long the fork-bomb guard waits before respawning a worker that keeps dying early.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);
/// How long stopping workers get before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The master's view of one worker.
#[derive(Debug)]
struct WorkerRec {
    pid: Option<Pid>,
    started: Instant,
    /// When set, respawn no earlier than this (fork-bomb guard).
    respawn_at: Option<Instant>,
    respawns: u64,
    /// Killed by hard harakiri: respawn at once (not a crash loop).
    harakiri: bool,
}

/// The flags set by the master's signal handlers.
struct SignalFlags {
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    child: Arc<AtomicBool>,
    pipe_rx: OwnedFd,
}

fn install_signals() -> io::Result<SignalFlags> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(io::Error::from)?;
    let stop = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    let child = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::*;
    for (sig, flag) in [
        (SIGTERM, &stop),
        (SIGINT, &quit),
        (SIGQUIT, &quit),
        (SIGCHLD, &child),
    ] {
        signal_hook::flag::register(sig, flag.clone())?;
        signal_hook::low_level::pipe::register(sig, tx.try_clone()?)?;
    }
    // SIGHUP is the graceful reload (issue 4); until then it must not kill the master.
    signal_hook::flag::register(SIGHUP, Arc::new(AtomicBool::new(false)))?;
    Ok(SignalFlags {
        stop,
        quit,
        child,
        pipe_rx: rx,
    })
}

/// Run the master until it is told to stop. Returns the process exit code.
pub(super) fn run(
    config: &Config,
    listeners: &[Listener],
    apps: &Apps,
    boards: &'static [WorkerBoard],
) -> io::Result<i32> {
    let signals = install_signals()?;
    let mut workers: Vec<WorkerRec> = (0..config.cores)
        .map(|_| WorkerRec {
            pid: None,
            started: Instant::now(),
            respawn_at: None,
            respawns: 0,
            harakiri: false,
        })
        .collect();
    for (i, rec) in workers.iter_mut().enumerate() {
        spawn(config, i, listeners, apps, rec, boards)?;
    }
    let mut buf = [0u8; 64];
    loop {
        {
            let mut fds = [PollFd::new(signals.pipe_rx.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        while nix::unistd::read(signals.pipe_rx.as_raw_fd(), &mut buf).unwrap_or(0) > 0 {}
        if signals.child.swap(false, Ordering::AcqRel) {
            reap(&mut workers, false);
        }
        if signals.quit.load(Ordering::Acquire) {
            tracing::info!("SIGINT/SIGQUIT received: stopping workers now");
            stop_all(&mut workers, Signal::SIGKILL, STOP_GRACE);
            return Ok(0);
        }
        if signals.stop.load(Ordering::Acquire) {
            tracing::info!("SIGTERM received: stopping workers");
            stop_all(
                &mut workers,
                Signal::SIGTERM,
                config.reload_mercy + STOP_GRACE,
            );
            return Ok(0);
        }
        hard_harakiri(&mut workers, boards);
        let now = Instant::now();
        for (i, rec) in workers.iter_mut().enumerate() {
            let due = rec.pid.is_none() && rec.respawn_at.is_none_or(|t| t <= now);
            if due {
                spawn(config, i, listeners, apps, rec, boards)?;
            }
        }
    }
}

/// Fork worker `i`. In the child this never returns.
fn spawn(
    config: &Config,
    i: usize,
    listeners: &[Listener],
    apps: &Apps,
    rec: &mut WorkerRec,
    boards: &'static [WorkerBoard],
) -> io::Result<()> {
    match sys::fork()? {
        Forked::Parent(pid) => {
            if rec.pid.is_none() && rec.respawns > 0 {
                tracing::info!("respawned worker {i} (new pid: {pid})");
            } else {
                tracing::info!(
                    "spawned worker {i} (pid: {pid}, cpu {})",
                    config.cpu_for_worker(i)
                );
            }
            rec.pid = Some(pid);
            rec.started = Instant::now();
            rec.respawn_at = None;
            Ok(())
        }
        Forked::Child => {
            let code = match sys::worker_signal_setup()
                .and_then(|()| worker::run(config, i, listeners, apps, boards))
            {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("worker {i} failed: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// Collect dead workers; schedule respawns unless stopping.
fn reap(workers: &mut [WorkerRec], stopping: bool) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                let Some(pid) = status.pid() else { return };
                let Some((i, rec)) = workers
                    .iter_mut()
                    .enumerate()
                    .find(|(_, w)| w.pid == Some(pid))
                else {
                    continue;
                };
                rec.pid = None;
                if stopping {
                    continue;
                }
                let how = match status {
                    WaitStatus::Exited(_, code) => format!("exited with code {code}"),
                    WaitStatus::Signaled(_, sig, _) => format!("killed by signal {sig}"),
                    other => format!("{other:?}"),
                };
                rec.respawns += 1;
                if std::mem::take(&mut rec.harakiri) {
                    tracing::warn!("worker {i} (pid: {pid}) {how} by harakiri: respawning");
                    rec.respawn_at = None;
                } else if rec.started.elapsed() < MIN_LIFETIME {
                    tracing::error!(
                        "worker {i} (pid: {pid}) {how} {} ms after its start: respawning too fast, waiting {} s",
                        rec.started.elapsed().as_millis(),
                        RESPAWN_BACKOFF.as_secs()
                    );
                    rec.respawn_at = Some(Instant::now() + RESPAWN_BACKOFF);
                } else {
                    tracing::error!("worker {i} (pid: {pid}) died, {how}: respawning");
                    rec.respawn_at = None;
                }
            }
        }
    }
}

/// Signal every worker and wait for all of them (SIGKILL after `grace`).
fn stop_all(workers: &mut [WorkerRec], sig: Signal, grace: Duration) {
    for w in workers.iter() {
        if let Some(pid) = w.pid {
            let _ = kill(pid, sig);
        }
    }
    let deadline = Instant::now() + grace;
    while workers.iter().any(|w| w.pid.is_some()) {
        reap(workers, true);
        if Instant::now() >= deadline {
            for w in workers.iter() {
                if let Some(pid) = w.pid {
                    tracing::warn!("worker pid {pid} did not stop in time: SIGKILL");
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            reap(workers, true);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How long past its deadline a request may keep its worker's executor busy in one poll before
/// the master kills the worker. The in-worker harakiri fires at the deadline itself; this grace
/// only separates "stuck" from "about to be cancelled".
const HARD_HARAKIRI_GRACE_MS: u64 = 200;

/// The master's layer of harakiri: kill a worker whose executor is stuck inside a request
/// that has passed its deadline (a handler that never yields). Its other requests die with it;
/// connections still in the shared backlog are served by the other workers.
fn hard_harakiri(workers: &mut [WorkerRec], boards: &[WorkerBoard]) {
    let now_ms = sys::monotonic_ms();
    for (i, (rec, board)) in workers.iter_mut().zip(boards).enumerate() {
        let Some(pid) = rec.pid else { continue };
        if rec.harakiri || board.pid.load(std::sync::atomic::Ordering::Acquire) != pid.as_raw() {
            continue;
        }
        let Some(busy) = board.busy() else { continue };
        if busy.deadline_ms == 0 || now_ms <= busy.deadline_ms + HARD_HARAKIRI_GRACE_MS {
            continue;
        }
        tracing::error!(
            "HARAKIRI ON WORKER {i} (pid {pid}): executor stuck for {} ms in SLOT {} serving {} \
             ({} ms after the request started, {} ms past its deadline): SIGKILL",
            now_ms.saturating_sub(busy.busy_since_ms),
            busy.slot,
            busy.info,
            now_ms.saturating_sub(busy.started_ms),
            now_ms.saturating_sub(busy.deadline_ms),
        );
        rec.harakiri = true;
        let _ = kill(pid, Signal::SIGKILL);
    }
}
