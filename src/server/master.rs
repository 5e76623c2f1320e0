//! The master: binds, forks one worker per core, respawns the ones that die, replaces them
//! without losing a request (reload, recycling), routes uWSGI signals, serves stats.
//!
//! Invariant: the master never creates a thread (see `sys::fork`). It waits in `poll(2)` on a
//! self-pipe written by its signal handlers, the workers' signal channels, the stats
//! listeners and the file monitor, with a 100 ms tick (shorter when a timer is due).
//!
//! Invariant: a worker is never stopped before its replacement accepts. A replacement is forked
//! onto a free scoreboard entry, and only when it reports `ready` does the old worker get
//! SIGTERM (stop accepting, drain, exit); both share the listening sockets meanwhile, so no
//! connection is refused and none waits for a worker that is going away.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::app::Apps;
use crate::config::Config;
use crate::scoreboard::{SignalTable, WorkerBoard};
use crate::server::listener::Listener;
use crate::server::stats::{self, StatsServer};
use crate::server::worker;
use crate::signals::SignalTarget;
use crate::sys::{self, Forked};

/// A worker that dies sooner than this after its start counts toward the fork-bomb guard.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// How long the fork-bomb guard waits before respawning a worker that keeps dying early.
const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);
/// How long stopping workers get beyond `--reload-mercy` before SIGKILL (their own mercy
/// timer fires first; this covers a worker too stuck to notice).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The master's idle tick.
const TICK: Duration = Duration::from_millis(100);
/// How often worker memory is sampled for `--reload-on-rss`.
const RSS_CHECK: Duration = Duration::from_secs(1);

/// The master's view of the worker of one index (the current one; see [`Retiree`]).
#[derive(Debug)]
pub(super) struct WorkerRec {
    pub(super) pid: Option<Pid>,
    /// Its entry in the scoreboard.
    pub(super) board: usize,
    /// The master's end of its signal channel.
    chan: Option<OwnedFd>,
    pub(super) started: Instant,
    /// Wall-clock start, seconds since the epoch (stats `last_spawn`).
    pub(super) started_epoch: u64,
    /// When set, respawn no earlier than this (fork-bomb guard).
    respawn_at: Option<Instant>,
    pub(super) respawns: u64,
    /// Killed by hard harakiri: respawn at once (not a crash loop).
    harakiri: bool,
    /// Hard harakiri kills of this index.
    pub(super) hard_harakiri: u64,
    /// `busy_since_ms` of the blocked executor last reported (see [`BLOCKED_LOG_MS`]).
    blocked_logged: u64,
    /// A reload was asked for this index and has not started yet.
    reload_pending: bool,
}

/// A worker being replaced: it serves until its replacement is ready, then drains.
#[derive(Debug)]
struct Retiree {
    index: usize,
    pid: Pid,
    /// Its scoreboard entry (`None` for a worker of the previous image of this master, whose
    /// scoreboard this image cannot see).
    board: Option<usize>,
    /// The master's end of its signal channel: still read (a request finishing during the
    /// drain may raise a signal), closed when the worker exits.
    chan: Option<OwnedFd>,
    /// When SIGTERM was sent; `None` while the replacement is not ready yet.
    term_sent: Option<Instant>,
    reason: String,
    killed: bool,
}

/// The flags set by the master's signal handlers.
struct SignalFlags {
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    child: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    pipe_rx: OwnedFd,
    /// The self-pipe's descriptors (read end and signal-hook's write ends): not for workers.
    fds: Vec<RawFd>,
}

fn install_signals() -> io::Result<SignalFlags> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(io::Error::from)?;
    let flags = SignalFlags {
        stop: Arc::default(),
        quit: Arc::default(),
        child: Arc::default(),
        reload: Arc::default(),
        usr1: Arc::default(),
        fds: vec![rx.as_raw_fd()],
        pipe_rx: rx,
    };
    let mut flags = flags;
    use signal_hook::consts::*;
    for (sig, flag) in [
        (SIGTERM, flags.stop.clone()),
        (SIGINT, flags.quit.clone()),
        (SIGQUIT, flags.quit.clone()),
        (SIGCHLD, flags.child.clone()),
        (SIGHUP, flags.reload.clone()),
        (SIGUSR1, flags.usr1.clone()),
    ] {
        signal_hook::flag::register(sig, flag)?;
        let tx = tx.try_clone()?;
        let raw = tx.as_raw_fd();
        signal_hook::low_level::pipe::register(sig, tx)?;
        flags.fds.push(raw);
    }
    Ok(flags)
}

