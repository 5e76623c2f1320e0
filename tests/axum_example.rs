//! `examples/axum.rs` end to end (issue 13): an axum `Router` and a failing tower service
//! served by ringsgi, over HTTP and behind a real nginx (`uwsgi_pass`): routes, extractors,
//! `State` per worker, a streamed body with trailers, streamed request bodies, `--limit-post`,
//! panics, service errors, invalid response heads, harakiri, the client address.
//!
//! The example binary is built by `cargo test` (all targets); a filtered run
//! (`cargo test --test tests axum`) needs `cargo build --example axum` first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::nginx::{Nginx, TempDir, ask, hdrs, uwsgi_location};
use crate::support::{Conn, Server, get};

/// `target/<profile>/examples/axum`, beside the `ringsgi` binary of this build.
fn example() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ringsgi"));
    let path = bin.parent().unwrap().join("examples").join("axum");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds it; for a filtered run, \
         `cargo build --example axum` (with the same --release or not) first",
        path.display()
    );
    path
}

/// The example on 127.0.0.1:0 with `args`, the failing service at `/fail`.
fn start(args: &[&str]) -> Server {
    let mut all = vec!["--cores", "1", "--mount", "/fail=failing"];
    all.extend_from_slice(args);
    let mut cmd = Command::new(example());
    cmd.args(["--http", "127.0.0.1:0"]).args(&all);
    Server::launch(cmd, &all)
}

fn request(c: &mut Conn, method: &str, target: &str, body: &[u8]) -> crate::support::Resp {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    c.send(body);
    c.read(method == "HEAD")
        .unwrap_or_else(|| panic!("no response to {method} {target}"))
}

fn text(r: &crate::support::Resp) -> &str {
    std::str::from_utf8(&r.body).unwrap()
}

/// A JSON document of about `n` bytes: `{"data":"xxx...","n":N}`.
fn big_json(n: usize) -> String {
    format!("{{\"data\":\"{}\",\"n\":{n}}}", "x".repeat(n))
}

