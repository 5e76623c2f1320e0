//! The master's stats servers (`--stats`, `--stats-http`, `--metrics`): non-blocking sockets
//! polled by the master loop, and the snapshot they serve, read from the scoreboard (reading
//! never stops a worker).
//!
//! `--stats` without `--stats-http` writes the JSON document as soon as a client connects and
//! closes, as uWSGI does (uwsgitop connects and reads to the end). The HTTP flavours read the
//! request head first (closing with an unread request would reset the connection and could
//! destroy the answer), then write the response and close.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use socket2::Socket;

use super::master::{Master, epoch_secs};
use crate::config::ListenAddr;
use crate::stats::{self, Core, ReqInfo, Snapshot, WorkerStatus};

/// What a stats listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatsKind {
    /// The JSON document, raw (`--stats`).
    Json,
    /// The JSON document over HTTP (`--stats` with `--stats-http`).
    JsonHttp,
    /// The Prometheus text format over HTTP (`--metrics`).
    Metrics,
}

/// A client gets this long to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read from a stats client.
const MAX_REQUEST: usize = 8192;
/// Clients served at once per listener; more wait in the backlog.
const MAX_CLIENTS: usize = 64;

enum State {
    Reading(Vec<u8>),
    Writing(Vec<u8>, usize),
}

struct Client {
    sock: Socket,
    state: State,
    deadline: Instant,
}

/// One stats listener and its clients in progress.
pub(super) struct StatsServer {
    pub(super) kind: StatsKind,
    listener: Socket,
    clients: Vec<Client>,
    /// The unix socket file to remove at exit.
    pub(super) path: Option<std::path::PathBuf>,
    /// The address as bound, for the log.
    pub(super) local: String,
    /// The address as configured (a reload matches the new configuration against it).
    pub(super) spec: String,
}

/// The bytes a stats client is sent.
#[derive(Debug)]
pub(super) struct Documents(Vec<u8>);

impl Documents {
    /// Render the document of `kind` from the master's state now.
    pub(super) fn render(m: &Master<'_>, kind: StatsKind) -> Documents {
        let snap = snapshot(m);
        Documents(match kind {
            StatsKind::Json => stats::to_json(&snap).into_bytes(),
            StatsKind::JsonHttp => stats::to_http(&snap),
            StatsKind::Metrics => {
                let body = stats::to_prometheus(&snap);
                let mut out = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(body.as_bytes());
                out
            }
        })
    }
}

impl StatsServer {
    /// Bind a stats listener (in the master, before the workers are forked), with the same
    /// rules as the request listeners (`listener::bind`: a stale unix socket file is replaced).
    pub(super) fn bind(addr: &ListenAddr, kind: StatsKind) -> io::Result<StatsServer> {
        let l = super::listener::bind(addr, super::listener::Protocol::Http, 128, false)?;
        Ok(StatsServer {
            kind,
            listener: Socket::from(l.fd),
            clients: Vec::new(),
            path: l.path,
            local: l.local,
            spec: l.spec,
        })
    }

    /// A stats listener handed over by the master's previous image (reload).
    pub(super) fn adopt(
        fd: std::os::fd::OwnedFd,
        kind: StatsKind,
        local: String,
        path: Option<std::path::PathBuf>,
        spec: String,
    ) -> StatsServer {
        StatsServer {
            kind,
            listener: Socket::from(fd),
            clients: Vec::new(),
            path,
            local,
            spec,
        }
    }

