//! The uwsgi listener (`--socket`), byte-exact, over TCP and a unix socket: requests reaching
//! the apps, bodies, close-delimited streaming, ping, every refused packet answered in HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::support::{Server, start_fails, uwsgi_packet};

fn args(socket: &str, extra: &[&'static str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--cores",
        "1",
        "--mount",
        "/echo=echo",
        "--mount",
        "/cpubound=cpubound",
        "--socket",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(socket.to_owned());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn start(socket: &str, extra: &[&'static str]) -> Server {
    let a = args(socket, extra);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Server::start(&refs)
}

/// A connection to the uwsgi listener, TCP or unix.
enum Client {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Client {
    fn open(srv: &Server) -> Client {
        let addr = srv.uwsgi.as_deref().expect("a uwsgi listener");
        if addr.starts_with('/') {
            let s = UnixStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Client::Unix(s)
        } else {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Client::Tcp(s)
        }
    }

    fn send(&mut self, b: &[u8]) {
        match self {
            Client::Tcp(s) => s.write_all(b).unwrap(),
            Client::Unix(s) => s.write_all(b).unwrap(),
        }
    }

    /// Everything the server sends until it closes.
    fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let r = match self {
            Client::Tcp(s) => s.read_to_end(&mut out),
            Client::Unix(s) => s.read_to_end(&mut out),
        };
        r.expect("the server closes the connection after the response");
        out
    }

    /// Send `packet`, return the whole answer with the Date value normalised.
    fn exchange(mut self, packet: &[u8]) -> String {
        self.send(packet);
        normalise(&self.read_all())
    }
}

fn normalise(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split("\r\n")
        .map(|l| {
            if l.starts_with("Date: ") {
                "Date: <date>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn ok_head(content_type: &str, len: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: <date>\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

fn error(status: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nServer: ringsgi\r\nDate: <date>\r\nContent-Type: text/plain; charset=utf-8\r\n"
    )
}

/// nginx's `uwsgi_params` for `GET target`, plus `extra`.
fn nginx_vars<'a>(
    method: &'a str,
    target: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut v = vec![
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", target),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "10.9.8.7"),
        ("REMOTE_PORT", "40123"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "example.org"),
    ];
    v.extend_from_slice(extra);
    v
}

fn unix_path(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!("ringsgi-uwsgi-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

#[test]
fn get_with_http_headers_reaches_echo_byte_exact_over_tcp() {
    let mut srv = start("127.0.0.1:0", &[]);
    let vars = nginx_vars(
        "GET",
        "/echo/x?a=1",
        &[
            ("HTTP_HOST", "example.org"),
            ("HTTP_X_FORWARDED_PROTO", "http"),
            ("HTTP_CONNECTION", "keep-alive"),
            ("HTTP_ACCEPT", "*/*"),
        ],
    );
    let got = Client::open(&srv).exchange(&uwsgi_packet(0, &vars));
    let body =
        "GET /echo/x?a=1 HTTP/1.1\nHost: example.org\nX-Forwarded-Proto: http\nAccept: */*\n\n";
    assert_eq!(got, ok_head("text/plain; charset=utf-8", body.len()) + body);
    // The request log names the real client, not the front server.
    srv.wait_for("10.9.8.7:40123 GET /echo/x?a=1 => 200");
}

#[test]
fn post_with_a_body_over_a_unix_socket() {
    let path = unix_path("post");
    let srv = start(&path, &[]);
    assert_eq!(srv.uwsgi.as_deref(), Some(path.as_str()));
    let vars = nginx_vars("POST", "/echo", &[("HTTP_HOST", "h")]);
    let vars: Vec<_> = vars
        .into_iter()
        .map(|(k, v)| match k {
            "CONTENT_TYPE" => (k, "text/plain"),
            "CONTENT_LENGTH" => (k, "11"),
            _ => (k, v),
        })
        .collect();
    let mut c = Client::open(&srv);
    c.send(&uwsgi_packet(0, &vars));
    c.send(b"hello");
    c.send(b" world");
    let got = normalise(&c.read_all());
    let body =
        "POST /echo HTTP/1.1\nHost: h\nContent-Type: text/plain\nContent-Length: 11\n\nhello world";
    assert_eq!(got, ok_head("text/plain; charset=utf-8", body.len()) + body);
}

#[test]
fn streamed_response_is_close_delimited_not_chunked() {
    let srv = start("127.0.0.1:0", &[]);
    let got = Client::open(&srv).exchange(&uwsgi_packet(0, &nginx_vars("GET", "/cpubound", &[])));
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: <date>\r\nContent-Type: text/html\r\nConnection: close"
    );
    let want: String = (1..10000).map(|i| format!("<h1>{i}</h1>")).collect();
    assert_eq!(body, want);
}

#[test]
fn ping_is_answered_like_uwsgi() {
    let srv = start("127.0.0.1:0", &[]);
    let mut c = Client::open(&srv);
    c.send(&[100, 0, 0, 0]);
    assert_eq!(c.read_all(), [100, 0, 0, 1]);
}

#[test]
fn vars_over_buffer_size_get_431_and_a_log_line() {
    let mut srv = start("127.0.0.1:0", &["--buffer-size", "512"]);
    let big = "x".repeat(600);
    let got = Client::open(&srv).exchange(&uwsgi_packet(
        0,
        &nginx_vars("GET", "/echo", &[("HTTP_X_BIG", &big)]),
    ));
    assert!(
        got.starts_with(&error("431 Request Header Fields Too Large")),
        "{got}"
    );
    assert!(got.contains("Connection: close\r\n"));
    let line = srv.wait_for("bad uwsgi request");
    assert!(line.contains("limit 512: raise --buffer-size"), "{line}");
}

#[test]
fn vars_over_max_vars_get_431_and_a_log_line() {
    let mut srv = start("127.0.0.1:0", &["--max-vars", "3"]);
    let vars = [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/echo"),
        ("SERVER_NAME", "s"),
        ("HTTP_A", "1"),
    ];
    let got = Client::open(&srv).exchange(&uwsgi_packet(0, &vars));
    assert!(
        got.starts_with(&error("431 Request Header Fields Too Large")),
        "{got}"
    );
    let line = srv.wait_for("bad uwsgi request");
    assert!(line.contains("limit 3 vars: raise --max-vars"), "{line}");
    // At the limit it is served.
    let got = Client::open(&srv).exchange(&uwsgi_packet(0, &vars[..3]));
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
}

#[test]
fn malformed_packets_get_400_and_unknown_modifiers_501() {
    let srv = start("127.0.0.1:0", &[]);
    // A key length that runs past the vars block.
    let got = Client::open(&srv).exchange(&[0, 3, 0, 0, 9, 0, b'a']);
    assert!(got.starts_with(&error("400 Bad Request")), "{got}");
    // A header injection attempt in a value.
    let vars = nginx_vars("GET", "/echo", &[("HTTP_X", "a\r\nX-Evil: 1")]);
    let got = Client::open(&srv).exchange(&uwsgi_packet(0, &vars));
    assert!(got.starts_with(&error("400 Bad Request")), "{got}");
    // modifier1 5 (PSGI) is not served.
    let got = Client::open(&srv).exchange(&uwsgi_packet(5, &[("A", "b")]));
    assert!(got.starts_with(&error("501 Not Implemented")), "{got}");
}

#[test]
fn a_neighbour_connection_is_unharmed() {
    let srv = start("127.0.0.1:0", &[]);
    let packet = uwsgi_packet(0, &nginx_vars("GET", "/echo", &[("HTTP_HOST", "n")]));
    // A holds a slot with half a packet.
    let mut a = Client::open(&srv);
    a.send(&packet[..10]);
    // B is refused, C is served meanwhile.
    let got = Client::open(&srv).exchange(&[0, 3, 0, 0, 9, 0, b'a']);
    assert!(got.starts_with(&error("400 Bad Request")), "{got}");
    let got = Client::open(&srv).exchange(&packet);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    // A completes.
    a.send(&packet[10..]);
    let got = normalise(&a.read_all());
    assert!(got.ends_with("GET /echo HTTP/1.1\nHost: n\n\n"), "{got}");
}

#[test]
fn chmod_and_chown_socket_set_the_unix_socket_mode_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = unix_path("chmod");
    let srv = start(
        &path,
        &["--chmod-socket", "660", "--chown-socket", "nobody:65534"],
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    let got = Client::open(&srv).exchange(&[100, 0, 0, 0]);
    assert_eq!(got.as_bytes(), [100, 0, 0, 1]);
}

/// Send a packet announcing a `LEN`-byte body, read the whole answer, then send the body: every
/// byte must be accepted (no reset) and the connection then ends cleanly. This is what nginx
/// does, body first, answer after; a reset there is a 502 (see `nginx::unread_big_bodies...`).
fn answer_then_body_is_taken_whole<const LEN: usize>(srv: &Server, target: &str, want: &str) {
    let len = LEN.to_string();
    let vars: Vec<_> = nginx_vars("POST", target, &[])
        .into_iter()
        .map(|(k, v)| {
            if k == "CONTENT_LENGTH" {
                (k, len.as_str())
            } else {
                (k, v)
            }
        })
        .collect();
    let mut s = TcpStream::connect(srv.uwsgi.as_deref().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&uwsgi_packet(0, &vars)).unwrap();
    // The whole answer: its head, then Content-Length bytes.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse::<usize>().ok())
            .expect("a Content-Length");
        body.len() >= len
    };
    while !complete(&got) {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the answer: {:?}", normalise(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let got = normalise(&got);
    assert!(got.starts_with(want), "{got}");
    s.write_all(&vec![b'x'; LEN])
        .expect("the rest of the body is read, not reset");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("a clean close after the body");
    assert_eq!(rest, b"", "nothing after the answer");
}

#[test]
fn an_unread_body_is_taken_whole_before_the_close() {
    let srv = start("127.0.0.1:0", &["--limit-post", "16777216"]);
    // `hello` (at /) does not read the body.
    answer_then_body_is_taken_whole::<{ 8 << 20 }>(&srv, "/", "HTTP/1.1 200 OK\r\n");
    // Over --limit-post: refused from CONTENT_LENGTH alone.
    answer_then_body_is_taken_whole::<{ 32 << 20 }>(&srv, "/echo", "HTTP/1.1 413 ");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_or_a_regular_file_is_refused() {
    let path = unix_path("stale");
    // A socket file nobody listens on any more (its process ended without removing it).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::path::Path::new(&path).exists());
    let mut srv = start(&path, &[]);
    let mut c = Client::open(&srv);
    c.send(&uwsgi_packet(100, &[]));
    assert_eq!(c.read_all(), [100, 0, 0, 1]);
    // While it serves, a second server on the same path is refused: one line, exit 1.
    let err = start_fails(&["--socket", &path, "--cores", "1"]);
    assert!(err.contains("another process is listening on it"), "{err}");
    assert!(srv.stop().success());
    assert!(!std::path::Path::new(&path).exists(), "removed at exit");
    // A regular file is never removed to make room.
    std::fs::write(&path, "data").unwrap();
    let err = start_fails(&["--socket", &path, "--cores", "1"]);
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_abstract_socket_serves_uwsgi() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ringsgi-test-{}", std::process::id());
    let srv = start(&format!("@{name}"), &[]);
    assert_eq!(srv.uwsgi.as_deref(), Some(format!("@{name}").as_str()));
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut s = UnixStream::connect_addr(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&uwsgi_packet(100, &[])).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, [100, 0, 0, 1]);
}
