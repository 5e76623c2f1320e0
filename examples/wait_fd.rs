//! `wait_fd_read` with a timeout, and `wait_fds` on several descriptors: uWSGI's
//! `wait_fd_read` + `ready_fd` + `x-wsgiorg.fdevent.timeout`.
//!
//! Run: `cargo run --release --example wait_fd -- --http 127.0.0.1:8080 --cores 1`
//! then `curl 'http://127.0.0.1:8080/?ms=300'`. A background task writes to one of two pipes
//! after `ms` milliseconds; the handler waits on both for at most 500 ms and reports which
//! became ready, or that the wait timed out (try `?ms=900`).

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use ringsgi::{Apps, app_fn};

fn main() {
    let mut apps = Apps::new();
    apps.register("wait", || {
        app_fn(|req, resp| {
            Box::pin(async move {
                let ms = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(300);
                let (r1, _w1) = std::io::pipe()?;
                let (r2, mut w2) = std::io::pipe()?;
                ringsgi::spawn(async move {
                    ringsgi::sleep(Duration::from_millis(ms)).await;
                    let _ = std::io::Write::write_all(&mut w2, b"!");
                })
                .detach();
                let pollin = libc::POLLIN as u32;
                let body = match ringsgi::wait_fds(
                    &[(r1.as_fd(), pollin), (r2.as_fd(), pollin)],
                    Some(Duration::from_millis(500)),
                )
                .await
                {
                    Ok(ready) => format!(
                        "pipe #{} is ready (revents {:#x})\n",
                        ready.index + 1,
                        ready.revents
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timed out\n".to_owned(),
                    Err(e) => return Err(e),
                };
                resp.send(200, body).await
            })
        })
    });
    common::serve("wait", apps)
}
