//! The ring driver in a real glommio executor: both outcomes of every timeout, cancel on drop,
//! stray accepts, and the park protocol under burst, idle and sparse traffic.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future::poll_once;
use glommio::{LocalExecutorBuilder, Placement};
use nix::fcntl::OFlag;

use super::accept::AcceptMulti;
use super::{Driver, pump, recv::recv, send::send_all};
use crate::primitives::{wait_fd_read, wait_fds};

/// Run `f` inside a glommio executor with a driver and its pump, as a worker does, on its own
/// thread with a watchdog: a test that hangs (a lost wakeup) fails after `WATCHDOG`.
pub(crate) fn in_worker<F, Fut, T>(f: F) -> T
where
    F: FnOnce(Rc<Driver>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    const WATCHDOG: Duration = Duration::from_secs(30);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(128 << 10)
            .preempt_timer(Duration::from_millis(1))
            .make()
            .expect("executor");
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ex.run(async move {
                let driver = Driver::install(64).expect("ring");
                glommio::spawn_local(pump::pump(driver.clone()).expect("pump")).detach();
                let out = f(driver).await;
                Driver::uninstall();
                out
            })
        }));
        let _ = tx.send(out);
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(out)) => out,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the worker did not finish within {WATCHDOG:?}: a wakeup was lost"),
    }
}

/// Wait (bounded) until the driver has no operation left in its table.
async fn settle(driver: &Driver) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while driver.stats().ops_in_flight > 0 {
        assert!(
            Instant::now() < deadline,
            "operations never completed: {:?}",
            driver.stats()
        );
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).expect("pipe")
}

#[test]
fn recv_timeout_then_data() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    in_worker(move |driver| async move {
        let fd = ours.as_raw_fd();
        let t0 = Instant::now();
        let (res, buf) = recv(fd, Vec::with_capacity(64), Some(Duration::from_millis(50))).await;
        assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(buf.is_empty());
        assert!(t0.elapsed() >= Duration::from_millis(50));
        theirs.write_all(b"hello").unwrap();
        let (res, buf) = recv(fd, buf, Some(Duration::from_secs(5))).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(buf, b"hello");
        settle(&driver).await;
    });
}

#[test]
fn send_all_delivers_everything() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        got
    });
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let expect = data.clone();
    in_worker(move |driver| async move {
        let (res, _) = send_all(ours.as_raw_fd(), data, 0, None).await;
        res.unwrap();
        drop(ours);
        settle(&driver).await;
    });
    assert_eq!(reader.join().unwrap(), expect);
}

#[test]
fn dropped_recv_is_cancelled_and_its_buffer_freed() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    in_worker(move |driver| async move {
        let fd = ours.as_raw_fd();
        let pending = poll_once(recv(fd, Vec::with_capacity(1 << 20), None)).await;
        assert!(pending.is_none(), "no data yet: the recv must be pending");
        // Let the pump submit it, so that the kernel really holds the buffer.
        glommio::timer::sleep(Duration::from_millis(5)).await;
        settle(&driver).await;
        let stats = driver.stats();
        assert_eq!(stats.orphans, 0, "{stats:?}");
        // The socket still works after the cancel (nothing was consumed).
        theirs.write_all(b"x").unwrap();
        let (res, buf) = recv(fd, Vec::with_capacity(8), Some(Duration::from_secs(5))).await;
        assert_eq!(res.unwrap(), 1);
        assert_eq!(buf, b"x");
    });
}

