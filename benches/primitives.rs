//! Cost of the async primitives on one core, in nanoseconds per operation.
//!
//! Run: `cargo bench --bench primitives` (results in docs/benchmarks.md). Each figure is the
//! median of 5 rounds; a round times N operations in a loop on a one-core runtime
//! (`ringsgi::server::worker::block_on`). Pin it with `taskset -c 1` for steadier numbers.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ringsgi::server::worker::block_on;

const N: u32 = 100_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn rounds<F, Fut>(mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..N {
            f().await;
        }
        out.push(t0.elapsed().as_nanos() as f64 / f64::from(N));
    }
    median(out)
}

fn main() {
    let results = block_on(async {
        // A second task, so that suspend() really switches.
        ringsgi::spawn(async {
            loop {
                ringsgi::suspend().await;
            }
        })
        .detach();
        let suspend = rounds(ringsgi::suspend).await;
        let sleep0 = rounds(|| ringsgi::sleep(Duration::ZERO)).await;
        let (r, w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut &w, b"x").unwrap();
        let fd = r.as_fd();
        let wait_ready = rounds(|| async {
            ringsgi::wait_fd_read(fd, Some(Duration::from_secs(1)))
                .await
                .unwrap();
        })
        .await;
        let sleep_1us = {
            let t0 = Instant::now();
            let n = 2000;
            for _ in 0..n {
                ringsgi::sleep(Duration::from_micros(1)).await;
            }
            t0.elapsed().as_nanos() as f64 / f64::from(n)
        };
        vec![
            ("suspend() round trip (2 tasks)", suspend),
            ("sleep(0)", sleep0),
            (
                "wait_fd_read on a ready pipe (poll + linked timeout)",
                wait_ready,
            ),
            (
                "sleep(1 us) (a real timer: wake-up latency included)",
                sleep_1us,
            ),
        ]
    })
    .expect("runtime");
    println!("| primitive | ns per operation (median of 5 x {N}) |");
    println!("|---|---|");
    for (name, ns) in results {
        println!("| {name} | {ns:.0} |");
    }
}
