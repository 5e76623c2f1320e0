//! Python WSGI apps (issue 10), against the real binary built with `--features python`:
//! PEP 3333 through `wsgiref.validate`-wrapped apps, misbehaving apps, mounting next to Rust
//! apps, the `uwsgi` module, harakiri, `--pyrun`, stats, the examples of `examples/python/`
//! (compared with what Debian's uWSGI answered for them: `tests/python/reference/`), and a
//! Flask app over HTTP and over the uwsgi protocol behind a real nginx.
//!
//! The apps live in `tests/python/apps/`. The venv (greenlet, Flask) is made once per run by
//! `tests/python/setup-venv.sh` (idempotent; `target/pyvenv`, or `$RINGSGI_PYVENV`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::nginx::{Nginx, TempDir as NginxDir, ask, hdrs, uwsgi_location};
use crate::support::{Conn, Resp, Server, TempDir, get, start_fails};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's path, made (or checked, well under a second) once per test run.
fn venv() -> String {
    static VENV: OnceLock<String> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("tests/python/setup-venv.sh"))
            .output()
            .expect("run tests/python/setup-venv.sh");
        assert!(
            out.status.success(),
            "tests/python/setup-venv.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
    .clone()
}

/// A test app of `tests/python/apps/`.
fn app(name: &str) -> String {
    repo()
        .join("tests/python/apps")
        .join(name)
        .display()
        .to_string()
}

/// An example of `examples/python/`.
fn example(name: &str) -> String {
    repo()
        .join("examples/python")
        .join(name)
        .display()
        .to_string()
}