/// Everything the master shares with its workers.
pub(super) struct Shared<'a> {
    pub(super) config: &'a Config,
    pub(super) listeners: &'a [Listener],
    pub(super) apps: &'a Apps,
    pub(super) boards: &'static [WorkerBoard],
    pub(super) table: &'static SignalTable,
    pub(super) stats: Vec<StatsServer>,
    /// How to execute the master again on SIGHUP (`None`: reload in place).
    pub(super) restart: Option<super::reexec::Restart>,
    /// Workers of the previous image of this master (reload): drained once their
    /// successors accept.
    pub(super) inherited_workers: Vec<(usize, i32)>,
}

/// The master's state.
pub(super) struct Master<'a> {
    pub(super) sh: Shared<'a>,
    pub(super) workers: Vec<WorkerRec>,
    retirees: Vec<Retiree>,
    /// Round robin for signals with target `worker`.
    next_signal_worker: usize,
    timers: Vec<(u8, Duration, Instant)>,
    /// The last minute (since the epoch) the cron table was checked.
    cron_minute: u64,
    inotify: Option<FileMonitors>,
    last_rss_check: Instant,
    /// The master's own descriptors that workers must not inherit (the self-pipe's).
    own_fds: Vec<RawFd>,
    /// systemd's notification socket (`Type=notify`, the watchdog).
    notify: super::systemd::Notifier,
    /// Whether `READY=1` was sent since the start or the last `RELOADING=1`.
    ready_sent: bool,
}

/// Run the master until it is told to stop. Returns the process exit code.
pub(super) fn run(sh: Shared<'_>) -> io::Result<i32> {
    let signals = install_signals()?;
    // A previous image of this master blocked them across its execve (see reexec.rs): the
    // handlers are in place now, so what arrived meanwhile is handled, not fatal.
    super::reexec::master_signals()
        .thread_unblock()
        .map_err(io::Error::from)?;
    let cores = sh.config.cores;
    let now = Instant::now();
    let timers = sh
        .config
        .timers
        .iter()
        .map(|&(n, p)| (n, p, now + p))
        .collect();
    let inotify = file_monitors(sh.config)?;
    let mut m = Master {
        workers: (0..cores)
            .map(|i| WorkerRec {
                pid: None,
                board: i,
                chan: None,
                started: now,
                started_epoch: 0,
                respawn_at: None,
                respawns: 0,
                harakiri: false,
                hard_harakiri: 0,
                blocked_logged: 0,
                reload_pending: false,
            })
            .collect(),
        sh,
        retirees: Vec::new(),
        next_signal_worker: 0,
        timers,
        // A cron entry first fires at the next matching minute, not in the minute the master
        // (re)started in: a reload must not repeat it.
        cron_minute: epoch_secs() / 60,
        inotify,
        last_rss_check: now,
        own_fds: signals.fds.clone(),
        notify: super::systemd::Notifier::from_env(),
        ready_sent: false,
    };
    for (i, pid) in std::mem::take(&mut m.sh.inherited_workers) {
        m.retirees.push(Retiree {
            index: i.min(cores - 1),
            pid: Pid::from_raw(pid),
            board: None,
            chan: None,
            term_sent: None,
            reason: "graceful reload (SIGHUP)".into(),
            killed: false,
        });
    }
    if !m.retirees.is_empty() {
        tracing::info!(
            "reloaded: {} workers of the previous master will drain once their successors accept",
            m.retirees.len()
        );
    }
    for i in 0..cores {
        if let Err(e) = m.spawn(i) {
            // Retried on the tick, as a respawn: failing here would take the workers of a
            // previous image (reload) down with the master.
            tracing::error!(
                "cannot start worker {i}: {e}; retrying in {} s",
                RESPAWN_BACKOFF.as_secs()
            );
            m.workers[i].respawn_at = Some(Instant::now() + RESPAWN_BACKOFF);
        }
    }
    let mut buf = [0u8; 256];
    loop {
        m.wait(&signals)?;
        while nix::unistd::read(signals.pipe_rx.as_raw_fd(), &mut buf).unwrap_or(0) > 0 {}
        // Also on every tick: a worker of the previous image may have exited before this
        // image installed its SIGCHLD handler.
        if signals.child.swap(false, Ordering::AcqRel) || !m.retirees.is_empty() {
            // A stop already pending is handled below: workers that exited with it (a
            // SIGTERM sent to the whole process group, as systemd's default KillMode does)
            // are not respawned or reported as dying.
            let stopping =
                signals.stop.load(Ordering::Acquire) || signals.quit.load(Ordering::Acquire);
            m.reap(stopping);
        }
        if signals.quit.load(Ordering::Acquire) {
            tracing::info!("SIGINT/SIGQUIT received: stopping workers now");
            m.notify.stopping("stopping now (SIGINT/SIGQUIT)");
            m.stop_all(Signal::SIGKILL, STOP_GRACE, None);
            return Ok(0);
        }
        if signals.stop.load(Ordering::Acquire) {
            tracing::info!("SIGTERM received: stopping workers gracefully");
            m.notify.stopping("stopping gracefully (SIGTERM)");
            let grace = m.sh.config.reload_mercy + STOP_GRACE;
            m.stop_all(Signal::SIGTERM, grace, Some(&signals.quit));
            return Ok(0);
        }
        if signals.reload.swap(false, Ordering::AcqRel) {
            m.reload();
        }
        if signals.usr1.swap(false, Ordering::AcqRel) {
            m.log_stats();
        }
        m.hard_harakiri();
        m.recycle_checks();
        m.retire_ready();
        m.fire_timers();
        m.notify_systemd();
        let now = Instant::now();
        for i in 0..m.workers.len() {
            let rec = &m.workers[i];
            let due = rec.pid.is_none() && rec.respawn_at.is_none_or(|t| t <= now);
            if due && let Err(e) = m.spawn(i) {
                // Out of processes or descriptors for a moment: try again later rather than
                // take the running workers down with the master.
                tracing::error!(
                    "cannot start worker {i}: {e}; retrying in {} s",
                    RESPAWN_BACKOFF.as_secs()
                );
                m.workers[i].respawn_at = Some(Instant::now() + RESPAWN_BACKOFF);
            }
        }
    }
}

