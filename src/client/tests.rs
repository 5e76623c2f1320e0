//! The client against local upstreams (threads with std sockets, rustls for HTTPS), inside a
//! real worker runtime: pool reuse and limits, the retry of a dead pooled connection, and
//! each fault an upstream can commit.

use std::time::Duration;

use super::*;
use crate::uring::tests::in_worker;

#[path = "../../tests/support/upstream.rs"]
mod upstream;

use upstream::{Conn, TestCa, Upstream, read_request, respond, respond_with, serve_body};

fn kind_of(r: Result<Response, Error>) -> ErrorKind {
    match r {
        Ok(resp) => panic!("expected an error, got {}", resp.status()),
        Err(e) => e.kind(),
    }
}

/// GET `url` and read its whole body (the test fails on any error).
async fn get_body(client: &Client, url: &str) -> Bytes {
    client.get(url).send().await.unwrap().bytes().await.unwrap()
}

#[test]
fn sequential_requests_reuse_one_connection() {
    let up = Upstream::start(serve_body(b"hello"));
    let url = up.url("http", "/x");
    let (bodies, stats) = in_worker(move |_| async move {
        let client = Client::new();
        let mut bodies = Vec::new();
        for _ in 0..20 {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            bodies.push(r.text().await.unwrap());
        }
        (bodies, client.pool_stats())
    });
    assert!(bodies.iter().all(|b| b == "hello"), "{bodies:?}");
    assert_eq!(
        up.accepted(),
        1,
        "one connection for 20 sequential requests"
    );
    assert_eq!(stats.opened, 1);
    assert_eq!(stats.reused, 19);
}

#[test]
fn concurrent_requests_stay_within_the_per_host_limit() {
    let up = Upstream::start(serve_body(b"ok"));
    let url = up.url("http", "/");
    let (ok, stats) = in_worker(move |_| async move {
        let client = Client::builder().pool_max_per_host(2).build();
        let reqs: Vec<_> = (0..10)
            .map(|_| {
                let c = client.clone();
                let url = url.clone();
                async move { c.get(&url).send().await?.bytes().await }
            })
            .collect();
        let out = crate::join_all_timeout(reqs, Duration::from_secs(20)).await;
        let ok = out
            .iter()
            .filter(|r| matches!(r, Some(Ok(b)) if &b[..] == b"ok"))
            .count();
        (ok, client.pool_stats())
    });
    assert_eq!(ok, 10);
    assert!(up.accepted() <= 2, "{} connections", up.accepted());
    assert!(stats.opened <= 2, "{stats:?}");
}

/// Answers the first request of each connection, then reads the next one and closes
/// without a word: a pooled connection the upstream gave up on.
fn one_request_per_connection(conn: &mut dyn Conn, _: usize) {
    if read_request(conn).is_some() {
        let _ = respond(conn, 200, b"first");
        let _ = read_request(conn);
    }
}

#[test]
fn a_dead_pooled_connection_is_retried_once_for_a_get() {
    let up = Upstream::start(one_request_per_connection);
    let url = up.url("http", "/");
    let (second, stats) = in_worker(move |_| async move {
        let client = Client::new();
        get_body(&client, &url).await;
        let r = client.get(&url).send().await.unwrap();
        (r.text().await.unwrap(), client.pool_stats())
    });
    assert_eq!(second, "first", "answered on a new connection");
    assert_eq!(up.accepted(), 2);
    assert_eq!(stats.retried, 1, "{stats:?}");
}

#[test]
fn a_post_on_a_dead_pooled_connection_is_not_sent_again() {
    let up = Upstream::start(one_request_per_connection);
    let url = up.url("http", "/");
    let (kind, stats) = in_worker(move |_| async move {
        let client = Client::new();
        get_body(&client, &url).await;
        let r = client.post(&url).body("data").send().await;
        (kind_of(r), client.pool_stats())
    });
    assert_eq!(kind, ErrorKind::ClosedBeforeResponse);
    assert_eq!(stats.retried, 0);
    assert_eq!(up.accepted(), 1);
}

#[test]
fn a_malformed_response_is_a_protocol_error() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        if read_request(conn).is_some() {
            let _ = conn.write_all(b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok");
            upstream::until_closed(conn);
        }
    });
    let url = up.url("http", "/");
    let kind = in_worker(move |_| async move { kind_of(Client::new().get(&url).send().await) });
    assert_eq!(kind, ErrorKind::Protocol);
    assert_eq!(up.next_ended(), Some(0), "the client closed the connection");
}

