//! Idle keep-alive connections (issue #8): after a short hot window a quiet connection is
//! parked without a task or a buffer; it serves its next request when one arrives, is closed
//! silently at `--keepalive-timeout`, and a graceful stop closes it.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Conn, Server};

/// Longer than the server's hot window (100 ms): every idle connection is parked by then.
const PARKED: Duration = Duration::from_millis(400);

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn parked_connections_serve_their_next_requests() {
    let srv = Server::start(&["--cores", "1", "--async", "8"]);
    let mut conns: Vec<Conn> = (0..200).map(|_| Conn::open(srv.addr)).collect();
    for c in &mut conns {
        c.send(GET);
        assert_eq!(c.read(false).unwrap().status, 200);
    }
    for round in 0..2 {
        std::thread::sleep(PARKED);
        // All at once (more than the slots), one of them pipelined.
        for (i, c) in conns.iter_mut().enumerate() {
            if i == 0 {
                c.send(&[GET, GET].concat());
            } else {
                c.send(GET);
            }
        }
        for (i, c) in conns.iter_mut().enumerate() {
            for _ in 0..if i == 0 { 2 } else { 1 } {
                let r = c.read(false);
                assert_eq!(
                    r.map(|r| (r.status, r.body)),
                    Some((200, b"Hello World!".to_vec())),
                    "round {round} connection {i}"
                );
            }
        }
    }
}

#[test]
fn a_parked_connection_is_closed_at_the_keepalive_timeout() {
    let srv = Server::start(&["--cores", "1", "--keepalive-timeout", "1"]);
    let mut c = Conn::open(srv.addr);
    c.send(GET);
    assert_eq!(c.read(false).unwrap().status, 200);
    // Parked after 100 ms, closed at 1 s: an end of file, not our read timeout.
    let mut s: &TcpStream = &c.stream;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => {}
        other => panic!("expected a silent close, got {other:?}"),
    }
}

#[test]
fn a_graceful_stop_closes_parked_connections() {
    let mut srv = Server::start(&["--cores", "1", "--keepalive-timeout", "60"]);
    let mut conns: Vec<Conn> = (0..50).map(|_| Conn::open(srv.addr)).collect();
    for c in &mut conns {
        c.send(GET);
        assert_eq!(c.read(false).unwrap().status, 200);
    }
    std::thread::sleep(PARKED);
    assert!(srv.stop().success());
    srv.wait_for("stopped gracefully");
    for c in &conns {
        c.expect_closed();
    }
}

#[test]
fn a_new_connection_parked_before_its_first_request_is_served() {
    let srv = Server::start(&["--cores", "1", "--header-timeout", "10"]);
    let mut conns: Vec<Conn> = (0..100).map(|_| Conn::open(srv.addr)).collect();
    // Parked without a byte received ...
    std::thread::sleep(PARKED);
    // ... woken by the first request, then kept alive as usual.
    for round in 0..2 {
        for c in &mut conns {
            c.send(GET);
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let r = c.read(false);
            assert_eq!(
                r.map(|r| (r.status, r.body)),
                Some((200, b"Hello World!".to_vec())),
                "round {round} connection {i}"
            );
        }
    }
}

#[test]
fn a_new_connection_parked_then_trickling_gets_408() {
    let mut srv = Server::start(&["--cores", "1", "--header-timeout", "1"]);
    let mut c = Conn::open(srv.addr);
    std::thread::sleep(PARKED);
    c.send(b"GET / HTTP/1.1\r\n");
    let r = c.read(false).expect("a 408 response");
    assert_eq!(r.status, 408);
    srv.wait_for("request head incomplete after --header-timeout (16 bytes): 408");
}

/// A quiet worker wakes for each request on its ring alone (issue #12: the pump has no timer).
/// Between requests every connection is parked and nothing is armed before the 600 s
/// timeouts (no hot window, no head deadline, no balance check: fewer connections than the
/// balance slack), so a wakeup the park protocol lost would leave the request unanswered and
/// its read would fail after 20 s. Both ways a request reaches a parked pump are exercised:
/// a parked connection turning readable, and a new connection on the listener.
#[test]
fn a_quiet_worker_wakes_for_each_request_without_a_timer() {
    let srv = Server::start(&[
        "--cores",
        "1",
        "--keepalive-timeout",
        "600",
        "--header-timeout",
        "600",
    ]);
    let mut conns: Vec<Conn> = (0..3).map(|_| Conn::open(srv.addr)).collect();
    for c in &mut conns {
        c.send(GET);
        assert_eq!(c.read(false).unwrap().status, 200);
    }
    for round in 0..8 {
        std::thread::sleep(PARKED);
        let c = &mut conns[round % 3];
        c.send(GET);
        assert_eq!(c.read(false).map(|r| r.status), Some(200), "round {round}");
        std::thread::sleep(PARKED);
        assert_eq!(
            crate::support::get(srv.addr, "/").map(|(s, _)| s),
            Some(200),
            "round {round}, new connection"
        );
    }
}
