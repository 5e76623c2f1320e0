//! The gevent engine (`--gevent N`, `--features python`): gevent's loop on the worker's ring,
//! requests in gevent greenlets, monkey-patched apps, the seed's examples, harakiri.
//!
//! Needs gevent, flask and requests importable: set `RINGSGI_TEST_VENV` to a virtualenv made
//! with `tests/python_apps/requirements-gevent.txt`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{Server, get, raw_exchange};

fn app(name: &str) -> String {
    format!("{}/tests/python_apps/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> String {
    format!("{}/examples/python", env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> Vec<String> {
    match std::env::var("RINGSGI_TEST_VENV") {
        Ok(v) if !v.is_empty() => vec!["--virtualenv".into(), v],
        _ => Vec::new(),
    }
}

fn start(extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec!["--cores".into(), "1".into()];
    args.extend(venv());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&refs)
}

/// Send `n` GETs of `target` on `n` connections opened first, then read every response:
/// the statuses and bodies, in order.
fn concurrent_gets(addr: std::net::SocketAddr, target: &str, n: usize) -> Vec<(u16, String)> {
    let mut conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            c,
            "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
    }
    conns
        .into_iter()
        .map(|mut c| {
            let mut raw = Vec::new();
            let _ = c.read_to_end(&mut raw);
            let text = String::from_utf8_lossy(&raw).into_owned();
            let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
            (status, body)
        })
        .collect()
}

/// Run `script` with `--gevent 10 --pyrun` (and the venv); its stdout, after checking that
/// it exited 0.
fn pyrun_gevent(script: &str) -> String {
    let mut args = vec![
        "--gevent".to_owned(),
        "10".into(),
        "--pyrun".into(),
        app(script),
    ];
    args.extend(venv());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn gevents_loop_is_ringsgis_and_a_pyrun_script_can_wait() {
    let stdout = pyrun_gevent("gevent_script.py");
    assert!(stdout.contains("loop _ringsgi_gevent RingLoop"), "{stdout}");
    assert!(stdout.contains("waited [1]"), "{stdout}");
}

#[test]
fn a_loop_run_inside_the_hubs_loop_leaves_the_hubs_completions_alone() {
    let stdout = pyrun_gevent("gevent_nested.py");
    assert!(stdout.contains("nested ok [b'hello']"), "{stdout}");
}

#[test]
fn requests_run_in_gevent_greenlets_on_ringsgis_loop() {
    let srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_app.py")]);
    assert_eq!(get(srv.addr, "/loop"), Some((200, "RingLoop".into())));
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
    // The app created the hub at import: its parent is still the engine's greenlet.
    assert_eq!(get(srv.addr, "/hubparent"), Some((200, "engine".into())));
    // The uwsgi module finds the request from its greenlet, across gevent switches, and its
    // waits work.
    let (status, body) = get(srv.addr, "/uwsgi").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("same"), "{body}");
    // A subprocess started in a request (gevent's fork + exec, the child watched by the loop).
    assert_eq!(
        get(srv.addr, "/subprocess"),
        Some((200, "child says hi\n".into()))
    );
    // A request body read from wsgi.input.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = vec![b'x'; 100_000];
    write!(
        c,
        "POST /post HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(&body).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.ends_with("got 100000"), "{out}");
}

#[test]
fn the_crazy_example_gives_uwsgis_output() {
    let mut srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_crazy.py")]);
    let (status, body) = get(srv.addr, "/").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "sleeping for 3 seconds...<br/>done<br>getting some ips...<br/>\
         ip = 127.0.0.1<br/>ip = 127.0.0.1<br/>"
    );
    // long_task ran inside the request; bg_task goes on after the response ended.
    srv.wait_for("GET / => 200");
    srv.wait_for("background task 9");
    let log = srv.log_text();
    let numbers: Vec<&str> = log
        .lines()
        .filter(|l| l.len() == 1 && l.as_bytes()[0].is_ascii_digit())
        .collect();
    assert_eq!(
        numbers,
        ["1", "2", "3", "4", "5", "6", "7", "8", "9"],
        "{log}"
    );
    let served = log.find("GET / => 200").unwrap();
    let last_bg = log.find("background task 9").unwrap();
    assert!(last_bg > served, "bg_task outlived its request:\n{log}");
}

#[test]
fn the_articles_flask_app_sleeps_100_requests_at_once_with_monkey_patching() {
    let pp = examples();
    let srv = start(&[
        "--gevent",
        "100",
        "--gevent-monkey-patch",
        "--pythonpath",
        &pp,
        "--module",
        "flask_sleep:app",
    ]);
    let started = Instant::now();
    let results = concurrent_gets(srv.addr, "/", 100);
    let took = started.elapsed();
    assert!(
        results
            .iter()
            .all(|(s, b)| *s == 200 && b == "Hello World!"),
        "{results:?}"
    );
    // All 100 slept at once: time.sleep waited in gevent's hub, on the ring.
    assert_eq!(get(srv.addr, "/inflight"), Some((200, "100".into())));
    eprintln!("100 concurrent time.sleep(1) requests took {took:?}");
}

/// An upstream that answers nobody until `n` requests are waiting on it at once: it
/// deadlocks (the test times out) unless the server's views wait for it concurrently.
fn barrier_upstream(n: usize) -> (u16, std::thread::JoinHandle<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut waiting = Vec::new();
        while waiting.len() < n && Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|k| k > 0) {
                        if line == "\r\n" {
                            break;
                        }
                        line.clear();
                    }
                    waiting.push(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("upstream accept: {e}"),
            }
        }
        let seen = waiting.len();
        for mut s in waiting {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
        seen
    });
    (port, h)
}

