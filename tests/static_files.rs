//! `--static-map` / `--static-index` against the real binary: bytes, validators, ranges,
//! path safety, symlinks, fall-through to the app, and a slow reader that blocks no one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{Conn, Resp, Server};

/// A directory tree for one test under the system temp dir, removed on drop:
/// `root/` (served) and `outside/` (not served) side by side.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "ringsgi-static-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let t = Tree { base };
        std::fs::create_dir_all(t.root().join("sub")).unwrap();
        std::fs::create_dir_all(t.root().join("bare")).unwrap();
        std::fs::create_dir_all(t.base.join("outside")).unwrap();
        std::fs::write(t.root().join("small.txt"), SMALL).unwrap();
        std::fs::write(t.root().join("sub/index.html"), b"<p>index</p>").unwrap();
        std::fs::write(t.root().join("sub/a.css"), b"p{}").unwrap();
        std::fs::write(t.base.join("outside/secret.txt"), b"SECRET").unwrap();
        std::os::unix::fs::symlink("small.txt", t.root().join("inner-link.txt")).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", t.root().join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(t.base.join("outside"), t.root().join("escape-dir")).unwrap();
        t
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// A file of `len` pseudo-random bytes under the root; returns its contents.
    fn big(&self, name: &str, len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9u32;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(self.root().join(name), &data).unwrap();
        data
    }

    fn map(&self) -> String {
        format!("/static={}", self.root().display())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

const SMALL: &[u8] = b"small file contents\n";

fn start(tree: &Tree, extra: &[&str]) -> Server {
    let map = tree.map();
    let mut args = vec!["--cores", "1", "--static-map", &map];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Send `head` (a full request head) on a new keep-alive connection and read one response.
fn ask(srv: &Server, head: &str) -> Resp {
    let mut c = Conn::open(srv.addr);
    c.send(head.as_bytes());
    c.read(head.starts_with("HEAD ")).expect("a response")
}

fn get(srv: &Server, path: &str) -> Resp {
    ask(srv, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

fn get_with(srv: &Server, path: &str, header: &str) -> Resp {
    ask(
        srv,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{header}\r\n\r\n"),
    )
}

#[test]
fn get_head_and_validators() {
    let tree = Tree::new("get");
    let big = tree.big("big.bin", 3 * 1024 * 1024 + 17);
    let mut srv = start(&tree, &[]);

    let r = get(&srv, "/static/small.txt");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, SMALL);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("20"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("etag").to_owned();
    let lm = r.header("last-modified").expect("last-modified").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert!(httpdate::parse_http_date(&lm).is_ok(), "{lm}");

    // Several responses on one connection, the multi-MB one byte-exact.
    let mut c = Conn::open(srv.addr);
    for _ in 0..2 {
        c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body.len(), big.len());
        assert!(r.body == big, "big file bytes differ");
    }

    // HEAD: the same head, no body (the next response on the connection parses cleanly).
    c.send(b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.read(true).unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(
        h.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    c.send(b"GET /static/small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read(false).unwrap().body, SMALL);

    // 304 through either validator; a changed tag gets the body.
    let r = get_with(&srv, "/static/small.txt", &format!("If-None-Match: {etag}"));
    assert_eq!(r.status, 304, "{}", r.head);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), None);
    let r = get_with(
        &srv,
        "/static/small.txt",
        &format!("If-Modified-Since: {lm}"),
    );
    assert_eq!(r.status, 304, "{}", r.head);
    let r = get_with(&srv, "/static/small.txt", "If-None-Match: \"other\"");
    assert_eq!((r.status, r.body.as_slice()), (200, SMALL));
    let r = get_with(
        &srv,
        "/static/small.txt",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT",
    );
    assert_eq!(r.status, 200);

    // The request log has a line per static request, as for app requests.
    srv.wait_for("GET /static/big.bin => 200 3145745 bytes");
}

#[test]
fn ranges() {
    let tree = Tree::new("range");
    let big = tree.big("big.bin", 1_000_000);
    let srv = start(&tree, &[]);
    let cases: &[(&str, u16, &str, std::ops::Range<usize>)] = &[
        ("bytes=0-99", 206, "bytes 0-99/1000000", 0..100),
        (
            "bytes=999000-",
            206,
            "bytes 999000-999999/1000000",
            999_000..1_000_000,
        ),
        (
            "bytes=-10",
            206,
            "bytes 999990-999999/1000000",
            999_990..1_000_000,
        ),
        (
            "bytes=300000-700000",
            206,
            "bytes 300000-700000/1000000",
            300_000..700_001,
        ),
        ("bytes=0-1,5-6", 200, "", 0..1_000_000),
    ];
    for (range, status, content_range, bytes) in cases {
        let r = get_with(&srv, "/static/big.bin", &format!("Range: {range}"));
        assert_eq!(r.status, *status, "{range}: {}", r.head);
        assert_eq!(
            r.header("content-range").unwrap_or(""),
            *content_range,
            "{range}"
        );
        assert!(r.body == big[bytes.clone()], "{range}: wrong bytes");
    }
    let r = get_with(&srv, "/static/big.bin", "Range: bytes=1000000-");
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(r.header("content-range"), Some("bytes */1000000"));
    // If-Range with a stale tag: the whole file.
    let r = ask(
        &srv,
        "GET /static/big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nIf-Range: \"stale\"\r\n\r\n",
    );
    assert_eq!((r.status, r.body.len()), (200, 1_000_000));
}

#[test]
fn traversal_and_symlinks() {
    let tree = Tree::new("safe");
    let srv = start(&tree, &["--static-index", "index.html"]);
    // (path, status): refused before or by the kernel; never the secret.
    let table: &[(&str, u16)] = &[
        ("/static/../outside/secret.txt", 403),
        ("/static/sub/../../outside/secret.txt", 403),
        ("/static/%2e%2e/outside/secret.txt", 403),
        ("/static/%2E%2E/outside/secret.txt", 403),
        ("/static/sub/%2e%2e/%2e%2e/outside/secret.txt", 403),
        ("/static/..%2foutside%2fsecret.txt", 403),
        ("/static/sub%2f..%2f..%2foutside/secret.txt", 403),
        ("/static/small.txt%00.png", 403),
        ("/static/..%5coutside%5csecret.txt", 403),
        ("/static/%zz", 400),
        ("/static/escape.txt", 403),
        ("/static/escape-dir/secret.txt", 403),
    ];
    for (path, status) in table {
        let r = get(&srv, path);
        assert_eq!(r.status, *status, "{path}: {}", r.head);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SECRET"),
            "{path} leaked the file"
        );
    }
    // A symlink inside the root is followed.
    let r = get(&srv, "/static/inner-link.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, SMALL));
    // A decoded name is served once decoded.
    std::fs::write(tree.root().join("a b.txt"), b"spaced").unwrap();
    let r = get(&srv, "/static/a%20b.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"spaced"[..]));
}

#[test]
fn index_and_fall_through_to_the_app() {
    let tree = Tree::new("index");
    let srv = start(&tree, &["--static-index", "index.html"]);
    for path in ["/static/sub", "/static/sub/"] {
        let r = get(&srv, path);
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        assert_eq!(r.body, b"<p>index</p>");
        assert_eq!(r.header("content-type"), Some("text/html"));
    }
    let r = get(&srv, "/static/sub/a.css");
    assert_eq!(r.header("content-type"), Some("text/css"));
    // Not a file here: the app mounted at / (hello) answers, as in uWSGI.
    for path in [
        "/static/missing.txt",
        "/static/bare",
        "/static/small.txt/",
        "/elsewhere",
    ] {
        let r = get(&srv, path);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"Hello World!"[..]),
            "{path}: {}",
            r.head
        );
    }
    // Other methods on a static file go to the app.
    let r = ask(
        &srv,
        "POST /static/small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello World!"[..]));

    // Without --static-index a directory is refused.
    let srv = start(&tree, &[]);
    assert_eq!(get(&srv, "/static/sub/").status, 403);
}

#[test]
fn missing_static_dir_is_a_config_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringsgi"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--static-map",
            "/s=/nonexistent/ringsgi-static",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--static-map '/s=/nonexistent/ringsgi-static'"),
        "{err}"
    );
}