impl Master<'_> {
    /// Tell systemd how things stand: `READY=1` once every worker accepts (after a start or a
    /// reload), `STATUS=` when it changes, and `WATCHDOG=1` (when asked for) only while every
    /// worker makes progress: a worker stuck in one poll of a handler longer than half the
    /// watchdog period stops the pings until harakiri replaces it.
    fn notify_systemd(&mut self) {
        if !self.notify.active() {
            return;
        }
        let boards = self.sh.boards;
        let running: Vec<usize> = self
            .workers
            .iter()
            .filter(|w| w.pid.is_some())
            .map(|w| w.board)
            .collect();
        let ready = running
            .iter()
            .filter(|&&b| boards[b].ready.load(Ordering::Acquire) == 1)
            .count();
        let requests: u64 = boards
            .iter()
            .map(|b| b.requests.load(Ordering::Relaxed))
            .sum();
        let status = format!(
            "{ready} of {} workers accepting, {requests} requests served",
            self.workers.len()
        );
        if !self.ready_sent {
            if ready == self.workers.len() {
                self.notify.ready(status);
                self.ready_sent = true;
            }
        } else {
            self.notify.status(status);
        }
        let stuck_ms = self
            .notify
            .next_ping_period()
            .map_or(u64::MAX, |p| p.as_millis() as u64);
        let now_ms = sys::monotonic_ms();
        let all = self.workers.len();
        self.notify.watchdog(|| {
            running.len() == all && running.iter().all(|&b| boards[b].alive(now_ms, stuck_ms))
        });
    }

    /// Wait for a signal, a worker's signal channel, a stats client or the next timer; handle
    /// everything that became ready except the self-pipe (the caller drains it).
    fn wait(&mut self, signals: &SignalFlags) -> io::Result<()> {
        let now = Instant::now();
        let mut timeout = TICK;
        if let Some(ping) = self.notify.next_ping_in() {
            timeout = timeout.min(ping);
        }
        for &(_, _, due) in &self.timers {
            timeout = timeout.min(due.saturating_duration_since(now));
        }
        // Which fd each poll entry is, to act on it once the borrow of the fds ends.
        enum Src {
            Pipe,
            Chan(usize),
            OldChan(Pid),
            Stats(usize),
            StatsConn(usize, usize),
            Inotify,
        }
        let mut srcs = Vec::new();
        let mut raw: Vec<(RawFd, PollFlags)> = Vec::new();
        raw.push((signals.pipe_rx.as_raw_fd(), PollFlags::POLLIN));
        srcs.push(Src::Pipe);
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(c) = &w.chan {
                raw.push((c.as_raw_fd(), PollFlags::POLLIN));
                srcs.push(Src::Chan(i));
            }
        }
        for r in &self.retirees {
            if let Some(c) = &r.chan {
                raw.push((c.as_raw_fd(), PollFlags::POLLIN));
                srcs.push(Src::OldChan(r.pid));
            }
        }
        for (i, s) in self.sh.stats.iter().enumerate() {
            // At its client limit a listener is not watched (it would be ready at once, every
            // pass): the next clients wait in its backlog.
            if s.has_room() {
                raw.push((s.listener_fd(), PollFlags::POLLIN));
                srcs.push(Src::Stats(i));
            }
            for (j, (fd, events)) in s.pending_polls().into_iter().enumerate() {
                raw.push((fd, events));
                srcs.push(Src::StatsConn(i, j));
            }
        }
        if let Some((ino, _)) = &self.inotify {
            raw.push((ino.as_fd().as_raw_fd(), PollFlags::POLLIN));
            srcs.push(Src::Inotify);
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = raw
                .iter()
                .map(|&(fd, ev)| {
                    // SAFETY-free borrow: every fd above is owned by `self` or `signals`, which
                    // outlive this block.
                    PollFd::new(borrow(fd), ev)
                })
                .collect();
            let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let mut conn_ready: Vec<(usize, usize)> = Vec::new();
        for (src, ready) in srcs.into_iter().zip(ready) {
            if !ready {
                continue;
            }
            match src {
                Src::Pipe => {}
                Src::Chan(i) => {
                    let (nums, open) = read_signals(self.workers[i].chan.as_ref());
                    if !open {
                        // The worker is gone; the reaper handles it.
                        self.workers[i].chan = None;
                    }
                    nums.into_iter().for_each(|n| self.route(n));
                }
                Src::OldChan(pid) => {
                    let Some(k) = self.retirees.iter().position(|r| r.pid == pid) else {
                        continue;
                    };
                    let (nums, open) = read_signals(self.retirees[k].chan.as_ref());
                    if !open {
                        self.retirees[k].chan = None;
                    }
                    nums.into_iter().for_each(|n| self.route(n));
                }
                Src::Stats(i) => {
                    let doc = self.stats_documents(i);
                    self.sh.stats[i].accept(doc);
                }
                Src::StatsConn(i, j) => conn_ready.push((i, j)),
                Src::Inotify => self.file_events(),
            }
        }
        for i in 0..self.sh.stats.len() {
            let doc = if conn_ready.iter().any(|&(s, _)| s == i) {
                Some(self.stats_documents(i))
            } else {
                None
            };
            self.sh.stats[i].progress(doc);
        }
        Ok(())
    }

    /// The document(s) stats server `i` serves, rendered now.
    fn stats_documents(&self, i: usize) -> stats::Documents {
        stats::Documents::render(self, self.sh.stats[i].kind)
    }

    /// A free scoreboard entry: one no live worker (current or retiring) uses.
    fn free_board(&self) -> Option<usize> {
        (0..self.sh.boards.len()).find(|b| {
            // A worker record owns its board even while its worker is dead and waiting to be
            // respawned: the respawn lands there.
            !self.workers.iter().any(|w| w.board == *b)
                && !self.retirees.iter().any(|r| r.board == Some(*b))
        })
    }

    /// Fork the worker of index `i` onto its board. In the child this never returns.
    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let board = self.workers[i].board;
        self.sh.boards[board].clear();
        crate::scoreboard::clear_slot_boards(board);
        let (mine, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK | nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        // The master's descriptors that the child must not keep: the other workers' (and
        // retiring workers') channels, the self-pipe, the stats sockets, inotify. Only these:
        // anything an embedding program opened before `server::run` stays open in workers.
        let mut close_in_child: Vec<RawFd> = self
            .workers
            .iter()
            .filter_map(|w| w.chan.as_ref().map(|c| c.as_raw_fd()))
            .chain(
                self.retirees
                    .iter()
                    .filter_map(|r| r.chan.as_ref().map(|c| c.as_raw_fd())),
            )
            .chain(self.own_fds.iter().copied())
            .chain(self.sh.stats.iter().flat_map(|s| s.all_fds()))
            .chain(self.inotify.as_ref().map(|(i, _)| i.as_fd().as_raw_fd()))
            .collect();
        close_in_child.push(mine.as_raw_fd());
        match sys::fork()? {
            Forked::Parent(pid) => {
                drop(theirs);
                let rec = &mut self.workers[i];
                if rec.respawns > 0 {
                    tracing::info!("respawned worker {i} (new pid: {pid})");
                } else {
                    tracing::info!(
                        "spawned worker {i} (pid: {pid}, cpu {})",
                        self.sh.config.cpu_for_worker(i)
                    );
                }
                rec.pid = Some(pid);
                rec.chan = Some(mine);
                // A fresh worker runs the current code and configuration.
                rec.reload_pending = false;
                rec.started = Instant::now();
                rec.started_epoch = epoch_secs();
                rec.respawn_at = None;
                Ok(())
            }
            Forked::Child => {
                for fd in close_in_child {
                    let _ = nix::unistd::close(fd);
                }
                // Already closed above; forgetting it prevents a second close.
                std::mem::forget(mine);
                let sh = &self.sh;
                // Credentials first: changing them clears the parent-death signal that
                // worker_signal_setup arms.
                let code = match super::drop_privileges_in_worker()
                    .and_then(|()| sys::worker_signal_setup())
                    .and_then(|()| {
                        worker::run(
                            sh.config,
                            i,
                            board,
                            theirs,
                            sh.listeners,
                            sh.apps,
                            sh.boards,
                        )
                    }) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!("worker {i} failed: {e}");
                        1
                    }
                };
                // The last lines (the drain's report) are still in the logger thread's queue.
                crate::logsink::flush(std::time::Duration::from_secs(2));
                std::process::exit(code)
            }
        }
    }

    /// Start replacing worker `i`: fork its successor on a free board; the old one keeps
    /// serving until the successor is ready ([`Self::retire_ready`]). Returns false if it
    /// cannot start now (the worker is not running or not ready, or no board is free).
    fn begin_replace(&mut self, i: usize, reason: String) -> io::Result<bool> {
        let rec = &self.workers[i];
        let Some(pid) = rec.pid else { return Ok(false) };
        if self.sh.boards[rec.board].ready.load(Ordering::Acquire) == 0
            || self
                .retirees
                .iter()
                .any(|r| r.index == i && r.term_sent.is_none())
        {
            return Ok(false);
        }
        let Some(board) = self.free_board() else {
            return Ok(false);
        };
        tracing::info!("worker {i} (pid: {pid}): {reason}: starting its replacement");
        let rec = &mut self.workers[i];
        self.retirees.push(Retiree {
            index: i,
            pid,
            board: Some(rec.board),
            chan: rec.chan.take(),
            term_sent: None,
            reason,
            killed: false,
        });
        rec.pid = None;
        rec.board = board;
        rec.respawns += 1;
        self.spawn(i)?;
        Ok(true)
    }

    /// SIGTERM the retirees whose successor is ready; SIGKILL those past their mercy.
    fn retire_ready(&mut self) {
        let mercy = self.sh.config.reload_mercy;
        for r in &mut self.retirees {
            match r.term_sent {
                None => {
                    let w = &self.workers[r.index];
                    let ready = w.pid.is_some()
                        && self.sh.boards[w.board].ready.load(Ordering::Acquire) == 1;
                    if ready {
                        tracing::info!(
                            "worker {} (pid: {}) replaced by pid {} ({}): draining it",
                            r.index,
                            r.pid,
                            w.pid.map_or(0, Pid::as_raw),
                            r.reason
                        );
                        let _ = kill(r.pid, Signal::SIGTERM);
                        r.term_sent = Some(Instant::now());
                    }
                }
                Some(t) if !r.killed && t.elapsed() > mercy + STOP_GRACE => {
                    tracing::error!(
                        "worker {} (pid: {}) is taking too much time to die after --reload-mercy {} s: SIGKILL",
                        r.index,
                        r.pid,
                        mercy.as_secs_f64()
                    );
                    let _ = kill(r.pid, Signal::SIGKILL);
                    r.killed = true;
                }
                Some(_) => {}
            }
        }
    }

    /// Reload requests, `--max-requests`, `--max-worker-lifetime`, `--reload-on-rss`.
    fn recycle_checks(&mut self) {
        let rss_due = self.last_rss_check.elapsed() >= RSS_CHECK;
        if rss_due {
            self.last_rss_check = Instant::now();
        }
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let Some(pid) = w.pid else { continue };
            let board = &self.sh.boards[w.board];
            let reason = if w.reload_pending {
                Some("graceful reload (SIGHUP)".to_owned())
            } else if board.recycle.load(Ordering::Relaxed) == 1 {
                Some(format!(
                    "--max-requests {} reached",
                    self.sh.config.max_requests.unwrap_or(0)
                ))
            } else if let Some(life) = self.sh.config.max_worker_lifetime
                && w.started.elapsed() > life
            {
                Some(format!(
                    "lifetime reached, it was running for {} second(s) (--max-worker-lifetime)",
                    w.started.elapsed().as_secs()
                ))
            } else if let Some(limit) = self.sh.config.reload_on_rss
                && rss_due
                && let Some((rss, _)) = crate::stats::proc_rss_vsz(pid.as_raw())
                && rss > limit
            {
                Some(format!(
                    "RSS {} MB over --reload-on-rss {} MB",
                    rss >> 20,
                    limit >> 20
                ))
            } else {
                None
            };
            let Some(reason) = reason else { continue };
            match self.begin_replace(i, reason) {
                Ok(true) => self.workers[i].reload_pending = false,
                Ok(false) => {}
                Err(e) => tracing::error!("cannot start a replacement for worker {i}: {e}"),
            }
        }
    }

    /// Collect dead workers; schedule respawns unless stopping.
    fn reap(&mut self, stopping: bool) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else { return };
            let how = match status {
                WaitStatus::Exited(_, code) => format!("exited with code {code}"),
                WaitStatus::Signaled(_, sig, _) => format!("killed by signal {sig}"),
                other => format!("{other:?}"),
            };
            if let Some(k) = self.retirees.iter().position(|r| r.pid == pid) {
                let r = self.retirees.swap_remove(k);
                if let Some(b) = r.board {
                    self.sh.boards[b].clear();
                }
                tracing::info!(
                    "old worker {} (pid: {pid}) {how} after draining ({})",
                    r.index,
                    r.reason
                );
                continue;
            }
            let Some((i, rec)) = self
                .workers
                .iter_mut()
                .enumerate()
                .find(|(_, w)| w.pid == Some(pid))
            else {
                continue;
            };
            rec.pid = None;
            rec.chan = None;
            self.sh.boards[rec.board].clear();
            if stopping {
                continue;
            }
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

    /// Signal every worker (current and retiring) and wait for all of them (SIGKILL after
    /// `grace`).
    fn stop_all(&mut self, sig: Signal, grace: Duration, quit: Option<&AtomicBool>) {
        let alive = |m: &Master<'_>| -> Vec<Pid> {
            m.workers
                .iter()
                .filter_map(|w| w.pid)
                .chain(m.retirees.iter().map(|r| r.pid))
                .collect()
        };
        for pid in alive(self) {
            let _ = kill(pid, sig);
        }
        let deadline = Instant::now() + grace;
        loop {
            self.reap(true);
            let left = alive(self);
            if left.is_empty() {
                return;
            }
            // SIGINT/SIGQUIT during a graceful stop cut it short.
            let cut = quit.is_some_and(|q| q.load(Ordering::Acquire));
            if cut || Instant::now() >= deadline {
                for pid in left {
                    if cut {
                        tracing::warn!(
                            "SIGINT/SIGQUIT during the graceful stop: SIGKILL worker pid {pid}"
                        );
                    } else {
                        tracing::warn!("worker pid {pid} did not stop in time: SIGKILL");
                    }
                    let _ = kill(pid, Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(50));
                self.reap(true);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The master's layer of harakiri: kill a worker whose executor is stuck inside a request
    /// that has passed its deadline (a handler that never yields). Its other requests die with
    /// it; connections still in the shared backlog are served by the other workers.
    fn hard_harakiri(&mut self) {
        let now_ms = sys::monotonic_ms();
        let boards = self.sh.boards;
        let check = |index: usize, pid: Pid, board: usize| -> bool {
            let b = &boards[board];
            if b.pid.load(Ordering::Acquire) != pid.as_raw() {
                return false;
            }
            let Some(busy) = b.busy() else { return false };
            if busy.deadline_ms == 0 || now_ms <= busy.deadline_ms + HARD_HARAKIRI_GRACE_MS {
                return false;
            }
            tracing::error!(
                "HARAKIRI ON WORKER {index} (pid {pid}): executor stuck for {} ms in SLOT {} serving {} \
                 ({} ms after the request started, {} ms past its deadline): SIGKILL",
                now_ms.saturating_sub(busy.busy_since_ms),
                busy.slot,
                busy.info,
                now_ms.saturating_sub(busy.started_ms),
                now_ms.saturating_sub(busy.deadline_ms),
            );
            let _ = kill(pid, Signal::SIGKILL);
            true
        };
        for (i, rec) in self.workers.iter_mut().enumerate() {
            let Some(pid) = rec.pid else { continue };
            report_blocked(i, pid, &boards[rec.board], now_ms, &mut rec.blocked_logged);
            if !rec.harakiri && check(i, pid, rec.board) {
                rec.harakiri = true;
                rec.hard_harakiri += 1;
            }
        }
        for r in &mut self.retirees {
            if let Some(b) = r.board
                && !r.killed
                && check(r.index, r.pid, b)
            {
                r.killed = true;
            }
        }
    }

    /// SIGHUP: execute the binary again (new code, configuration read again), handing over
    /// the listening sockets and the running workers; if that cannot be done, replace the
    /// workers in place.
    fn reload(&mut self) {
        // READY=1 follows once every worker (of this image or of the new one) accepts.
        self.notify.reloading();
        self.ready_sent = false;
        match self.sh.restart.clone() {
            Some(restart) => {
                let err = self.reexec(&restart);
                tracing::error!("reload: {err}; replacing the workers in place instead");
            }
            None => tracing::info!("SIGHUP received: gracefully reloading the workers in place"),
        }
        // New workers load their apps again (a Python app is imported from its file in each
        // worker): if that cannot work now, keep the workers that serve.
        for m in &self.sh.config.mounts {
            if let Err(e) = self.sh.apps.check(&m.app) {
                tracing::error!("reload refused: {e}; the workers in place keep serving");
                return;
            }
        }
        for w in &mut self.workers {
            w.reload_pending = true;
        }
    }

    /// Execute the binary again, handing over the listening sockets and the running workers.
    /// Returns only on failure, with nothing changed.
    fn reexec(&self, restart: &super::reexec::Restart) -> io::Error {
        let mut handover = super::reexec::Handover::default();
        let mut fds = Vec::new();
        for l in self.sh.listeners {
            fds.push(l.raw());
            handover.sockets.push(super::reexec::Inherited {
                fd: l.raw(),
                role: match l.protocol {
                    super::listener::Protocol::Http => "http".into(),
                    super::listener::Protocol::Uwsgi => "uwsgi".into(),
                },
                spec: l.spec.clone(),
                local: l.local.clone(),
                path: l.path.clone(),
                tcp: l.tcp,
            });
        }
        for s in &self.sh.stats {
            fds.push(s.listener_fd());
            handover.sockets.push(super::reexec::Inherited {
                fd: s.listener_fd(),
                role: s.role().into(),
                spec: s.spec.clone(),
                local: s.local.clone(),
                path: s.path.clone(),
                tcp: false,
            });
        }
        handover.workers = self
            .workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.pid.map(|p| (i, p.as_raw())))
            .chain(self.retirees.iter().map(|r| (r.index, r.pid.as_raw())))
            .collect();
        handover.master_pid = std::process::id();
        restart.exec(&handover, &fds)
    }

    /// Deliver signal `num` to the workers its handler was registered for.
    pub(super) fn route(&mut self, num: u8) {
        let Some(target) = crate::signals::target_of(self.sh.table, num) else {
            self.sh.table.unrouted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("signal {num} raised, but no worker registered a handler for it");
            return;
        };
        let n = self.workers.len();
        let chosen: Vec<usize> = match target {
            SignalTarget::Workers => (0..n).collect(),
            SignalTarget::WorkerN(k) if k <= n => vec![k - 1],
            SignalTarget::WorkerN(k) => {
                self.sh.table.unrouted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("signal {num}: target worker{k} does not exist ({n} workers)");
                return;
            }
            SignalTarget::Worker => {
                let pick = (0..n)
                    .map(|k| (self.next_signal_worker + k) % n)
                    .find(|&k| self.workers[k].chan.is_some());
                match pick {
                    Some(k) => {
                        self.next_signal_worker = k + 1;
                        vec![k]
                    }
                    None => vec![],
                }
            }
        };
        for k in chosen {
            let Some(chan) = &self.workers[k].chan else {
                self.sh.table.unrouted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("signal {num}: worker {k} is not running");
                continue;
            };
            match nix::sys::socket::send(
                chan.as_raw_fd(),
                &[num],
                nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => {}
                Err(e) => {
                    self.sh.table.unrouted.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "*** SIGNAL QUEUE IS FULL: signal {num} to worker {k} dropped ({e}) ***"
                    );
                }
            }
        }
    }

    /// Raise the signals of due `--timer`s and, once a minute, matching `--cron`s.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (num, period, next) in &mut self.timers {
            if *next <= now {
                due.push(*num);
                // Skip missed periods instead of firing a burst.
                while *next <= now {
                    *next += *period;
                }
            }
        }
        let minute = epoch_secs() / 60;
        if !self.sh.config.crons.is_empty() && minute != self.cron_minute {
            self.cron_minute = minute;
            let t = crate::cron::now_local();
            for (num, spec) in &self.sh.config.crons {
                if crate::cron::matches(spec, &t) {
                    due.push(*num);
                }
            }
        }
        for num in due {
            self.route(num);
        }
    }

    /// Route the signals of the `--file-monitor` paths that changed.
    fn file_events(&mut self) {
        let Some((ino, watches)) = &self.inotify else {
            return;
        };
        let mut nums = Vec::new();
        while let Ok(events) = ino.read_events() {
            if events.is_empty() {
                break;
            }
            for ev in events {
                if let Some((_, num)) = watches.iter().find(|(wd, _)| *wd == ev.wd)
                    && !nums.contains(num)
                {
                    nums.push(*num);
                }
            }
        }
        for num in nums {
            self.route(num);
        }
    }

    /// SIGUSR1: one log line per worker.
    fn log_stats(&self) {
        let total: u64 = self
            .workers
            .iter()
            .map(|w| self.sh.boards[w.board].requests.load(Ordering::Relaxed))
            .sum();
        tracing::info!(
            "stats: {} workers, {} retiring, {total} requests",
            self.workers.len(),
            self.retirees.len()
        );
        for (i, w) in self.workers.iter().enumerate() {
            let b = &self.sh.boards[w.board];
            tracing::info!(
                "stats: worker {i} pid {} requests {} busy slots {}/{} connections {} background tasks {} queue full {} harakiri {} panics {} signals {} respawns {}",
                w.pid.map_or(0, Pid::as_raw),
                b.requests.load(Ordering::Relaxed),
                b.busy_slots.load(Ordering::Relaxed),
                b.slots.load(Ordering::Relaxed),
                b.conns.load(Ordering::Relaxed),
                b.background.load(Ordering::Relaxed),
                b.queue_full.load(Ordering::Relaxed),
                b.harakiri_count.load(Ordering::Relaxed) + w.hard_harakiri,
                b.exceptions.load(Ordering::Relaxed),
                b.signals.load(Ordering::Relaxed),
                w.respawns,
            );
        }
    }
}