#[test]
fn a_flask_view_calling_a_slow_upstream_with_requests_waits_concurrently() {
    let pp = examples();
    let srv = start(&[
        "--gevent",
        "100",
        "--gevent-monkey-patch",
        "--pythonpath",
        &pp,
        "--module",
        "flask_upstream:app",
    ]);
    let (port, upstream) = barrier_upstream(20);
    let results = concurrent_gets(srv.addr, &format!("/?port={port}"), 20);
    assert_eq!(upstream.join().unwrap(), 20);
    assert!(
        results
            .iter()
            .all(|(s, b)| *s == 200 && b == "upstream said: ok"),
        "{results:?}"
    );
    assert_eq!(get(srv.addr, "/inflight"), Some((200, "20".into())));
}

#[test]
fn harakiri_kills_the_requests_greenlet_its_close_runs_and_the_client_gets_504() {
    let mut srv = start(&[
        "--gevent",
        "10",
        "--harakiri",
        "1",
        "--wsgi-file",
        &app("gevent_app.py"),
    ]);
    assert_eq!(get(srv.addr, "/slow").map(|r| r.0), Some(504));
    srv.wait_for("HARAKIRI ON WORKER 0");
    srv.wait_for("slow body closed");
    // The worker goes on serving.
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
    // The hub runs as no request: a request blocking the core for 0.6 s (under its own 1 s
    // deadline) after /slow's deadline passed is not taken for /slow stuck past its deadline
    // (the hub once ran with the deadline of the request that started it: SIGKILL).
    let (status, body) = get(srv.addr, "/block?0.6").unwrap();
    assert_eq!(status, 200, "{body}");
    let log = srv.log_text();
    assert!(!log.contains("executor stuck"), "{log}");
}

