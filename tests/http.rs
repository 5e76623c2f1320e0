//! HTTP/1.1 serving, byte-exact: keep-alive, pipelining, HEAD, HTTP/1.0, chunked in and out,
//! 100-continue, every bad-input answer, slots and workers, handler panics.

use std::time::{Duration, Instant};

use crate::support::{Conn, Server, get};

const HELLO: &str = "HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: <date>\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n";

fn apps() -> Vec<&'static str> {
    vec![
        "--cores",
        "1",
        "--mount",
        "/echo=echo",
        "--mount",
        "/cpubound=cpubound",
        "--mount",
        "/sleep=sleep",
    ]
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read(false).unwrap();
        assert_eq!(r.head, HELLO);
        assert_eq!(r.body, b"Hello World!");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    c.send(
        b"GET /sleep?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let r1 = c.read(false).unwrap();
    assert_eq!(r1.head, HELLO);
    let r2 = c.read(true).unwrap();
    assert_eq!(r2.head, HELLO, "HEAD: same head, no body");
    let r3 = c.read(false).unwrap();
    assert_eq!(
        String::from_utf8(r3.body).unwrap(),
        "POST /echo?x=1 HTTP/1.1\nHost: t\nContent-Length: 3\n\nabc"
    );
    let r4 = c.read(false).unwrap();
    assert_eq!(
        r4.head,
        HELLO.replace(
            "Content-Length: 12\r\n",
            "Content-Length: 12\r\nConnection: close\r\n"
        )
    );
    assert!(c.closed());
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());

    let mut c = Conn::open(srv.addr);
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(c.read(false).unwrap().body, b"Hello World!");
    assert!(c.closed());
}

#[test]
fn chunked_request_body_and_chunked_response() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        String::from_utf8(r.body)
            .unwrap()
            .ends_with("\n\nhello world")
    );
    // The connection is still usable: the chunked body was consumed exactly.
    c.send(b"GET /cpubound HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let want: String = (1..10000).map(|i| format!("<h1>{i}</h1>")).collect();
    assert_eq!(String::from_utf8(r.body).unwrap(), want);
}

#[test]
fn expect_100_continue() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read(false).unwrap();
    assert_eq!(interim.head, "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8(r.body).unwrap().ends_with("\n\nhello"));
}

#[test]
fn bad_input_gets_its_status_and_a_close_and_harms_no_one() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--buffer-size",
        "1024",
        "--limit-post",
        "100",
        "--socket-timeout",
        "0.5",
        "--header-timeout",
        "0.5",
        "--mount",
        "/echo=echo",
    ]);
    // A good kept-alive connection opened before the bad ones, used after them.
    let mut good = Conn::open(srv.addr);
    good.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(good.read(false).unwrap().status, 200);
    let big = "a".repeat(2000);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("Content-Length over --limit-post", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n".to_vec(), 413),
        (
            "chunked body over --limit-post",
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n80\r\n{}\r\n0\r\n\r\n", "x".repeat(128)).into_bytes(),
            413,
        ),
        ("target over --buffer-size", format!("GET /{big} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes(), 414),
        ("headers over --buffer-size", format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").into_bytes(), 431),
        ("unknown transfer coding", b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n".to_vec(), 505),
        (
            "Content-Length with Transfer-Encoding",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two different Content-Lengths",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
            400,
        ),
        ("head not finished within --header-timeout", b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec(), 408),
    ];
    for (what, bytes, status) in cases {
        let mut c = Conn::open(srv.addr);
        c.send(&bytes);
        let r = c.read(false).unwrap_or_else(|| {
            srv.drain();
            panic!("{what}: no response; log:\n{}", srv.log_text())
        });
        assert_eq!(r.status, status, "{what}: {}", r.head);
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        assert!(c.closed(), "{what}: connection left open");
    }
    // The good connection is untouched.
    good.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = good.read(false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello World!"[..]));
}

#[test]
fn full_slots_make_requests_wait_not_fail() {
    let mut srv = Server::start(&["--cores", "1", "--async", "2", "--mount", "/sleep=sleep"]);
    let addr = srv.addr;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || (get(addr, "/sleep?ms=300"), t0.elapsed())))
        .collect();
    let mut done: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    done.sort_by_key(|d| d.1);
    for (r, _) in &done {
        assert_eq!(r, &Some((200, "Hello World!".to_owned())));
    }
    // Two slots: the third request can only start when one of the first two ends.
    assert!(done[2].1 >= Duration::from_millis(600), "{:?}", done[2].1);
    srv.wait_for("async queue is full");
}

#[test]
fn two_workers_both_serve() {
    let mut srv = Server::start(&["--cores", "2", "--async", "2", "--mount", "/sleep=sleep"]);
    let addr = srv.addr;
    // Many more concurrent requests than one worker has slots: a worker stops accepting while
    // its slots are full, so the other one must take some.
    let clients: Vec<_> = (0..40)
        .map(|_| std::thread::spawn(move || get(addr, "/sleep?ms=300")))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), Some((200, "Hello World!".to_owned())));
    }
    srv.wait_for("(worker 0 slot");
    srv.wait_for("(worker 1 slot");
}