#[test]
fn garbage_instead_of_a_response_is_a_protocol_error() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        if read_request(conn).is_some() {
            let _ = conn.write_all(b"\x00\x01 not http at all\r\n\r\n");
            upstream::until_closed(conn);
        }
    });
    let url = up.url("http", "/");
    let kind = in_worker(move |_| async move { kind_of(Client::new().get(&url).send().await) });
    assert_eq!(kind, ErrorKind::Protocol);
}

#[test]
fn a_close_in_the_middle_of_the_body_is_reported() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        if read_request(conn).is_some() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
        }
    });
    let url = up.url("http", "/");
    let (status, kind, stats) = in_worker(move |_| async move {
        let client = Client::new();
        let r = client.get(&url).send().await.unwrap();
        let status = r.status();
        let kind = r.bytes().await.unwrap_err().kind();
        (status, kind, client.pool_stats())
    });
    assert_eq!(status, 200);
    assert_eq!(kind, ErrorKind::ClosedMidBody);
    assert_eq!(stats.idle, 0, "a broken connection is not pooled");
}

#[test]
fn a_close_before_the_head_is_reported() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        let _ = read_request(conn);
    });
    let url = up.url("http", "/");
    let kind = in_worker(move |_| async move { kind_of(Client::new().get(&url).send().await) });
    assert_eq!(kind, ErrorKind::ClosedBeforeResponse);
}

#[test]
fn a_stalled_upstream_times_out_and_its_connection_is_closed() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        if read_request(conn).is_some() {
            // Half a body, then silence until the client goes.
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
            upstream::until_closed(conn);
        }
    });
    let up2 = Upstream::start(|conn: &mut dyn Conn, _| {
        let _ = read_request(conn);
        upstream::until_closed(conn);
    });
    let (url, url2) = (up.url("http", "/"), up2.url("http", "/"));
    let (body_kind, head_kind, stats) = in_worker(move |_| async move {
        let client = Client::builder()
            .timeout(Duration::from_millis(200))
            .build();
        let r = client.get(&url).send().await.unwrap();
        let body_kind = r.bytes().await.unwrap_err().kind();
        let head_kind = kind_of(client.get(&url2).send().await);
        (body_kind, head_kind, client.pool_stats())
    });
    assert_eq!(body_kind, ErrorKind::Timeout);
    assert_eq!(head_kind, ErrorKind::Timeout);
    assert_eq!(stats.idle, 0);
    // The client closed both connections: nothing lingers on a stalled upstream.
    assert_eq!(up.next_ended(), Some(0));
    assert_eq!(up2.next_ended(), Some(0));
}

#[test]
fn a_refused_connection_is_a_connect_error() {
    let url = format!("http://127.0.0.1:{}/", upstream::refused_port());
    let (kind, text) = in_worker(move |_| async move {
        let e = Client::new().get(&url).send().await.unwrap_err();
        (e.kind(), e.to_string())
    });
    assert_eq!(kind, ErrorKind::Connect);
    assert!(text.contains("refused"), "{text}");
}

#[test]
fn bad_urls_are_refused_before_any_io() {
    let kinds = in_worker(|_| async {
        let c = Client::new();
        let mut kinds = Vec::new();
        for url in ["ftp://x/", "no-scheme", "http:///path", "http://a b/"] {
            kinds.push(c.get(url).send().await.unwrap_err().kind());
        }
        kinds
    });
    assert!(
        kinds.iter().all(|k| *k == ErrorKind::InvalidUrl),
        "{kinds:?}"
    );
}

