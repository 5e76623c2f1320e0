//! The primitives inside a real worker runtime: both outcomes of every timeout, ordering,
//! concurrency, background tasks, name lookups and outbound TCP.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::uring::tests::in_worker;

#[test]
fn sleeps_finish_in_deadline_order() {
    let order = in_worker(|_| async {
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let tasks: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(ms);
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let t0 = Instant::now();
        sleep(Duration::ZERO).await;
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "sleep(0) must not wait"
        );
        order.take()
    });
    assert_eq!(order, vec![10, 20, 30]);
}

#[test]
fn many_concurrent_sleeps() {
    const N: usize = 100_000;
    let done = in_worker(|_| async {
        let done = Rc::new(Cell::new(0usize));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let done = done.clone();
                spawn(async move {
                    sleep(Duration::from_millis(100 + (i % 7) as u64)).await;
                    done.set(done.get() + 1);
                })
            })
            .collect();
        assert_eq!(background_tasks(), N as u64);
        for t in tasks {
            t.await;
        }
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(background_tasks(), 0);
        done.get()
    });
    assert_eq!(done, N);
}

#[test]
fn suspend_lets_other_tasks_run() {
    in_worker(|_| async {
        let flag = Rc::new(Cell::new(false));
        let f = flag.clone();
        spawn(async move { f.set(true) }).detach();
        let mut rounds = 0;
        while !flag.get() {
            suspend().await;
            rounds += 1;
            assert!(rounds < 1000, "the other task never ran");
        }
    });
}

#[test]
fn background_task_outlives_its_starter() {
    in_worker(|_| async {
        let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
        {
            // The "request" starts a task and ends without waiting for it.
            spawn(async move {
                sleep(Duration::from_millis(20)).await;
                tx.send(42u32).await.unwrap();
            })
            .detach();
        }
        assert_eq!(background_tasks(), 1);
        assert_eq!(rx.recv().await, Some(42));
        // The task ends after its send; give it the turn to finish.
        for _ in 0..100 {
            if background_tasks() == 0 {
                break;
            }
            suspend().await;
        }
        assert_eq!(background_tasks(), 0);
    });
}

#[test]
fn join_all_timeout_returns_the_finished_and_cancels_the_rest() {
    let (out, elapsed) = in_worker(|_| async {
        let t0 = Instant::now();
        let slow = |ms: u64, v: u32| async move {
            sleep(Duration::from_millis(ms)).await;
            v
        };
        let out = join_all_timeout(
            vec![
                Box::pin(slow(10, 1)) as std::pin::Pin<Box<dyn std::future::Future<Output = u32>>>,
                Box::pin(slow(60_000, 2)),
                Box::pin(slow(20, 3)),
            ],
            Duration::from_millis(200),
        )
        .await;
        (out, t0.elapsed())
    });
    assert_eq!(out, vec![Some(1), None, Some(3)]);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    // All finished early: no need to wait for the deadline.
    let (out, elapsed) = in_worker(|_| async {
        let t0 = Instant::now();
        let out = join_all_timeout(
            vec![sleep(Duration::from_millis(5))],
            Duration::from_secs(60),
        )
        .await;
        (out, t0.elapsed())
    });
    assert_eq!(out, vec![Some(())]);
    assert!(elapsed < Duration::from_secs(30));
}

#[test]
fn resolve_finds_localhost_and_rejects_nonsense() {
    let (good, bad) = in_worker(|_| async {
        (
            resolve("localhost", 80).await,
            resolve("no-such-host.invalid", 80).await,
        )
    });
    let good = good.unwrap();
    assert!(
        good.iter().any(|a| a.ip().is_loopback() && a.port() == 80),
        "{good:?}"
    );
    assert!(bad.is_err());
}

#[test]
fn tcp_stream_round_trip_and_read_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        s.write_all(b" world").unwrap();
        // Then stay silent until the client closes.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        rest
    });
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    in_worker(move |driver| async move {
        let mut c = connect(addr, Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);
        c.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 11];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        c.set_read_timeout(Some(Duration::from_millis(50)));
        let mut byte = [0u8; 1];
        let err = c.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // A timed-out stream is broken: bytes may have moved.
        assert!(c.read(&mut byte).await.is_err());
        drop(c);
        let err = connect(closed, Some(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        // Nothing left in flight once the dropped stream's operations are done.
        let deadline = Instant::now() + Duration::from_secs(5);
        while driver.stats().ops_in_flight > 0 {
            assert!(Instant::now() < deadline, "{:?}", driver.stats());
            sleep(Duration::from_millis(1)).await;
        }
    });
    assert!(server.join().unwrap().is_empty());
}