#[test]
fn a_request_greenlet_that_never_yields_is_named_by_the_hard_harakiri() {
    let mut srv = start(&[
        "--gevent",
        "10",
        "--harakiri",
        "1",
        "--wsgi-file",
        &app("gevent_app.py"),
    ]);
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
    // A request greenlet that never yields (a real time.sleep): the master names it (not the hub, nor
    // the first request of the worker) and kills the worker.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.write_all(b"GET /block?30 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let line = srv.wait_for("executor stuck");
    assert!(line.contains("GET /block?30"), "{line}");
    // Its replacement serves.
    srv.wait_for_count(" ready (pid ", 2);
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn a_blocking_call_without_monkey_patching_stalls_only_its_worker_and_is_named() {
    let mut args: Vec<String> = vec!["--cores".into(), "2".into()];
    args.extend(venv());
    for a in ["--gevent", "10", "--wsgi-file", &app("gevent_app.py")] {
        args.push(a.into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut srv = Server::start(&refs);
    // A real time.sleep(3) (gevent_app.py does not monkey-patch): its worker stalls.
    let mut blocked = TcpStream::connect(srv.addr).unwrap();
    blocked
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    blocked
        .write_all(b"GET /block?3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // The master reports the blocked executor and names the request holding it.
    let line = srv.wait_for("executor blocked for");
    assert!(line.contains("GET /block?3 "), "{line}");
    // Meanwhile the other worker serves.
    let (status, other) = get(srv.addr, "/pid").unwrap();
    assert_eq!(status, 200, "{other}");
    let mut out = String::new();
    blocked.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1);
    let parse = |b: &str| -> (u32, f64) {
        let (pid, t) = b.trim().split_once(' ').unwrap();
        (pid.parse().unwrap(), t.parse().unwrap())
    };
    let (blocked_pid, blocked_end) = parse(body);
    let (other_pid, other_at) = parse(&other);
    assert_ne!(blocked_pid, other_pid);
    // Served while the blocked worker was still inside its time.sleep (CLOCK_MONOTONIC is
    // the same in both processes).
    assert!(other_at < blocked_end, "{other} vs {body}");
}

#[test]
fn a_greenlet_raising_after_its_request_ended_is_logged_and_harms_nothing() {
    let mut srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_app.py")]);
    assert_eq!(get(srv.addr, "/bgraise"), Some((200, "spawned".into())));
    srv.wait_for("bg boom after the request");
    // The hub and the worker go on: requests, background greenlets, gevent waits.
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
    assert_eq!(get(srv.addr, "/bg"), Some((200, "spawned".into())));
    srv.wait_for("background greenlet done");
    let (status, body) = get(srv.addr, "/uwsgi").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn an_empty_chunk_after_a_uwsgi_wait_still_does_the_wait() {
    // Non-empty chunks no longer switch the greenlet out under --gevent; `yield ""` after
    // `uwsgi.async_sleep` (the seed's idiom) still must.
    let srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_app.py")]);
    assert_eq!(get(srv.addr, "/yieldwait"), Some((200, "waited".into())));
}

#[test]
fn a_chunk_pushed_before_the_app_raises_is_sent_before_the_cut() {
    // Under --gevent a chunk is not a switch point: it waits in the exchange until the
    // executor runs. An app raising right after it must still have it sent (a 200 cut after
    // the chunk, as when every chunk went out at once), not turned into a 500.
    let mut srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_app.py")]);
    let text = raw_exchange(srv.addr, "GET /chunkthenraise HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("first chunk;"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut response looks complete: {text}"
    );
    srv.wait_for("boom after a chunk");
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn a_client_gone_mid_request_ends_its_greenlet_and_runs_close() {
    let mut srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_app.py")]);
    {
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0 && buf.starts_with(b"HTTP/1.1 200"));
        // Dropped here with the stream unread: the next writes fail.
    }
    srv.wait_for("endless body closed");
    srv.wait_for("GET /endless => 200");
    // The slot came back and the hub serves on.
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn wait_for_hub_lets_a_stopping_worker_finish_its_background_greenlets() {
    let mut srv = start(&[
        "--gevent",
        "10",
        "--gevent-wait-for-hub",
        "--wsgi-file",
        &app("gevent_app.py"),
    ]);
    assert_eq!(get(srv.addr, "/bg"), Some((200, "spawned".into())));
    srv.signal("TERM");
    srv.wait_for("worker 0 stopped gracefully");
    let log = srv.log_text();
    let done = log
        .find("background greenlet done")
        .unwrap_or_else(|| panic!("the background greenlet was not waited for:\n{log}"));
    let stopped = log.find("worker 0 stopped gracefully").unwrap();
    assert!(done < stopped, "{log}");
}

#[test]
fn a_uwsgi_signal_handler_runs_in_a_greenlet_of_the_hub() {
    let mut srv = start(&["--gevent", "10", "--wsgi-file", &app("gevent_app.py")]);
    assert_eq!(get(srv.addr, "/signal"), Some((200, "raised".into())));
    srv.wait_for("gevent signal 17 handled by worker 1");
    // The hub goes on serving.
    assert_eq!(get(srv.addr, "/loop"), Some((200, "RingLoop".into())));
}

#[test]
fn a_stopping_worker_names_its_busy_cores_as_uwsgi_does_and_kills_them_after_the_mercy() {
    let mut srv = start(&[
        "--gevent",
        "10",
        "--reload-mercy",
        "2",
        "--wsgi-file",
        &app("gevent_app.py"),
    ]);
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"GET /slow?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    srv.wait_for("slow started");
    srv.signal("TERM");
    let line = srv.wait_for("is managing");
    assert!(
        line.contains("worker 0 (pid: ")
            && line.contains("core ")
            && line.contains("is managing \"GET /slow?x=1\" for 127.0.0.1"),
        "{line}"
    );
    srv.wait_for("waiting for 1 running requests on worker 0 (pid: ");
    // After --reload-mercy the request's greenlet is killed (its close() runs), then the
    // worker stops.
    srv.wait_for("--reload-mercy passed with 1 requests");
    srv.wait_for("slow body closed");
    // The client gets an answer (the app raised: 500), not a reset.
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 500"), "{out}");
    let status = srv.stop();
    assert!(status.success(), "{status:?}\n{}", srv.log_text());
}

#[test]
fn background_greenlets_are_waited_for_only_within_the_reload_mercy() {
    let mut srv = start(&[
        "--gevent",
        "10",
        "--gevent-wait-for-hub",
        "--reload-mercy",
        "1",
        "--wsgi-file",
        &app("gevent_app.py"),
    ]);
    assert_eq!(get(srv.addr, "/bgforever"), Some((200, "spawned".into())));
    srv.signal("TERM");
    // The hub still has the greenlet when the mercy ends: the worker stops anyway.
    srv.wait_for("--reload-mercy passed");
    let status = srv.stop();
    assert!(status.success(), "{status:?}\n{}", srv.log_text());
}

#[test]
fn a_sighup_reload_under_load_loses_no_gevent_request() {
    let mut args: Vec<String> = vec!["--cores".into(), "2".into()];
    args.extend(venv());
    for a in [
        "--gevent",
        "10",
        "--reload-mercy",
        "20",
        "--wsgi-file",
        &app("gevent_app.py"),
    ] {
        args.push(a.into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut srv = Server::start(&refs);
    // Requests that wait 20 ms in gevent: every reload finds some in progress.
    let load = crate::lifecycle::Load::start(srv.addr, "/gsleep", 8);
    load.wait_more(100);
    srv.signal("HUP");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 2);
    load.wait_more(100);
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{ok} ok, failures: {failures:?}");
    let log = srv.drain().to_vec();
    assert!(
        !log.iter()
            .any(|l| l.contains("taking too much time to die")
                || l.contains("--reload-mercy passed")),
        "{}",
        log.join("\n")
    );
}
