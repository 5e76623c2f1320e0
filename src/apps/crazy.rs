//! `crazy`: the uWSGI gevent docs' "crazy example", step for step: join a spawned task, sleep
//! inside a request, resolve names concurrently with a join timeout, and leave a background
//! task running after the response has ended.
//!
//! `?sleep_ms=N` (default 3000) and `?bg_ms=N` (default 2000) shorten the waits for tests.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ringsgi::{App, BoxFuture, Request, Response};

/// The crazy example; `names` come from `--crazy-names`.
pub(crate) struct Crazy {
    pub(crate) names: Rc<Vec<String>>,
}

fn ms_param(req: &Request, name: &str, default: u64) -> u64 {
    req.query_param(name)
        .and_then(|v| v.parse().ok())
        .filter(|ms| *ms <= 60_000)
        .unwrap_or(default)
}

/// `gethostbyname`: the first IPv4 address, else the first address.
fn first_addr(addrs: &[SocketAddr]) -> Option<std::net::IpAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(SocketAddr::ip)
}

impl App for Crazy {
    fn call<'a>(&'a self, req: &'a mut Request, resp: &'a mut Response) -> BoxFuture<'a> {
        Box::pin(async move {
            let sleep = Duration::from_millis(ms_param(req, "sleep_ms", 3000));
            let bg = Duration::from_millis(ms_param(req, "bg_ms", 2000));
            let (worker, slot) = (req.worker_id(), req.slot_id());
            resp.header("Content-Type", "text/html");
            resp.start(200)?;
            // t = gevent.spawn(long_task); t.join()
            ringsgi::spawn(async move {
                for i in 1..10 {
                    tracing::info!("crazy (worker {worker} slot {slot}): long task {i}");
                    ringsgi::suspend().await;
                }
            })
            .await;
            resp.write("sleeping for 3 seconds...<br/>").await?;
            ringsgi::sleep(sleep).await;
            resp.write("done<br>").await?;
            resp.write("getting some ips...<br/>").await?;
            let jobs = self
                .names
                .iter()
                .map(|n| {
                    let n = n.clone();
                    async move { ringsgi::resolve(&n, 0).await }
                })
                .collect();
            let results = ringsgi::join_all_timeout(jobs, Duration::from_secs(2)).await;
            for r in results {
                let ip = match r {
                    Some(Ok(addrs)) => {
                        first_addr(&addrs).map_or("None".to_owned(), |ip| ip.to_string())
                    }
                    _ => "None".to_owned(),
                };
                resp.write(format!("ip = {ip}<br/>")).await?;
            }
            // gevent.spawn(bg_task): goes on after the request ends.
            ringsgi::spawn(async move {
                for i in 1..10 {
                    tracing::info!("crazy (worker {worker}): background task {i}");
                    ringsgi::sleep(bg).await;
                }
            })
            .detach();
            resp.finish().await
        })
    }
}
