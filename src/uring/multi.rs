//! A multishot receive into the worker's provided-buffer [`pool`](super::pool), for kept-alive
//! connections (issue #12, Stop 13).
//!
//! A single-shot `RECV` per request (`recv::recv_first` with `POLL_FIRST`) arms the socket's
//! poll when it is submitted and tears it down when the request arrives: an SQE, a poll arm
//! and a wait-queue removal per request. A multishot `RECV` (`IORING_RECV_MULTISHOT` with
//! `IOSQE_BUFFER_SELECT`) stays armed from one request to the next: each arrival takes a
//! buffer of the pool and posts a CQE with `IORING_CQE_F_MORE`. The driver queues the results
//! in order ([`Queues`]: one list table for the worker, no allocation per connection; they
//! may come while the connection is busy with a request); the connection copies the bytes
//! into its own input and gives the buffer back at once ([`MultiRecv::next`]).
//!
//! Bounds (one client must not keep the shared pool, 10,000 connections must stay cheap): a
//! multishot holding more than [`MAX_QUEUED`] unread results (a client sending while its
//! request is served) is cancelled by the driver; what it had received stays queued, in
//! order, and the rest waits in the socket for a plain receive. When the pool is empty the
//! multishot ends with `-ENOBUFS` and the bytes stay in the socket ([`Got::Ended`]). At most
//! [`MAX_ARMED`] are armed per worker.
//!
//! While armed it is the socket's only reader. Anything else that reads the socket (a body,
//! parking) must first [stop](MultiRecv::stop) it: cancel it and append every result up to
//! its final one to the input, so that no byte is lost or reordered. Dropped instead (before a
//! linger or a close), its slot becomes an orphan: cancelled, its later results' buffers given
//! back by the driver, the slot freed at its final CQE; the bytes are lost (the connection
//! must be closing).
//!
//! Kernel behaviour (6.18): after a receive the kernel tries again at once only if the socket
//! may hold more (`msg_inq`); on a unix socket whose bytes and end of file were both there
//! when it received, it reports the bytes and not the end of file (the hang-up's wakeup has
//! passed). TCP counts the FIN in its hint, and the end of file comes. The connection sees
//! such an end of file when its hot window ends (`conn`: the parked watch is level-triggered).

use std::io;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types};

use super::{Driver, Inner, Lifecycle, OpKind, pool, user_data};

/// Unread results a multishot may hold before the driver cancels it: a request that arrives
/// in pieces takes a few; a client that keeps sending while its request runs takes no more.
pub(crate) const MAX_QUEUED: usize = 4;

/// Multishot receives a worker keeps armed at most; past it, kept-alive connections wait with
/// single-shot receives. Each armed one holds an operation slot (32 bytes) also while its
/// connection's request runs: 10,000 sleeping requests would otherwise keep 10,000 slots
/// (`benches/sleep_10k.py`: peak RSS +0.4-1 MiB, over the 40 MB). The hot path this
/// is for (a few hundred busy connections per core) stays under it.
pub(crate) const MAX_ARMED: u32 = 1024;

/// `IORING_RECVSEND_POLL_FIRST` (as in `recv.rs`): armed right after a response, a
/// kept-alive connection's next bytes are not there yet.
const POLL_FIRST: u16 = 1;
/// `IORING_RECV_MULTISHOT`.
const RECV_MULTISHOT: u16 = 1 << 1;

/// The end of a list in [`Queues`].
pub(super) const NIL: u32 = u32::MAX;

/// The results of every multishot receive of the worker not yet taken by their connections:
/// one list per multishot (its head in the operation's slot), in nodes of one table reused
/// through a free list. A queue is almost always empty or holds one result, so this costs a
/// connection nothing while it waits or while its request runs (a `VecDeque` per multishot
/// kept ~100 bytes per connection: 10,000 sleeping requests, `benches/sleep_10k.py`).
pub(crate) struct Queues {
    nodes: Vec<Node>,
    /// The first free node (`NIL`: none).
    free: u32,
    /// Multishots whose slot is not freed yet (armed, or cancelled and awaiting their final
    /// result), against [`MAX_ARMED`].
    live: u32,
}

/// One queued result, and the next of its list.
struct Node {
    res: i32,
    flags: u32,
    next: u32,
}

impl Default for Queues {
    fn default() -> Self {
        Queues {
            nodes: Vec::new(),
            free: NIL,
            live: 0,
        }
    }
}