/// A client that stops reading a large file holds its own slot only: on the same (single)
/// worker another request is answered while the first transfer is stalled, and the stalled
/// transfer completes byte-exact once its client reads again.
#[test]
fn a_slow_reader_does_not_block_the_worker() {
    let tree = Tree::new("slow");
    // Larger than what loopback socket buffers absorb, so the server must wait on the client.
    let big = tree.big("huge.bin", 48 * 1024 * 1024);
    let mut srv = start(&tree, &[]);

    let mut slow = TcpStream::connect(srv.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /static/huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Read the head and the first bytes, then stop reading.
    let mut first = vec![0u8; 64 * 1024];
    let n = slow.read(&mut first).unwrap();
    assert!(n > 0);
    first.truncate(n);

    let t0 = Instant::now();
    let r = get(&srv, "/static/small.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, SMALL));
    let app = get(&srv, "/app");
    assert_eq!(app.status, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the other requests waited {:?}",
        t0.elapsed()
    );
    // The big transfer was still in progress then: its log line (written when a request ends,
    // in order with the others) is not before the app's.
    srv.wait_for("GET /app =>");
    assert!(
        !srv.drain().iter().any(|l| l.contains("huge.bin =>")),
        "the slow transfer had already finished: the test proves nothing"
    );

    // Now drain the slow one: it must be complete and exact.
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    let split = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(first.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(first.len() - split, big.len());
    assert!(first[split..] == big[..], "slow transfer bytes differ");
}

/// A large range of a multi-MB file (unaligned, spanning several pipe fills) is spliced from
/// the range start for the range length; the connection stays usable afterwards (keep-alive
/// after a spliced body, then a small file on the copying path, then HEAD).
#[test]
fn large_range_then_keep_alive() {
    let tree = Tree::new("bigrange");
    let big = tree.big("big.bin", 5_000_003);
    let mut srv = start(&tree, &[]);
    let mut c = Conn::open(srv.addr);
    let (a, b) = (1_234_567usize, 4_567_890usize);
    c.send(
        format!("GET /static/big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={a}-{b}\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read(false).expect("a response");
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {a}-{b}/5000003").as_str())
    );
    assert_eq!(r.body.len(), b - a + 1);
    assert!(r.body == big[a..=b], "wrong bytes in the range");
    c.send(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c
        .read(false)
        .expect("a second response on the same connection");
    assert_eq!((r.status, r.body.len()), (200, big.len()));
    assert!(r.body == big, "wrong bytes in the whole file");
    c.send(b"GET /static/small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(false).expect("a third response");
    assert_eq!((r.status, r.body.as_slice()), (200, SMALL));
    c.send(b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read(true).expect("a HEAD response");
    assert_eq!(r.header("content-length"), Some("5000003"));
    assert!(r.body.is_empty());
    // Logged with the body bytes actually sent.
    srv.wait_for(&format!("GET /static/big.bin => 206 {} bytes", b - a + 1));
    srv.wait_for("GET /static/big.bin => 200 5000003 bytes");
}