    /// The role name of this listener in a reload's handover.
    pub(super) fn role(&self) -> &'static str {
        match self.kind {
            StatsKind::Json | StatsKind::JsonHttp => "stats",
            StatsKind::Metrics => "metrics",
        }
    }

    /// Whether another client may be accepted now.
    pub(super) fn has_room(&self) -> bool {
        self.clients.len() < MAX_CLIENTS
    }

    pub(super) fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Every descriptor this server holds (closed in forked workers).
    pub(super) fn all_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.sock.as_raw_fd()))
            .collect()
    }

    /// The clients' descriptors and what each waits for.
    pub(super) fn pending_polls(&self) -> Vec<(RawFd, PollFlags)> {
        self.clients
            .iter()
            .map(|c| {
                let ev = match c.state {
                    State::Reading(_) => PollFlags::POLLIN,
                    State::Writing(..) => PollFlags::POLLOUT,
                };
                (c.sock.as_raw_fd(), ev)
            })
            .collect()
    }

    /// Accept the clients waiting on the listener. `doc` is what a raw JSON client is sent.
    pub(super) fn accept(&mut self, doc: Documents) {
        while self.clients.len() < MAX_CLIENTS {
            let Ok((sock, _)) = self.listener.accept() else {
                break;
            };
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            let state = match self.kind {
                StatsKind::Json => State::Writing(doc.0.clone(), 0),
                StatsKind::JsonHttp | StatsKind::Metrics => State::Reading(Vec::new()),
            };
            self.clients.push(Client {
                sock,
                state,
                deadline: Instant::now() + CLIENT_TIMEOUT,
            });
        }
        self.progress(Some(doc));
    }

    /// Move every client along as far as it goes without blocking; drop finished and timed-out
    /// ones. `doc` (rendered when some client was ready) answers the clients whose request
    /// is complete.
    pub(super) fn progress(&mut self, doc: Option<Documents>) {
        let now = Instant::now();
        self.clients.retain_mut(|c| {
            if now >= c.deadline {
                return false;
            }
            loop {
                match &mut c.state {
                    State::Reading(buf) => {
                        let mut chunk = [0u8; 2048];
                        match c.sock.read(&mut chunk) {
                            Ok(0) => {
                                if buf.is_empty() {
                                    return false;
                                }
                            }
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                if buf.len() > MAX_REQUEST {
                                    return false;
                                }
                                if !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                    continue;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                            Err(_) => return false,
                        }
                        let Some(d) = &doc else { return true };
                        c.state = State::Writing(d.0.clone(), 0);
                    }
                    State::Writing(bytes, off) => match c.sock.write(&bytes[*off..]) {
                        Ok(n) => {
                            *off += n;
                            if *off == bytes.len() {
                                let _ = c.sock.shutdown(std::net::Shutdown::Write);
                                return false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    },
                }
            }
        });
    }
}

/// A scoreboard histogram in the snapshot's form.
fn histogram(a: &crate::scoreboard::AppBoard) -> stats::Histogram {
    let (cumulative, _, count) = a.histogram();
    stats::Histogram {
        buckets: crate::scoreboard::DURATION_LE
            .iter()
            .copied()
            .zip(cumulative)
            .collect(),
        sum_us: a.duration_us.load(Ordering::Relaxed),
        count,
    }
}

/// The stats snapshot: the master's records and every worker's scoreboard entry.
fn snapshot(m: &Master<'_>) -> Snapshot {
    let now_epoch = epoch_secs();
    let mut listen_queue = 0u64;
    let sockets =
        m.sh.listeners
            .iter()
            .map(|l| {
                // SAFETY-free: the listener outlives this call.
                let (queue, max) =
                    stats::listen_queue(std::os::fd::AsFd::as_fd(&l.fd)).unwrap_or((0, 0));
                listen_queue = listen_queue.max(u64::from(queue));
                stats::Socket {
                    name: l.local.clone(),
                    proto: match l.protocol {
                        super::listener::Protocol::Http => "http".into(),
                        super::listener::Protocol::Uwsgi => "uwsgi".into(),
                    },
                    queue: u64::from(queue),
                    max_queue: u64::from(max),
                    shared: false,
                    can_offload: false,
                }
            })
            .collect();
    let workers = m
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let b = &m.sh.boards[w.board];
            let pid = w.pid.map_or(0, |p| p.as_raw());
            let (rss, vsz) = if pid > 0 {
                stats::proc_rss_vsz(pid).unwrap_or((0, 0))
            } else {
                (0, 0)
            };
            let requests = b.requests.load(Ordering::Relaxed);
            let busy_slots = b.busy_slots.load(Ordering::Relaxed);
            let slots = b.slots.load(Ordering::Relaxed);
            let cores = crate::scoreboard::slot_boards(w.board)
                .iter()
                .enumerate()
                .map(|(id, s)| {
                    let (in_request, requests, start) = s.read();
                    let vars = match s.request_line().filter(|_| in_request) {
                        Some((method, uri)) => vec![
                            format!("REQUEST_METHOD={method}"),
                            format!("REQUEST_URI={uri}"),
                        ],
                        None => Vec::new(),
                    };
                    Core {
                        id: id as u32,
                        requests,
                        in_request,
                        vars,
                        req_info: ReqInfo {
                            request_start: in_request.then_some(start),
                        },
                        ..Core::default()
                    }
                })
                .collect();
            stats::Worker {
                id: i as u32 + 1,
                pid,
                // uWSGI's meaning: the worker takes requests (started, not draining). The
                // board's `accepting` flag is the accept-balancing state, which flips
                // whenever an accept is re-armed.
                accepting: b.ready.load(Ordering::Relaxed) == 1,
                requests,
                delta_requests: requests,
                exceptions: b.exceptions.load(Ordering::Relaxed),
                harakiri_count: b.harakiri_count.load(Ordering::Relaxed) + w.hard_harakiri,
                signals: b.signals.load(Ordering::Relaxed),
                signal_queue: 0,
                status: WorkerStatus::from_state(false, false, None, busy_slots > 0),
                rss,
                vsz,
                running_time: b.rt_us.load(Ordering::Relaxed),
                last_spawn: w.started_epoch,
                respawn_count: w.respawns,
                tx: b.tx.load(Ordering::Relaxed),
                avg_rt: b.rt_us.load(Ordering::Relaxed) / requests.max(1),
                apps: m
                    .sh
                    .config
                    .mounts
                    .iter()
                    .enumerate()
                    .map(|(k, mnt)| stats::App {
                        id: k as u32,
                        modifier1: 0,
                        mountpoint: if mnt.prefix == "/" {
                            String::new()
                        } else {
                            mnt.prefix.clone()
                        },
                        startup_time: 0,
                        requests: b
                            .apps
                            .get(k)
                            .map_or(0, |a| a.requests.load(Ordering::Relaxed)),
                        exceptions: b
                            .apps
                            .get(k)
                            .map_or(0, |a| a.exceptions.load(Ordering::Relaxed)),
                        chdir: String::new(),
                        duration: b.apps.get(k).map(histogram).unwrap_or_default(),
                    })
                    .collect(),
                cores,
                slots,
                busy_slots,
                queue_full: b.queue_full.load(Ordering::Relaxed),
                background_tasks: b.background.load(Ordering::Relaxed),
                duration: histogram(&b.all),
            }
        })
        .collect();
    let _ = now_epoch;
    Snapshot {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listen_queue,
        listen_queue_errors: 0,
        signal_queue: 0,
        load: listen_queue,
        pid: std::process::id() as i32,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        locks: Vec::new(),
        sockets,
        workers,
    }
}
