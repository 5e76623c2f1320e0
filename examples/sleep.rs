//! `sleep` and `suspend`: a slow third party simulated by a timer, and a long computation
//! that lets the other request slots run between its steps.
//!
//! Run: `cargo run --release --example sleep -- --http 127.0.0.1:8080 --cores 1 --async 1000`
//! then `ab -c 500 -n 500 'http://127.0.0.1:8080/?ms=1000'`: 500 requests in about one second
//! on one core; `curl 'http://127.0.0.1:8080/?work=1'` computes while others keep going.

mod common;

use std::time::Duration;

use ringsgi::{Apps, app_fn};

fn main() {
    let mut apps = Apps::new();
    apps.register("sleep", || {
        app_fn(|req, resp| {
            Box::pin(async move {
                if req.query_param("work").is_some() {
                    let mut sum = 0u64;
                    for step in 0..1000u64 {
                        sum = (0..10_000u64).fold(sum, |a, b| a.wrapping_add(b * step));
                        ringsgi::suspend().await; // other slots run here
                    }
                    return resp.send(200, format!("sum {sum}\n")).await;
                }
                let ms = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                ringsgi::sleep(Duration::from_millis(ms)).await;
                resp.send(
                    200,
                    format!(
                        "slept {ms} ms on worker {:?} slot {:?}\n",
                        ringsgi::worker_id(),
                        ringsgi::slot_id()
                    ),
                )
                .await
            })
        })
    });
    common::serve("sleep", apps)
}
