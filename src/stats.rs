//! The stats document: uWSGI's stats server JSON (`--stats`, `--stats-http`) and a Prometheus
//! rendering of the same numbers.
//!
//! The master fills a [`Snapshot`] from its own records and the scoreboard, then calls a
//! renderer; nothing here reads shared memory or sockets except the two `/proc` and
//! `getsockopt` helpers at the end, so the documents can be tested byte for byte.
//!
//! # Compatibility
//!
//! Field names, order and JSON types follow `uwsgi_master_generate_stats` (uWSGI 2.0,
//! `core/master_utils.c`): every number is a JSON integer, flags such as `accepting` and
//! `in_request` are `0`/`1` (not booleans), `status` is a string. The optional uWSGI sections
//! ringsgi has no equivalent for (`daemons`, `caches`, `metrics`, `spoolers`, `crons`,
//! `legions`) are left out, as uWSGI itself does when they are not configured.
//!
//! uwsgitop (0.12) reads, and fails with a traceback or a silently missing row without:
//!
//! - top level: `version`, `listen_queue` (`%d`), `pid`, `uid`, `gid` (`%d`), `cwd`, and
//!   `workers` (its presence selects the worker table; `vassals` would select the Emperor view);
//! - each worker: `id`, `pid` (`%d`), `requests`, `exceptions` (`%d`), `signals` (`%d`),
//!   `status` (compared with `busy`/`cheap`/`pause` and `startswith("sig")`), `avg_rt` (µs),
//!   `rss`, `vsz`, `tx` (bytes), `respawn_count`, `harakiri_count`, `running_time` (µs),
//!   `last_spawn` (Unix seconds), and `cores` when the async view is toggled (`a`);
//! - each core: `id`, `requests`, `in_request`. In its merged async view uwsgitop copies
//!   every core key over the worker's, which is why ringsgi's extras sit on the worker and
//!   the top level only, never on a core.
//!
//! # ringsgi extras
//!
//! Per worker, after uWSGI's fields: `slots` (the `--async` request slots), `busy_slots`,
//! `queue_full` (how many times a request found every slot taken: uWSGI's "async queue is
//! full" event) and `background_tasks` (tasks spawned by handlers that outlive a request).
//! The same four names at the top level, after `workers`, hold the sums over all workers.

use std::fmt::Write as _;
use std::os::fd::BorrowedFd;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

/// One stats document: what the master knows at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The server version (uWSGI prints its own; ours is `CARGO_PKG_VERSION`).
    pub version: String,
    /// The largest current accept queue over the listening sockets (Linux only in uWSGI).
    pub listen_queue: u64,
    /// How many times the master saw an accept queue full.
    pub listen_queue_errors: u64,
    /// Bytes pending in the signal channel shared by all workers.
    pub signal_queue: u64,
    /// uWSGI's `load`: the same backlog figure, kept for tools that graph it.
    pub load: u64,
    /// The master's pid.
    pub pid: i32,
    /// The master's uid.
    pub uid: u32,
    /// The master's gid.
    pub gid: u32,
    /// The master's working directory.
    pub cwd: String,
    /// Named locks and the pid holding each (0 when free); rendered `{"NAME": PID}`.
    pub locks: Vec<Lock>,
    /// The listening sockets.
    pub sockets: Vec<Socket>,
    /// One entry per worker, in worker order.
    pub workers: Vec<Worker>,
}

/// A named lock; uWSGI renders each as a one-key object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// The lock's name (uWSGI: `user 0`, `signal`, `rpc`, ...).
    pub name: String,
    /// The pid holding it, 0 when free.
    pub pid: i32,
}

/// A listening socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// The address as configured (`127.0.0.1:8080`, a UNIX path, ...).
    pub name: String,
    /// `http` or `uwsgi`.
    pub proto: String,
    /// Connections waiting in the kernel's accept queue (see [`listen_queue`]).
    pub queue: u64,
    /// The accept queue's size (the effective `listen(2)` backlog).
    pub max_queue: u64,
    /// uWSGI's shared sockets (`--shared-socket`); always `false` for ringsgi today.
    #[serde(serialize_with = "bool_as_int")]
    pub shared: bool,
    /// uWSGI's offload engine; always `false` for ringsgi.
    #[serde(serialize_with = "bool_as_int")]
    pub can_offload: bool,
}