/// A directory for a test's CA file, removed when dropped.
struct TmpDir(std::path::PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tls_dir(name: &str) -> TmpDir {
    TmpDir(std::env::temp_dir().join(format!("ringsgi-client-{name}-{}", std::process::id())))
}

#[test]
fn https_with_a_trusted_ca() {
    let ca = TestCa::new("ringsgi test CA");
    let up = Upstream::start_tls(ca.server_config(), serve_body(b"secret"));
    let dir = tls_dir("trusted");
    let ca_file = ca.write_pem(&dir.0);
    let urls = [
        up.url("https", "/a"),
        format!("https://localhost:{}/b", up.addr.port()),
    ];
    let (bodies, stats) = in_worker(move |_| async move {
        let client = Client::builder()
            .system_roots(false)
            .add_root_pem_file(ca_file)
            .build();
        let mut bodies = Vec::new();
        for url in urls.iter().chain(urls.iter()) {
            let r = client.get(url).send().await.unwrap();
            bodies.push(r.text().await.unwrap());
        }
        (bodies, client.pool_stats())
    });
    assert_eq!(bodies, ["secret"; 4]);
    // Two authorities (127.0.0.1 and localhost): one connection each, reused once.
    assert_eq!(stats.opened, 2, "{stats:?}");
    assert_eq!(up.accepted(), 2);
}

/// The error of a GET to `up` over HTTPS from a client that trusts only `trusted` (its PEM in a
/// fresh directory named after `dir`).
fn https_error_trusting(up: &Upstream, trusted: &TestCa, dir: &str) -> (ErrorKind, String) {
    let dir = tls_dir(dir);
    let ca_file = trusted.write_pem(&dir.0);
    let url = up.url("https", "/");
    in_worker(move |_| async move {
        let client = Client::builder()
            .system_roots(false)
            .add_root_pem_file(ca_file)
            .build();
        let e = client.get(&url).send().await.unwrap_err();
        (e.kind(), e.to_string())
    })
}

#[test]
fn https_with_a_certificate_from_an_unknown_ca_is_a_tls_error() {
    let ca = TestCa::new("the server's CA");
    let other = TestCa::new("the CA the client trusts");
    let up = Upstream::start_tls(ca.server_config(), serve_body(b"secret"));
    let (kind, text) = https_error_trusting(&up, &other, "untrusted");
    assert_eq!(kind, ErrorKind::Tls);
    assert!(text.contains("certificate"), "{text}");
}

#[test]
fn https_to_a_name_the_certificate_does_not_cover_is_a_tls_error() {
    let ca = TestCa::new("ringsgi test CA");
    let up = Upstream::start_tls(ca.server_config_for(&["other.example"]), serve_body(b"x"));
    let (kind, text) = https_error_trusting(&up, &ca, "name");
    assert_eq!(kind, ErrorKind::Tls);
    assert!(text.contains("certificate"), "{text}");
}

#[test]
fn plain_http_to_a_tls_port_fails_cleanly() {
    let ca = TestCa::new("ringsgi test CA");
    let up = Upstream::start_tls(ca.server_config(), serve_body(b"secret"));
    let url = up.url("http", "/");
    let kind = in_worker(move |_| async move {
        let client = Client::builder().timeout(Duration::from_secs(5)).build();
        kind_of(client.get(&url).send().await)
    });
    assert!(
        matches!(kind, ErrorKind::Protocol | ErrorKind::ClosedBeforeResponse),
        "{kind:?}"
    );
}

#[test]
fn json_both_ways_and_a_streamed_request_body() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        while let Some(req) = read_request(conn) {
            let te = req.header("transfer-encoding").unwrap_or("-").to_owned();
            let ct = req.header("content-type").unwrap_or("-").to_owned();
            if respond_with(conn, 200, &[("X-TE", &te), ("X-CT", &ct)], &req.body).is_err() {
                return;
            }
        }
    });
    let url = up.url("http", "/echo");
    let (value, te, streamed) = in_worker(move |_| async move {
        let client = Client::new();
        let sent = serde_json::json!({"id": 7, "names": ["a", "b"]});
        let r = client.post(&url).json(&sent).send().await.unwrap();
        assert_eq!(r.headers()["x-ct"], "application/json");
        let value: serde_json::Value = r.json().await.unwrap();
        assert_eq!(value, sent);
        let parts = (0..5).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("part{i};"))));
        let r = client
            .put(&url)
            .body(Body::from_stream(futures_lite::stream::iter(parts)))
            .send()
            .await
            .unwrap();
        let te = r.headers()["x-te"].to_str().unwrap().to_owned();
        (value, te, r.text().await.unwrap())
    });
    assert_eq!(value["id"], 7);
    assert_eq!(te, "chunked");
    assert_eq!(streamed, "part0;part1;part2;part3;part4;");
}

#[test]
fn a_large_response_streams_in_chunks() {
    const LEN: usize = 1 << 20;
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        if read_request(conn).is_some() {
            let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
            let _ = respond(conn, 200, &body);
        }
    });
    let url = up.url("http", "/big");
    let (chunks, total, ok) = in_worker(move |_| async move {
        let mut r = Client::new().get(&url).send().await.unwrap();
        let (mut chunks, mut total, mut ok) = (0, 0, true);
        while let Some(c) = r.chunk().await.unwrap() {
            ok &= c
                .iter()
                .enumerate()
                .all(|(i, b)| *b == ((total + i) % 251) as u8);
            chunks += 1;
            total += c.len();
        }
        (chunks, total, ok)
    });
    assert_eq!(total, LEN);
    assert!(ok, "bytes out of order");
    assert!(chunks > 1, "the body came in {chunks} chunk(s)");
}