#[test]
fn wait_fd_read_times_out_then_sees_data() {
    let (r, w) = pipe();
    in_worker(move |driver| async move {
        let err = wait_fd_read(r.as_fd(), Some(Duration::from_millis(30)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        nix::unistd::write(&w, b"!").unwrap();
        let revents = wait_fd_read(r.as_fd(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_ne!(revents & libc::POLLIN as u32, 0);
        settle(&driver).await;
    });
}

#[test]
fn wait_fds_names_the_ready_one() {
    let (r1, _w1) = pipe();
    let (r2, w2) = pipe();
    in_worker(move |driver| async move {
        let pollin = libc::POLLIN as u32;
        let err = wait_fds(
            &[(r1.as_fd(), pollin), (r2.as_fd(), pollin)],
            Some(Duration::from_millis(20)),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        nix::unistd::write(&w2, b"!").unwrap();
        let ready = wait_fds(
            &[(r1.as_fd(), pollin), (r2.as_fd(), pollin)],
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        assert_eq!(ready.index, 1);
        // The poll on r1 that lost the race was cancelled, not leaked.
        settle(&driver).await;
    });
}

#[test]
fn dropped_wait_leaves_nothing_in_flight() {
    let (r, _w) = pipe();
    in_worker(move |driver| async move {
        for _ in 0..100 {
            assert!(poll_once(wait_fd_read(r.as_fd(), None)).await.is_none());
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
        settle(&driver).await;
        assert_eq!(driver.stats().orphans, 0);
    });
}

#[test]
fn connection_accepted_for_a_cancelled_accept_is_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    in_worker(move |driver| async move {
        let lfd = listener.as_raw_fd();
        let mut accept = AcceptMulti::arm(lfd);
        // Submit the accept, then let the kernel complete it for a client while nobody polls.
        assert!(poll_once(accept.next()).await.is_none());
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let mut client = TcpStream::connect(addr).unwrap();
        glommio::timer::sleep(Duration::from_millis(20)).await;
        drop(accept);
        settle(&driver).await;
        // A new accept hands out the stray first: the client was not lost.
        let mut accept = AcceptMulti::arm(lfd);
        let fd = accept
            .next()
            .await
            .expect("accept")
            .expect("stray connection");
        drop(accept);
        let (res, _) = send_all(fd.as_raw_fd(), b"ok".to_vec(), 0, None).await;
        res.unwrap();
        let mut got = [0u8; 2];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ok");
        settle(&driver).await;
    });
}

/// The park protocol never loses a wakeup: an outside thread writes to a pipe in bursts,
/// after idle gaps (the pump is parked in glommio) and sparsely; every byte must be seen,
/// each wait bounded so that a lost wakeup fails instead of hanging.
#[test]
fn bridge_never_loses_a_wakeup() {
    let (r, w) = pipe();
    const BURST: usize = 2000;
    const SPARSE: usize = 300;
    let total = BURST * 2 + SPARSE;
    let writer = std::thread::spawn(move || {
        let one = |w: &OwnedFd| {
            while nix::unistd::write(w, b"x").is_err() {
                std::thread::yield_now();
            }
        };
        for _ in 0..BURST {
            one(&w);
        }
        // Idle: long enough for the pump to park on the eventfd.
        std::thread::sleep(Duration::from_millis(200));
        let mut seed = 0x2545_f491u32;
        for _ in 0..SPARSE {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            std::thread::sleep(Duration::from_micros(u64::from(seed % 3000)));
            one(&w);
        }
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..BURST {
            one(&w);
        }
    });
    let stats = in_worker(move |driver| async move {
        let mut seen = 0;
        let mut buf = [0u8; 4096];
        while seen < total {
            match wait_fd_read(r.as_fd(), Some(Duration::from_secs(5))).await {
                Ok(_) => {}
                Err(e) => panic!("lost wakeup after {seen}/{total} bytes: {e}"),
            }
            loop {
                match nix::unistd::read(r.as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => seen += n,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
        assert_eq!(seen, total);
        settle(&driver).await;
        driver.stats()
    });
    writer.join().unwrap();
    assert!(stats.parks > 0, "the pump never parked: {stats:?}");
    assert!(
        stats.eventfd_wakes > 0,
        "the eventfd never woke the pump: {stats:?}"
    );
}