/// ringsgi, one worker, the venv, `--async 10 --greenlet`, then `extra` (the app to load).
fn py(extra: &[&str]) -> Server {
    let venv = venv();
    let mut args = vec![
        "--cores",
        "1",
        "--virtualenv",
        &venv,
        "--async",
        "10",
        "--greenlet",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn py_file(file: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--wsgi-file", file];
    args.extend_from_slice(extra);
    py(&args)
}

/// Send `raw` on a new connection and read one response (`head_only` for HEAD).
fn once(addr: SocketAddr, raw: &[u8], head_only: bool) -> Option<Resp> {
    let mut c = Conn::open(addr);
    c.send(raw);
    c.read(head_only)
}

fn get_resp(addr: SocketAddr, target: &str) -> Resp {
    once(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        false,
    )
    .unwrap_or_else(|| panic!("no response to GET {target}"))
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// The worker served on: no respawn was logged.
fn assert_no_respawn(srv: &mut Server) {
    let log = srv.drain().join("\n");
    assert!(!log.contains("respawn"), "a worker was respawned:\n{log}");
}

// ---------------------------------------------------------------------------------------
// PEP 3333 (tests/python/apps/pep3333.py, wrapped in wsgiref.validate)
// ---------------------------------------------------------------------------------------

fn pep() -> Server {
    py_file(&app("pep3333.py"), &[])
}

/// wsgiref.validate reports what it finds wrong as an AssertionError (a 500 and a traceback)
/// or, for an iterable never closed, a warning from `__del__`: neither may appear.
fn assert_validator_silent(srv: &mut Server) {
    let log = srv.drain().join("\n");
    for bad in [
        "AssertionError",
        "WSGIWarning",
        "garbage collected without being closed",
    ] {
        assert!(
            !log.contains(bad),
            "wsgiref.validate complained ({bad}):\n{log}"
        );
    }
}

#[test]
fn environ_carries_the_cgi_variables_and_the_wsgi_keys() {
    let mut srv = pep();
    let mut c = Conn::open(srv.addr);
    let client_port = c.stream.local_addr().unwrap().port();
    c.send(
        b"POST /env/a%20b?x=1&y=%2F HTTP/1.1\r\nHost: example.org:8080\r\n\
          Content-Type: text/plain\r\nContent-Length: 3\r\nX-Custom-Header: v1\r\n\r\nabc",
    );
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 200, "{r:?}\n{}", srv.log_text());
    let e = json(&r.body);
    let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} missing: {e}"));
    assert_eq!(s("REQUEST_METHOD"), "POST");
    assert_eq!(s("SCRIPT_NAME"), "");
    assert_eq!(s("PATH_INFO"), "/env/a b", "PATH_INFO is decoded");
    assert_eq!(s("QUERY_STRING"), "x=1&y=%2F");
    assert_eq!(s("REQUEST_URI"), "/env/a%20b?x=1&y=%2F");
    assert_eq!(s("CONTENT_TYPE"), "text/plain");
    assert_eq!(s("CONTENT_LENGTH"), "3");
    assert_eq!(s("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(s("HTTP_HOST"), "example.org:8080");
    assert_eq!(s("HTTP_X_CUSTOM_HEADER"), "v1");
    assert!(!s("SERVER_NAME").is_empty());
    assert_eq!(s("SERVER_PORT"), srv.addr.port().to_string());
    assert_eq!(s("REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(s("REMOTE_PORT"), client_port.to_string());
    // CGI: the body's type and length are not HTTP_ variables.
    assert!(e.get("HTTP_CONTENT_TYPE").is_none(), "{e}");
    assert!(e.get("HTTP_CONTENT_LENGTH").is_none(), "{e}");
    assert_eq!(e["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(e["wsgi.url_scheme"], "http");
    assert_eq!(e["wsgi.multithread"], false);
    assert!(e["wsgi.multiprocess"].is_boolean(), "{e}");
    assert_eq!(e["wsgi.run_once"], false);
    assert_eq!(e["wsgi.input_terminated"], true);
    assert_eq!(e["str_keys"], true);
    assert_eq!(
        e["wsgi.input.has"],
        serde_json::json!(["read", "readline", "readlines", "__iter__"])
    );
    assert_eq!(
        e["wsgi.errors.has"],
        serde_json::json!(["write", "writelines", "flush"])
    );
    assert_eq!(e["callable_file_wrapper"], true);
    // The async extensions (uWSGI's keys).
    let core = e["uwsgi.core"].as_i64().expect("uwsgi.core is an int");
    assert!((0..10).contains(&core), "{core}");
    for k in [
        "x-wsgiorg.fdevent.readable",
        "x-wsgiorg.fdevent.writable",
        "x-wsgiorg.fdevent.timeout",
    ] {
        assert!(e.get(k).is_some(), "{k} missing: {e}");
    }
    // Keep-alive: the next request on the same connection is served.
    c.send(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(false).unwrap().body, b"0123456789");
    srv.wait_for("POST /env/a%20b?x=1&y=%2F => 200");
    assert_validator_silent(&mut srv);
}

/// A body of many lines of different lengths, the last one without a newline.
fn lines_body() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..4000 {
        b.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 37)).as_bytes());
    }
    b.extend_from_slice(b"tail without newline");
    b
}

/// What each read mode of /read reports in X-Pieces for `body`.
fn pieces(mode: &str, body: &[u8]) -> usize {
    let lines: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').collect();
    match mode {
        "all" => 1,
        "n" => body.len().div_ceil(1000),
        "line" | "lines" | "iter" => lines.len(),
        "line_n" => lines.iter().map(|l| l.len().div_ceil(7)).sum(),
        _ => unreachable!(),
    }
}

/// The request head and body of `POST target` with `body` as Content-Length or chunked
/// (chunks of varying sizes).
fn post_bytes(target: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    let mut out = format!("POST {target} HTTP/1.1\r\nHost: t\r\n").into_bytes();
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        let mut rest = body;
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            size = size * 3 % 4099 + 1;
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    }
    out
}

#[test]
fn wsgi_input_read_modes_over_sized_and_chunked_bodies() {
    let mut srv = pep();
    let body = lines_body();
    // All on one kept-alive connection: each request must consume exactly its own body.
    let mut c = Conn::open(srv.addr);
    for chunked in [false, true] {
        for mode in ["all", "n", "line", "line_n", "lines", "iter"] {
            let req = post_bytes(&format!("/read?mode={mode}"), &body, chunked);
            // In pieces: the app reads parts of the body that have not arrived yet.
            for part in req.chunks(16 * 1024) {
                c.send(part);
            }
            let r = c
                .read(false)
                .unwrap_or_else(|| panic!("{mode} chunked={chunked}: no response"));
            let what = format!("mode {mode}, chunked {chunked}");
            assert_eq!(r.status, 200, "{what}: {r:?}\n{}", srv.log_text());
            assert!(r.body == body, "{what}: the app read other bytes");
            assert_eq!(
                r.header("x-pieces"),
                Some(pieces(mode, &body).to_string().as_str()),
                "{what}"
            );
            assert_eq!(r.header("x-input-terminated"), Some("True"), "{what}");
        }
    }
    assert_validator_silent(&mut srv);
}

#[test]
fn reading_past_content_length_stops_at_the_body_and_keeps_the_next_request() {
    let mut srv = pep();
    let mut c = Conn::open(srv.addr);
    // Pipelined: the next request's bytes follow the body at once.
    c.send(
        b"POST /overread HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /length HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let first = c.read(false).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&first.body),
        "5:hello|[b'', b'', b'']"
    );
    let second = c.read(false).unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.body, b"0123456789");
    assert_validator_silent(&mut srv);
}

#[test]
fn wsgi_errors_lines_reach_the_log() {
    let mut srv = pep();
    let (status, body) = get(srv.addr, "/errors?id=E1").unwrap();
    assert_eq!((status, body.as_str()), (200, "logged"));
    srv.wait_for("pep3333 wsgi.errors marker id=E1");
    srv.wait_for("pep3333 writelines id=E1");
    assert_validator_silent(&mut srv);
}

#[test]
fn file_wrapper_sends_the_whole_file() {
    let mut srv = pep();
    let dir = TempDir::new("py-file");
    let path = dir.0.join("data.bin");
    let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let r = get_resp(srv.addr, &format!("/file?path={}", path.display()));
    assert_eq!(r.status, 200, "{}", srv.log_text());
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "the bytes differ");
    assert_validator_silent(&mut srv);
}