/// One worker process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Worker {
    /// 1-based, as in uWSGI (worker 0 is the master there).
    pub id: u32,
    /// The worker's pid (0 while it is being respawned).
    pub pid: i32,
    /// Whether the worker currently has an accept armed.
    #[serde(serialize_with = "bool_as_int")]
    pub accepting: bool,
    /// Requests finished since the worker slot was first spawned (kept across respawns).
    pub requests: u64,
    /// Requests finished since the last respawn.
    pub delta_requests: u64,
    /// Requests whose handler failed (panicked or returned an error).
    pub exceptions: u64,
    /// Times this worker was killed by harakiri.
    pub harakiri_count: u64,
    /// uWSGI signals handled.
    pub signals: u64,
    /// Bytes pending in this worker's own signal channel.
    pub signal_queue: u64,
    /// What the worker is doing (see [`WorkerStatus::from_state`]).
    pub status: WorkerStatus,
    /// Resident memory, bytes (see [`proc_rss_vsz`]).
    pub rss: u64,
    /// Virtual memory, bytes.
    pub vsz: u64,
    /// Total time spent serving requests, microseconds.
    pub running_time: u64,
    /// When the worker was last spawned, Unix seconds.
    pub last_spawn: u64,
    /// Times the worker was respawned.
    pub respawn_count: u64,
    /// Response bytes sent.
    pub tx: u64,
    /// Running average of the response time, microseconds.
    pub avg_rt: u64,
    /// The mounted applications.
    pub apps: Vec<App>,
    /// One entry per request slot (uWSGI's "async cores").
    pub cores: Vec<Core>,
    /// ringsgi: the `--async` request slots of this worker.
    pub slots: u32,
    /// ringsgi: slots holding a request now.
    pub busy_slots: u32,
    /// ringsgi: times a request found every slot taken ("async queue is full").
    pub queue_full: u64,
    /// ringsgi: background tasks alive now.
    pub background_tasks: u64,
    /// ringsgi: durations of every request of this worker (metrics only; not in uWSGI's
    /// JSON).
    #[serde(skip)]
    pub duration: Histogram,
}

/// A request-duration histogram in Prometheus' form: cumulative counts per upper bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// `(upper bound in seconds as written in the `le` label, requests at or below it)`.
    pub buckets: Vec<(&'static str, u64)>,
    /// Sum of the durations, microseconds.
    pub sum_us: u64,
    /// Requests (the `+Inf` bucket).
    pub count: u64,
}

/// A worker's state, rendered as uWSGI's status string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkerStatus {
    /// No request in progress: `"idle"`.
    #[default]
    Idle,
    /// At least one slot holds a request: `"busy"`.
    Busy,
    /// Running the handler of uWSGI signal N: `"sig<N>"`.
    Signal(u8),
    /// Stopped by the cheaper subsystem: `"cheap"`.
    Cheap,
    /// Paused and not serving: `"pause"`.
    Pause,
}

impl WorkerStatus {
    /// The status uWSGI would report, with its precedence: cheap first; paused only when no
    /// request is still running; then a running signal handler; then busy; else idle.
    pub fn from_state(cheaped: bool, paused: bool, signal: Option<u8>, busy: bool) -> Self {
        if cheaped {
            WorkerStatus::Cheap
        } else if paused && !busy {
            WorkerStatus::Pause
        } else if let Some(n) = signal {
            WorkerStatus::Signal(n)
        } else if busy {
            WorkerStatus::Busy
        } else {
            WorkerStatus::Idle
        }
    }
}

impl std::fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerStatus::Idle => f.write_str("idle"),
            WorkerStatus::Busy => f.write_str("busy"),
            WorkerStatus::Signal(n) => write!(f, "sig{n}"),
            WorkerStatus::Cheap => f.write_str("cheap"),
            WorkerStatus::Pause => f.write_str("pause"),
        }
    }
}

impl Serialize for WorkerStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A mounted application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct App {
    /// 0-based index in the worker's app list.
    pub id: u32,
    /// uWSGI's language plugin number; 0 for ringsgi's Rust handlers.
    pub modifier1: u8,
    /// The mount point (`""` for the default app).
    pub mountpoint: String,
    /// Seconds the app took to load.
    pub startup_time: u64,
    /// Requests served by this app.
    pub requests: u64,
    /// Requests of this app whose handler failed.
    pub exceptions: u64,
    /// The directory the app was loaded from (`""` for none).
    pub chdir: String,
    /// ringsgi: durations of this app's requests (metrics only).
    #[serde(skip)]
    pub duration: Histogram,
}

/// One request slot of a worker (uWSGI's "core").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Core {
    /// 0-based slot index.
    pub id: u32,
    /// Requests served by this slot.
    pub requests: u64,
    /// Requests answered from `--static-map`.
    pub static_requests: u64,
    /// Requests answered by the internal router (none in ringsgi).
    pub routed_requests: u64,
    /// Requests handed to the offload engine (none in ringsgi).
    pub offloaded_requests: u64,
    /// Failed writes to the client.
    pub write_errors: u64,
    /// Failed reads from the client.
    pub read_errors: u64,
    /// Whether the slot holds a request now.
    #[serde(serialize_with = "bool_as_int")]
    pub in_request: bool,
    /// The in-flight request's variables as `KEY=VALUE` (empty when idle). uWSGI's own
    /// writer appends a stray `""`; ringsgi does not.
    pub vars: Vec<String>,
    /// The in-flight request's start.
    pub req_info: ReqInfo,
}

/// What is known of the request in a slot; `{}` when the slot is idle, as in uWSGI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReqInfo {
    /// When the request started, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_start: Option<u64>,
}

/// Sums of the ringsgi extras over all workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// All request slots.
    pub slots: u64,
    /// Slots holding a request.
    pub busy_slots: u64,
    /// "async queue is full" events.
    pub queue_full: u64,
    /// Background tasks alive.
    pub background_tasks: u64,
}

