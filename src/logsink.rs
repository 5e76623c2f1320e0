//! Where log lines go (`--logto`, `--touch-logreopen`), and the request-log formats
//! (`--logformat`: uWSGI's `%(var)` templates, or JSON lines).
//!
//! # Never blocking a core
//!
//! A worker's executor must not wait for a disk. After the fork each worker starts one logger
//! thread ([`start_worker_thread`]); from then on its log lines (requests and everything
//! `tracing` prints) go into a bounded queue that the thread writes out. When the queue is
//! full (the disk is slower than the requests) a line is dropped and counted, and the thread
//! writes how many were lost once it catches up: the core never waits. The master has no
//! thread (it must stay single-threaded to fork) and writes directly; it logs little.
//!
//! # Reopening
//!
//! Every process appends to the same file (`O_APPEND`: each line is one `write`). With
//! `--touch-logreopen FILE` each writer checks FILE's modification time about once a second
//! and reopens the log path when it changed: `logrotate` renames the log, then touches FILE.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Lines a worker's queue holds before it drops new ones.
const QUEUE_LINES: usize = 16 * 1024;

/// Largest batch of lines a logger thread writes with one `write`.
const BATCH_BYTES: usize = 64 * 1024;

/// How often a writer looks at the `--touch-logreopen` file.
const REOPEN_CHECK: Duration = Duration::from_secs(1);

/// The destination: a file opened for appending, or stderr.
struct Dest {
    path: Option<PathBuf>,
    file: Option<std::fs::File>,
    /// `--touch-logreopen`: the file whose modification time asks for a reopen, and the time
    /// last seen.
    touch: Option<(PathBuf, Option<SystemTime>)>,
    last_check: Instant,
}

impl Dest {
    fn open(path: &Path) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("--logto {}: {e}", path.display())))
    }

    fn write_line(&mut self, line: &[u8]) {
        self.check_reopen();
        let r = match &mut self.file {
            Some(f) => f.write_all(line),
            None => io::stderr().write_all(line),
        };
        // Nowhere left to report it: a full disk must not take the server down.
        let _ = r;
    }

    fn check_reopen(&mut self) {
        let Some((touch, seen)) = &mut self.touch else {
            return;
        };
        if self.last_check.elapsed() < REOPEN_CHECK {
            return;
        }
        self.last_check = Instant::now();
        let now = std::fs::metadata(&*touch).and_then(|m| m.modified()).ok();
        if now != *seen {
            *seen = now;
            if let Some(path) = &self.path
                && let Ok(f) = Dest::open(path)
            {
                self.file = Some(f);
            }
        }
    }
}

enum Sink {
    /// Written by the calling thread (the master, and a worker before its thread starts).
    Direct(Dest),
    /// Queued for this worker's logger thread.
    Queued(SyncSender<Vec<u8>>),
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();
/// Lines queued for the logger thread, and lines it has written (with a condition variable
/// for [`flush`]).
static QUEUED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: (Mutex<u64>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());
/// Lines dropped because a worker's queue was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Set where logs go, once, before anything is logged (`main`). Fails if `--logto` cannot
/// be opened.
pub fn init(logto: Option<&Path>, touch_reopen: Option<&Path>) -> io::Result<()> {
    let file = logto.map(Dest::open).transpose()?;
    let touch = touch_reopen.map(|t| {
        let seen = std::fs::metadata(t).and_then(|m| m.modified()).ok();
        (t.to_path_buf(), seen)
    });
    let dest = Dest {
        path: logto.map(Path::to_path_buf),
        file,
        touch,
        last_check: Instant::now(),
    };
    let _ = SINK.set(Mutex::new(Sink::Direct(dest)));
    Ok(())
}

/// Write one line (with its newline) to the log, from any thread.
pub fn write_line(line: &[u8]) {
    let Some(sink) = SINK.get() else {
        let _ = io::stderr().write_all(line);
        return;
    };
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    match &mut *sink {
        Sink::Direct(d) => d.write_line(line),
        Sink::Queued(tx) => match tx.try_send(line.to_vec()) {
            Ok(()) => {
                QUEUED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        },
    }
}

/// Wait (at most `limit`) until the logger thread has written every line queued so far: a
/// worker calls it before it exits.
pub(crate) fn flush(limit: Duration) {
    let want = QUEUED.load(Ordering::Relaxed);
    let (lock, cond) = &WRITTEN;
    let written = lock.lock().unwrap_or_else(|p| p.into_inner());
    let _ = cond.wait_timeout_while(written, limit, |w| *w < want);
}

/// Log lines dropped so far because this worker's queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// In a worker, after the fork: from now on log lines are queued for a thread of this process
/// that writes them, so that the executor never waits for the disk.
pub(crate) fn start_worker_thread() -> io::Result<()> {
    let Some(sink) = SINK.get() else {
        return Ok(());
    };
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE_LINES);
    let old = std::mem::replace(&mut *sink, Sink::Queued(tx));
    let Sink::Direct(dest) = old else {
        // Already started.
        *sink = old;
        return Ok(());
    };
    std::thread::Builder::new()
        .name("ringsgi-log".into())
        .spawn(move || writer(dest, rx))?;
    Ok(())
}

fn writer(mut dest: Dest, rx: Receiver<Vec<u8>>) {
    let mut reported = 0;
    // Lines that are queued together are written with one `write`: under load a worker's
    // lines arrive faster than one syscall each could keep up with.
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    loop {
        let first = match rx.recv_timeout(REOPEN_CHECK) {
            Ok(l) => Some(l),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match first {
            Some(l) => {
                batch.extend_from_slice(&l);
                let mut n = 1;
                while batch.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(l) => {
                            batch.extend_from_slice(&l);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                dest.write_line(&batch);
                batch.clear();
                let (lock, cond) = &WRITTEN;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) += n;
                cond.notify_all();
            }
            None => dest.check_reopen(),
        }
        let lost = DROPPED.load(Ordering::Relaxed);
        if lost != reported {
            let msg = format!(
                "ringsgi: {} log lines dropped (pid {}): the log destination is slower than the requests\n",
                lost - reported,
                std::process::id()
            );
            dest.write_line(msg.as_bytes());
            reported = lost;
        }
    }
}

/// A `tracing_subscriber` writer that sends each formatted event to [`write_line`].
#[derive(Debug, Default)]
pub struct LineWriter {
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            write_line(&self.buf);
        }
    }
}

