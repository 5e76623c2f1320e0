//! Harakiri (both layers), background tasks and the `crazy` app, against the real binary.

use std::time::{Duration, Instant};

use crate::support::{Server, get};

#[test]
fn soft_harakiri_cancels_only_the_slow_request() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--harakiri",
        "0.5",
        "--harakiri-verbose",
        "--mount",
        "/sleep=sleep",
    ]);
    let addr = srv.addr;
    let slow = std::thread::spawn(move || {
        let t0 = Instant::now();
        (get(addr, "/sleep?ms=5000"), t0.elapsed())
    });
    // A sibling on the same (only) worker, overlapping the slow one, finishes normally.
    let sibling = get(addr, "/sleep?ms=200");
    assert_eq!(sibling, Some((200, "Hello World!".to_owned())));
    let (slow, took) = slow.join().unwrap();
    let (status, _) = slow.expect("a 504, not a dropped connection");
    assert_eq!(status, 504);
    assert!(
        took < Duration::from_secs(4),
        "cancelled at the deadline, not at the end: {took:?}"
    );
    let line = srv.wait_for("HARAKIRI ON WORKER 0 SLOT");
    assert!(line.contains("\"GET /sleep?ms=5000\""), "{line}");
    assert!(line.contains("waiting on: sleep"), "{line}");
    // The worker was not replaced and still serves.
    assert_eq!(get(addr, "/"), Some((200, "Hello World!".to_owned())));
    assert!(!srv.drain().iter().any(|l| l.contains("respawn")));
}

#[test]
fn hard_harakiri_replaces_a_stuck_worker_and_loses_nothing_else() {
    let mut srv = Server::start(&["--cores", "2", "--harakiri", "0.5", "--mount", "/spin=spin"]);
    let addr = srv.addr;
    let spin = std::thread::spawn(move || get(addr, "/spin?ms=20000"));
    // Connections the worker took before it got stuck die with it (as in uWSGI); the claim
    // is about requests sent while it is stuck: wait until it is.
    srv.wait_for("spin: burning CPU");
    // Meanwhile, keep sending ordinary requests: every one must succeed.
    let t0 = Instant::now();
    let mut served = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        let got = get(addr, "/");
        assert_eq!(
            got,
            Some((200, "Hello World!".to_owned())),
            "request {served} at {:?}; log:\n{}",
            t0.elapsed(),
            srv.drain().join("\n")
        );
        served += 1;
    }
    assert!(served > 10);
    // The spinning request's worker was killed: no response for it.
    assert_eq!(spin.join().unwrap(), None);
    let kill = srv.wait_for("executor stuck");
    assert!(kill.contains("\"GET /spin?ms=20000\""), "{kill}");
    srv.wait_for("by harakiri: respawning");
    srv.wait_for("respawned worker");
    // The replacement serves.
    for _ in 0..20 {
        assert_eq!(get(addr, "/"), Some((200, "Hello World!".to_owned())));
    }
}

#[test]
fn started_response_is_cut_and_user_harakiri_moves_the_deadline() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--harakiri",
        "0.3",
        "--mount",
        "/crazy=crazy",
        "--mount",
        "/sleep=sleep",
    ]);
    // crazy has streamed its first line when the deadline passes: no 504 is possible, the
    // body is cut (no last chunk) and the connection closed.
    let (status, body) = get(srv.addr, "/crazy?sleep_ms=2000").unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "sleeping for 3 seconds...<br/>[truncated]");
    srv.wait_for("\"GET /crazy?sleep_ms=2000\" from");
    // The handler extends its own deadline past --harakiri: it completes.
    assert_eq!(
        get(srv.addr, "/sleep?ms=600&harakiri=5"),
        Some((200, "Hello World!".to_owned()))
    );
    // ... or removes it.
    assert_eq!(
        get(srv.addr, "/sleep?ms=500&harakiri=0"),
        Some((200, "Hello World!".to_owned()))
    );
    // ... or shortens it: cancelled long before a (large) --harakiri would have.
    let srv = Server::start(&[
        "--cores",
        "1",
        "--harakiri",
        "20",
        "--mount",
        "/sleep=sleep",
    ]);
    let t0 = Instant::now();
    assert_eq!(
        get(srv.addr, "/sleep?ms=30000&harakiri=0.1").map(|r| r.0),
        Some(504)
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[test]
fn crazy_follows_the_seed_sequence_and_its_task_outlives_the_response() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--mount",
        "/crazy=crazy",
        "--crazy-names",
        "localhost",
        "--crazy-names",
        "no-such-host.invalid",
    ]);
    let (status, body) = get(srv.addr, "/crazy?sleep_ms=100&bg_ms=50").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "sleeping for 3 seconds...<br/>done<br>getting some ips...<br/>ip = 127.0.0.1<br/>ip = None<br/>"
    );
    // The joined long task ran before the response; the background task logs after it.
    let response_logged = srv.wait_for("GET /crazy?sleep_ms=100&bg_ms=50 => 200");
    let last = srv.wait_for("background task 9");
    let log = srv.drain();
    let pos = |needle: &str| log.iter().position(|l| l.contains(needle)).unwrap();
    assert!(pos("long task 9") < pos(&response_logged));
    assert!(pos(&response_logged) < pos(&last));
}

#[test]
fn sigterm_lets_requests_and_background_tasks_finish() {
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--mount",
        "/crazy=crazy",
        "--reload-mercy",
        "10",
    ]);
    let addr = srv.addr;
    let client = std::thread::spawn(move || get(addr, "/crazy?sleep_ms=500&bg_ms=50"));
    // The request is in its handler (its joined task has run): stop the server now.
    srv.wait_for("long task 9");
    let status = srv.stop();
    assert!(status.success(), "{status:?}");
    // The request in progress completed, whole.
    let (code, body) = client.join().unwrap().expect("a response");
    assert_eq!(code, 200);
    assert!(
        body.starts_with("sleeping for 3 seconds...<br/>done<br>"),
        "{body}"
    );
    assert!(!body.contains("[truncated]"), "{body}");
    // Its background task ran to the end before the worker exited.
    let log = srv.drain().to_vec();
    let pos = |needle: &str| log.iter().position(|l| l.contains(needle));
    assert!(pos("background task 9").is_some(), "{}", log.join("\n"));
    assert!(pos("background task 9") < pos("stopped gracefully"));
}
