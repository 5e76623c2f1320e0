//! systemd: socket activation through the real `systemd-socket-activate`, and the notification
//! protocol (READY, RELOADING, STOPPING, STATUS, WATCHDOG) read from a `NOTIFY_SOCKET` of our
//! own.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Server, TempDir, free_port, get};

/// The notification socket a test listens on, as systemd's would.
struct NotifySocket {
    sock: UnixDatagram,
    path: String,
    _dir: TempDir,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = TempDir::new("notify");
        let path = dir.0.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            sock,
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// The next message (at most 20 s away).
    fn next(&self) -> String {
        self.sock
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Messages until one starts with `prefix` (which is returned); the others are collected
    /// into `seen`.
    fn until(&self, prefix: &str, seen: &mut Vec<String>) -> String {
        loop {
            let m = self.next();
            if m.starts_with(prefix) {
                return m;
            }
            seen.push(m);
        }
    }
}

#[test]
fn notify_ready_status_watchdog_reload_and_stopping() {
    let notify = NotifySocket::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringsgi"));
    let args = [
        "--cores",
        "2",
        "--app",
        "hello",
        "--mount",
        "/spin=spin",
        "--reload-mercy",
        "5",
    ];
    cmd.args(["--http", "127.0.0.1:0"])
        .args(args)
        .env("NOTIFY_SOCKET", &notify.path)
        // Pings every 200 ms.
        .env("WATCHDOG_USEC", "400000");
    let mut server = Server::launch(cmd, &args);
    let mut seen = Vec::new();

    // 1. READY=1 once both workers accept, with a status line.
    let ready = notify.until("READY=1", &mut seen);
    assert!(ready.contains("STATUS=2 of 2 workers accepting"), "{ready}");
    // 2. The watchdog pings while the workers make progress.
    notify.until("WATCHDOG=1", &mut seen);
    notify.until("WATCHDOG=1", &mut seen);

    // 3. A worker stuck in one poll (a handler that never yields, 1.5 s) stops the pings.
    let addr = server.addr;
    let spin = std::thread::spawn(move || get(addr, "/spin?ms=1500"));
    server.wait_for("spin: burning CPU");
    let stuck_at = Instant::now();
    // At most one ping already decided before the worker was seen stuck can arrive; the next
    // one waits for the spin to end (stuck means more than half the period, 200 ms, in one poll).
    notify.until("WATCHDOG=1", &mut seen);
    notify.until("WATCHDOG=1", &mut seen);
    let gap = stuck_at.elapsed();
    assert!(
        gap >= Duration::from_millis(1000),
        "pings went on while a worker was stuck: two within {gap:?} of a 1.5 s spin"
    );
    assert_eq!(spin.join().unwrap().map(|r| r.0), Some(200));

    // 4. SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again from the new image.
    server.signal("HUP");
    let reloading = notify.until("RELOADING=1", &mut seen);
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading}");
    let ready = notify.until("READY=1", &mut seen);
    assert!(ready.contains("STATUS=2 of 2 workers accepting"), "{ready}");
    assert_eq!(get(server.addr, "/").map(|r| r.0), Some(200));

    // 5. SIGTERM: STOPPING=1.
    server.signal("TERM");
    let stopping = notify.until("STOPPING=1", &mut seen);
    assert!(stopping.contains("SIGTERM"), "{stopping}");
    assert!(server.stop().success());
}

#[test]
fn socket_activation_http_and_uwsgi_survive_a_reload() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        panic!("systemd-socket-activate is not installed: apt-get install systemd (.ci/run does)");
    }
    let (http, uw) = (free_port(), free_port());
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &format!("127.0.0.1:{http}"), "--fdname=http"])
        .args(["-l", &format!("127.0.0.1:{uw}"), "--fdname=uwsgi"])
        .arg(env!("CARGO_BIN_EXE_ringsgi"));
    // No listener of its own: both come from systemd.
    let args = ["--cores", "2", "--app", "hello"];
    cmd.args(args);
    // systemd-socket-activate binds, then waits for a first connection before it executes the
    // service (as systemd starts a unit on its socket's first client): this client is it, and
    // is answered by ringsgi once it runs.
    let first = std::thread::spawn(move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut c = loop {
            match crate::support::Conn::try_open(addr) {
                Ok(c) => break c,
                // Not listening yet: systemd-socket-activate is starting (no readiness signal
                // exists for it other than the port).
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("systemd-socket-activate never listened: {e}"),
            }
        };
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        c.read(false).map(|r| r.status)
    });
    let mut server = Server::launch(cmd, &args);
    assert_eq!(first.join().unwrap(), Some(200), "{}", server.log_text());
    assert_eq!(server.addr.port(), http, "{}", server.log_text());
    server.wait_for(&format!(
        "socket activation: uwsgi socket \"uwsgi\" on 127.0.0.1:{uw}"
    ));
    assert_eq!(get(server.addr, "/").map(|r| r.0), Some(200));
    let uwsgi_get = || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", uw)).unwrap();
        c.write_all(&crate::support::uwsgi_packet(
            0,
            &[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("PATH_INFO", "/"),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("HTTP_HOST", "t"),
            ],
        ))
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    let answer = uwsgi_get();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // A reload keeps both sockets (the configuration does not name them).
    server.signal("HUP");
    server.wait_for("inherited uwsgi socket 127.0.0.1:");
    server.wait_for_count(" ready (pid ", 4);
    assert_eq!(get(server.addr, "/").map(|r| r.0), Some(200));
    let answer = uwsgi_get();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    server.signal("TERM");
    assert!(server.stop().success());
}
