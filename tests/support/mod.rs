//! Shared helpers for the integration tests: the real `ringsgi` binary on 127.0.0.1:0, its
//! log as a readiness signal, and a raw HTTP/1.1 client.

#![allow(dead_code)]

/// Local upstreams and a test CA for the HTTP client (`--features client`).
#[cfg(feature = "client")]
pub(crate) mod upstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `ringsgi` with its stderr lines streamed to a channel.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// The first uwsgi listener (`--socket`) as logged: `IP:PORT`, a path or `@name`.
    pub(crate) uwsgi: Option<String>,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    pub(crate) fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringsgi"));
        cmd.args(["--http", "127.0.0.1:0"]).args(args);
        Server::launch(cmd, args)
    }

    /// Start `cmd` (which runs ringsgi with `args`, perhaps through a wrapper such as
    /// `systemd-socket-activate`) and wait until its HTTP listener is bound and every worker
    /// is ready.
    pub(crate) fn launch(mut cmd: Command, args: &[&str]) -> Server {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringsgi");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            uwsgi: None,
            lines: rx,
            log: Vec::new(),
        };
        let bound = s.wait_for("bound http socket on ");
        let addr = bound
            .split("bound http socket on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap();
        s.addr = addr.parse().unwrap();
        if args.contains(&"--socket") {
            let bound = s.wait_for("bound uwsgi socket on ");
            s.uwsgi = bound
                .split("bound uwsgi socket on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned);
        }
        let cores = args
            .windows(2)
            .find(|w| w[0] == "--cores")
            .map_or(1, |w| w[1].parse().unwrap());
        // Every worker, not the first one `cores` times.
        s.wait_for_count(" ready (pid ", cores);
        s
    }

    /// Wait (at most 20 s) for a log line containing `needle`; returns it.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Wait (at most 30 s) until `n` log lines contain `needle`.
    pub(crate) fn wait_for_count(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.drain();
            if self.log.iter().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => panic!(
                    "fewer than {n} log lines with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The log so far, one string (for assertion messages).
    pub(crate) fn log_text(&self) -> String {
        self.log.join("\n")
    }

    /// The master's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send UNIX signal `sig` (a name such as `HUP`) to the master.
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    /// Log lines so far (draining what arrived).
    pub(crate) fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        &self.log
    }
}

impl Server {
    /// SIGTERM the master and wait (at most 30 s) for it to exit; the log is complete after.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The stderr reader ends at EOF; collect what it read.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.log.push(l);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM lets the master stop its workers; SIGKILL if it does not exit.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `raw` on a new connection and read until the server closes it (or 20 s pass); the
/// whole answer as text.
pub(crate) fn raw_exchange(addr: SocketAddr, raw: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// GET `target` on a new connection; returns (status, body). `None` if the connection closed
/// without a response.
pub(crate) fn get(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

/// Decode a chunked body; a body cut short (no last chunk) is returned with a `[truncated]`
/// marker so that tests can tell.
pub(crate) fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out + "[truncated]";
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return out + "[truncated]";
        };
        if n == 0 {
            return out;
        }
        if rest.len() < n + 2 {
            return out + "[truncated]";
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// One parsed response: status line, headers (as sent, `Date` value replaced by `<date>`),
/// decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    /// The head exactly as sent, with the `Date` value normalised.
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A keep-alive client connection that reads responses one at a time.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub(crate) fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The server has closed this connection without sending another byte: the next read is
    /// an end of file (or a reset).
    pub(crate) fn expect_closed(&self) {
        let mut s: &TcpStream = &self.stream;
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn take_until(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(pat.len()).position(|w| w == pat) {
                let out = self.buf[..i + pat.len()].to_vec();
                self.buf.drain(..i + pat.len());
                return Some(out);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Read one response (`head_only` for a HEAD request). `None` if the connection ended
    /// before a whole response.
    pub(crate) fn read(&mut self, head_only: bool) -> Option<Resp> {
        let head = String::from_utf8(self.take_until(b"\r\n\r\n")?).unwrap();
        let status: u16 = head.get(9..12)?.parse().ok()?;
        let head = normalise_date(&head);
        let mut r = Resp {
            status,
            head,
            body: Vec::new(),
        };
        if head_only || status / 100 == 1 || status == 204 || status == 304 {
            return Some(r);
        }
        if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let line = String::from_utf8(self.take_until(b"\r\n")?).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).ok()?;
                if n == 0 {
                    self.take_until(b"\r\n")?;
                    break;
                }
                r.body.extend(self.take(n)?);
                self.take(2)?;
            }
        } else if let Some(n) = r.header("content-length") {
            let n = n.parse().unwrap();
            r.body = self.take(n)?;
        } else {
            while self.fill() {}
            r.body = std::mem::take(&mut self.buf);
        }
        Some(r)
    }

    /// Open a connection, reporting a refused or failed connect instead of panicking.
    pub(crate) fn try_open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Read one response; `Err(true)` if the server closed the connection before sending any
    /// byte of it (a kept-alive connection closed while idle: clients retry those), `Err(false)`
    /// if it ended in the middle of one.
    pub(crate) fn read_or_closed(&mut self) -> Result<Resp, bool> {
        if self.buf.is_empty() && !self.fill() {
            return Err(true);
        }
        self.read(false).ok_or(false)
    }

    /// True if the server closed the connection (and sent nothing more).
    pub(crate) fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

fn normalise_date(head: &str) -> String {
    head.split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date:") {
                "Date: <date>".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A uwsgi packet as nginx's uwsgi module writes it: modifier1, u16-LE size of the vars,
/// modifier2, then u16-LE length-prefixed keys and values.
pub(crate) fn uwsgi_packet(modifier1: u8, vars: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in vars {
        for s in [k, v] {
            block.extend_from_slice(&(s.len() as u16).to_le_bytes());
            block.extend_from_slice(s.as_bytes());
        }
    }
    let mut out = vec![modifier1];
    out.extend_from_slice(&(block.len() as u16).to_le_bytes());
    out.push(0);
    out.extend(block);
    out
}

/// Run the binary with `args` expecting a startup failure: exit status 1 and one line on
/// stderr, which is returned.
pub(crate) fn start_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args(args)
        .output()
        .expect("run ringsgi");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

/// A free TCP port on 127.0.0.1 (bound and released, for a program that binds it itself).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ringsgi-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
