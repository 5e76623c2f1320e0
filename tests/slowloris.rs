//! Issue #8, slowloris: connections that never finish their request head hold no slot. With
//! a handful of slots, a few hundred such connections keep no normal client from being
//! served, and each gets `408` once `--header-timeout` (a total deadline from the accept, as
//! nginx's `client_header_timeout`) has passed, however steadily it trickles.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{Conn, Server, uwsgi_packet};

/// Never-ending heads in the test (each a descriptor here and one in the server).
const SLOW: usize = 300;
/// Normal requests served while they trickle.
const NORMAL: usize = 20;

/// True if the server has sent nothing on `s` and not closed it (a non-blocking peek).
fn silent(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = s.peek(&mut b);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Write one more header line to every slow connection each `every` until `stop` (errors
/// ignored: the server closes each connection after its 408).
fn trickle(
    slow: &[TcpStream],
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut clones: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for s in &mut clones {
                let _ = s.write_all(b"X-Slow: 1\r\n");
            }
            std::thread::sleep(every);
        }
    })
}

#[test]
fn never_ending_heads_take_no_slot_and_get_408_after_the_header_timeout() {
    // 4 slots; heads must be complete 6 s after the accept; reads may wait 60 s each (a
    // trickling client would never reach an inactivity limit).
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--async",
        "4",
        "--header-timeout",
        "6",
        "--socket-timeout",
        "60",
    ]);
    // 1. SLOW connections send a request line and a header, never the empty line.
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|i| {
            let mut s = TcpStream::connect(srv.addr).unwrap();
            write!(s, "GET /slow/{i} HTTP/1.1\r\nHost: t\r\n").unwrap();
            s
        })
        .collect();
    // 2. ... and keep sending one header line each every 500 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = trickle(&slow, Duration::from_millis(500), stop.clone());
    // 3. Normal clients, each on a new connection accepted after every slow one, are all
    //    answered (a slot held per slow head would leave them waiting for 60 s) ...
    for i in 0..NORMAL {
        let mut c = Conn::open(srv.addr);
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = c.read(false);
        assert_eq!(
            r.map(|r| (r.status, r.body)),
            Some((200, b"Hello World!".to_vec())),
            "normal request {i}; log:\n{}",
            srv.log_text()
        );
    }
    // 4. ... before any slow connection got an answer or was closed: they were served while
    //    every slow head was still in progress, not after the slow ones timed out.
    let answered = slow.iter().filter(|s| !silent(s)).count();
    assert_eq!(
        answered, 0,
        "slow connections answered before the normal ones"
    );
    // 5. Each slow connection gets 408 and a close, although it never stopped sending.
    for (i, s) in slow.iter().enumerate() {
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "slow connection {i} got {text:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    srv.wait_for_count("request head incomplete after --header-timeout", SLOW);
}

#[test]
fn a_connection_that_sends_nothing_gets_408_after_the_header_timeout() {
    let mut srv = Server::start(&["--cores", "1", "--header-timeout", "0.5"]);
    let mut c = Conn::open(srv.addr);
    let r = c.read(false).expect("a 408 response");
    assert_eq!(r.status, 408);
    assert!(c.closed());
    srv.wait_for("no request within --header-timeout: 408");
}

#[test]
fn a_kept_alive_connection_gets_the_header_timeout_from_its_next_first_byte() {
    // Keep-alive idle wait 30 s, head 1 s: an idle connection stays; a started head must
    // finish within 1 s of its first byte.
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--header-timeout",
        "1",
        "--keepalive-timeout",
        "30",
    ]);
    let mut c = Conn::open(srv.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\n");
    assert_eq!(c.read(false).unwrap().status, 200);
    let r = c.read(false).expect("a 408 response");
    assert_eq!(r.status, 408);
    assert!(c.closed());
    srv.wait_for("request head incomplete after --header-timeout");
}

#[test]
fn never_ending_uwsgi_packets_take_no_slot_and_get_408() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--async",
        "2",
        "--socket",
        "127.0.0.1:0",
        "--header-timeout",
        "4",
    ]);
    let addr = srv.uwsgi.clone().unwrap();
    let packet = uwsgi_packet(
        0,
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/"),
            ("PATH_INFO", "/"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTP_HOST", "t"),
        ],
    );
    // 1. Slow clients send the 4-byte header and part of the vars, never the rest.
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(&packet[..10]).unwrap();
            s
        })
        .collect();
    // 2. Whole packets are answered meanwhile.
    for i in 0..10 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&packet).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "request {i}: {text:?}"
        );
    }
    assert_eq!(slow.iter().filter(|s| !silent(s)).count(), 0);
    // 3. Then each slow one gets 408.
    for s in &slow {
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    srv.wait_for("no complete uwsgi packet within --header-timeout");
}