#[test]
fn start_response_exc_info_replaces_the_status_or_cuts_a_started_response() {
    let mut srv = pep();
    // Before any body byte: the new status wins.
    let r = get_resp(srv.addr, "/exc_info");
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.body, b"exc_info handled");
    // After the first chunk: start_response re-raises, the response is cut (no last
    // chunk), close() runs.
    let (status, body) = get(srv.addr, "/exc_info_late?id=L1").unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "first chunk;[truncated]");
    srv.wait_for("ValueError: after the body started");
    srv.wait_for("pep3333 close id=L1");
    assert_eq!(get(srv.addr, "/length").unwrap().1, "0123456789");
    assert_no_respawn(&mut srv);
}

#[test]
fn write_callable_output_comes_before_the_iterable() {
    let srv = pep();
    let r = get_resp(srv.addr, "/write");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"written-1;written-2;iter-1;iter-2");
}

#[test]
fn framing_content_length_when_the_app_gives_one_else_chunked_or_close() {
    let mut srv = pep();
    let mut c = Conn::open(srv.addr);
    // The app's Content-Length is used as is.
    c.send(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.body, b"0123456789");
    // A generator of unknown length on HTTP/1.1: chunked, streamed chunk by chunk.
    c.send(b"GET /stream?n=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{}", r.head);
    assert_eq!(r.header("content-length"), None);
    let want: String = (0..300).map(|i| format!("chunk {i};")).collect();
    assert_eq!(String::from_utf8_lossy(&r.body), want);
    // HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection.
    let mut c = Conn::open(srv.addr);
    c.send(b"GET /stream?n=3 HTTP/1.0\r\nHost: t\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.header("transfer-encoding"), None, "{}", r.head);
    assert_eq!(r.body, b"chunk 0;chunk 1;chunk 2;");
    assert_validator_silent(&mut srv);
}

#[test]
fn head_sends_no_body_and_the_connection_stays_usable() {
    let mut srv = pep();
    let mut c = Conn::open(srv.addr);
    c.send(b"HEAD /length HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    c.send(b"HEAD /stream?n=3&id=H1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(true).unwrap();
    assert_eq!(r.status, 200);
    // Had a body been sent after either head, it would be read here as the next response.
    c.send(b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).unwrap();
    assert_eq!(r.body, b"written-1;written-2;iter-1;iter-2");
    srv.wait_for("pep3333 close id=H1");
    assert_validator_silent(&mut srv);
}

#[test]
fn close_is_called_on_every_path() {
    let mut srv = pep();
    // 1. Normal end.
    assert_eq!(
        get(srv.addr, "/stream?n=2&id=C1").unwrap().1,
        "chunk 0;chunk 1;"
    );
    srv.wait_for("pep3333 close id=C1");
    // 2. An exception after the first chunk: the response is cut, close() runs.
    let (status, body) = get(srv.addr, "/raise_in_iter?id=C2").unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "first chunk;[truncated]");
    srv.wait_for("RuntimeError: pep3333 raised in iter id=C2");
    srv.wait_for("pep3333 close id=C2");
    // 3. The client goes away mid-stream (the stream would run 30 s more).
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET /slow_stream?id=C3 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first chunk;") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first chunk");
        got.extend_from_slice(&buf[..n]);
    }
    drop(c);
    srv.wait_for("pep3333 close id=C3");
    srv.wait_for("GET /slow_stream?id=C3 =>");
    // 4. Nothing else was harmed.
    assert_eq!(get(srv.addr, "/length").unwrap().1, "0123456789");
    assert_no_respawn(&mut srv);
    assert_validator_silent(&mut srv);
}

