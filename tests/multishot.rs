//! The multishot receive of kept-alive connections (issue #12, stop 13): from a connection's
//! first idle wait its requests arrive through one multishot receive, which stays armed while
//! they are served. Whatever else reads the socket (the rest of a head, a body, a linger,
//! parking, a drain) must see every byte in order.
//!
//! Each test first serves one request on the connection, so that its multishot is armed when
//! the interesting bytes come.

use std::time::Duration;

use crate::support::{Conn, Server};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// Shorter than the hot window (100 ms): the multishot is still armed.
const PAUSE: Duration = Duration::from_millis(30);
/// Longer than the hot window: the connection is parked (its multishot stopped).
const PARKED: Duration = Duration::from_millis(300);

fn server() -> Server {
    Server::start(&[
        "--cores",
        "1",
        "--mount",
        "/echo=echo",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/=hello",
    ])
}

/// A kept-alive connection whose multishot is armed: one request served.
fn warm(srv: &Server) -> Conn {
    let mut c = Conn::open(srv.addr);
    c.send(GET);
    assert_eq!(c.read(false).unwrap().body, b"Hello World!");
    c
}

/// The echo app's body for a request to `target` with `body`: its request line is first.
fn echoed(c: &mut Conn) -> String {
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 200, "{}", r.head);
    String::from_utf8(r.body).unwrap()
}