/// An executor inside one poll (or, under gevent, one greenlet's run) for longer than this is
/// reported once: the request holding the core (a blocking call without monkey patching, a
/// CPU loop) stalls everything else on that worker.
const BLOCKED_LOG_MS: u64 = 1000;

/// Log once per episode a worker whose executor has not turned for [`BLOCKED_LOG_MS`], naming
/// the request that holds it when the scoreboard knows it (gevent, or --harakiri set).
fn report_blocked(index: usize, pid: Pid, b: &WorkerBoard, now_ms: u64, logged: &mut u64) {
    if b.pid.load(Ordering::Acquire) != pid.as_raw() {
        return;
    }
    let Some(busy) = b.busy() else { return };
    let held = now_ms.saturating_sub(busy.busy_since_ms);
    if held < BLOCKED_LOG_MS || *logged == busy.busy_since_ms {
        return;
    }
    *logged = busy.busy_since_ms;
    let what = if busy.info.is_empty() {
        "with no request recorded (the request line is kept with --harakiri, and always under \
         --gevent, where this means gevent's hub or a greenlet of no request)"
            .to_owned()
    } else {
        format!(
            "in SLOT {} serving {} (started {} ms ago)",
            busy.slot,
            busy.info,
            now_ms.saturating_sub(busy.started_ms)
        )
    };
    tracing::warn!(
        "worker {index} (pid {pid}): executor blocked for {held} ms {what}: nothing else runs on \
         this worker until it yields (a blocking call without gevent's monkey patching?)"
    );
}