#[test]
fn redirects_are_off_by_default_and_limited_when_on() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        while let Some(req) = read_request(conn) {
            let r = match req.target.as_str() {
                "/start" => respond_with(conn, 302, &[("Location", "/end")], b""),
                "/loop" => respond_with(conn, 301, &[("Location", "loop")], b""),
                "/see-other" => respond_with(conn, 303, &[("Location", "/method")], b""),
                "/method" => respond(conn, 200, req.method.as_bytes()),
                _ => respond(conn, 200, b"the end"),
            };
            if r.is_err() {
                return;
            }
        }
    });
    let base = up.url("http", "");
    let out = in_worker(move |_| async move {
        let off = Client::new();
        let r = off.get(&format!("{base}/start")).send().await.unwrap();
        let status_off = r.status();
        drop(r);
        let on = Client::builder().redirects(3).build();
        let r = on.get(&format!("{base}/start")).send().await.unwrap();
        let (url, body) = (r.url().path().to_owned(), r.text().await.unwrap());
        let looped = on
            .get(&format!("{base}/loop"))
            .send()
            .await
            .unwrap_err()
            .kind();
        let r = on
            .post(&format!("{base}/see-other"))
            .body("x")
            .send()
            .await
            .unwrap();
        let method = r.text().await.unwrap();
        (status_off, url, body, looped, method)
    });
    assert_eq!(out.0, 302);
    assert_eq!((out.1.as_str(), out.2.as_str()), ("/end", "the end"));
    assert_eq!(out.3, ErrorKind::TooManyRedirects);
    assert_eq!(out.4, "GET");
}

#[test]
fn idle_connections_expire() {
    let up = Upstream::start(serve_body(b"x"));
    let url = up.url("http", "/");
    let stats = in_worker(move |_| async move {
        let client = Client::builder()
            .pool_idle_timeout(Duration::from_millis(50))
            .build();
        get_body(&client, &url).await;
        // Waiting for time itself to pass: the timeout is what is tested.
        crate::sleep(Duration::from_millis(300)).await;
        let idle_after = client.pool_stats().idle;
        get_body(&client, &url).await;
        (idle_after, client.pool_stats())
    });
    assert_eq!(stats.0, 0, "the sweeper closed the idle connection");
    assert_eq!(stats.1.opened, 2);
    assert_eq!(up.accepted(), 2);
    assert_eq!(
        up.next_ended(),
        Some(0),
        "the expired connection was closed"
    );
}

#[test]
fn an_endless_response_head_is_a_protocol_error() {
    let up = Upstream::start(|conn: &mut dyn Conn, _| {
        if read_request(conn).is_some() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n");
            let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
            for _ in 0..2000 {
                if conn.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        }
    });
    let url = up.url("http", "/");
    let kind = in_worker(move |_| async move { kind_of(Client::new().get(&url).send().await) });
    assert_eq!(kind, ErrorKind::Protocol);
}

#[test]
fn a_response_dropped_before_its_end_closes_its_connection() {
    let up = std::sync::Arc::new(Upstream::start(|conn: &mut dyn Conn, _| {
        while read_request(conn).is_some() {
            if respond(conn, 200, &[b'x'; 100_000]).is_err() {
                return;
            }
        }
    }));
    let url = up.url("http", "/");
    let up2 = up.clone();
    let (ended, stats) = in_worker(move |_| async move {
        let client = Client::new();
        let mut r = client.get(&url).send().await.unwrap();
        assert!(r.chunk().await.unwrap().is_some());
        drop(r);
        let body = get_body(&client, &url).await;
        assert_eq!(body.len(), 100_000);
        // While the client (and its pooled connection) lives, the upstream sees the first
        // connection end: polled without blocking the worker, bounded (20 s).
        let mut ended = None;
        for _ in 0..2000 {
            ended = up2.try_ended();
            if ended.is_some() {
                break;
            }
            crate::sleep(Duration::from_millis(10)).await;
        }
        (ended, client.pool_stats())
    });
    assert_eq!(ended, Some(0), "the abandoned connection was closed");
    assert_eq!(stats.opened, 2);
    assert_eq!(stats.idle, 1, "the fully read one is pooled at once");
}

#[test]
fn the_worker_default_client_is_shared_on_a_worker() {
    let up = Upstream::start(serve_body(b"x"));
    let url = up.url("http", "/");
    let opened = in_worker(move |_| async move {
        for _ in 0..3 {
            let c = Client::worker_default();
            get_body(&c, &url).await;
        }
        Client::worker_default().pool_stats().opened
    });
    assert_eq!(opened, 1);
    assert_eq!(up.accepted(), 1);
}