impl Queues {
    /// A multishot's slot was freed (its final result came).
    pub(super) fn ended(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    /// Append a result to the list at `head`; returns the list's length.
    pub(super) fn push(&mut self, head: &mut u32, res: i32, flags: u32) -> usize {
        let node = Node {
            res,
            flags,
            next: NIL,
        };
        let at = if self.free == NIL {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        } else {
            let at = self.free;
            self.free = self.nodes[at as usize].next;
            self.nodes[at as usize] = node;
            at
        };
        if *head == NIL {
            *head = at;
            return 1;
        }
        // Lists are short (see `MAX_QUEUED`): walk to the tail.
        let mut len = 2;
        let mut last = *head;
        while self.nodes[last as usize].next != NIL {
            last = self.nodes[last as usize].next;
            len += 1;
        }
        self.nodes[last as usize].next = at;
        len
    }

    /// Take the first result of the list at `head`.
    pub(super) fn pop(&mut self, head: &mut u32) -> Option<(i32, u32)> {
        if *head == NIL {
            return None;
        }
        let at = *head;
        let node = &mut self.nodes[at as usize];
        *head = node.next;
        node.next = self.free;
        self.free = at;
        Some((node.res, node.flags))
    }

    /// The length of the list at `head`.
    #[cfg(test)]
    fn len(&self, mut head: u32) -> usize {
        let mut n = 0;
        while head != NIL {
            n += 1;
            head = self.nodes[head as usize].next;
        }
        n
    }
}

/// One result of a multishot receive.
#[derive(Debug)]
pub(crate) enum Got {
    /// This many bytes (> 0) were appended to the input.
    Data(usize),
    /// The peer closed its side (end of file); the multishot has ended.
    Eof,
    /// The receive failed; the multishot has ended.
    Failed(io::Error),
    /// The multishot ended without an error of the connection (the pool was empty, it was
    /// cancelled, or the kernel lacks multishot receives): the socket may hold more bytes,
    /// for a plain receive or a new multishot.
    Ended,
}

/// An armed multishot receive on one connection (see the module docs).
///
/// 12 bytes, no `Rc` of the driver: every kept-alive connection's task holds one, also while
/// its request sleeps.
#[derive(Debug)]
pub(crate) struct MultiRecv {
    idx: u32,
    generation: u32,
    /// The final result was taken: the slot is freed, nothing more will come.
    done: bool,
}

impl MultiRecv {
    /// Arm a multishot receive on `fd`; `None` if the worker has no pool or the kernel refused
    /// a multishot receive before.
    pub(crate) fn arm(fd: RawFd) -> Option<MultiRecv> {
        Driver::with_current(|driver| Self::arm_on(driver, fd))
    }

    fn arm_on(driver: &Driver, fd: RawFd) -> Option<MultiRecv> {
        {
            let inner = driver.inner.borrow();
            if inner.pool.is_none() || inner.multishot_off || inner.mq.live >= MAX_ARMED {
                return None;
            }
        }
        let (idx, generation) = driver.alloc(OpKind::Multi, 1);
        {
            let mut inner = driver.inner.borrow_mut();
            inner.stats.multishots += 1;
            inner.mq.live += 1;
            inner.ops[idx as usize].state = Lifecycle::Multi {
                waker: None,
                head: NIL,
                cancelled: false,
            };
        }
        // A `RECV` with `IORING_RECV_MULTISHOT` in its flags, as `opcode::RecvMulti` builds
        // it, plus `POLL_FIRST` (which that builder cannot set); no length: the pool's
        // buffers set it.
        let entry = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
            .buf_group(pool::BGID)
            .ioprio(POLL_FIRST | RECV_MULTISHOT)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(idx, generation));
        driver.push(&[entry]);
        Some(MultiRecv {
            idx,
            generation,
            done: false,
        })
    }

    /// Whether the final result was taken (nothing more will come).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next result, its bytes appended to `input`. After a final one, [`Got::Ended`].
    pub(crate) async fn next(&mut self, input: &mut Vec<u8>) -> Got {
        std::future::poll_fn(|cx| self.poll_next(Some(cx.waker()), input)).await
    }

    /// The next result if one is queued, without waiting.
    pub(crate) fn try_next(&mut self, input: &mut Vec<u8>) -> Option<Got> {
        match self.poll_next(None, input) {
            Poll::Ready(g) => Some(g),
            Poll::Pending => None,
        }
    }