/// How long past its deadline a request may keep its worker's executor busy in one poll before
/// the master kills the worker. The in-worker harakiri fires at the deadline itself; this grace
/// only separates "stuck" from "about to be cancelled".
const HARD_HARAKIRI_GRACE_MS: u64 = 200;

/// The `--file-monitor` watches: the inotify instance and the signal of each watch.
type FileMonitors = (
    nix::sys::inotify::Inotify,
    Vec<(nix::sys::inotify::WatchDescriptor, u8)>,
);

/// SIGTERM `pids` (workers of a previous image of this master) and wait for them to exit,
/// SIGKILL after `mercy` and 5 s more.
pub(super) fn drain_pids(pids: &[i32], mercy: Duration) {
    let pids: Vec<Pid> = pids.iter().map(|&p| Pid::from_raw(p)).collect();
    for &p in &pids {
        let _ = kill(p, Signal::SIGTERM);
    }
    let deadline = Instant::now() + mercy + STOP_GRACE;
    let mut left = pids;
    while !left.is_empty() {
        left.retain(|&p| {
            !matches!(
                waitpid(p, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_)
            )
        });
        if Instant::now() >= deadline {
            for &p in &left {
                let _ = kill(p, Signal::SIGKILL);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Read the signal numbers a worker raised on its channel; false once the channel closed.
fn read_signals(chan: Option<&OwnedFd>) -> (Vec<u8>, bool) {
    let Some(chan) = chan else {
        return (Vec::new(), false);
    };
    let mut nums = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match nix::unistd::read(chan.as_raw_fd(), &mut buf) {
            Ok(0) => return (nums, false),
            Ok(n) => nums.extend_from_slice(&buf[..n]),
            Err(_) => return (nums, true),
        }
    }
}

/// Set up inotify for `--file-monitor`.
fn file_monitors(config: &Config) -> io::Result<Option<FileMonitors>> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    if config.file_monitors.is_empty() {
        return Ok(None);
    }
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let mut watches = Vec::new();
    for (num, path) in &config.file_monitors {
        let wd = ino
            .add_watch(
                path,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_ATTRIB
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--file-monitor {num} {}: {e}", path.display()),
                )
            })?;
        tracing::info!("signal {num} raised when {} changes", path.display());
        watches.push((wd, *num));
    }
    Ok(Some((ino, watches)))
}

/// Seconds since the epoch.
pub(super) fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A borrowed fd for `poll`. Every fd passed here is owned by the master for longer than
/// the poll call.
fn borrow<'a>(fd: RawFd) -> BorrowedFd<'a> {
    sys::borrow_fd(fd)
}
