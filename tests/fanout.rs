//! `examples/fanout.rs` end to end: the example binary (built by `cargo test`, or here if
//! missing) fetching from local upstreams: plain HTTP, HTTPS with a test CA given through
//! `SSL_CERT_FILE`, an upstream that never answers, and a port where nothing listens.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::upstream::{Conn, TestCa, Upstream, read_request, serve_body, until_closed};
use crate::support::{Server, TempDir, get};

/// The example's binary, next to this test binary's directory (`target/<profile>/examples`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let bin = profile_dir.join("examples/fanout");
    if !bin.exists() {
        // `cargo test --test tests` builds no example: build it (same profile).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", "fanout"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().unwrap().success(),
            "cargo build --example fanout"
        );
    }
    bin
}

fn start_fanout(ssl_cert_file: &std::path::Path) -> Server {
    let mut cmd = Command::new(example_binary());
    let args = ["--http", "127.0.0.1:0", "--cores", "1", "--async", "16"];
    cmd.args(args).env("SSL_CERT_FILE", ssl_cert_file);
    Server::launch(cmd, &args)
}

fn enc(url: &str) -> String {
    url.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn fanout_target(urls: &[&str], timeout_ms: u64) -> String {
    let us: Vec<String> = urls.iter().map(|u| format!("u={}", enc(u))).collect();
    format!("/fanout?{}&timeout_ms={timeout_ms}", us.join("&"))
}

#[test]
fn fanout_answers_one_line_per_url_in_order_within_the_timeout() {
    let dir = TempDir::new("fanout");
    let ca = TestCa::new("fanout test CA");
    let ca_file = ca.write_pem(&dir.0);
    let fast = Upstream::start(serve_body(b"hello"));
    let secure = Upstream::start_tls(ca.server_config(), serve_body(b"secure"));
    let stalled = Upstream::start(|conn: &mut dyn Conn, _| {
        let _ = read_request(conn);
        until_closed(conn);
    });
    let srv = start_fanout(&ca_file);
    let urls = [
        fast.url("http", "/a"),
        secure.url("https", "/b"),
        stalled.url("http", "/slow"),
        format!("http://127.0.0.1:{}/", crate::support::free_port()),
        "gopher://x/".to_owned(),
    ];
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let (status, body) = get(srv.addr, &fanout_target(&refs, 500)).expect("an answer");
    let took = t0.elapsed();
    assert_eq!(status, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 5, "{body}");
    assert_eq!(lines[0], format!("{} 200 5", urls[0]));
    assert_eq!(lines[1], format!("{} 200 6", urls[1]));
    assert_eq!(lines[2], format!("{} timeout", urls[2]));
    assert!(
        lines[3].starts_with(&format!("{} error connection failed", urls[3])),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with(&format!("{} error invalid URL", urls[4])),
        "{}",
        lines[4]
    );
    // The stalled request was dropped at the timeout: its connection is closed.
    assert_eq!(stalled.next_ended(), Some(0));
    // Not a timing measurement: without the timeout the stalled upstream would hold the
    // answer until the test client's 30 s read timeout.
    assert!(took < Duration::from_secs(10), "answered after {took:?}");

    // A second fan-out to the same hosts reuses the worker's pooled connections.
    let (status, body) = get(srv.addr, &fanout_target(&refs[..2], 2000)).expect("an answer");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("{} 200 5\n{} 200 6\n", urls[0], urls[1]),
        "second fan-out"
    );
    assert_eq!(fast.accepted(), 1, "HTTP connection reused");
    assert_eq!(secure.accepted(), 1, "HTTPS connection reused");
}

#[test]
fn fanout_refuses_bad_queries_and_proxies() {
    let dir = TempDir::new("fanout-bad");
    let ca_file = TestCa::new("unused").write_pem(&dir.0);
    let fast = Upstream::start(serve_body(b"proxied body"));
    let srv = start_fanout(&ca_file);
    assert_eq!(get(srv.addr, "/fanout").map(|r| r.0), Some(400));
    let too_long = fanout_target(&["http://127.0.0.1:1/"], 10_000_000);
    assert_eq!(get(srv.addr, &too_long).map(|r| r.0), Some(400));
    let proxied = get(
        srv.addr,
        &format!("/proxy?u={}", enc(&fast.url("http", "/p"))),
    );
    assert_eq!(proxied, Some((200, "proxied body".to_owned())));
}