impl Snapshot {
    /// Sums of the per-worker extras; derived rather than stored so they cannot disagree.
    pub fn totals(&self) -> Totals {
        self.workers.iter().fold(Totals::default(), |t, w| Totals {
            slots: t.slots + u64::from(w.slots),
            busy_slots: t.busy_slots + u64::from(w.busy_slots),
            queue_full: t.queue_full + w.queue_full,
            background_tasks: t.background_tasks + w.background_tasks,
        })
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&self.name, &self.pid)?;
        m.end()
    }
}

// By hand, not derived: the totals are computed, and they go after `workers` so that the
// fields uWSGI emits keep uWSGI's order.
impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.totals();
        let mut st = s.serialize_struct("Snapshot", 16)?;
        st.serialize_field("version", &self.version)?;
        st.serialize_field("listen_queue", &self.listen_queue)?;
        st.serialize_field("listen_queue_errors", &self.listen_queue_errors)?;
        st.serialize_field("signal_queue", &self.signal_queue)?;
        st.serialize_field("load", &self.load)?;
        st.serialize_field("pid", &self.pid)?;
        st.serialize_field("uid", &self.uid)?;
        st.serialize_field("gid", &self.gid)?;
        st.serialize_field("cwd", &self.cwd)?;
        st.serialize_field("locks", &self.locks)?;
        st.serialize_field("sockets", &self.sockets)?;
        st.serialize_field("workers", &self.workers)?;
        st.serialize_field("slots", &t.slots)?;
        st.serialize_field("busy_slots", &t.busy_slots)?;
        st.serialize_field("queue_full", &t.queue_full)?;
        st.serialize_field("background_tasks", &t.background_tasks)?;
        st.end()
    }
}

/// uWSGI writes flags as the integers 0 and 1; uwsgitop formats some of them with `%d`.
fn bool_as_int<S: Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*b))
}

/// The stats document as uWSGI's `--stats` server writes it (compact, like
/// `--stats-minified`).
pub fn to_json(snap: &Snapshot) -> String {
    serde_json::to_string(snap).expect("a Snapshot has only string keys and plain values")
}

/// The stats document as a complete HTTP/1.0 response, for `--stats-http`: the server writes
/// it and closes, so `Content-Length` is a courtesy, not a framing need.
pub fn to_http(snap: &Snapshot) -> Vec<u8> {
    let body = to_json(snap);
    let mut out = format!(
        "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Builds one exposition: each family is written whole (HELP, TYPE, samples) so that samples
/// of a metric are contiguous, as the format requires.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family<V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Option<(&'static str, String)>, V)>,
    ) {
        let _ = writeln!(self.out, "# HELP ringsgi_{name} {help}");
        let _ = writeln!(self.out, "# TYPE ringsgi_{name} {kind}");
        for (label, value) in samples {
            match label {
                Some((k, v)) => {
                    let _ = writeln!(
                        self.out,
                        "ringsgi_{name}{{{k}=\"{}\"}} {value}",
                        escape_label(&v)
                    );
                }
                None => {
                    let _ = writeln!(self.out, "ringsgi_{name} {value}");
                }
            }
        }
    }

    /// A family with one sample per worker, labelled `worker="ID"`.
    fn per_worker<V: std::fmt::Display>(
        &mut self,
        snap: &Snapshot,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&Worker) -> V,
    ) {
        let samples = snap
            .workers
            .iter()
            .map(|w| (Some(("worker", w.id.to_string())), value(w)));
        self.family(name, kind, help, samples);
    }
}