#[test]
fn a_client_that_does_not_read_blocks_nobody() {
    let mut srv = pep();
    // 2000 chunks of 8 KiB (16 MiB): more than the socket buffers hold, so the response
    // stalls on the socket; writing to that slow client must give the core back.
    let mut stalled = TcpStream::connect(srv.addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stalled
        .write_all(
            b"GET /stream?n=2000&size=8192&id=ST HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut first = [0u8; 1];
    stalled.read_exact(&mut first).unwrap();
    for _ in 0..5 {
        assert_eq!(get(srv.addr, "/length").unwrap().1, "0123456789");
    }
    // The stalled response still completes once read.
    let mut rest = Vec::new();
    stalled.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8_lossy(&rest);
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let body = crate::support::dechunk(body);
    assert_eq!(body.len(), 2000 * 8192, "all of it, no [truncated]");
    assert!(body.ends_with('.'), "{}", &body[body.len() - 20..]);
    srv.wait_for("pep3333 close id=ST");
    assert_validator_silent(&mut srv);
}

#[test]
fn an_exception_in_the_app_is_a_500_with_its_traceback_logged() {
    let mut srv = pep();
    let r = get_resp(srv.addr, "/raise?id=R1");
    assert_eq!(r.status, 500);
    srv.wait_for("Traceback (most recent call last)");
    srv.wait_for("RuntimeError: pep3333 raised id=R1");
    srv.wait_for("GET /raise?id=R1 => 500");
    // The worker serves on.
    assert_eq!(get(srv.addr, "/length").unwrap().1, "0123456789");
    assert_no_respawn(&mut srv);
}

// ---------------------------------------------------------------------------------------
// Bad apps and bad input
// ---------------------------------------------------------------------------------------

/// `start_fails` with the venv and one worker; the lines of stderr.
fn startup_error(extra: &[&str]) -> Vec<String> {
    let venv = venv();
    let mut args = vec![
        "--http",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--virtualenv",
        &venv,
    ];
    args.extend_from_slice(extra);
    start_fails(&args).lines().map(str::to_owned).collect()
}

#[test]
fn a_broken_app_file_is_one_startup_error_line_and_exit_1() {
    let broken = app("broken.py");
    let err = startup_error(&["--wsgi-file", &broken]);
    let hits: Vec<_> = err.iter().filter(|l| l.contains("SyntaxError")).collect();
    assert_eq!(hits.len(), 1, "{err:#?}");
    // The exception and its location.
    assert!(hits[0].contains("broken.py"), "{}", hits[0]);
    assert!(hits[0].contains('4'), "line 4: {}", hits[0]);
}

#[test]
fn a_missing_callable_or_module_fails_startup() {
    let hello = example("hello.py");
    let err = startup_error(&["--wsgi-file", &hello, "--callable", "no_such_callable"]);
    assert_eq!(
        err.iter()
            .filter(|l| l.contains("no_such_callable"))
            .count(),
        1,
        "{err:#?}"
    );
    let err = startup_error(&["--module", "no_such_module_xyz"]);
    assert_eq!(
        err.iter()
            .filter(|l| l.contains("no_such_module_xyz"))
            .count(),
        1,
        "{err:#?}"
    );
    let py_dir = repo().join("examples/python").display().to_string();
    let err = startup_error(&["--pythonpath", &py_dir, "--module", "hello:nope"]);
    assert_eq!(
        err.iter().filter(|l| l.contains("nope")).count(),
        1,
        "{err:#?}"
    );
}

#[test]
fn misbehaving_apps_get_a_500_and_a_log_line_and_harm_nothing_else() {
    let mut srv = py_file(&app("bad.py"), &[]);
    // (path, a word the explaining log line must contain)
    for (path, why) in [
        ("/nonit", "not iterable"),
        ("/twice", "start_response"),
        ("/badheader", "X-Bad"),
        ("/badname", "X Bad"),
        ("/none_status", "status"),
    ] {
        let r = get_resp(srv.addr, path);
        assert_eq!(r.status, 500, "{path}: {r:?}");
        assert!(r.header("x-injected").is_none(), "{path}: {}", r.head);
        srv.wait_for(&format!("GET {path} => 500"));
        let explained = srv
            .drain()
            .iter()
            .any(|l| l.contains(why) && !l.contains(&format!("GET {path} =>")));
        assert!(
            explained,
            "{path}: no log line about {why:?}:\n{}",
            srv.log_text()
        );
        assert_eq!(get(srv.addr, "/ok"), Some((200, "fine".to_owned())));
    }
    assert_no_respawn(&mut srv);
}

// ---------------------------------------------------------------------------------------
// Mounting next to Rust apps
// ---------------------------------------------------------------------------------------

#[test]
fn a_python_app_mounted_at_a_prefix_next_to_rust_apps() {
    let pep = app("pep3333.py");
    let mount = format!("/py={pep}");
    let mut srv = py(&["--mount", &mount, "--mount", "/echo=echo"]);
    let e = json(&get_resp(srv.addr, "/py/env/x?q=1").body);
    assert_eq!(e["SCRIPT_NAME"], "/py");
    assert_eq!(e["PATH_INFO"], "/env/x");
    assert_eq!(e["REQUEST_URI"], "/py/env/x?q=1");
    let e = json(&get_resp(srv.addr, "/py/env").body);
    assert_eq!(e["PATH_INFO"], "/env");
    // The mount point itself: PATH_INFO is empty (the app answers 404 "no route ").
    let r = get_resp(srv.addr, "/py");
    assert_eq!((r.status, r.body.as_slice()), (404, &b"no route "[..]));
    // Rust apps around it.
    assert_eq!(get(srv.addr, "/"), Some((200, "Hello World!".to_owned())));
    assert_eq!(
        get(srv.addr, "/pyx"),
        Some((200, "Hello World!".to_owned()))
    );
    assert_eq!(get(srv.addr, "/echo").map(|r| r.0), Some(200));
    srv.wait_for("GET /py/env/x?q=1 => 200");
    assert_validator_silent(&mut srv);
}

// ---------------------------------------------------------------------------------------
// The uwsgi module (tests/python/apps/uwsgi_api.py)
// ---------------------------------------------------------------------------------------

#[test]
fn uwsgi_module_identity_functions() {
    let api = app("uwsgi_api.py");
    let srv = py_file(&api, &[]);
    let e = json(&get_resp(srv.addr, "/info").body);
    assert_eq!(e["worker_id"], 1, "1-based, as uWSGI: {e}");
    assert_eq!(e["masterpid"], srv.pid());
    assert_ne!(
        e["pid"],
        srv.pid(),
        "the app runs in a worker, not the master"
    );
    assert_eq!(e["numproc"], 1);
    assert_eq!(e["opt_is_mapping"], true);
    let keys: Vec<&str> = e["opt_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for k in ["async", "wsgi-file"] {
        assert!(keys.contains(&k), "uwsgi.opt lacks {k}: {keys:?}");
    }
    assert!(e["connection_fd"].as_i64().unwrap() >= 0, "{e}");
    assert!(e["core"].is_i64(), "{e}");
}

#[test]
fn uwsgi_module_suspend_sleep_and_fd_waits() {
    let api = app("uwsgi_api.py");
    let srv = py_file(&api, &[]);
    let e = json(&get_resp(srv.addr, "/suspend").body);
    assert_eq!(e["suspend"], serde_json::json!([true, true, true]));
    assert_eq!(e["green_schedule"], serde_json::json!([true, true, true]));
    // Sub-second async_sleep really sleeps (uWSGI would not sleep at all) and ends as a
    // timed-out wait.
    let e = json(&get_resp(srv.addr, "/sleep?s=0.2").body);
    assert!(e["elapsed"].as_f64().unwrap() >= 0.19, "{e}");
    assert_eq!(e["timeout"], true);
    let e = json(&get_resp(srv.addr, "/wait_read_timeout").body);
    assert_eq!(e["timeout"], true, "{e}");
    assert_eq!(e["ready_fd"], -1, "{e}");
    let e = json(&get_resp(srv.addr, "/wait_write").body);
    assert_eq!(e["timeout"], serde_json::Value::Null, "{e}");
    assert_eq!(e["ready_fd_is_fd"], true, "{e}");
}

#[test]
fn requests_suspended_on_one_worker_run_concurrently() {
    let api = app("uwsgi_api.py");
    let srv = py_file(&api, &[]);
    // Each request waits (suspend loop) until all 5 are inside the app at once: served one
    // after another they would never meet.
    let addr = srv.addr;
    let clients: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || get(addr, "/rendezvous?n=5")))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), Some((200, "{\"met\": 5}".to_owned())));
    }
}