    /// Take the oldest queued result (with `None` as the waker: do not wait for one).
    fn poll_next(&mut self, waker: Option<&Waker>, input: &mut Vec<u8>) -> Poll<Got> {
        if self.done {
            return Poll::Ready(Got::Ended);
        }
        Driver::with_current(|driver| self.poll_on(driver, waker, input))
    }

    fn poll_on(
        &mut self,
        driver: &Driver,
        waker: Option<&Waker>,
        input: &mut Vec<u8>,
    ) -> Poll<Got> {
        let mut inner = driver.inner.borrow_mut();
        let Inner {
            ops,
            free,
            pool,
            mq,
            multishot_off,
            ..
        } = &mut *inner;
        let slot = &mut ops[self.idx as usize];
        debug_assert_eq!(slot.generation, self.generation);
        let Lifecycle::Multi { waker: w, head, .. } = &mut slot.state else {
            unreachable!("a multishot's slot holds a multishot");
        };
        let Some((res, flags)) = mq.pop(head) else {
            if let Some(waker) = waker {
                match w {
                    Some(old) if old.will_wake(waker) => {}
                    _ => *w = Some(waker.clone()),
                }
            }
            return Poll::Pending;
        };
        if !cqueue::more(flags) {
            // The final result: the kernel is done with the operation.
            mq.ended();
            self.done = true;
            slot.state = Lifecycle::Free;
            free.push(self.idx);
        }
        if let (Some(pool), Some(bid)) = (pool.as_mut(), cqueue::buffer_select(flags)) {
            if res > 0 {
                input.extend_from_slice(pool.bytes(bid, res as usize));
            }
            pool.give_back(bid);
        }
        Poll::Ready(match res {
            n if n > 0 => Got::Data(n as usize),
            0 => Got::Eof,
            e if e == -libc::ENOBUFS => {
                if let Some(p) = pool.as_mut() {
                    p.misses += 1;
                }
                Got::Ended
            }
            e if e == -libc::ECANCELED => Got::Ended,
            e if e == -libc::EINVAL => {
                // A kernel without multishot receives (before 6.0): plain receives from now.
                *multishot_off = true;
                Got::Ended
            }
            e => Got::Failed(io::Error::from_raw_os_error(-e)),
        })
    }

    /// Cancel the multishot and append everything it received, up to its final result, to
    /// `input`. Returns how it ended: [`Got::Ended`] if the connection is still usable (more
    /// bytes may wait in the socket), [`Got::Eof`] or [`Got::Failed`] if it is not (the
    /// bytes received before are in `input` all the same).
    pub(crate) async fn stop(mut self, input: &mut Vec<u8>) -> Got {
        if !self.done {
            Driver::with_current(|d| d.cancel(user_data(self.idx, self.generation)));
        }
        let mut end = Got::Ended;
        while !self.done {
            match self.next(input).await {
                Got::Data(_) | Got::Ended => {}
                closed => end = closed,
            }
        }
        end
    }
}

impl Drop for MultiRecv {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Give back what is queued; the slot becomes an orphan whose later CQEs give their
        // buffers back in the driver (`complete`), freed at the final one.
        // A multishot is dropped only on its worker's thread, while the driver is installed.
        let Some(driver) = Driver::try_current() else {
            return;
        };
        let cancel = {
            let mut inner = driver.inner.borrow_mut();
            let Inner {
                ops,
                free,
                pool,
                mq,
                ..
            } = &mut *inner;
            let slot = &mut ops[self.idx as usize];
            let prev = std::mem::replace(&mut slot.state, Lifecycle::Orphan(None));
            let mut ended = false;
            if let Lifecycle::Multi { mut head, .. } = prev {
                while let Some((_, flags)) = mq.pop(&mut head) {
                    super::give_back(pool, flags);
                    ended |= !cqueue::more(flags);
                }
            }
            if ended {
                mq.ended();
                slot.state = Lifecycle::Free;
                free.push(self.idx);
            }
            !ended
        };
        if cancel {
            driver.cancel(user_data(self.idx, self.generation));
        }
    }
}