#[test]
fn axum_routes_extractors_and_state_on_one_connection() {
    let mut srv = start(&[]);
    let mut c = Conn::open(srv.addr);
    let r = request(&mut c, "GET", "/users/42", b"");
    assert_eq!((r.status, text(&r)), (200, r#"{"id":42}"#));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some("9"));
    let r = request(&mut c, "GET", "/query?name=ringsgi", b"");
    assert_eq!((r.status, text(&r)), (200, "hello ringsgi"));
    let r = request(&mut c, "POST", "/json", br#"{"a":[1,2,{"b":null}]}"#);
    assert_eq!((r.status, text(&r)), (200, r#"{"a":[1,2,{"b":null}]}"#));
    // State: one counter per worker, counting this worker's requests.
    let r = request(&mut c, "GET", "/count", b"");
    assert_eq!(text(&r), r#"{"count":1,"worker":0}"#);
    let r = request(&mut c, "GET", "/count", b"");
    assert_eq!(text(&r), r#"{"count":2,"worker":0}"#);
    // The client address, as a request extension.
    let r = request(&mut c, "GET", "/client", b"");
    assert_eq!(text(&r), c.stream.local_addr().unwrap().to_string());
    // ringsgi's sleep awaited from a Send handler.
    let r = request(&mut c, "GET", "/sleep?ms=20", b"");
    assert_eq!((r.status, text(&r)), (200, "slept 20 ms"));
    // HEAD: the GET's length, no body (the next response parses: nothing stray was sent).
    let r = request(&mut c, "HEAD", "/hello", b"");
    assert_eq!((r.status, r.header("content-length")), (200, Some("12")));
    // axum's own answers: a rejection (400) and its 404.
    let r = request(&mut c, "GET", "/users/abc", b"");
    assert_eq!(r.status, 400, "{r:?}");
    let r = request(&mut c, "GET", "/nowhere", b"");
    assert_eq!(r.status, 404);
    let r = request(&mut c, "GET", "/hello", b"");
    assert_eq!((r.status, text(&r)), (200, "Hello World!"));
    // All on the one kept-alive connection, each logged like any app's request.
    srv.wait_for("POST /json => 200 22 bytes");
    srv.wait_for("GET /hello => 200 12 bytes");
}

/// Reads a whole raw response until the server closes (the request says `Connection: close`).
fn raw(addr: std::net::SocketAddr, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// The 120,000 bytes of `/stream`: 12 frames of 10,000, frame `i` of letter `a + i`, each
/// ending in a newline.
fn stream_body() -> Vec<u8> {
    let mut want = Vec::new();
    for i in 0..12u8 {
        let mut frame = vec![b'a' + i; 10_000];
        frame[9_999] = b'\n';
        want.extend(frame);
    }
    want
}

#[test]
fn stream_goes_out_frame_by_frame_with_its_trailer() {
    let srv = start(&[]);
    let out = raw(
        srv.addr,
        "GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // One chunk per frame, then the last chunk carrying the trailer.
    let mut rest = &out[split..];
    let mut body = Vec::new();
    let mut chunks = 0;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
        rest = &rest[eol + 2..];
        if n == 0 {
            break;
        }
        body.extend_from_slice(&rest[..n]);
        assert_eq!(&rest[n..n + 2], b"\r\n");
        rest = &rest[n + 2..];
        chunks += 1;
    }
    assert_eq!(chunks, 12);
    assert!(body == stream_body(), "the streamed body differs");
    assert_eq!(rest, b"x-stream-bytes: 120000\r\n\r\n");
    // HTTP/1.0: no chunked encoding, so no trailer; the body is delimited by the close.
    let out = raw(srv.addr, "GET /stream HTTP/1.0\r\n\r\n");
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(out[split..] == stream_body()[..]);
}

#[test]
fn each_frame_is_a_switch_point() {
    // One core. The stream's second frame comes a minute after its first: meanwhile the
    // worker serves other requests. (`--reload-mercy 1`: the stop at the end does not wait
    // a minute for the stream.)
    let srv = start(&["--reload-mercy", "1"]);
    let mut slow = Conn::open(srv.addr);
    slow.send(b"GET /stream?delay_ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = vec![0u8; 64];
    let n = slow.stream.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        get(srv.addr, "/users/7"),
        Some((200, r#"{"id":7}"#.to_owned()))
    );
}

#[test]
fn request_bodies_stream_larger_than_a_buffer() {
    let mut srv = start(&[]);
    // 300 KB with a Content-Length (read in many 16 KiB pieces), then the same chunked in
    // 7,000-byte chunks, sent as the server reads.
    let doc = big_json(300_000);
    let mut c = Conn::open(srv.addr);
    let r = request(&mut c, "POST", "/json", doc.as_bytes());
    assert_eq!(r.status, 200);
    assert!(r.body == doc.as_bytes(), "the echoed JSON differs");
    c.send(
        b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    );
    // 100-continue comes on the service's first read of the body.
    let cont = c.read(false).unwrap();
    assert_eq!(cont.status, 100);
    for piece in doc.as_bytes().chunks(7_000) {
        c.send(format!("{:x}\r\n", piece.len()).as_bytes());
        c.send(piece);
        c.send(b"\r\n");
    }
    c.send(b"0\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == doc.as_bytes(), "the echoed chunked JSON differs");
    // Still the same connection.
    let r = request(&mut c, "GET", "/users/1", b"");
    assert_eq!(text(&r), r#"{"id":1}"#);
    srv.wait_for(&format!("POST /json => 200 {} bytes", doc.len()));
}

#[test]
fn a_request_body_streams_back_as_the_response_body() {
    // 5 MB, over axum's 2 MB limit for buffering extractors: /echo hands the RequestBody
    // itself back as the response body, written frame by frame as it is read, with the
    // Content-Length of the request (its exact size hint).
    let mut srv = start(&[]);
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = Conn::open(srv.addr);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        let body = body.clone();
        std::thread::spawn(move || s.write_all(&body).unwrap())
    };
    let r = c.read(false).unwrap();
    writer.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5000000"));
    assert!(r.body == body, "the echoed body differs");
    srv.wait_for("POST /echo => 200 5000000 bytes");
}

#[test]
fn an_unread_body_is_not_read_ahead() {
    // A POST to a GET route: axum answers 405 without reading the body. The client sends
    // the head of a 50 MB upload and none of its bytes: the answer comes all the same, since
    // nothing reads the body before the service asks for it.
    let srv = start(&[]);
    let mut c = Conn::open(srv.addr);
    c.send(b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n");
    let r = c.read(false).expect("an answer before the body");
    assert_eq!(r.status, 405, "{r:?}");
}

#[test]
fn limit_post_gives_413_whatever_the_service_answers() {
    let mut srv = start(&["--limit-post", "1000"]);
    let doc = big_json(2_000);
    // Announced too large: refused from the head, before the service.
    let mut c = Conn::open(srv.addr);
    let r = request(&mut c, "POST", "/json", doc.as_bytes());
    assert_eq!(r.status, 413);
    // Chunked: found while the service reads (axum would answer 400 for a body error).
    let mut c = Conn::open(srv.addr);
    c.send(
        format!(
            "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{doc}\r\n0\r\n\r\n",
            doc.len()
        )
        .as_bytes(),
    );
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    srv.wait_for("request body: ");
    // Within the limit: served.
    let small = big_json(100);
    let r = request(&mut Conn::open(srv.addr), "POST", "/json", small.as_bytes());
    assert_eq!((r.status, text(&r)), (200, small.as_str()));
}

#[test]
fn panics_errors_and_invalid_heads_are_500_for_that_request_alone() {
    let mut srv = start(&[]);
    let mut c = Conn::open(srv.addr);
    assert_eq!(
        text(&request(&mut c, "GET", "/count", b"")),
        r#"{"count":1,"worker":0}"#
    );
    for (target, log) in [
        ("/panic", "handler panicked: the /panic route panics"),
        ("/fail", "handler error: the upstream is down: 500"),
        (
            "/fail/head",
            "handler error: invalid response: status 103 is not a final status: 500",
        ),
        (
            "/fail/body",
            "handler error: response body: the body's source is gone: 500",
        ),
    ] {
        let r = request(&mut Conn::open(srv.addr), "GET", target, b"");
        assert_eq!(r.status, 500, "{target}: {r:?}");
        srv.wait_for(log);
    }
    // The worker lived through it (its State goes on), and the connection opened before is
    // still served.
    assert_eq!(
        text(&request(&mut c, "GET", "/count", b"")),
        r#"{"count":2,"worker":0}"#
    );
    assert!(!srv.drain().iter().any(|l| l.contains("respawn")));
}

#[test]
fn a_body_kept_past_its_request_cannot_read_the_connection() {
    // The service gives the body to a task that reads it 50 ms after the response: by then
    // the connection has its body back (drained for keep-alive) and may serve the next
    // request; the late read gets an error, not that request's bytes.
    let mut srv = start(&[]);
    let mut c = Conn::open(srv.addr);
    let r = request(&mut c, "POST", "/fail/keep-body", b"0123456789");
    assert_eq!((r.status, text(&r)), (200, "kept\n"));
    let r = request(&mut c, "POST", "/json", b"[1]");
    assert_eq!((r.status, text(&r)), (200, "[1]"));
    srv.wait_for(
        "kept body read after its request: error: the request this body belongs to is over",
    );
    let r = request(&mut c, "GET", "/users/3", b"");
    assert_eq!(text(&r), r#"{"id":3}"#);
}

#[test]
fn harakiri_cancels_a_sleeping_handler() {
    let mut srv = start(&["--harakiri", "0.5", "--harakiri-verbose"]);
    let r = get(srv.addr, "/sleep?ms=30000");
    assert_eq!(r.map(|r| r.0), Some(504));
    let line = srv.wait_for("HARAKIRI ON WORKER 0 SLOT");
    assert!(line.contains("waiting on: sleep"), "{line}");
    assert_eq!(get(srv.addr, "/hello"), Some((200, "Hello World!".into())));
}

#[test]
fn behind_nginx_over_uwsgi() {
    let mut srv = start(&["--socket", "127.0.0.1:0"]);
    let upstream = srv.uwsgi.clone().unwrap();
    let nginx = Nginx::start(
        TempDir::new("axum"),
        "",
        &uwsgi_location(&upstream, "uwsgi_buffering off;"),
    );
    let mut c = nginx.conn();
    let r = ask(&mut c, "GET", "/users/9", &[], b"");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &br#"{"id":9}"#[..]),
        "{}",
        nginx.error_log()
    );
    let r = ask(&mut c, "GET", "/query?name=nginx", &[], b"");
    assert_eq!(r.body, b"hello nginx");
    // A 1 MB JSON body, through nginx and back.
    let doc = big_json(1_000_000);
    let r = ask(
        &mut c,
        "POST",
        "/json",
        &hdrs(&[("Content-Type", "application/json")]),
        doc.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    assert!(r.body == doc.as_bytes(), "the echoed JSON differs");
    // The stream: delimited by the close on the uwsgi side, chunked again by nginx.
    let r = ask(&mut c, "GET", "/stream", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == stream_body(), "the streamed body differs");
    // The client is the one nginx names (REMOTE_ADDR, REMOTE_PORT), not nginx.
    let r = ask(&mut c, "GET", "/client", &[], b"");
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        c.stream.local_addr().unwrap().to_string()
    );
    let r = ask(&mut c, "GET", "/panic", &[], b"");
    assert_eq!(r.status, 500);
    let r = ask(&mut nginx.conn(), "GET", "/fail", &[], b"");
    assert_eq!(r.status, 500);
    srv.wait_for("GET /stream => 200 120000 bytes");
}
