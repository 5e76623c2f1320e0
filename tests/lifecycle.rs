//! The master's lifecycle with the real binary and real UNIX signals: graceful reload and
//! recycling under load (nothing lost), uWSGI signals, the stats and metrics servers.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::{Conn, Server, TempDir, get, start_fails};

/// Clients sending requests in a loop over kept-alive connections, counting what fails.
///
/// A request is retried on a new connection only when the server closed a connection that
/// had already served a request without sending any byte of the next response: every HTTP
/// client does that (RFC 9112 §9.3.1), and it is how a draining server closes idle
/// connections. Anything else (refused connection, error status, response cut short, a fresh
/// connection closed without an answer) is a failure.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(addr: SocketAddr, target: &'static str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    let fail = |what: String| failures.lock().unwrap().push(what);
                    let mut conn: Option<(Conn, bool)> = None;
                    let req = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
                    while !stop.load(Ordering::Relaxed) {
                        if conn.is_none() {
                            match Conn::try_open(addr) {
                                Ok(c) => conn = Some((c, false)),
                                Err(e) => {
                                    fail(format!("connect: {e}"));
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            }
                        }
                        let (c, reused) = conn.as_mut().unwrap();
                        let sent = c.stream.write_all(req.as_bytes());
                        match (sent, c.read_or_closed()) {
                            (Ok(()), Ok(r)) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                if r.header("connection") == Some("close") {
                                    conn = None;
                                } else {
                                    *reused = true;
                                }
                            }
                            (Ok(()), Ok(r)) => {
                                fail(format!("status {}", r.status));
                                conn = None;
                            }
                            (_, Err(true)) if *reused => conn = None,
                            (Err(e), _) if *reused => {
                                let _ = e;
                                conn = None;
                            }
                            (sent, r) => {
                                fail(format!(
                                    "request failed: send {sent:?}, response {:?}",
                                    r.map(|r| r.status)
                                ));
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait (at most 30 s) until `n` more requests succeeded.
    pub(crate) fn wait_more(&self, n: u64) {
        let target = self.ok() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok() < target {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} ok; failures: {:?}",
                self.ok(),
                self.failures.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[test]
fn sighup_reload_under_load_loses_no_request() {
    let mut srv = Server::start(&[
        "--cores",
        "2",
        "--mount",
        "/sleep=sleep",
        "--reload-mercy",
        "20",
    ]);
    // Requests that last 20 ms: every reload finds some in progress on the old workers.
    let load = Load::start(srv.addr, "/sleep?ms=20", 8);
    load.wait_more(100);
    srv.signal("HUP");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 2);
    load.wait_more(100);
    srv.signal("HUP");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 4);
    load.wait_more(100);
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{ok} ok, failures: {failures:?}");
    let log = srv.drain().to_vec();
    // Each old worker was told to drain only once its replacement was accepting.
    assert_eq!(
        log.iter().filter(|l| l.contains("draining it")).count(),
        4,
        "{}",
        log.join("\n")
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("taking too much time to die"))
    );
}

#[test]
fn max_requests_recycles_workers_under_load_without_failures() {
    // Every 60 requests under 6 clients: hundreds of replacements a second, each a drain
    // that stops accepting while its successor starts (issue #12).
    let mut srv = Server::start(&["--cores", "2", "--max-requests", "60"]);
    let load = Load::start(srv.addr, "/", 6);
    srv.wait_for_count("after draining (--max-requests 60 reached)", 40);
    load.wait_more(50);
    let (ok, failures) = load.finish();
    assert!(failures.is_empty(), "{ok} ok, failures: {failures:?}");
    assert!(ok >= 40 * 60, "{ok}");
}

#[test]
fn signals_reach_one_or_all_workers_and_timers_fire() {
    let mut srv = Server::start(&[
        "--cores",
        "2",
        "--mount",
        "/signals=signals",
        "--timer",
        "10 0.2",
    ]);
    // The timer raises 10, registered for "workers": both run it, repeatedly.
    srv.wait_for_count("signal 10 handled by worker 0", 2);
    srv.wait_for_count("signal 10 handled by worker 1", 2);
    // 12 is registered for "worker1" (uWSGI's 1-based name of worker 0).
    assert_eq!(
        get(srv.addr, "/signals?raise=12"),
        Some((200, "raised signal 12\n".into()))
    );
    srv.wait_for("signal 12 handled by worker 0");
    // 11 goes to one worker at a time, in turn.
    for _ in 0..2 {
        assert_eq!(get(srv.addr, "/signals?raise=11").unwrap().0, 200);
    }
    srv.wait_for_count("signal 11 handled by worker", 2);
    let log = srv.drain().to_vec();
    let by = |w: &str| {
        log.iter()
            .filter(|l| l.contains(&format!("signal 11 handled by worker {w}")))
            .count()
    };
    assert_eq!((by("0"), by("1")), (1, 1), "{}", log.join("\n"));
    assert!(
        !log.iter()
            .any(|l| l.contains("signal 12 handled by worker 1"))
    );
    // A signal nobody registered is reported, not delivered.
    assert_eq!(get(srv.addr, "/signals?raise=99").unwrap().0, 200);
    srv.wait_for("signal 99 raised, but no worker registered a handler for it");
}

#[test]
fn a_signal_handler_runs_in_its_own_task_while_requests_go_on() {
    let mut srv = Server::start(&["--cores", "1", "--mount", "/signals=signals"]);
    assert_eq!(get(srv.addr, "/signals?raise=13").unwrap().0, 200);
    srv.wait_for("signal 13 slow handler started on worker 0");
    // The handler sleeps 1.5 s; the worker serves meanwhile.
    assert_eq!(get(srv.addr, "/?after-signal").unwrap().0, 200);
    let served = srv.wait_for("GET /?after-signal => 200");
    let done = srv.wait_for("signal 13 slow handler done on worker 0");
    let log = srv.drain();
    let pos = |needle: &str| log.iter().position(|l| l == needle).unwrap();
    assert!(pos(&served) < pos(&done), "{}", log.join("\n"));
}

/// Read everything a stats server sends on connect.
fn fetch(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The address a log line `... on ADDR` names.
fn addr_after(line: &str, marker: &str) -> String {
    line.split(marker).nth(1).unwrap().trim().to_owned()
}

#[test]
fn stats_document_metrics_and_uwsgitop() {
    let mut srv = Server::start(&[
        "--cores",
        "2",
        "--async",
        "7",
        "--mount",
        "/sleep=sleep",
        "--stats",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let stats = addr_after(&srv.wait_for("stats server (JSON) on "), " on ");
    let metrics = addr_after(&srv.wait_for("metrics server (Prometheus"), " on ");
    for _ in 0..5 {
        assert_eq!(get(srv.addr, "/").unwrap().0, 200);
    }
    // A worker counts a request just after its last byte went out, so the client may read
    // the stats a moment before: wait (bounded) until the five are counted and done.
    let deadline = Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let doc: serde_json::Value = serde_json::from_str(&fetch(&stats)).unwrap();
        let counted: u64 = doc["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["requests"].as_u64().unwrap())
            .sum();
        if counted == 5 && doc["busy_slots"] == 0 {
            break doc;
        }
        assert!(Instant::now() < deadline, "requests never counted: {doc}");
    };
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["pid"], srv.pid());
    assert_eq!(doc["sockets"][0]["name"], srv.addr.to_string());
    assert_eq!(doc["sockets"][0]["proto"], "http");
    let workers = doc["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let mut total = 0;
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["id"], i + 1);
        assert!(w["pid"].as_i64().unwrap() > 0);
        assert_eq!(w["status"], "idle");
        assert_eq!(w["slots"], 7);
        assert_eq!(w["busy_slots"], 0);
        assert_eq!(w["accepting"], 1);
        assert!(w["rss"].as_u64().unwrap() > 0);
        let cores = w["cores"].as_array().unwrap();
        assert_eq!(cores.len(), 7);
        let core_requests: u64 = cores.iter().map(|c| c["requests"].as_u64().unwrap()).sum();
        assert_eq!(core_requests, w["requests"].as_u64().unwrap());
        assert!(cores.iter().all(|c| c["in_request"] == 0));
        total += w["requests"].as_u64().unwrap();
        // Every request went to the default app (mount point ""); none to /sleep.
        let apps = w["apps"].as_array().unwrap();
        let app = |mp: &str| apps.iter().find(|a| a["mountpoint"] == mp).unwrap();
        assert_eq!(app("")["requests"], w["requests"]);
        assert_eq!(app("/sleep")["requests"], 0);
    }
    assert_ne!(workers[0]["pid"], workers[1]["pid"]);
    assert_eq!(total, 5);
    assert_eq!(doc["busy_slots"], 0);
    assert_eq!(doc["slots"], 14);

    // A request in progress shows as a busy slot with its start time.
    let addr = srv.addr;
    let slow = std::thread::spawn(move || get(addr, "/sleep?ms=3000"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let doc: serde_json::Value = serde_json::from_str(&fetch(&stats)).unwrap();
        // The slot is taken when the request's first byte arrives, its entry written once
        // the head is parsed: wait for both.
        let in_request = doc["workers"].as_array().unwrap().iter().any(|w| {
            w["cores"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["in_request"] == 1)
        });
        if doc["busy_slots"] == 1 && in_request {
            break doc;
        }
        assert!(Instant::now() < deadline, "no busy slot seen: {doc}");
    };
    let w = busy["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["busy_slots"] == 1)
        .unwrap();
    assert_eq!(w["status"], "busy");
    let core = w["cores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["in_request"] == 1)
        .unwrap();
    assert!(core["req_info"]["request_start"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        core["vars"],
        serde_json::json!(["REQUEST_METHOD=GET", "REQUEST_URI=/sleep?ms=3000"])
    );

    // The Prometheus endpoint carries the same counters.
    let mut m = std::net::TcpStream::connect(&metrics).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(
        text.contains("# TYPE ringsgi_requests_total counter"),
        "{text}"
    );
    assert!(text.contains("ringsgi_busy_slots{worker=\""), "{text}");
    // The request-duration histogram: the five requests of the default app, all of them
    // under 10 s, per worker and per app.
    let count = |line_start: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(line_start))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let h = "ringsgi_http_server_request_duration_seconds";
    assert!(count(&format!("{h}_count{{worker=")) >= 5, "{text}");
    for w in ["1", "2"] {
        let app = count(&format!("{h}_bucket{{worker=\"{w}\",app=\"/\",le=\"10\"}}"));
        let all = count(&format!("{h}_bucket{{worker=\"{w}\",app=\"\",le=\"10\"}}"));
        assert!(app <= all, "{text}");
    }
    let by_app: u64 = ["1", "2"]
        .iter()
        .map(|w| {
            count(&format!(
                "ringsgi_app_requests_total{{worker=\"{w}\",app=\"/\"}}"
            ))
        })
        .sum();
    assert!(by_app >= 5, "{text}");

    // The real uwsgitop reads the document (installed by .ci/run).
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/uwsgitop_check.py"
        ))
        .arg(&stats)
        .output()
        .unwrap();
    assert!(
        out.status.code() != Some(77),
        "uwsgitop is not installed: `pip install uwsgitop` (.ci/run does)"
    );
    assert!(
        out.status.success(),
        "uwsgitop failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(slow.join().unwrap().unwrap().0, 200);

    // SIGUSR1: a summary in the log.
    srv.signal("USR1");
    srv.wait_for("stats: worker 1 pid ");
}

#[test]
fn stats_over_http() {
    let mut srv = Server::start(&["--cores", "1", "--stats", "127.0.0.1:0", "--stats-http"]);
    let stats = addr_after(&srv.wait_for("stats server (JSON over HTTP) on "), " on ");
    let mut s = std::net::TcpStream::connect(&stats).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["workers"].as_array().unwrap().len(), 1);
}

#[test]
fn lifetime_and_rss_limits_recycle_workers() {
    let mut srv = Server::start(&["--cores", "1", "--max-worker-lifetime", "0.5"]);
    srv.wait_for("lifetime reached");
    srv.wait_for("after draining (lifetime reached");
    assert_eq!(get(srv.addr, "/").unwrap().0, 200);
    drop(srv);
    // Every worker uses more than 1 MB: each is replaced about once a second.
    let mut srv = Server::start(&["--cores", "1", "--reload-on-rss", "1"]);
    srv.wait_for("MB over --reload-on-rss 1 MB");
    srv.wait_for("after draining (RSS ");
    assert_eq!(get(srv.addr, "/").unwrap().0, 200);
}

#[test]
fn pidfile_privilege_drop_and_clear_startup_errors() {
    let dir = std::env::temp_dir().join(format!("ringsgi-life-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("master.pid");
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--pidfile",
        pidfile.to_str().unwrap(),
        "--uid",
        "nobody",
        "--gid",
        "65534",
    ]);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", srv.pid())
    );
    assert_eq!(get(srv.addr, "/").unwrap().0, 200);
    // The worker runs as nobody (uid and gid 65534).
    let line = srv.wait_for("worker 0 ready (pid ");
    let pid: u32 = line
        .split("ready (pid ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!((ids("Uid:"), ids("Gid:")), ("65534".into(), "65534".into()));

    // A second server on the same port: one clear line, exit status 1, nothing started.
    let err = start_fails(&["--http", &srv.addr.to_string(), "--cores", "1"]);
    assert!(
        err.contains(&format!("cannot bind {}", srv.addr)) && err.contains("in use"),
        "{err}"
    );
    // A unix socket in a directory that does not exist: the same.
    let err = start_fails(&["--http", "/nonexistent-dir/x.sock", "--cores", "1"]);
    assert!(err.contains("cannot bind /nonexistent-dir/x.sock"), "{err}");

    assert!(srv.stop().success());
    assert!(!pidfile.exists(), "the pid file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_monitor_raises_its_signal_when_the_file_changes() {
    let dir = std::env::temp_dir().join(format!("ringsgi-fmon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("touch-me");
    std::fs::write(&file, "a").unwrap();
    let spec = format!("10 {}", file.display());
    let mut srv = Server::start(&[
        "--cores",
        "1",
        "--mount",
        "/signals=signals",
        "--file-monitor",
        &spec,
    ]);
    srv.wait_for("signal 10 raised when");
    assert!(
        !srv.drain().iter().any(|l| l.contains("signal 10 handled")),
        "no change yet, no signal"
    );
    std::fs::write(&file, "b").unwrap();
    srv.wait_for("signal 10 handled by worker 0");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One worker whose configuration file (`async = 5` at first) the test rewrites between
/// SIGHUPs; the directory goes away with the returned guard.
fn reloadable(tag: &str) -> (Server, std::path::PathBuf, TempDir) {
    let dir = TempDir::new(tag);
    let conf = dir.0.join("ringsgi.toml");
    std::fs::write(&conf, "async = 5\n").unwrap();
    let srv = Server::start(&["--cores", "1", "--config", conf.to_str().unwrap()]);
    (srv, conf, dir)
}

#[test]
fn sighup_executes_the_binary_again_with_the_configuration_read_again() {
    let (mut srv, conf, _dir) = reloadable("reexec");
    srv.wait_for("worker 0 ready (pid ");
    assert!(srv.drain().iter().any(|l| l.contains(", 5 slots)")));
    let master = srv.pid();
    std::fs::write(&conf, "async = 6\n").unwrap();
    let mut client = Conn::open(srv.addr);
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read(false).unwrap().status, 200);
    srv.signal("HUP");
    srv.wait_for("inherited http socket");
    srv.wait_for(", 6 slots)");
    srv.wait_for("after draining (graceful reload (SIGHUP))");
    // Same master process, same listening socket: the port never closed.
    assert_eq!(srv.pid(), master);
    assert_eq!(
        get(srv.addr, "/").map(|a| a.0),
        Some(200),
        "{}",
        srv.log_text()
    );
    // The kept-alive connection of the old worker was closed when it drained: a client
    // retries on a new connection (which the new worker serves).
    assert!(client.closed());
    // A configuration that does not load: the reload is refused, the workers are replaced
    // in place with the configuration in force.
    std::fs::write(&conf, "async = 0\n").unwrap();
    srv.signal("HUP");
    srv.wait_for("the new configuration is refused");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 2);
    assert_eq!(
        get(srv.addr, "/").map(|a| a.0),
        Some(200),
        "{}",
        srv.log_text()
    );
}

#[test]
fn reload_survives_rapid_signals_and_refuses_or_skips_what_cannot_work() {
    let (mut srv, conf, _dir) = reloadable("reload2");
    let master = srv.pid();
    // A second SIGHUP while the master checks and executes its new image: its signals are
    // blocked from the check to the new image's handlers, so it is handled then (a second
    // reload), not fatal and not lost.
    srv.signal("HUP");
    srv.wait_for("SIGHUP received: executing");
    srv.signal("HUP");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 2);
    let answer = get(srv.addr, "/");
    assert_eq!(answer.map(|a| a.0), Some(200), "{}", srv.log_text());
    assert_eq!(srv.pid(), master);
    // A configuration naming an app that does not exist is refused before the execve.
    std::fs::write(&conf, "async = 5\nmount = [\"/x=nonexistent\"]\n").unwrap();
    srv.signal("HUP");
    let refused = srv.wait_for("the new configuration is refused");
    assert!(refused.contains("unknown app"), "{refused}");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 3);
    assert_eq!(
        get(srv.addr, "/").map(|a| a.0),
        Some(200),
        "{}",
        srv.log_text()
    );
    // A new listener that cannot be bound (the port is taken) is skipped, not fatal: the
    // inherited one goes on serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &conf,
        format!("async = 5\nsocket = [\"127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    srv.signal("HUP");
    srv.wait_for(&format!("reload: cannot bind 127.0.0.1:{port}"));
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 4);
    assert_eq!(
        get(srv.addr, "/").map(|a| a.0),
        Some(200),
        "{}",
        srv.log_text()
    );
    assert_eq!(srv.pid(), master);
    drop(taken);
    // A new uwsgi listener, then the same port spelled 0.0.0.0: the new bind fails (the
    // previous socket still holds the port), and the previous socket is kept, not lost.
    std::fs::write(&conf, "async = 5\nsocket = [\"127.0.0.1:0\"]\n").unwrap();
    srv.signal("HUP");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 5);
    let q: u16 = srv
        .wait_for("bound uwsgi socket on 127.0.0.1:")
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let ping = |srv: &Server| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", q)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&[100, 0, 0, 0]).unwrap();
        let mut got = Vec::new();
        let r = c.read_to_end(&mut got);
        assert!(
            r.is_ok() && got == [100, 0, 0, 1],
            "{r:?} {got:?}\n{}",
            srv.log_text()
        );
    };
    ping(&srv);
    std::fs::write(&conf, format!("async = 5\nsocket = [\"0.0.0.0:{q}\"]\n")).unwrap();
    srv.signal("HUP");
    srv.wait_for("reload: keeping the previous uwsgi socket");
    srv.wait_for_count("after draining (graceful reload (SIGHUP))", 6);
    ping(&srv);
    assert_eq!(
        get(srv.addr, "/").map(|a| a.0),
        Some(200),
        "{}",
        srv.log_text()
    );
}

#[test]
fn each_worker_is_pinned_to_its_own_cpu() {
    let mut srv = Server::start(&["--cores", "2"]);
    srv.wait_for_count(" ready (pid ", 2);
    let mut cpus = Vec::new();
    for line in srv.drain().iter().filter(|l| l.contains(" ready (pid ")) {
        // "worker N ready (pid P, pinned to cpu C, S slots)"
        let pid = line
            .split("(pid ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let cpu = line
            .split("pinned to cpu ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim();
        assert_eq!(allowed, cpu, "worker {pid}: {status}");
        cpus.push(cpu.to_owned());
    }
    assert_eq!(cpus.len(), 2);
    assert_ne!(cpus[0], cpus[1], "two workers on one cpu");
    srv.signal("INT");
    srv.stop();
}

/// The state letter of process `pid` (`/proc/PID/stat`), `None` once it is gone.
fn proc_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

#[test]
fn sigterm_to_the_whole_group_stops_without_respawning() {
    // systemd's default KillMode (control-group) sends SIGTERM to every process at once: the
    // workers may be gone before the master reads its own SIGTERM. Made deterministic: the
    // master is stopped while its workers exit (they stay zombies, unreaped), then it gets
    // SIGTERM and continues with both signals pending.
    let mut srv = Server::start(&["--cores", "2"]);
    srv.wait_for_count(" ready (pid ", 2);
    let workers: Vec<String> = srv
        .drain()
        .iter()
        .filter_map(|l| l.split(" ready (pid ").nth(1))
        .map(|r| r.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(workers.len(), 2, "{}", srv.log_text());
    srv.signal("STOP");
    for w in &workers {
        let ok = std::process::Command::new("kill")
            .args(["-s", "TERM", w])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for w in &workers {
        while proc_state(w) != Some('Z') {
            assert!(Instant::now() < deadline, "worker {w} did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    srv.signal("TERM");
    srv.signal("CONT");
    let status = srv.stop();
    assert!(status.success(), "{status:?}\n{}", srv.log_text());
    let log = srv.log_text();
    assert!(!log.contains("respawning"), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}