/// Make sure `ms` holds an armed multishot receive on `fd` for a kept-alive connection's
/// idle wait ([`recv_idle`]): `false` if none can be armed (no pool, the kernel refused one,
/// [`MAX_ARMED`] reached), then the wait is a single-shot
/// [`recv_first`](super::recv::recv_first).
pub(crate) fn ready(ms: &mut Option<MultiRecv>, fd: RawFd) -> bool {
    if ms.as_ref().is_none_or(MultiRecv::is_done) {
        *ms = MultiRecv::arm(fd);
    }
    ms.is_some()
}

/// The hot idle wait of a kept-alive connection through its multishot receive `ms` (armed:
/// [`ready`]): returns what [`recv_first`](super::recv::recv_first) returns. If the window
/// passes, the multishot is stopped (so the connection can be parked) and what it took
/// meanwhile is returned; if it ends (the pool was empty, the driver capped it), this wait
/// goes on with a single-shot receive and the next wait arms a new multishot.
///
/// Kept small (the connection task holds it while it waits, in place of a `recv_first`'s
/// future): the fallback receive is boxed, it is rare.
pub(crate) async fn recv_idle(
    ms: &mut Option<MultiRecv>,
    fd: RawFd,
    mut input: Vec<u8>,
    window: Duration,
) -> (Option<io::Result<usize>>, Vec<u8>) {
    let Some(m) = ms.as_mut() else {
        return Box::pin(super::recv::recv_first(fd, input, window, true)).await;
    };
    // Taken at once if it is queued (pipelined, or sent while the last request ran).
    let got = match m.try_next(&mut input) {
        Some(got) => Some(got),
        None => {
            futures_lite::future::or(async { Some(m.next(&mut input).await) }, async {
                super::wheel::Deadline::after(window).await;
                None
            })
            .await
        }
    };
    match got {
        Some(Got::Data(n)) => (Some(Ok(n)), input),
        Some(Got::Eof) => {
            *ms = None;
            (Some(Ok(0)), input)
        }
        Some(Got::Failed(e)) => {
            *ms = None;
            (Some(Err(e)), input)
        }
        Some(Got::Ended) => {
            // The bytes, if any, are still in the socket.
            *ms = None;
            Box::pin(super::recv::recv_first(fd, input, window, false)).await
        }
        None => {
            // Quiet for the window: stop it, keeping what came meanwhile.
            let end = ms.take().expect("armed above").stop(&mut input).await;
            if !input.is_empty() {
                // An end of file or an error shows again to the next receive.
                return (Some(Ok(input.len())), input);
            }
            match end {
                Got::Eof => (Some(Ok(0)), input),
                Got::Failed(e) => (Some(Err(e)), input),
                Got::Data(_) | Got::Ended => (None, input),
            }
        }
    }
}