#[test]
fn uwsgi_signal_runs_the_registered_python_handler() {
    let api = app("uwsgi_api.py");
    let mut srv = py_file(&api, &[]);
    assert_eq!(
        get(srv.addr, "/signal"),
        Some((200, "{\"raised\": 17}".to_owned()))
    );
    srv.wait_for("uwsgi_api signal 17 handled on worker 1");
}

// ---------------------------------------------------------------------------------------
// Harakiri
// ---------------------------------------------------------------------------------------

#[test]
fn soft_harakiri_504s_the_python_request_runs_close_and_spares_the_sibling() {
    let api = app("uwsgi_api.py");
    let mut srv = py_file(&api, &["--harakiri", "1", "--harakiri-verbose"]);
    let addr = srv.addr;
    let slow = std::thread::spawn(move || get(addr, "/harakiri?s=30&id=K1"));
    // A sibling on the same worker, overlapping the doomed one, completes.
    assert_eq!(
        get(addr, "/harakiri?s=0.3&id=K2"),
        Some((200, "slept 0.3".to_owned()))
    );
    assert_eq!(slow.join().unwrap().map(|r| r.0), Some(504));
    let line = srv.wait_for("HARAKIRI ON WORKER 0 SLOT");
    assert!(line.contains("GET /harakiri?s=30&id=K1"), "{line}");
    srv.wait_for("uwsgi_api close K1");
    srv.wait_for("uwsgi_api close K2");
    assert_eq!(get(addr, "/suspend").map(|r| r.0), Some(200));
    assert_no_respawn(&mut srv);
}

#[test]
fn set_user_harakiri_moves_the_python_requests_deadline() {
    let api = app("uwsgi_api.py");
    // Extended past --harakiri: completes.
    let srv = py_file(&api, &["--harakiri", "1"]);
    assert_eq!(
        get(srv.addr, "/harakiri?s=1.5&user=10&id=U1"),
        Some((200, "slept 1.5".to_owned()))
    );
    drop(srv);
    // Shortened below a large --harakiri: cancelled.
    let mut srv = py_file(&api, &["--harakiri", "60"]);
    assert_eq!(
        get(srv.addr, "/harakiri?s=30&user=1&id=U2").map(|r| r.0),
        Some(504)
    );
    srv.wait_for("uwsgi_api close U2");
}