impl Exposition {
    /// A family with one sample per worker and mounted app, labelled `worker` and `app` (the
    /// mount point, `/` for the default app).
    fn per_app<V: std::fmt::Display>(
        &mut self,
        snap: &Snapshot,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&App) -> V,
    ) {
        let _ = writeln!(self.out, "# HELP ringsgi_{name} {help}");
        let _ = writeln!(self.out, "# TYPE ringsgi_{name} {kind}");
        for w in &snap.workers {
            for a in &w.apps {
                let _ = writeln!(
                    self.out,
                    "ringsgi_{name}{{worker=\"{}\",app=\"{}\"}} {}",
                    w.id,
                    escape_label(app_label(a)),
                    value(a)
                );
            }
        }
    }

    /// `http_server_request_duration_seconds`, OpenTelemetry's request-duration histogram
    /// (its bucket advice, seconds), per worker (`app=""`: every request, static files and
    /// 404s included) and per worker and app.
    fn durations(&mut self, snap: &Snapshot) {
        let name = "ringsgi_http_server_request_duration_seconds";
        let _ = writeln!(
            self.out,
            "# HELP {name} Duration of HTTP server requests (OpenTelemetry http.server.request.duration)."
        );
        let _ = writeln!(self.out, "# TYPE {name} histogram");
        for w in &snap.workers {
            let rows = std::iter::once(("", &w.duration))
                .chain(w.apps.iter().map(|a| (app_label(a), &a.duration)));
            for (app, h) in rows {
                let labels = format!("worker=\"{}\",app=\"{}\"", w.id, escape_label(app));
                for (le, n) in &h.buckets {
                    let _ = writeln!(self.out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
                }
                let _ = writeln!(
                    self.out,
                    "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(self.out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1e6);
                let _ = writeln!(self.out, "{name}_count{{{labels}}} {}", h.count);
            }
        }
    }
}

/// An app's `app` label: its mount point, `/` for the default app.
fn app_label(a: &App) -> &str {
    if a.mountpoint.is_empty() {
        "/"
    } else {
        &a.mountpoint
    }
}

/// Label values escape `\`, `"` and newline (exposition format 0.0.4).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The snapshot in the Prometheus text exposition format 0.0.4 (serve it with
/// `Content-Type: text/plain; version=0.0.4`).
///
/// Counters are cumulative since the master started (`requests` survives respawns, as in
/// uWSGI), so `rate()` works across a worker's respawn.
pub fn to_prometheus(snap: &Snapshot) -> String {
    let mut e = Exposition { out: String::new() };
    e.family(
        "listen_queue",
        "gauge",
        "Largest accept queue over the listening sockets.",
        [(None, snap.listen_queue)],
    );
    e.family(
        "listen_queue_errors_total",
        "counter",
        "Times an accept queue was found full.",
        [(None, snap.listen_queue_errors)],
    );
    let sockets = |f: fn(&Socket) -> u64| {
        snap.sockets
            .iter()
            .map(move |s| (Some(("socket", s.name.clone())), f(s)))
    };
    e.family(
        "socket_queue",
        "gauge",
        "Connections waiting in a socket's accept queue.",
        sockets(|s| s.queue),
    );
    e.family(
        "socket_max_queue",
        "gauge",
        "Size of a socket's accept queue (listen backlog).",
        sockets(|s| s.max_queue),
    );
    e.per_worker(
        snap,
        "requests_total",
        "counter",
        "Requests finished.",
        |w| w.requests,
    );
    e.per_worker(
        snap,
        "exceptions_total",
        "counter",
        "Requests whose handler failed.",
        |w| w.exceptions,
    );
    e.per_worker(
        snap,
        "harakiri_total",
        "counter",
        "Workers killed by harakiri.",
        |w| w.harakiri_count,
    );
    e.per_worker(
        snap,
        "queue_full_total",
        "counter",
        "Requests that found every async slot taken.",
        |w| w.queue_full,
    );
    e.per_worker(snap, "respawns_total", "counter", "Worker respawns.", |w| {
        w.respawn_count
    });
    e.per_worker(
        snap,
        "tx_bytes_total",
        "counter",
        "Response bytes sent.",
        |w| w.tx,
    );
    e.per_worker(snap, "slots", "gauge", "Async request slots.", |w| w.slots);
    e.per_worker(
        snap,
        "busy_slots",
        "gauge",
        "Async request slots holding a request.",
        |w| w.busy_slots,
    );
    e.per_worker(
        snap,
        "background_tasks",
        "gauge",
        "Background tasks alive.",
        |w| w.background_tasks,
    );
    e.per_worker(
        snap,
        "rss_bytes",
        "gauge",
        "Resident memory of the worker process.",
        |w| w.rss,
    );
    e.per_worker(
        snap,
        "vsz_bytes",
        "gauge",
        "Virtual memory of the worker process.",
        |w| w.vsz,
    );
    e.per_worker(
        snap,
        "avg_response_time_seconds",
        "gauge",
        "Running average of the response time.",
        |w| w.avg_rt as f64 / 1e6,
    );
    e.per_app(
        snap,
        "app_requests_total",
        "counter",
        "Requests finished, per mounted app.",
        |a| a.requests,
    );
    e.per_app(
        snap,
        "app_exceptions_total",
        "counter",
        "Requests whose handler failed, per mounted app.",
        |a| a.exceptions,
    );
    e.durations(snap);
    e.out
}

/// `(rss, vsz)` in bytes from the text of `/proc/PID/statm` (`size resident shared ...`, in
/// pages).
fn parse_statm(text: &str, page_size: u64) -> Option<(u64, u64)> {
    let mut fields = text.split_ascii_whitespace();
    let size: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = fields.next()?.parse().ok()?;
    Some((resident * page_size, size * page_size))
}

/// A process's resident and virtual memory, `(rss, vsz)` in bytes; `None` if it is gone.
///
/// `/proc/PID/statm` rather than uWSGI's `/proc/self/stat` parsing: the master reads it for
/// each worker, and statm is two numbers with no process name (which may hold spaces) before
/// them.
pub fn proc_rss_vsz(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm(&text, crate::sys::page_size())
}

/// The accept queue of a listening TCP socket: `(waiting, max)`, what uWSGI shows as a
/// socket's `queue` and `max_queue`. `None` for anything but a TCP listener (UNIX sockets
/// included: uWSGI reads those from `/proc/net/unix`, which ringsgi does not do yet).
pub fn listen_queue(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    crate::sys::tcp_listen_queue(fd).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::{BTreeMap, HashSet};

    fn sample() -> Snapshot {
        let core = |id: u32, busy: bool| Core {
            id,
            requests: 10 + u64::from(id),
            static_requests: 1,
            in_request: busy,
            vars: if busy {
                vec!["REQUEST_METHOD=GET".into(), "PATH_INFO=/slow".into()]
            } else {
                vec![]
            },
            req_info: ReqInfo {
                request_start: busy.then_some(1_700_000_000),
            },
            ..Core::default()
        };
        let worker = |id: u32, pid: i32, busy: u32| Worker {
            id,
            pid,
            accepting: true,
            requests: 1000 * u64::from(id),
            delta_requests: 10,
            exceptions: 2,
            harakiri_count: u64::from(id),
            signals: 3,
            status: WorkerStatus::from_state(false, false, None, busy > 0),
            rss: 5 << 20,
            vsz: 300 << 20,
            running_time: 123_456_789,
            last_spawn: 1_700_000_000,
            respawn_count: 1,
            tx: 4096,
            avg_rt: 1500,
            apps: vec![App {
                mountpoint: String::new(),
                requests: 1000,
                exceptions: 2,
                duration: Histogram {
                    buckets: vec![("0.005", 600), ("0.01", 900), ("0.025", 990)],
                    sum_us: 2_500_000,
                    count: 1000,
                },
                ..App::default()
            }],
            duration: Histogram {
                buckets: vec![("0.005", 700), ("0.01", 950), ("0.025", 1040)],
                sum_us: 2_600_000,
                count: 1050,
            },
            cores: (0..4).map(|c| core(c, c < busy)).collect(),
            slots: 4,
            busy_slots: busy,
            queue_full: 7 * u64::from(id),
            background_tasks: 1,
            ..Worker::default()
        };
        Snapshot {
            version: "0.1.0".into(),
            listen_queue: 3,
            listen_queue_errors: 1,
            load: 3,
            pid: 4000,
            uid: 1000,
            gid: 1000,
            cwd: "/srv/app".into(),
            locks: vec![Lock {
                name: "user 0".into(),
                pid: 0,
            }],
            sockets: vec![Socket {
                name: "127.0.0.1:8080".into(),
                proto: "http".into(),
                queue: 3,
                max_queue: 1024,
                ..Socket::default()
            }],
            workers: vec![worker(1, 4001, 2), worker(2, 4002, 0)],
            ..Snapshot::default()
        }
    }

    /// A JSON tree that keeps object keys in document order (`serde_json::Value` sorts them).
    #[derive(Debug)]
    enum Ordered {
        Object(Vec<(String, Ordered)>),
        Array(Vec<Ordered>),
        Scalar,
    }

    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("JSON")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Ordered, A::Error> {
                    let mut out = Vec::new();
                    while let Some(kv) = m.next_entry()? {
                        out.push(kv);
                    }
                    Ok(Ordered::Object(out))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut s: A,
                ) -> Result<Ordered, A::Error> {
                    let mut out = Vec::new();
                    while let Some(v) = s.next_element()? {
                        out.push(v);
                    }
                    Ok(Ordered::Array(out))
                }
                fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                    Ok(Ordered::Scalar)
                }
                fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                    Ok(Ordered::Scalar)
                }
                fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                    Ok(Ordered::Scalar)
                }
                fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                    Ok(Ordered::Scalar)
                }
                fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                    Ok(Ordered::Scalar)
                }
                fn visit_unit<E>(self) -> Result<Ordered, E> {
                    Ok(Ordered::Scalar)
                }
            }
            d.deserialize_any(V)
        }
    }

    impl Ordered {
        fn get(&self, key: &str) -> &Ordered {
            match self {
                Ordered::Object(kv) => &kv.iter().find(|(k, _)| k == key).expect(key).1,
                _ => panic!("not an object"),
            }
        }
        fn at(&self, i: usize) -> &Ordered {
            match self {
                Ordered::Array(v) => &v[i],
                _ => panic!("not an array"),
            }
        }
    }

    fn keys(v: &Ordered) -> Vec<&str> {
        match v {
            Ordered::Object(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn json_has_uwsgis_fields_in_uwsgis_order() {
        let v: Ordered = serde_json::from_str(&to_json(&sample())).unwrap();
        let worker = v.get("workers").at(0);
        assert_eq!(
            keys(&v),
            [
                "version",
                "listen_queue",
                "listen_queue_errors",
                "signal_queue",
                "load",
                "pid",
                "uid",
                "gid",
                "cwd",
                "locks",
                "sockets",
                "workers",
                "slots",
                "busy_slots",
                "queue_full",
                "background_tasks"
            ]
        );
        assert_eq!(
            keys(v.get("sockets").at(0)),
            [
                "name",
                "proto",
                "queue",
                "max_queue",
                "shared",
                "can_offload"
            ]
        );
        assert_eq!(
            keys(worker),
            [
                "id",
                "pid",
                "accepting",
                "requests",
                "delta_requests",
                "exceptions",
                "harakiri_count",
                "signals",
                "signal_queue",
                "status",
                "rss",
                "vsz",
                "running_time",
                "last_spawn",
                "respawn_count",
                "tx",
                "avg_rt",
                "apps",
                "cores",
                "slots",
                "busy_slots",
                "queue_full",
                "background_tasks"
            ]
        );
        assert_eq!(
            keys(worker.get("apps").at(0)),
            [
                "id",
                "modifier1",
                "mountpoint",
                "startup_time",
                "requests",
                "exceptions",
                "chdir"
            ]
        );
        assert_eq!(
            keys(worker.get("cores").at(0)),
            [
                "id",
                "requests",
                "static_requests",
                "routed_requests",
                "offloaded_requests",
                "write_errors",
                "read_errors",
                "in_request",
                "vars",
                "req_info"
            ]
        );
    }

    #[test]
    fn json_types_are_what_uwsgitop_formats() {
        let snap = sample();
        let v: Value = serde_json::from_str(&to_json(&snap)).unwrap();
        // uwsgitop's header line: "%d" on listen_queue, uid, gid, pid; strings for the rest.
        for k in ["listen_queue", "uid", "gid", "pid", "load", "signal_queue"] {
            assert!(v[k].is_u64(), "{k}: {}", v[k]);
        }
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["cwd"], "/srv/app");
        assert_eq!(v["locks"], serde_json::json!([{"user 0": 0}]));
        assert_eq!(v["sockets"][0]["max_queue"], 1024);
        assert_eq!(v["sockets"][0]["shared"], 0);
        for (w, src) in v["workers"].as_array().unwrap().iter().zip(&snap.workers) {
            for k in [
                "id",
                "pid",
                "accepting",
                "requests",
                "exceptions",
                "signals",
                "rss",
                "vsz",
                "tx",
                "avg_rt",
                "respawn_count",
                "harakiri_count",
                "running_time",
                "last_spawn",
            ] {
                assert!(w[k].is_u64(), "worker {k}: {}", w[k]);
            }
            assert_eq!(w["id"], src.id);
            assert_eq!(w["pid"], src.pid);
            assert_eq!(w["requests"], src.requests);
            assert_eq!(w["accepting"], 1);
            assert_eq!(w["status"], src.status.to_string());
            for c in w["cores"].as_array().unwrap() {
                assert!(c["id"].is_u64() && c["requests"].is_u64());
                assert!(c["in_request"] == 0 || c["in_request"] == 1);
            }
        }
        assert_eq!(v["workers"][0]["status"], "busy");
        assert_eq!(v["workers"][1]["status"], "idle");
        let busy = &v["workers"][0]["cores"][0];
        assert_eq!(busy["in_request"], 1);
        assert_eq!(
            busy["vars"],
            serde_json::json!(["REQUEST_METHOD=GET", "PATH_INFO=/slow"])
        );
        assert_eq!(
            busy["req_info"],
            serde_json::json!({"request_start": 1_700_000_000})
        );
        let idle = &v["workers"][0]["cores"][3];
        assert_eq!(idle["in_request"], 0);
        assert_eq!(idle["req_info"], serde_json::json!({}));
    }

    #[test]
    fn json_totals_sum_the_workers() {
        let v: Value = serde_json::from_str(&to_json(&sample())).unwrap();
        assert_eq!(v["slots"], 8);
        assert_eq!(v["busy_slots"], 2);
        assert_eq!(v["queue_full"], 7 + 14);
        assert_eq!(v["background_tasks"], 2);
        let empty: Value = serde_json::from_str(&to_json(&Snapshot::default())).unwrap();
        assert_eq!(empty["slots"], 0);
        assert_eq!(empty["workers"], serde_json::json!([]));
    }

    #[test]
    fn json_escapes_strings() {
        let mut snap = sample();
        snap.cwd = "/srv/\"quoted\"\\dir\n".into();
        let v: Value = serde_json::from_str(&to_json(&snap)).unwrap();
        assert_eq!(v["cwd"], "/srv/\"quoted\"\\dir\n");
    }

    #[test]
    fn status_strings_and_precedence() {
        use WorkerStatus as S;
        assert_eq!(S::from_state(false, false, None, false).to_string(), "idle");
        assert_eq!(S::from_state(false, false, None, true).to_string(), "busy");
        assert_eq!(
            S::from_state(false, false, Some(17), true).to_string(),
            "sig17"
        );
        assert_eq!(
            S::from_state(true, true, Some(1), true).to_string(),
            "cheap"
        );
        assert_eq!(
            S::from_state(false, true, Some(3), false).to_string(),
            "pause"
        );
        // A paused worker still finishing a request shows what it is doing.
        assert_eq!(S::from_state(false, true, None, true).to_string(), "busy");
        assert_eq!(
            S::from_state(false, true, Some(3), true).to_string(),
            "sig3"
        );
    }

    #[test]
    fn http_response_frames_the_json() {
        let snap = sample();
        let resp = to_http(&snap);
        let text = String::from_utf8(resp).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.0 200 OK"));
        let headers: BTreeMap<String, String> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("header line");
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["content-length"], body.len().to_string());
        assert_eq!(body, to_json(&snap));
    }

    /// Label pairs of one sample, in line order.
    type Labels = Vec<(String, String)>;
    /// A sample line: metric name, labels, value.
    type Sample = (String, Labels, f64);

    fn valid_name(n: &str) -> bool {
        let mut cs = n.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parse `{k="v",...}` with 0.0.4 escapes; returns the labels and the rest of the line.
    fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
        let mut labels = Vec::new();
        let mut rest = s.strip_prefix('{').ok_or("no {")?;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return Ok((labels, r));
            }
            let eq = rest.find('=').ok_or("label without =")?;
            let name = &rest[..eq];
            if !valid_name(name) || name.starts_with("__") {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("unquoted label value")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in label".into()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((name.to_string(), value));
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// Checks the exposition line by line; returns every sample.
    fn check_exposition(text: &str) -> Result<Vec<Sample>, String> {
        if !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        let mut helped = HashSet::new();
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        let mut finished: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut series = HashSet::new();
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
                let name = name.ok_or_else(|| at("comment without a name".into()))?;
                if !valid_name(name) {
                    return Err(at("bad metric name".into()));
                }
                match (kw, arg) {
                    (Some("HELP"), Some(_)) => {
                        if !helped.insert(name.to_string()) || typed.contains_key(name) {
                            return Err(at("HELP repeated or after TYPE".into()));
                        }
                    }
                    (Some("TYPE"), Some(kind)) => {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                        {
                            return Err(at(format!("bad type {kind}")));
                        }
                        if kind == "counter" && !name.ends_with("_total") {
                            return Err(at("counter not named *_total".into()));
                        }
                        if typed.insert(name.to_string(), kind.into()).is_some() {
                            return Err(at("TYPE repeated".into()));
                        }
                        if let Some(prev) = current.replace(name.to_string()) {
                            finished.insert(prev);
                        }
                    }
                    _ => return Err(at("unknown comment".into())),
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                return Err(at("empty line or malformed comment".into()));
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..name_end];
            if !valid_name(name) {
                return Err(at("bad metric name".into()));
            }
            // A histogram's samples are NAME_bucket, NAME_sum and NAME_count.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    (typed.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or(name);
            if current.as_deref() != Some(family) || finished.contains(family) {
                return Err(at(
                    "sample outside its family's block (no TYPE before it)".into()
                ));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(at)?
            } else {
                (vec![], &line[name_end..])
            };
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("no space before the value".into()))?;
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                _ => value.parse().map_err(|_| at("bad value".into()))?,
            };
            if !series.insert((name.to_string(), labels.clone())) {
                return Err(at("duplicate series".into()));
            }
            samples.push((name.to_string(), labels, v));
        }
        Ok(samples)
    }

    /// The value of the sample `name` with exactly these labels.
    fn labelled(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
            .2
    }

    #[test]
    fn prometheus_durations_are_a_histogram_per_worker_and_app() {
        let snap = sample();
        let text = to_prometheus(&snap);
        let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let h = "ringsgi_http_server_request_duration_seconds";
        let b = format!("{h}_bucket");
        let app = [("worker", "1"), ("app", "/")];
        assert_eq!(
            labelled(&samples, &b, &[app[0], app[1], ("le", "0.005")]),
            600.0
        );
        assert_eq!(
            labelled(&samples, &b, &[app[0], app[1], ("le", "0.025")]),
            990.0
        );
        assert_eq!(
            labelled(&samples, &b, &[app[0], app[1], ("le", "+Inf")]),
            1000.0
        );
        assert_eq!(labelled(&samples, &format!("{h}_count"), &app), 1000.0);
        assert_eq!(labelled(&samples, &format!("{h}_sum"), &app), 2.5);
        // The worker's row (app=""): every request of the worker.
        let all = [("worker", "1"), ("app", "")];
        assert_eq!(
            labelled(&samples, &b, &[all[0], all[1], ("le", "0.01")]),
            950.0
        );
        assert_eq!(labelled(&samples, &format!("{h}_count"), &all), 1050.0);
        assert_eq!(
            labelled(&samples, "ringsgi_app_exceptions_total", &app),
            2.0
        );
        assert_eq!(
            labelled(&samples, "ringsgi_app_requests_total", &app),
            1000.0
        );
    }

    fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
        let want: Vec<(String, String)> = label
            .map(|(k, v)| vec![(k.to_string(), v.to_string())])
            .unwrap_or_default();
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
            .2
    }

    #[test]
    fn prometheus_text_is_valid_and_carries_the_numbers() {
        let snap = sample();
        let text = to_prometheus(&snap);
        let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for w in &snap.workers {
            let id = w.id.to_string();
            let l = Some(("worker", id.as_str()));
            assert_eq!(
                value(&samples, "ringsgi_requests_total", l),
                w.requests as f64
            );
            assert_eq!(
                value(&samples, "ringsgi_harakiri_total", l),
                w.harakiri_count as f64
            );
            assert_eq!(
                value(&samples, "ringsgi_queue_full_total", l),
                w.queue_full as f64
            );
            assert_eq!(
                value(&samples, "ringsgi_respawns_total", l),
                w.respawn_count as f64
            );
            assert_eq!(
                value(&samples, "ringsgi_exceptions_total", l),
                w.exceptions as f64
            );
            assert_eq!(
                value(&samples, "ringsgi_busy_slots", l),
                f64::from(w.busy_slots)
            );
            assert_eq!(value(&samples, "ringsgi_slots", l), f64::from(w.slots));
            assert_eq!(
                value(&samples, "ringsgi_background_tasks", l),
                w.background_tasks as f64
            );
            assert_eq!(value(&samples, "ringsgi_rss_bytes", l), w.rss as f64);
        }
        assert_eq!(
            value(
                &samples,
                "ringsgi_avg_response_time_seconds",
                Some(("worker", "1"))
            ),
            0.0015
        );
        assert_eq!(value(&samples, "ringsgi_listen_queue", None), 3.0);
        assert_eq!(
            value(
                &samples,
                "ringsgi_socket_max_queue",
                Some(("socket", "127.0.0.1:8080"))
            ),
            1024.0
        );
    }

    #[test]
    fn prometheus_escapes_label_values() {
        let mut snap = sample();
        snap.sockets[0].name = "/run/a \"b\"\\c\nd.sock".into();
        let text = to_prometheus(&snap);
        let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = value(
            &samples,
            "ringsgi_socket_queue",
            Some(("socket", "/run/a \"b\"\\c\nd.sock")),
        );
        assert_eq!(v, 3.0);
        // Without workers or sockets every family is still declared, and still valid.
        check_exposition(&to_prometheus(&Snapshot::default())).unwrap();
    }

    #[test]
    fn exposition_checker_rejects_bad_text() {
        // The checker above is only worth something if it fails on broken input.
        for bad in [
            "ringsgi_x 1\n",
            "# TYPE ringsgi_x gauge\nringsgi_x 1",
            "# TYPE ringsgi_x gauge\nringsgi_x{worker=\"1} 1\n",
            "# TYPE ringsgi_x gauge\nringsgi_x one\n",
            "# TYPE ringsgi_x counter\nringsgi_x 1\n",
            "# TYPE ringsgi_x gauge\nringsgi_x 1\nringsgi_x 2\n",
            "# TYPE ringsgi_x gauge\n# TYPE ringsgi_y gauge\nringsgi_x 1\n",
            "# TYPE ringsgi_x gauge\nringsgi_x{a=\"\\q\"} 1\n",
            "# TYPE ringsgi_x gauge\n\nringsgi_x 1\n",
            "# TYPE 1x gauge\n",
        ] {
            assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn statm_parsing() {
        assert_eq!(
            parse_statm("2000 300 100 10 0 500 0\n", 4096),
            Some((300 * 4096, 2000 * 4096))
        );
        assert_eq!(parse_statm("", 4096), None);
        assert_eq!(parse_statm("12", 4096), None);
        assert_eq!(parse_statm("x 1", 4096), None);
    }

    #[test]
    fn own_memory_is_readable() {
        let (rss, vsz) = proc_rss_vsz(std::process::id() as i32).expect("/proc/self/statm");
        assert!(rss > 0 && vsz >= rss, "rss {rss} vsz {vsz}");
        // The page size is a power of two, and both figures are whole pages.
        let page = crate::sys::page_size();
        assert!(page.is_power_of_two());
        assert_eq!(rss % page, 0);
        // Growing the heap by 64 MiB of touched memory shows in rss.
        let big = std::hint::black_box(vec![1u8; 64 << 20]);
        let (rss2, _) = proc_rss_vsz(std::process::id() as i32).unwrap();
        assert!(rss2 >= rss + (32 << 20), "rss {rss} -> {rss2}");
        drop(big);
        assert_eq!(proc_rss_vsz(-1), None);
    }

    #[test]
    fn listen_queue_counts_unaccepted_connections() {
        use socket2::{Domain, Socket as Sock, Type};
        use std::os::fd::AsFd;
        let listener = Sock::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        listener.listen(7).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(listen_queue(listener.as_fd()), Some((0, 7)));
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The handshake completes in the kernel; the connections wait for accept(2).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while listen_queue(listener.as_fd()) != Some((3, 7)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                listen_queue(listener.as_fd())
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(listen_queue(listener.as_fd()), Some((2, 7)));
        // Not a listener: an established connection reports nothing.
        assert_eq!(listen_queue(accepted.as_fd()), None);
        assert_eq!(listen_queue(clients[0].as_fd()), None);
        // Not TCP at all.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(listen_queue(a.as_fd()), None);
    }

    /// Runs the real uwsgitop against this renderer's JSON (needs Python 3 and uwsgitop:
    /// `pip install uwsgitop`, or `UWSGITOP=/path/to/uwsgitop`):
    /// `cargo test --lib stats::tests::uwsgitop -- --ignored`.
    #[test]
    #[ignore = "needs python3 and uwsgitop installed"]
    fn uwsgitop_renders_the_document() {
        let dir = std::env::temp_dir().join(format!("ringsgi-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("stats.json");
        let http = dir.join("stats.http");
        std::fs::write(&json, to_json(&sample())).unwrap();
        std::fs::write(&http, to_http(&sample())).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/uwsgitop_check.py");
        for (file, mode) in [(&json, "raw"), (&http, "http")] {
            let out = std::process::Command::new("python3")
                .arg(script)
                .arg("--serve")
                .arg(file)
                .args(["--serve-mode", mode, "--expect", "4001", "--expect", "4002"])
                .output()
                .expect("python3");
            assert!(
                out.status.success(),
                "{mode}: {:?}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
