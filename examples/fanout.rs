//! Fan-out: one request fetches several URLs at once with `ringsgi::client` and
//! `join_all_timeout`, and answers one line per URL, in the order given.
//!
//! Run: `cargo run --release --example fanout -- --http 127.0.0.1:8080 --cores 1`
//! then `curl 'http://127.0.0.1:8080/fanout?u=http%3A%2F%2F127.0.0.1%3A8080%2F&timeout_ms=500'`
//! (URLs percent-encoded). Each line is `URL STATUS BYTES`, `URL timeout` (still running at
//! `timeout_ms`, default 1000) or `URL error <why>`. The whole answer comes within
//! `timeout_ms`. HTTPS URLs are verified against the system's CAs, or only the file that
//! `SSL_CERT_FILE` names when it is set.
//!
//! `GET /proxy?u=URL` answers with the upstream's status and body (the benchmark's proxy,
//! `benches/client_proxy.py`); `GET /` says hello.

mod common;

use std::time::Duration;

use ringsgi::client::Client;
use ringsgi::{Apps, app_fn};

/// At most this many URLs per request.
const MAX_URLS: usize = 64;
/// At most this long a fan-out may wait.
const MAX_TIMEOUT_MS: u64 = 60_000;

fn main() {
    let mut apps = Apps::new();
    apps.register("fanout", || {
        // Built once per worker, after the fork: the pool belongs to this worker.
        let client = Client::new();
        app_fn(move |req, resp| {
            let client = client.clone();
            Box::pin(async move {
                match req.path() {
                    "/fanout" => {}
                    "/proxy" => {
                        let Some(url) = query_values(req.query(), "u").into_iter().next() else {
                            return resp.send(400, "u=URL is required\n").await;
                        };
                        return match fetch(&client, &url).await {
                            Ok((status, body)) => resp.send(status, body).await,
                            Err(e) => resp.send(502, format!("{e}\n")).await,
                        };
                    }
                    "/" => return resp.send(200, "fanout: GET /fanout?u=URL&u=URL\n").await,
                    _ => return resp.send(404, "not found\n").await,
                }
                let urls = query_values(req.query(), "u");
                if urls.is_empty() || urls.len() > MAX_URLS {
                    return resp
                        .send(400, format!("give 1 to {MAX_URLS} u=URL parameters\n"))
                        .await;
                }
                let timeout_ms = match query_values(req.query(), "timeout_ms").first() {
                    None => 1000,
                    Some(t) => match t.parse::<u64>() {
                        Ok(t) if t <= MAX_TIMEOUT_MS => t,
                        _ => {
                            return resp
                                .send(400, format!("timeout_ms: 0 to {MAX_TIMEOUT_MS}\n"))
                                .await;
                        }
                    },
                };
                let timeout = Duration::from_millis(timeout_ms);
                let fetches = urls.iter().map(|u| fetch(&client, u)).collect();
                let results = ringsgi::join_all_timeout(fetches, timeout).await;
                let mut out = String::new();
                for (url, result) in urls.iter().zip(results) {
                    let line = match result {
                        None => format!("{url} timeout\n"),
                        Some(Ok((status, body))) => format!("{url} {status} {}\n", body.len()),
                        Some(Err(e)) => format!("{url} error {}\n", one_line(&e.to_string())),
                    };
                    out.push_str(&line);
                }
                resp.header("Content-Type", "text/plain; charset=utf-8");
                resp.send(200, out).await
            })
        })
    });
    common::serve("fanout", apps)
}

/// GET `url`: its status and whole body.
async fn fetch(client: &Client, url: &str) -> Result<(u16, bytes::Bytes), ringsgi::client::Error> {
    let r = client.get(url).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.bytes().await?))
}

/// Every value of query parameter `name`, percent-decoded (`+` is a space).
fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error's text on one line (the answer is one line per URL).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
