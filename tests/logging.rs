//! Request logs: `--logto`, `--logformat` (uWSGI templates and JSON), `--touch-logreopen`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Server, TempDir, start_fails};

/// The text of `path` once it contains `needle` (the log file is the server's only output
/// with --logto: it is the readiness signal). Panics after 20 s.
fn wait_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start ringsgi logging to `log` only; returns it and its HTTP address (from the log).
fn start_logging_to(log: &Path, args: &[&str]) -> (Child, SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args(["--http", "127.0.0.1:0", "--cores", "1", "--logto"])
        .arg(log)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = wait_file(log, " ready (pid ");
    let addr = text
        .split("bound http socket on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    (child, addr)
}

fn request(addr: SocketAddr, target: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: example.org\r\nUser-Agent: test-agent/1\r\nReferer: http://r.example/\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn logto_and_a_uwsgi_template() {
    let dir = TempDir::new("logto");
    let log = dir.0.join("ringsgi.log");
    let (child, addr) = start_logging_to(
        &log,
        &[
            "--logformat",
            "%(addr) %(user) \"%(method) %(uri) %(proto)\" %(status) %(size) %(host) [%(uagent)] %(referer) w%(wid) c%(core) %(msecs)",
        ],
    );
    assert!(request(addr, "/?x=1").starts_with("HTTP/1.1 200 OK\r\n"));
    let text = wait_file(&log, "\"GET /?x=1 HTTP/1.1\"");
    let line = text
        .lines()
        .find(|l| l.contains("\"GET /?x=1 HTTP/1.1\""))
        .unwrap();
    // hello answers "Hello World!" (12 bytes); one worker, the first slot.
    let expected = "127.0.0.1 - \"GET /?x=1 HTTP/1.1\" 200 12 example.org [test-agent/1] http://r.example/ w1 c";
    assert!(line.starts_with(expected), "{line}");
    stop(child);
}

#[test]
fn json_request_lines() {
    let mut srv = Server::start(&["--cores", "1", "--logformat", "json"]);
    assert!(request(srv.addr, "/j").starts_with("HTTP/1.1 200 OK\r\n"));
    let line = srv.wait_for("\"uri\":\"/j\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["proto"], "HTTP/1.1");
    assert_eq!(v["host"], "example.org");
    assert_eq!(v["uagent"], "test-agent/1");
    assert_eq!(v["size"], 12);
    assert_eq!(v["wid"], 1);
    assert!(v["micros"].as_u64().is_some());
    srv.signal("INT");
    srv.stop();
}

#[test]
fn touch_logreopen_follows_a_rotation() {
    let dir = TempDir::new("logreopen");
    let log = dir.0.join("ringsgi.log");
    let touch = dir.0.join("reopen");
    std::fs::write(&touch, "").unwrap();
    let (child, addr) = start_logging_to(
        &log,
        &[
            "--logformat",
            "%(method) %(uri) %(status)",
            "--touch-logreopen",
            touch.to_str().unwrap(),
        ],
    );
    request(addr, "/before");
    wait_file(&log, "GET /before 200");
    // logrotate: rename, then touch.
    let rotated = dir.0.join("ringsgi.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&touch)
        .unwrap()
        .set_modified(later)
        .unwrap();
    // The writers look at the touch file about once a second: requests go on meanwhile (to
    // the renamed file) until one lands in the new one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        request(addr, &format!("/after{n}"));
        let now = std::fs::read_to_string(&log).unwrap_or_default();
        if now.contains("GET /after") {
            assert!(!now.contains("/before"), "{now}");
            break;
        }
        assert!(Instant::now() < deadline, "the log was never reopened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("GET /before 200"), "{old}");
    stop(child);
}

#[test]
fn an_unknown_logformat_variable_is_refused_at_start() {
    // A configuration error: exit status 2, one line naming the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args(["--http", "127.0.0.1:0", "--logformat", "%(addr) %(nope)"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown variable %(nope)"), "{err}");
    // An unwritable --logto: exit status 1, one line.
    let err = start_fails(&["--http", "127.0.0.1:0", "--logto", "/nonexistent/dir/x.log"]);
    assert!(
        err.starts_with("ringsgi: --logto /nonexistent/dir/x.log: "),
        "{err}"
    );
}