#[test]
fn a_python_loop_that_never_yields_gets_its_worker_replaced_and_nothing_else_is_lost() {
    let api = app("uwsgi_api.py");
    let venv = venv();
    let mut srv = Server::start(&[
        "--cores",
        "2",
        "--virtualenv",
        &venv,
        "--async",
        "10",
        "--greenlet",
        "--harakiri",
        "1",
        "--wsgi-file",
        &api,
    ]);
    let addr = srv.addr;
    let spin = std::thread::spawn(move || get(addr, "/spin"));
    srv.wait_for("uwsgi_api spinning");
    // Requests sent while that worker is stuck, and after it is replaced, all succeed.
    let t0 = Instant::now();
    let mut served = 0;
    while t0.elapsed() < Duration::from_secs(4) {
        let got = get(addr, "/info").map(|r| r.0);
        assert_eq!(got, Some(200), "request {served}; log:\n{}", srv.log_text());
        served += 1;
    }
    assert!(served > 10);
    assert_eq!(
        spin.join().unwrap(),
        None,
        "the stuck request dies with its worker"
    );
    let kill = srv.wait_for("executor stuck");
    assert!(kill.contains("GET /spin"), "{kill}");
    srv.wait_for("respawned worker");
    for _ in 0..10 {
        assert_eq!(get(addr, "/info").map(|r| r.0), Some(200));
    }
}

#[test]
fn connections_queued_behind_a_stuck_single_worker_are_served_by_its_replacement() {
    let api = app("uwsgi_api.py");
    let mut srv = py_file(&api, &["--harakiri", "1"]);
    let addr = srv.addr;
    let spin = std::thread::spawn(move || get(addr, "/spin"));
    srv.wait_for("uwsgi_api spinning");
    // The only worker is stuck: these wait in the listen queue (its ring accepts nothing
    // while its executor does not run), and the respawned worker takes them.
    let queued: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || get(addr, "/info").map(|r| r.0)))
        .collect();
    for q in queued {
        assert_eq!(q.join().unwrap(), Some(200), "log:\n{}", srv.log_text());
    }
    assert_eq!(spin.join().unwrap(), None);
    srv.wait_for("respawned worker");
}

// ---------------------------------------------------------------------------------------
// --pyrun
// ---------------------------------------------------------------------------------------

fn pyrun(args: &[&str]) -> std::process::Output {
    let venv = venv();
    let script = app("pyrun_script.py");
    Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args(["--virtualenv", &venv, "--pyrun", &script, "--"])
        .args(args)
        .output()
        .expect("run ringsgi --pyrun")
}

