//! Python WSGI apps (`--features python`): loading, PEP 3333, the greenlet engine, the
//! `uwsgi` API, harakiri and `--pyrun`, against the real binary and tests/python_apps/.
//!
//! The greenlet tests need greenlet importable: set `RINGSGI_TEST_VENV` to a virtualenv that
//! has it (`python3 -m venv V && V/bin/pip install greenlet`), or install it for the
//! interpreter the binary embeds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Conn, Server, TempDir, get, raw_exchange, start_fails, uwsgi_packet};

fn app(name: &str) -> String {
    format!("{}/tests/python_apps/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `--virtualenv $RINGSGI_TEST_VENV` when set.
fn venv() -> Vec<String> {
    match std::env::var("RINGSGI_TEST_VENV") {
        Ok(v) if !v.is_empty() => vec!["--virtualenv".into(), v],
        _ => Vec::new(),
    }
}

fn start(greenlet: bool, extra: &[&str]) -> Server {
    let basic = app("basic.py");
    let mut args: Vec<String> = vec!["--cores".into(), "1".into()];
    args.extend(venv());
    if greenlet {
        args.extend(["--async".into(), "8".into(), "--greenlet".into()]);
    }
    if !extra.contains(&"--mount") {
        args.extend(["--wsgi-file".into(), basic]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&refs)
}

#[test]
fn hello_list_body_without_greenlet() {
    let mut srv = start(false, &[]);
    let mut c = Conn::open(srv.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Hello World!");
    assert_eq!(r.header("content-length"), Some("12"));
    // Kept alive: a second request on the same connection.
    c.send(b"GET /env?a=1 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\nx-test: too\r\n\r\n");
    let r = c.read(false).expect("a second response");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "SCRIPT_NAME=|PATH_INFO=/env|QUERY_STRING=a=1|REQUEST_METHOD=GET|\
         SERVER_PROTOCOL=HTTP/1.1|CONTENT_LENGTH=-|HTTP_X_TEST=yes, too"
    );
    let line = srv.wait_for("GET /env?a=1 => 200");
    assert!(line.contains("(worker 0 slot"), "{line}");
}

#[test]
fn an_app_that_fails_to_import_stops_the_start_with_one_line() {
    let broken = app("broken.py");
    let err = start_fails(&["--http", "127.0.0.1:0", "--wsgi-file", &broken]);
    let line = err
        .lines()
        .find(|l| l.contains("cannot load"))
        .unwrap_or("");
    assert!(line.contains("NameError"), "{err}");
    assert!(line.contains("broken.py, line 2"), "{err}");
    let missing = start_fails(&[
        "--http",
        "127.0.0.1:0",
        "--wsgi-file",
        &app("basic.py"),
        "--callable",
        "nope",
    ]);
    assert!(missing.contains("has no callable 'nope'"), "{missing}");
    // --greenlet without greenlet importable: one line saying what to install.
    let shadow = app("nogreenlet");
    let err = start_fails(&[
        "--http",
        "127.0.0.1:0",
        "--wsgi-file",
        &app("basic.py"),
        "--greenlet",
        "--pythonpath",
        &shadow,
    ]);
    let line = err.lines().find(|l| l.contains("greenlet")).unwrap_or("");
    assert!(
        line.contains("--greenlet: cannot load greenlet") && line.contains("pip install greenlet"),
        "{err}"
    );
}

#[test]
fn pep3333_without_greenlet() {
    pep3333(start(false, &[]));
}

#[test]
fn pep3333_with_greenlet() {
    pep3333(start(true, &[]));
}

fn pep3333(mut srv: Server) {
    let addr = srv.addr;
    // A generator: streamed, chunked (greenlet) or with a length (no greenlet).
    assert_eq!(
        get(addr, "/stream"),
        Some((200, "chunk 0;chunk 1;chunk 2;".into()))
    );
    assert_eq!(get(addr, "/write"), Some((200, "written;returned".into())));
    assert_eq!(get(addr, "/length"), Some((200, "abcde".into())));
    let src = std::fs::read_to_string(app("basic.py")).unwrap();
    assert_eq!(get(addr, "/file"), Some((200, src)));
    // The body, chunked, read by lines and in small reads.
    let r = raw_exchange(
        addr,
        "POST /lines HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         6\r\none\ntw\r\n5\r\no\nthr\r\n3\r\nee\n\r\n0\r\n\r\n",
    );
    assert!(
        r.contains("3 lines, first b'one\\n', 10 bytes after"),
        "{r}"
    );
    let r = raw_exchange(
        addr,
        "POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    );
    assert!(r.ends_with("3 reads: 0123456789"), "{r}");
    // Expect: 100-continue: the interim answer comes when the app reads the body.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(
        b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"abcd").unwrap();
    let mut rest = String::new();
    let _ = c.read_to_string(&mut rest);
    assert!(rest.ends_with("1 reads: abcd"), "{rest}");
    // HEAD: the head alone.
    let r = raw_exchange(
        addr,
        "HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("\r\n\r\n"), "{r}");
    // Faults: a 500 each, the traceback or reason in the log, the worker serves on.
    for (path, needle) in [
        ("/raise", "ValueError: raised on purpose"),
        ("/none", "TypeError: 'NoneType' object is not iterable"),
        ("/twice", "start_response() called twice without exc_info"),
        (
            "/badheader",
            "invalid characters in the value of response header X-Bad",
        ),
    ] {
        assert_eq!(get(addr, path).map(|r| r.0), Some(500), "{path}");
        srv.wait_for(needle);
    }
    // An exception in close() is logged; the response was complete and stays so.
    assert_eq!(get(addr, "/badclose"), Some((200, "all of it".into())));
    srv.wait_for("OSError: close failed");
    assert_eq!(
        get(addr, "/excinfo-before"),
        Some((503, "error page".into()))
    );
    let cut = raw_exchange(
        addr,
        "GET /excinfo-after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(cut.starts_with("HTTP/1.1 200"), "{cut}");
    assert!(cut.contains("partial;"), "{cut}");
    assert!(!cut.contains("never"), "{cut}");
    // Cut: no last chunk (streamed) or a short body (sized).
    assert!(!cut.ends_with("0\r\n\r\n"), "{cut}");
    srv.wait_for("KeyError: 'late'");
    assert_eq!(get(addr, "/errors").map(|r| r.0), Some(204));
    srv.wait_for("wsgi.errors: a line for the log");
    assert_eq!(get(addr, "/"), Some((200, "Hello World!".into())));
    assert!(!srv.drain().iter().any(|l| l.contains("respawn")));
}

#[test]
fn greenlet_requests_wait_without_blocking_the_core() {
    let srv = start(true, &[]);
    let addr = srv.addr;
    // /wait can only finish when /release runs on the same (only) core meanwhile.
    let waiter = std::thread::spawn(move || get(addr, "/wait"));
    // Until the waiter's greenlet is in its loop, /release may come first; then /wait
    // consumes the flag at once. Either way both answer.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(addr, "/release"), Some((200, "ok".into())));
    assert_eq!(waiter.join().unwrap(), Some((200, "released".into())));
    assert_eq!(
        get(addr, "/worker"),
        Some((200, "worker 1 core 0 numproc 1 master True opt True".into()))
    );
    // wait_fd_read: a timeout, then two descriptors registered in succession.
    assert_eq!(
        get(addr, "/fdwait"),
        Some((200, "(True, -1) (None, True)".into()))
    );
    let port = addr.port().to_string();
    assert_eq!(
        get(addr, &format!("/connect?{port}")),
        Some((200, "connected True".into()))
    );
}

#[test]
fn greenlet_harakiri_closes_the_iterable_and_answers_504() {
    let mut srv = start(true, &["--harakiri", "0.5"]);
    let addr = srv.addr;
    let r = get(addr, "/slow");
    // Streaming had not started (empty chunks): the client gets the 504.
    assert_eq!(r.map(|r| r.0), Some(504));
    srv.wait_for("HARAKIRI ON WORKER 0");
    srv.wait_for("wsgi.errors: slow body closed");
    assert_eq!(get(addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn set_user_harakiri_from_python_gives_a_request_its_own_deadline() {
    // No --harakiri: only the deadline the request sets for itself.
    let mut srv = start(true, &[]);
    assert_eq!(get(srv.addr, "/userharakiri").map(|r| r.0), Some(504));
    let line = srv.wait_for("HARAKIRI ON WORKER 0");
    assert!(line.contains("/userharakiri"), "{line}");
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn a_python_loop_that_never_yields_gets_the_worker_replaced() {
    let mut srv = start(true, &["--harakiri", "1"]);
    let addr = srv.addr;
    let spin = std::thread::spawn(move || get(addr, "/spin"));
    srv.wait_for("respawn");
    srv.wait_for_count(" ready (pid ", 2);
    assert_eq!(get(addr, "/"), Some((200, "Hello World!".into())));
    let _ = spin.join();
}

#[test]
fn python_app_mounted_next_to_a_rust_app() {
    let basic = app("basic.py");
    let mount = format!("/py={basic}");
    let srv = start(false, &["--mount", &mount, "--mount", "/=hello"]);
    let r = get(srv.addr, "/py/env?x=%20").expect("a response");
    assert_eq!(r.0, 200);
    assert!(
        r.1.starts_with("SCRIPT_NAME=/py|PATH_INFO=/env|QUERY_STRING=x=%20|"),
        "{}",
        r.1
    );
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn pyrun_runs_a_script_in_the_engine_and_exits_with_its_status() {
    let mut args = vec!["--pyrun".to_owned(), app("script.py")];
    args.extend(venv());
    args.extend(["--greenlet".into(), "--".into(), "3".into(), "x".into()]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("args ['3', 'x']"), "{stdout}");
}

#[test]
fn a_reload_whose_app_cannot_be_imported_is_refused() {
    let dir = TempDir::new("pyreload");
    let file = dir.0.join("app.py");
    std::fs::copy(app("basic.py"), &file).unwrap();
    let mut args = vec!["--cores", "1", "--wsgi-file", file.to_str().unwrap()];
    let v = venv();
    args.extend(v.iter().map(String::as_str));
    let mut srv = Server::start(&args);
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
    std::fs::write(&file, "application = undefined_name\n").unwrap();
    srv.signal("HUP");
    let line = srv.wait_for("the new configuration is refused");
    assert!(line.contains("NameError"), "{line}");
    srv.wait_for("reload refused");
    // The worker in place serves on, and no other was started.
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
    let spawned = srv
        .drain()
        .iter()
        .filter(|l| l.contains("spawned worker"))
        .count();
    assert_eq!(spawned, 1, "{}", srv.log_text());
}

#[test]
fn a_python_signal_handler_runs_in_its_own_greenlet() {
    let mut srv = start(true, &[]);
    assert_eq!(get(srv.addr, "/signal"), Some((200, "raised".into())));
    srv.wait_for("python signal 17 handled by worker 1");
}

fn client_gone_mid_stream(greenlet: bool) {
    let mut srv = start(greenlet, &[]);
    {
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0 && buf.starts_with(b"HTTP/1.1 200"));
        // Dropped here with most of the stream unread: the next writes fail.
    }
    srv.wait_for("endless body closed");
    srv.wait_for("GET /endless => 200");
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".into())));
}

#[test]
fn client_gone_mid_stream_closes_the_iterable_without_greenlet() {
    client_gone_mid_stream(false);
}

#[test]
fn client_gone_mid_stream_closes_the_iterable_with_greenlet() {
    client_gone_mid_stream(true);
}

#[test]
fn the_uwsgi_listener_feeds_the_environ_and_streams_close_delimited() {
    let mut srv = start(true, &["--socket", "127.0.0.1:0"]);
    let addr = srv.uwsgi.clone().expect("a uwsgi listener");
    srv.drain();
    let ask = |vars: &[(&str, &str)], body: &[u8]| {
        let mut c = TcpStream::connect(addr.as_str()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(&uwsgi_packet(0, vars)).unwrap();
        c.write_all(body).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let r = ask(
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/env?q=1"),
            ("PATH_INFO", "/env"),
            ("QUERY_STRING", "q=1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTP_X_TEST", "front"),
            ("SERVER_NAME", "example.org"),
            ("SERVER_PORT", "443"),
            ("HTTPS", "on"),
        ],
        b"",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}\n{}", srv.log_text());
    assert!(
        r.ends_with("SCRIPT_NAME=|PATH_INFO=/env|QUERY_STRING=q=1|REQUEST_METHOD=GET|SERVER_PROTOCOL=HTTP/1.1|CONTENT_LENGTH=-|HTTP_X_TEST=front"),
        "{r}"
    );
    // A stream on the uwsgi listener is delimited by the close (nginx does not de-chunk).
    let r = ask(
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/stream"),
            ("PATH_INFO", "/stream"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "example.org"),
        ],
        b"",
    );
    assert!(r.ends_with("\r\n\r\nchunk 0;chunk 1;chunk 2;"), "{r}");
    assert!(!r.to_ascii_lowercase().contains("transfer-encoding"), "{r}");
    // A body announced by CONTENT_LENGTH, read in small pieces.
    let r = ask(
        &[
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/read"),
            ("PATH_INFO", "/read"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("CONTENT_LENGTH", "10"),
            ("SERVER_NAME", "example.org"),
        ],
        b"0123456789",
    );
    assert!(r.ends_with("3 reads: 0123456789"), "{r}");
    srv.wait_for("POST /read => 200");
}