#[cfg(test)]
impl MultiRecv {
    /// Results queued and not yet taken.
    pub(crate) fn queued(&self) -> usize {
        let driver = Driver::current();
        let inner = driver.inner.borrow();
        match &inner.ops[self.idx as usize].state {
            Lifecycle::Multi { head, .. } => inner.mq.len(*head),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use super::{Got, MAX_ARMED, MAX_QUEUED, MultiRecv, ready, recv_idle};
    use crate::uring::Driver;
    use crate::uring::recv::recv;
    use crate::uring::tests::{in_worker, settle};

    /// A multishot costs its connection little memory: its state fits the operation slot
    /// every operation has, and the connection's handle is 12 bytes (10,000 sleeping
    /// requests keep 10,000 multishots armed).
    #[test]
    fn a_multishot_fits_an_operation_slot() {
        assert!(std::mem::size_of::<crate::uring::OpSlot>() <= 32);
        assert!(std::mem::size_of::<Option<MultiRecv>>() <= 12);
        // The idle wait through a multishot is no larger than the single-shot one it
        // replaces (the connection task holds one or the other while it waits).
        let mut ms = None;
        let idle = recv_idle(&mut ms, 0, Vec::new(), Duration::from_millis(1));
        let single = crate::uring::recv::recv_first(0, Vec::new(), Duration::from_millis(1), true);
        assert!(
            std::mem::size_of_val(&idle) <= std::mem::size_of_val(&single),
            "{} > {}",
            std::mem::size_of_val(&idle),
            std::mem::size_of_val(&single)
        );
    }

    /// At most `MAX_ARMED` multishots are armed at once: past it `arm` declines (the
    /// connection waits with a single-shot receive), and one that ends (dropped, stopped)
    /// makes room again once its final result came.
    #[test]
    fn no_more_than_max_armed_multishots() {
        let pairs: Vec<_> = (0..MAX_ARMED as usize + 1)
            .map(|_| UnixStream::pair().unwrap())
            .collect();
        in_worker(move |driver| async move {
            let live = || driver.inner.borrow().mq.live;
            let mut armed: Vec<MultiRecv> = pairs[..MAX_ARMED as usize]
                .iter()
                .map(|(ours, _)| MultiRecv::arm(ours.as_raw_fd()).expect("armed"))
                .collect();
            let extra = pairs[MAX_ARMED as usize].0.as_raw_fd();
            assert!(MultiRecv::arm(extra).is_none());
            drop(armed.pop());
            let mut input = Vec::new();
            let _ = armed.pop().unwrap().stop(&mut input).await;
            let deadline = Instant::now() + Duration::from_secs(5);
            while live() > MAX_ARMED - 2 {
                assert!(Instant::now() < deadline, "{} live", live());
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            let again = MultiRecv::arm(extra).expect("room again");
            drop(again);
            drop(armed);
            settle(&driver).await;
            assert_eq!(live(), 0);
        });
    }

    /// Wait (bounded) until `m` holds `n` unread results.
    async fn until_queued(m: &MultiRecv, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while m.queued() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} results came",
                m.queued()
            );
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The pool's buffers the kernel holds now: every one that is not taken by a result.
    fn pool_free(driver: &Driver) -> usize {
        driver
            .inner
            .borrow()
            .pool
            .as_ref()
            .expect("pool")
            .free_count()
    }

    /// One multishot serves many arrivals, each with its own CQE (no new SQE), and every
    /// pool buffer goes back: more messages than the pool has buffers, and a multishot dropped
    /// with a result unread leaks none.
    #[test]
    fn a_multishot_recycles_its_buffers_and_a_dropped_one_leaks_none() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            let fd = ours.as_raw_fd();
            let all = pool_free(&driver);
            let m = MultiRecv::arm(fd).expect("the pool is registered");
            theirs.write_all(b"lost").unwrap();
            until_queued(&m, 1).await;
            assert_eq!(pool_free(&driver), all - 1);
            drop(m);
            settle(&driver).await;
            assert_eq!(pool_free(&driver), all, "a dropped multishot kept a buffer");
            let mut m = MultiRecv::arm(fd).expect("armed");
            let mut input = Vec::new();
            for i in 0..(3 * all) {
                let msg = format!("m{i:05}");
                theirs.write_all(msg.as_bytes()).unwrap();
                match m.next(&mut input).await {
                    Got::Data(n) => assert_eq!(n, msg.len(), "message {i}"),
                    other => panic!("message {i}: {other:?}"),
                }
                assert_eq!(input, msg.as_bytes());
                input.clear();
            }
            assert_eq!(
                driver.stats().ops_in_flight,
                1,
                "re-armed instead of multishot"
            );
            assert_eq!(driver.stats().multishots, 2);
            // Stopped: what came is kept, nothing is left in flight, no buffer is lost.
            theirs.write_all(b"tail").unwrap();
            until_queued(&m, 1).await;
            assert!(matches!(m.stop(&mut input).await, Got::Ended));
            assert_eq!(input, b"tail");
            settle(&driver).await;
            assert_eq!(pool_free(&driver), all);
            assert_eq!(driver.inner.borrow().mq.live, 0);
        });
    }

    /// A client that keeps sending while nobody reads takes at most a few results from the
    /// shared pool: the driver cancels its multishot; what it received comes out in order,
    /// then `Ended`, and the rest waits in the socket for a plain receive. Nothing is lost or
    /// reordered, and every buffer goes back.
    #[test]
    fn unread_results_cancel_the_multishot_and_lose_nothing() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            let fd = ours.as_raw_fd();
            let all = pool_free(&driver);
            let mut m = MultiRecv::arm(fd).expect("armed");
            let n = MAX_QUEUED + 5;
            let mut sent = Vec::new();
            for i in 0..n {
                let msg = format!("<{i}>");
                theirs.write_all(msg.as_bytes()).unwrap();
                sent.extend_from_slice(msg.as_bytes());
                if i <= MAX_QUEUED {
                    until_queued(&m, i + 1).await;
                }
            }
            // The cancel's final result: queued after the data.
            until_queued(&m, MAX_QUEUED + 2).await;
            assert_eq!(driver.stats().multishot_caps, 1);
            let mut input = Vec::new();
            let mut results = 0;
            loop {
                match m.next(&mut input).await {
                    Got::Data(_) => results += 1,
                    Got::Ended => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(results, MAX_QUEUED + 1);
            assert!(m.is_done());
            // The rest, with a plain receive.
            while input.len() < sent.len() {
                let (r, buf) = recv(fd, input, Some(Duration::from_secs(5))).await;
                input = buf;
                assert!(r.unwrap() > 0);
            }
            assert_eq!(input, sent);
            settle(&driver).await;
            assert_eq!(pool_free(&driver), all);
        });
    }

    /// An end of file ends the multishot (no `IORING_CQE_F_MORE`) after the bytes that came
    /// before it, also when both are in the socket before the multishot is armed (TCP);
    /// stopping one that the peer closed reports the end of file.
    #[test]
    fn an_end_of_file_comes_after_the_bytes_before_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut theirs = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let (ours2, mut theirs2) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            // Bytes and the end of file both there when the multishot is armed.
            theirs.write_all(b"last words").unwrap();
            drop(theirs);
            glommio::timer::sleep(Duration::from_millis(20)).await;
            let mut m = MultiRecv::arm(ours.as_raw_fd()).expect("armed");
            let mut input = Vec::new();
            loop {
                match m.next(&mut input).await {
                    Got::Data(_) => {}
                    Got::Eof => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(input, b"last words");
            assert!(m.is_done());
            // Bytes, then (later) the end of file, then a stop: both are reported.
            let m2 = MultiRecv::arm(ours2.as_raw_fd()).expect("armed");
            theirs2.write_all(b"bye").unwrap();
            until_queued(&m2, 1).await;
            drop(theirs2);
            until_queued(&m2, 2).await;
            let mut input = Vec::new();
            assert!(matches!(m2.stop(&mut input).await, Got::Eof));
            assert_eq!(input, b"bye");
            settle(&driver).await;
        });
    }

    /// The pool runs dry: 400 kept-alive connections (more than the pool's 256 buffers) wait
    /// with their multishots armed, and every one's next request arrives before any of their
    /// tasks runs. Those whose multishot found no buffer end it (`-ENOBUFS`) and take their
    /// bytes with the fallback; each connection gets exactly its bytes, twice in a row (the
    /// second wait arms a new multishot where one ended), and every buffer goes back.
    #[test]
    fn an_empty_pool_ends_multishots_and_loses_nothing() {
        let pairs: Vec<_> = (0..400).map(|_| UnixStream::pair().unwrap()).collect();
        in_worker(move |driver| async move {
            let all = pool_free(&driver);
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let gate = std::rc::Rc::new(glommio::sync::Semaphore::new(0));
            let mut tasks = Vec::new();
            for (i, (ours, _)) in pairs.iter().enumerate() {
                let fd = ours.as_raw_fd();
                let gate = gate.clone();
                let tx = tx.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut ms = None;
                    let mut got = Vec::new();
                    for round in 0..2 {
                        let (r, buf) = if ready(&mut ms, fd) {
                            recv_idle(&mut ms, fd, Vec::new(), Duration::from_secs(10)).await
                        } else {
                            panic!("no multishot armed for connection {i}");
                        };
                        assert_eq!(r.unwrap().unwrap(), buf.len(), "connection {i}");
                        got.push(buf);
                        if round == 0 {
                            tx.send(()).unwrap();
                            gate.acquire(1).await.unwrap();
                        }
                    }
                    drop(ms);
                    (i, got)
                }));
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
            for round in 0..2 {
                for (i, (_, theirs)) in pairs.iter().enumerate() {
                    (&*theirs)
                        .write_all(format!("request {i}.{round}").as_bytes())
                        .unwrap();
                }
                if round == 0 {
                    for _ in 0..pairs.len() {
                        while rx.try_recv().is_err() {
                            glommio::timer::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    gate.signal(pairs.len() as u64);
                }
            }
            for t in tasks {
                let (i, got) = t.await;
                for (round, buf) in got.iter().enumerate() {
                    assert_eq!(buf, format!("request {i}.{round}").as_bytes());
                }
            }
            settle(&driver).await;
            let stats = driver.stats();
            assert!(stats.pool_misses > 0, "the pool never ran dry: {stats:?}");
            assert!(stats.multishots > 400, "no multishot re-armed: {stats:?}");
            assert_eq!(pool_free(&driver), all, "a buffer was not given back");
        });
    }
}