#[test]
fn pyrun_runs_the_script_as_main_with_its_argv_and_exit_status() {
    let script = app("pyrun_script.py");
    let out = pyrun(&["3", "two words", "--flag"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line:\n{stdout}\n{stderr}"));
    let e = json(line.as_bytes());
    assert_eq!(
        e["argv"],
        serde_json::json!([script, "3", "two words", "--flag"])
    );
    assert_eq!(e["name"], "__main__");
    // No worker process: uWSGI runs --pyrun in the master, whose worker_id() is 0.
    assert_eq!(e["worker_id"], 0, "{e}");

    let out = pyrun(&["0"]);
    assert_eq!(out.status.code(), Some(0));

    let out = pyrun(&["raise"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("RuntimeError: pyrun_script raised on purpose"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------

fn fetch_stats(addr: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn stats_list_the_python_app_and_its_request_in_a_slot() {
    let api = app("uwsgi_api.py");
    let mount = format!("/py={api}");
    let mut srv = py(&["--mount", &mount, "--stats", "127.0.0.1:0"]);
    let line = srv.wait_for("stats server (JSON) on ");
    let stats = line.split(" on ").nth(1).unwrap().trim().to_owned();
    let doc = fetch_stats(&stats);
    let apps = doc["workers"][0]["apps"].as_array().unwrap();
    let mut mounts: Vec<&str> = apps
        .iter()
        .map(|a| a["mountpoint"].as_str().unwrap())
        .collect();
    mounts.sort_unstable();
    assert_eq!(mounts, ["", "/py"], "{doc}");
    // A Python request in progress shows in its slot as a Rust one does.
    let addr = srv.addr;
    let slow = std::thread::spawn(move || get(addr, "/py/harakiri?s=3&id=S1"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let core = loop {
        let doc = fetch_stats(&stats);
        let busy = doc["workers"][0]["cores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["in_request"] == 1)
            .cloned();
        if let Some(c) = busy {
            break c;
        }
        assert!(Instant::now() < deadline, "no busy slot seen: {doc}");
    };
    assert_eq!(
        core["vars"],
        serde_json::json!(["REQUEST_METHOD=GET", "REQUEST_URI=/py/harakiri?s=3&id=S1"])
    );
    assert_eq!(slow.join().unwrap(), Some((200, "slept 3".to_owned())));
    srv.wait_for("GET /py/harakiri?s=3&id=S1 => 200");
}

// ---------------------------------------------------------------------------------------
// The examples, compared with uWSGI's answers (tests/python/reference/)
// ---------------------------------------------------------------------------------------

/// What uWSGI answered: the status and either the body or its length (`body: len=N ...`
/// for big bodies, whose content the test generates).
struct Reference {
    status: u16,
    body: Option<String>,
    len: Option<usize>,
}

fn reference(name: &str) -> Reference {
    let path = repo()
        .join("tests/python/reference")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (status, rest) = text.split_once('\n').unwrap();
    let status = status.strip_prefix("status: ").unwrap().parse().unwrap();
    if let Some(body) = rest.strip_prefix("body:\n") {
        let body = body.strip_suffix('\n').unwrap().to_owned();
        Reference {
            status,
            body: Some(body),
            len: None,
        }
    } else {
        let len = rest
            .strip_prefix("body: len=")
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        Reference {
            status,
            body: None,
            len: Some(len),
        }
    }
}

/// `(status, body)` matches the reference `name` (a body given in full).
fn assert_reference(name: &str, got: (u16, String)) {
    let want = reference(name);
    assert_eq!(got.0, want.status, "{name}: {got:?}");
    assert_eq!(Some(got.1), want.body, "{name}");
}

/// `body` is `want` and as long as uWSGI's (a reference given as a length).
fn assert_reference_len(name: &str, status: u16, body: &str, want: &str) {
    let r = reference(name);
    assert_eq!(status, r.status, "{name}");
    assert_eq!(
        Some(want.len()),
        r.len,
        "{name}: the expected body is uWSGI's"
    );
    assert!(body == want, "{name}: body differs (len {})", body.len());
}

/// A TCP server on 127.0.0.1 that, for each connection, reads a request head if
/// `read_head`, then writes `reply` (None: keeps the connection open, silent). Runs until
/// the test process exits.
fn upstream(reply: Option<&'static [u8]>, read_head: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            if read_head {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            }
            if let Some(r) = reply {
                let _ = c.write_all(r);
                if read_head {
                    continue;
                }
            }
            held.push(c);
        }
    });
    port
}

#[test]
fn example_hello() {
    let srv = py_file(&example("hello.py"), &[]);
    assert_reference("hello", get(srv.addr, "/").unwrap());
}

#[test]
fn example_seed_cpubound_async_matches_uwsgi() {
    // 9,999 chunks, each a switch point. (Its 128 KiB fit in the socket buffers, so a
    // client that does not read cannot stall it: a_client_that_does_not_read_blocks_nobody
    // tests that switch point with 16 MiB.)
    let srv = py_file(&example("cpubound_async.py"), &[]);
    let want: String = (1..10000).map(|i| format!("<h1>{i}</h1>")).collect();
    let (status, body) = get(srv.addr, "/").unwrap();
    assert_reference_len("cpubound_async", status, &body, &want);
}

#[test]
fn example_seed_sleeping_async() {
    let srv = py_file(&example("sleeping_async.py"), &[]);
    assert_reference("sleeping_async", get(srv.addr, "/?1").unwrap());
    // ringsgi honours fractions (uWSGI would not sleep at all).
    assert_eq!(
        get(srv.addr, "/?0.2").unwrap().1,
        "<h1>Hello World after 0.2 seconds</h1><p>timeout flag: True</p>"
    );
}

#[test]
fn example_seed_wait_fds() {
    let srv = py_file(&example("wait_fds.py"), &[]);
    let silent = upstream(None, false);
    let talker = upstream(Some(b"hello\n"), false);
    assert_reference(
        "wait_fds",
        get(srv.addr, &format!("/?{silent},{talker}&timeout=5")).unwrap(),
    );
    assert_reference(
        "wait_fds_timeout",
        get(srv.addr, &format!("/?{silent}&timeout=1")).unwrap(),
    );
}

#[test]
fn example_seed_suspend() {
    let srv = py_file(&example("suspend.py"), &[]);
    let pinger = upstream(Some(b"ping\n"), false);
    assert_reference("suspend", get(srv.addr, &format!("/?{pinger}")).unwrap());
}

#[test]
fn uwsgi_tests_sleeping_async() {
    let srv = py_file(&example("uwsgi_tests/sleeping_async.py"), &[]);
    assert_reference("uwsgi_tests_sleeping_async", get(srv.addr, "/").unwrap());
}

/// `<h1>N at TIME</h1>` → `<h1>N at T</h1>` (as uwsgi_reference.py's norm_cpubound_async).
fn norm_at(body: &str) -> String {
    body.split("</h1>")
        .map(|part| match part.find(" at ") {
            Some(i) => format!("{} at T", &part[..i]),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("</h1>")
}

#[test]
fn uwsgi_tests_cpubound_async_and_cpubound_green() {
    let srv = py_file(&example("uwsgi_tests/cpubound_async.py"), &[]);
    let (status, body) = get(srv.addr, "/").unwrap();
    let want: String = (1..1000).map(|i| format!("<h1>{i} at T</h1>")).collect();
    assert_reference_len("uwsgi_tests_cpubound_async", status, &norm_at(&body), &want);
    drop(srv);

    let srv = py_file(&example("uwsgi_tests/cpubound_green.py"), &[]);
    let (status, body) = get(srv.addr, "/").unwrap();
    let (head, last) = body.trim_end().rsplit_once('\n').unwrap();
    let secs = last
        .strip_prefix("<h1>4999950000 cycles after ")
        .and_then(|r| r.strip_suffix("</h1>"))
        .unwrap_or_else(|| panic!("last line {last:?}"));
    assert!(secs.parse::<u64>().is_ok(), "{last}");
    let body = format!("{head}\n<h1>4999950000 cycles after T</h1>\n");
    // 999 lines of a chunk every 100 suspends.
    let want: String = (1..1000)
        .map(|i| format!("<h1>{}</h1>\n", i * 100))
        .chain(std::iter::once(
            "<h1>4999950000 cycles after T</h1>\n".to_owned(),
        ))
        .collect();
    assert_reference_len("uwsgi_tests_cpubound_green", status, &body, &want);
}

#[test]
fn uwsgi_tests_iobound_async_connects_waits_and_relays() {
    const REPLY: &[u8] =
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nupstream\n";
    let srv = py_file(&example("uwsgi_tests/iobound_async.py"), &[]);
    let up = upstream(Some(REPLY), true);
    assert_reference(
        "uwsgi_tests_iobound_async",
        get(srv.addr, &format!("/?{up}")).unwrap(),
    );
    // Nothing listens there: async_connect's socket never connects, is_connected is False.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_reference(
        "uwsgi_tests_iobound_async_refused",
        get(srv.addr, &format!("/?{closed}")).unwrap(),
    );
}

// ---------------------------------------------------------------------------------------
// Flask (PyPI), over HTTP and over uwsgi behind nginx
// ---------------------------------------------------------------------------------------

fn flask(extra: &[&str]) -> Server {
    let dir = repo().join("examples/python").display().to_string();
    let mut args = vec!["--pythonpath", &dir, "--module", "flask_app:app"];
    args.extend_from_slice(extra);
    py(&args)
}

/// 1 MiB, as uwsgi_reference.py sends: bytes 0..=255 repeated.
fn upload_body() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i % 256) as u8).collect()
}

fn multipart_body() -> (String, Vec<u8>) {
    let b = "ringsgiBoundary";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nringsgi\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(upload_body());
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// Canonical JSON text (keys sorted, as uwsgi_reference.py writes it with `sort_keys`).
fn canon(body: &[u8]) -> String {
    // serde_json's Map is a BTreeMap (sorted keys) without the preserve_order feature;
    // Python's json.dumps separators are ", " and ": ".
    let v = json(body);
    fn py_dumps(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Object(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!(
                        "{}: {}",
                        serde_json::Value::from(k.as_str()),
                        py_dumps(v)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            serde_json::Value::Array(a) => format!(
                "[{}]",
                a.iter().map(py_dumps).collect::<Vec<_>>().join(", ")
            ),
            other => other.to_string(),
        }
    }
    py_dumps(&v)
}

/// Sends one request (method, target, headers, body) and reads its response.
type Send<'a> = &'a mut dyn FnMut(&str, &str, &[(String, String)], &[u8]) -> Resp;

/// The Flask routes through `send`, compared with uWSGI's answers.
fn flask_routes(srv: &mut Server, send: Send<'_>) {
    let r = send("GET", "/", &[], b"");
    assert_reference(
        "flask_index",
        (r.status, String::from_utf8_lossy(&r.body).into()),
    );
    let r = send(
        "POST",
        "/upload/raw",
        &hdrs(&[("Content-Type", "application/octet-stream")]),
        &upload_body(),
    );
    assert_reference("flask_upload_raw", (r.status, canon(&r.body)));
    let (ctype, body) = multipart_body();
    let r = send(
        "POST",
        "/upload/multipart",
        &hdrs(&[("Content-Type", &ctype)]),
        &body,
    );
    assert_reference("flask_upload_multipart", (r.status, canon(&r.body)));
    let r = send("GET", "/stream?n=3", &[], b"");
    assert_reference(
        "flask_stream",
        (r.status, String::from_utf8_lossy(&r.body).into()),
    );
    let r = send("GET", "/error", &[], b"");
    assert_eq!(r.status, reference("flask_error").status);
    srv.wait_for("RuntimeError: flask_app: /error raised this on purpose");
    let r = send("GET", "/slow?s=1", &[], b"");
    let mut j = json(&r.body);
    j["pid"] = 0.into();
    assert_reference(
        "flask_slow",
        (
            r.status,
            canon(serde_json::to_string(&j).unwrap().as_bytes()),
        ),
    );
    // Served on after the error.
    let r = send("GET", "/", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn flask_app_over_http() {
    let mut srv = flask(&[]);
    let mut c = Conn::open(srv.addr);
    flask_routes(&mut srv, &mut |m, t, h, b| ask(&mut c, m, t, h, b));
    assert_no_respawn(&mut srv);
}

#[test]
fn flask_app_over_uwsgi_behind_nginx() {
    let mut srv = flask(&["--socket", "127.0.0.1:0"]);
    let upstream = srv.uwsgi.clone().unwrap();
    let nginx = Nginx::start(
        NginxDir::new("flask"),
        "",
        &uwsgi_location(&upstream, "uwsgi_buffering off;"),
    );
    let mut c = nginx.conn();
    flask_routes(&mut srv, &mut |m, t, h, b| ask(&mut c, m, t, h, b));
    // Many slow requests at once through nginx: all served, concurrently on one worker.
    let addr = nginx.conn().stream.peer_addr().unwrap();
    let clients: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || get(addr, "/slow?s=1").map(|r| r.0)))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), Some(200), "{}", nginx.error_log());
    }
    assert_no_respawn(&mut srv);
}