/// Issue #12: bursts far larger than the slots (two workers with `--async 2`), each request
/// holding its slot a few milliseconds. The workers stop and resume taking connections every
/// time their slots run out and come back, many times per burst; every connection of every
/// burst is answered, none is stranded in the accept queue at the end of a burst (each
/// read waits at most 20 s).
#[test]
fn bursts_with_slots_exhausted_are_answered_in_full() {
    let mut srv = Server::start(&["--cores", "2", "--async", "2", "--mount", "/sleep=sleep"]);
    for burst in 0..5 {
        // Every connection first (they wait in the accept queue or in a worker), then every
        // request, then every answer.
        let mut conns: Vec<Conn> = (0..60).map(|_| Conn::open(srv.addr)).collect();
        for c in &mut conns {
            c.send(b"GET /sleep?ms=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let status = c.read(false).map(|r| r.status);
            assert_eq!(status, Some(200), "burst {burst}, connection {i}");
        }
    }
    srv.wait_for("async queue is full");
    // Both workers took part (a worker whose slots are full leaves connections to the other).
    srv.wait_for("(worker 0 slot");
    srv.wait_for("(worker 1 slot");
}

#[test]
fn a_panicking_handler_gets_a_500_and_the_worker_lives_on() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--mount",
        "/panic=panic",
        "--mount",
        "/sleep=sleep",
    ]);
    let addr = srv.addr;
    // A sibling request, most likely in flight on the same worker while the panic happens.
    let sibling = std::thread::spawn(move || get(addr, "/sleep?ms=300"));
    let r = get(addr, "/panic").unwrap();
    assert_eq!(r.0, 500);
    assert_eq!(
        sibling.join().unwrap(),
        Some((200, "Hello World!".to_owned()))
    );
    srv.wait_for("handler panicked");
    assert_eq!(get(addr, "/"), Some((200, "Hello World!".to_owned())));
    assert!(
        !srv.drain().iter().any(|l| l.contains("respawn")),
        "the worker was replaced"
    );
}

/// An echo request with an `n`-byte body, and the body the echo app answers with.
fn big_echo(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut req =
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    let mut want = format!("POST /echo HTTP/1.1\nHost: t\nContent-Length: {n}\n\n").into_bytes();
    let body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    req.extend_from_slice(&body);
    want.extend_from_slice(&body);
    (req, want)
}

/// The last send of a kept-alive response is submitted with the connection's next receive
/// and its completion checked afterwards (issue #12, perf4). A response far larger than the
/// socket buffers goes out in several sends: one the client reads only after a pause longer
/// than the hot idle window (so the connection settles the send before it parks) still
/// arrives whole, and the connection serves the next request after it.
#[test]
fn a_large_response_read_late_arrives_whole_then_the_next() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    let (req, want) = big_echo(16 << 20);
    c.send(&req);
    // Not a synchronisation: the client is slow on purpose (past the 100 ms hot window).
    std::thread::sleep(Duration::from_millis(400));
    let r = c.read(false).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body == want,
        "body of {} bytes, want {}",
        r.body.len(),
        want.len()
    );
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.head, HELLO);
    assert_eq!(r.body, b"Hello World!");
}

/// As above with the next request pipelined behind the large one: it is answered only after
/// the last byte of the first response (which the client reads late), never in its middle.
#[test]
fn a_request_pipelined_behind_a_large_response_waits_for_all_of_it() {
    let srv = Server::start(&apps());
    let mut c = Conn::open(srv.addr);
    let (mut req, want) = big_echo(16 << 20);
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&req);
    std::thread::sleep(Duration::from_millis(400));
    let r = c.read(false).unwrap();
    assert!(
        r.body == want,
        "body of {} bytes, want {}",
        r.body.len(),
        want.len()
    );
    let r = c.read(false).unwrap();
    assert_eq!(r.head, HELLO);
    assert_eq!(r.body, b"Hello World!");
}