/// One variable of a `--logformat` template (uWSGI's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `%(addr)`: the client's address.
    Addr,
    /// `%(user)`: the authenticated user (`REMOTE_USER`), `-` when none.
    User,
    /// `%(ltime)`: the request's start, Apache style (`06/Dec/2026:21:40:00 +0000`).
    Ltime,
    /// `%(time)` / `%(epoch)`: the request's start, Unix seconds.
    Time,
    /// `%(method)`
    Method,
    /// `%(uri)`: the request target.
    Uri,
    /// `%(proto)`: `HTTP/1.1`...
    Proto,
    /// `%(status)`
    Status,
    /// `%(size)`: response body bytes.
    Size,
    /// `%(rsize)`: response bytes on the wire (head included).
    Rsize,
    /// `%(msecs)`: duration in milliseconds.
    Msecs,
    /// `%(micros)`: duration in microseconds.
    Micros,
    /// `%(secs)`: duration in seconds (fractional).
    Secs,
    /// `%(uagent)`: `User-Agent`.
    Uagent,
    /// `%(referer)`: `Referer`.
    Referer,
    /// `%(host)`: `Host`.
    Host,
    /// `%(wid)`: the worker's id (1-based, as uWSGI's).
    Wid,
    /// `%(core)`: the request's slot.
    Core,
    /// `%(pid)`: the worker's pid.
    Pid,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "addr" => Var::Addr,
            "user" => Var::User,
            "ltime" => Var::Ltime,
            "time" | "epoch" => Var::Time,
            "method" => Var::Method,
            "uri" => Var::Uri,
            "proto" => Var::Proto,
            "status" => Var::Status,
            "size" => Var::Size,
            "rsize" => Var::Rsize,
            "msecs" => Var::Msecs,
            "micros" => Var::Micros,
            "secs" => Var::Secs,
            "uagent" => Var::Uagent,
            "referer" => Var::Referer,
            "host" => Var::Host,
            "wid" => Var::Wid,
            "core" => Var::Core,
            "pid" => Var::Pid,
            _ => return None,
        })
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Copied as is.
    Text(String),
    /// Replaced by the request's value.
    Var(Var),
}

/// How request log lines are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// ringsgi's own line, through `tracing` (with its timestamp and level).
    #[default]
    Default,
    /// A uWSGI `%(var)` template, one line per request, written as is.
    Template(Vec<Piece>),
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parse `--logformat`: `json`, or a template with uWSGI's `%(var)` variables (unknown
    /// variables are an error, naming the ones that exist).
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        if s == "json" {
            return Ok(LogFormat::Json);
        }
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("%(") {
            if i > 0 {
                pieces.push(Piece::Text(rest[..i].to_owned()));
            }
            let after = &rest[i + 2..];
            let end = after
                .find(')')
                .ok_or_else(|| format!("unclosed %( in {s:?}"))?;
            let name = &after[..end];
            let var = Var::parse(name).ok_or_else(|| {
                format!(
                    "unknown variable %({name}); known: addr user ltime time epoch method uri proto status size rsize msecs micros secs uagent referer host wid core pid"
                )
            })?;
            pieces.push(Piece::Var(var));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(LogFormat::Template(pieces))
    }
}