/// A body whose head came through the multishot is read whole, with the rest of the body
/// arriving later (read with plain receives once the multishot is stopped), and the head
/// itself in pieces (the rest read through the multishot); the connection serves on.
#[test]
fn a_body_after_a_multishot_received_head_is_read_whole() {
    let srv = server();
    let mut c = warm(&srv);
    for round in 0..3 {
        c.send(b"POST /echo/a HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
        std::thread::sleep(PAUSE);
        c.send(b"56789");
        let body = echoed(&mut c);
        assert!(body.starts_with("POST /echo/a HTTP/1.1\n"), "{body}");
        assert!(body.ends_with("\n\n0123456789"), "round {round}: {body:?}");
        // A head in three pieces, its body with the last one.
        c.send(b"POST /echo/b HTTP/1.1\r\nHo");
        std::thread::sleep(PAUSE);
        c.send(b"st: t\r\nContent-Length: 3\r\n");
        std::thread::sleep(PAUSE);
        c.send(b"\r\nxyz");
        let body = echoed(&mut c);
        assert!(body.starts_with("POST /echo/b HTTP/1.1\n"), "{body}");
        assert!(body.ends_with("\n\nxyz"), "round {round}: {body:?}");
        // A chunked body whose head comes alone.
        c.send(b"POST /echo/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        std::thread::sleep(PAUSE);
        c.send(b"3\r\nabc\r\n");
        std::thread::sleep(PAUSE);
        c.send(b"0\r\n\r\n");
        let body = echoed(&mut c);
        assert!(body.ends_with("\n\nabc"), "round {round}: {body:?}");
        c.send(GET);
        assert_eq!(c.read(false).unwrap().body, b"Hello World!");
        // A body that arrives while the app sleeps, before anything reads it: the server
        // drains it after the response (a multishot left armed would have taken it, and the
        // drain would wait in vain), and the next request is served.
        c.send(b"POST /sleep?ms=100 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
        std::thread::sleep(PAUSE);
        c.send(b"abcde");
        assert_eq!(c.read(false).unwrap().body, b"Hello World!");
        c.send(GET);
        assert_eq!(
            c.read(false).unwrap().body,
            b"Hello World!",
            "round {round}"
        );
    }
}

/// Requests pipelined on a kept-alive connection (all in one write, one split across writes
/// in the middle of its head, and one whose pieces both arrive while the request before it
/// runs) are answered in order, each exactly once.
#[test]
fn pipelined_requests_after_a_kept_alive_request_come_in_order() {
    let srv = server();
    let mut c = warm(&srv);
    for round in 0..3 {
        let mut batch = Vec::new();
        for i in 0..5 {
            batch.extend_from_slice(
                format!("GET /echo/{round}/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            );
        }
        batch.extend_from_slice(b"GET /echo/split HTTP/1.1\r\nHo");
        c.send(&batch);
        std::thread::sleep(PAUSE);
        c.send(b"st: t\r\n\r\n");
        for i in 0..5 {
            let body = echoed(&mut c);
            assert!(
                body.starts_with(&format!("GET /echo/{round}/{i} HTTP/1.1\n")),
                "{body}"
            );
        }
        assert!(echoed(&mut c).starts_with("GET /echo/split HTTP/1.1\n"));
        // A request that arrives in two pieces while the one before it is served: both pieces
        // wait in the multishot's queue, and the rest of the head is read from there.
        c.send(b"GET /sleep?ms=100 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/late HTTP/1.1\r\nHo");
        std::thread::sleep(PAUSE);
        c.send(b"st: t\r\n\r\n");
        assert_eq!(c.read(false).unwrap().body, b"Hello World!");
        assert!(echoed(&mut c).starts_with("GET /echo/late HTTP/1.1\n"));
    }
}

/// Many requests on one connection (several times the pool's 256 buffers: each one taken by
/// a result goes back), with pauses that park the connection (its multishot stopped, then
/// armed again when it wakes) and pauses within the hot window.
#[test]
fn many_kept_alive_requests_with_parking_in_between() {
    let srv = server();
    let mut c = warm(&srv);
    for i in 0..1500 {
        if i % 500 == 250 {
            std::thread::sleep(PARKED);
        } else if i % 100 == 50 {
            std::thread::sleep(PAUSE);
        }
        c.send(GET);
        assert_eq!(c.read(false).unwrap().body, b"Hello World!", "request {i}");
    }
}

/// More kept-alive connections than the pool has buffers, all sending at once, several
/// times: every request is answered (a multishot that found the pool empty ends, and its
/// connection takes its bytes with a plain receive).
#[test]
fn more_connections_than_pool_buffers_sending_at_once() {
    let srv = Server::start(&["--cores", "1", "--async", "64"]);
    let mut conns: Vec<Conn> = (0..400).map(|_| Conn::open(srv.addr)).collect();
    for round in 0..4 {
        for c in &mut conns {
            c.send(GET);
        }
        for (i, c) in conns.iter_mut().enumerate() {
            assert_eq!(
                c.read(false).map(|r| r.body),
                Some(b"Hello World!".to_vec()),
                "round {round} connection {i}"
            );
        }
    }
}

/// A graceful stop while kept-alive connections wait with their multishot armed (within the
/// hot window): each is closed (the drain's shutdown ends its multishot), after a request
/// that had already arrived is answered.
#[test]
fn a_graceful_stop_closes_connections_waiting_on_their_multishot() {
    let mut srv = Server::start(&["--cores", "1", "--keepalive-timeout", "60"]);
    let mut conns: Vec<Conn> = (0..20).map(|_| warm(&srv)).collect();
    for c in &mut conns {
        c.send(GET);
        assert_eq!(c.read(false).unwrap().status, 200);
    }
    assert!(srv.stop().success());
    srv.wait_for("stopped gracefully");
    for c in &conns {
        c.expect_closed();
    }
}

/// A bad head after a multishot-received request gets its answer and a close (the multishot
/// is dropped before the lingering close reads the socket), and the worker serves on.
#[test]
fn a_bad_head_on_a_kept_alive_connection_is_answered_and_closed() {
    let srv = server();
    let mut c = warm(&srv);
    c.send(b"BAD REQUEST LINE\r\n\r\n");
    let r = c.read(false).expect("an answer");
    assert_eq!(r.status, 400);
    assert!(c.closed());
    let mut d = warm(&srv);
    d.send(GET);
    assert_eq!(d.read(false).unwrap().status, 200);
}

/// Harakiri on a kept-alive connection whose multishot is armed: the request gets 504 and
/// the connection is closed (its multishot dropped, the driver reaping its final result),
/// and the worker serves the next connections.
#[test]
fn harakiri_on_a_kept_alive_connection_closes_it_and_harms_nothing() {
    let srv = Server::start(&[
        "--cores",
        "1",
        "--harakiri",
        "0.5",
        "--mount",
        "/sleep=sleep",
        "--mount",
        "/=hello",
    ]);
    for _ in 0..3 {
        let mut c = warm(&srv);
        c.send(b"GET /sleep?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read(false).expect("an answer").status, 504);
        assert!(c.closed());
    }
    let mut d = warm(&srv);
    d.send(GET);
    assert_eq!(d.read(false).unwrap().status, 200);
}
