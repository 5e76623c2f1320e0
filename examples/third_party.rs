//! Calling a third party from a request: `resolve` off the core, `connect` with a timeout,
//! and the `futures-io` traits on the stream; a background `spawn` that outlives the request;
//! `join_all_timeout` for concurrent lookups.
//!
//! Run: `cargo run --release --example third_party -- --http 127.0.0.1:8080 --cores 1`
//! then `curl 'http://127.0.0.1:8080/?host=localhost&port=8080'`: the handler makes an HTTP
//! request to `host:port` (here: to itself) and returns the status line it got.

mod common;

use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use ringsgi::{Apps, app_fn};

fn main() {
    let mut apps = Apps::new();
    apps.register("third_party", || {
        app_fn(|req, resp| {
            Box::pin(async move {
                if req.query_param("host").is_none() {
                    return resp.send(200, "the third party says hi\n").await;
                }
                let host = req.query_param("host").unwrap_or("localhost").to_owned();
                let port = req
                    .query_param("port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(80);
                let lookups = ringsgi::join_all_timeout(
                    vec![ringsgi::resolve(&host, port)],
                    Duration::from_secs(2),
                )
                .await;
                let Some(Some(Ok(addrs))) = lookups.into_iter().next() else {
                    return resp.send(502, format!("cannot resolve {host}\n")).await;
                };
                let Some(addr) = addrs.first().copied() else {
                    return resp.send(502, format!("{host} has no address\n")).await;
                };
                let mut conn = ringsgi::connect(addr, Some(Duration::from_secs(2))).await?;
                conn.set_read_timeout(Some(Duration::from_secs(5)));
                conn.write_all(
                    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await?;
                let mut answer = Vec::new();
                conn.read_to_end(&mut answer).await?;
                let status = String::from_utf8_lossy(
                    answer.split(|&b| b == b'\r').next().unwrap_or_default(),
                )
                .into_owned();
                ringsgi::spawn(async move {
                    ringsgi::sleep(Duration::from_secs(1)).await;
                    tracing::info!("a second after the response: {addr} answered {status:?}");
                })
                .detach();
                resp.send(
                    200,
                    format!(
                        "{addr} answered: {}\n",
                        String::from_utf8_lossy(&answer[..answer.len().min(15)])
                    ),
                )
                .await
            })
        })
    });
    common::serve("third_party", apps)
}