/// What a request log line may show.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) addr: &'a str,
    pub(crate) user: Option<&'a str>,
    pub(crate) start: SystemTime,
    pub(crate) method: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) proto: &'a str,
    pub(crate) status: u16,
    pub(crate) size: u64,
    pub(crate) rsize: u64,
    pub(crate) micros: u64,
    pub(crate) uagent: Option<&'a [u8]>,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) host: Option<&'a [u8]>,
    pub(crate) wid: usize,
    pub(crate) core: u32,
}

/// Render `e` in `format` (not [`LogFormat::Default`]), newline included.
pub(crate) fn render(format: &LogFormat, e: &Entry<'_>) -> String {
    let epoch = e
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    fn text(b: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
        b.map(String::from_utf8_lossy).unwrap_or_default()
    }
    let mut out = String::with_capacity(160);
    match format {
        LogFormat::Default => {}
        LogFormat::Template(pieces) => {
            for p in pieces {
                match p {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Var(v) => {
                        let _ = match v {
                            Var::Addr => write!(out, "{}", e.addr),
                            Var::User => write!(out, "{}", e.user.unwrap_or("-")),
                            Var::Ltime => write!(out, "{}", crate::sys::apache_time(epoch as i64)),
                            Var::Time => write!(out, "{epoch}"),
                            Var::Method => write!(out, "{}", e.method),
                            Var::Uri => write!(out, "{}", e.uri),
                            Var::Proto => write!(out, "{}", e.proto),
                            Var::Status => write!(out, "{}", e.status),
                            Var::Size => write!(out, "{}", e.size),
                            Var::Rsize => write!(out, "{}", e.rsize),
                            Var::Msecs => write!(out, "{}", e.micros / 1000),
                            Var::Micros => write!(out, "{}", e.micros),
                            Var::Secs => write!(out, "{:.6}", e.micros as f64 / 1e6),
                            Var::Uagent => write!(out, "{}", text(e.uagent)),
                            Var::Referer => write!(out, "{}", text(e.referer)),
                            Var::Host => write!(out, "{}", text(e.host)),
                            Var::Wid => write!(out, "{}", e.wid + 1),
                            Var::Core => write!(out, "{}", e.core),
                            Var::Pid => write!(out, "{}", std::process::id()),
                        };
                    }
                }
            }
        }
        LogFormat::Json => {
            let v = serde_json::json!({
                "time": epoch,
                "addr": e.addr,
                "user": e.user,
                "method": e.method,
                "uri": e.uri,
                "proto": e.proto,
                "status": e.status,
                "size": e.size,
                "rsize": e.rsize,
                "micros": e.micros,
                "uagent": e.uagent.map(String::from_utf8_lossy),
                "referer": e.referer.map(String::from_utf8_lossy),
                "host": e.host.map(String::from_utf8_lossy),
                "wid": e.wid + 1,
                "core": e.core,
                "pid": std::process::id(),
            });
            out.push_str(&v.to_string());
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            addr: "127.0.0.1",
            user: None,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            method: "GET",
            uri: "/a?b=1",
            proto: "HTTP/1.1",
            status: 200,
            size: 12,
            rsize: 130,
            micros: 1_500,
            uagent: Some(b"curl/8"),
            referer: None,
            host: Some(b"example.org"),
            wid: 0,
            core: 3,
        }
    }

    #[test]
    fn templates_substitute_uwsgis_variables() {
        let f = LogFormat::parse(
            "%(addr) - %(user) \"%(method) %(uri) %(proto)\" %(status) %(size) %(msecs)ms %(micros) [%(uagent)] %(referer)|%(host) w%(wid) c%(core) %(time)",
        )
        .unwrap();
        assert_eq!(
            render(&f, &entry()),
            "127.0.0.1 - - \"GET /a?b=1 HTTP/1.1\" 200 12 1ms 1500 [curl/8] |example.org w1 c3 1700000000\n"
        );
    }

    #[test]
    fn unknown_variables_and_unclosed_templates_are_refused() {
        let e = LogFormat::parse("%(addr) %(nope)").unwrap_err();
        assert!(e.contains("unknown variable %(nope)"), "{e}");
        assert!(LogFormat::parse("%(addr").is_err());
        assert_eq!(
            LogFormat::parse("plain").unwrap(),
            LogFormat::Template(vec![Piece::Text("plain".into())])
        );
    }

    #[test]
    fn json_lines_parse_back() {
        let line = render(&LogFormat::Json, &entry());
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["uri"], "/a?b=1");
        assert_eq!(v["uagent"], "curl/8");
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["wid"], 1);
    }

    #[test]
    fn ltime_is_apache_style() {
        let f = LogFormat::parse("%(ltime)").unwrap();
        let s = render(&f, &entry());
        // dd/Mon/yyyy:hh:mm:ss +zzzz
        let s = s.trim_end();
        assert_eq!(s.len(), 26, "{s}");
        assert_eq!(&s[2..3], "/");
        assert!(s[3..6].chars().all(|c| c.is_ascii_alphabetic()), "{s}");
        assert!(s.contains("/2023:"), "{s}");
    }
}
