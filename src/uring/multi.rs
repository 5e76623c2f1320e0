//! Multishot receive into a provided-buffer ring, for kept-alive connections (issue #12).
//!
//! A single-shot `RECV` per request arms the socket's poll when it finds no data and disarms
//! it when the data comes: an SQE, a poll arm (`io_arm_poll_handler`) and a wait-queue removal
//! per request. A multishot `RECV` (`IORING_RECV_MULTISHOT` with `IOSQE_BUFFER_SELECT`) stays
//! armed across requests: each arrival takes a buffer from the worker's provided-buffer ring
//! ([`BufRing`]) and posts a CQE with `IORING_CQE_F_MORE`. The connection copies the bytes into
//! its own input buffer and gives the ring buffer back at once, so a ring buffer is held only
//! between a CQE and the moment its connection's task runs.
//!
//! Bounds (one client must not starve the shared ring): a multishot whose results pile up
//! unread (more than [`MAX_QUEUED`], a client sending while its request is served) is
//! cancelled by the driver; what it had received stays queued, in order, and the connection
//! reads the rest of its input with plain receives. When the ring is empty a multishot ends
//! with `-ENOBUFS`; its connection falls back to a plain receive for that wait.
//!
//! A connection that needs the socket for anything else (the rest of a head, a body, a
//! linger, parking) first [stops](MultiRecv::stop) its multishot: cancel, then every result
//! up to the final one is appended to its input, so no byte is lost or reordered.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Poll, Waker};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{Driver, Lifecycle, OpKind, user_data};

/// Bytes per provided buffer (a request head fits in one; a larger one takes several CQEs).
pub(crate) const BUF_LEN: usize = 2048;
/// Buffers in the ring (a power of two): 512 KiB per worker.
const NBUFS: u16 = 256;
/// The buffer group of the ring.
const BGID: u16 = 1;
/// Results a multishot may hold unread before the driver cancels it.
pub(crate) const MAX_QUEUED: usize = 4;

/// The worker's provided-buffer ring: `NBUFS` entries (a page-aligned mapping shared with the
/// kernel) and the buffers they point to.
pub(crate) struct BufRing {
    entries: *mut types::BufRingEntry,
    bufs: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    /// Map and register the ring on `ring`, every buffer given to the kernel. `None` if the
    /// kernel refuses (multishot receive is then not used).
    pub(super) fn register(ring: &IoUring) -> Option<BufRing> {
        let bytes = NBUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked below; page-aligned as the kernel
        // requires of a buffer ring.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the mapping holds NBUFS entries and lives as long as the ring (it is
        // unmapped only in Drop, after the ring's own drop unregistered nothing we still use:
        // the BufRing is dropped with the driver's ring).
        let ok = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(map as u64, NBUFS, BGID, 0)
        };
        if let Err(e) = ok {
            tracing::debug!("provided-buffer ring refused ({e}): no multishot receive");
            // SAFETY: the mapping made above, used by nobody.
            unsafe { libc::munmap(map, bytes) };
            return None;
        }
        let mut br = BufRing {
            entries: map.cast(),
            bufs: vec![0u8; NBUFS as usize * BUF_LEN].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..NBUFS {
            br.recycle(bid);
        }
        Some(br)
    }

    /// The first `len` bytes of buffer `bid`.
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let at = bid as usize * BUF_LEN;
        &self.bufs[at..at + len.min(BUF_LEN)]
    }

    /// Give buffer `bid` back to the kernel.
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= NBUFS {
            return;
        }
        let addr = self.bufs.as_ptr() as u64 + bid as u64 * BUF_LEN as u64;
        // SAFETY: `entries` is the registered ring of NBUFS entries; the slot at the tail is
        // not the kernel's until the tail moves past it, which the release store below
        // publishes after the entry is written.
        unsafe {
            let e = &mut *self.entries.add((self.tail & (NBUFS - 1)) as usize);
            e.set_addr(addr);
            e.set_len(BUF_LEN as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let bytes = NBUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: the mapping made in `register`; the driver drops its ring (and with it the
        // kernel's use of the buffer ring) before this field (field order in `Inner`).
        unsafe { libc::munmap(self.entries.cast(), bytes) };
    }
}

/// What one result of a multishot receive was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got {
    /// This many bytes were appended to the input.
    Data(usize),
    /// The peer closed (0), or the receive failed.
    Closed,
    /// The multishot ended without data (no buffer was free, or the driver cancelled it):
    /// read with a plain receive, arm a new one later.
    Ended,
}

/// An armed multishot receive on one connection. Dropping it cancels it (its buffers go back
/// to the ring as its CQEs arrive); [`MultiRecv::stop`] cancels it and keeps what it received.
pub(crate) struct MultiRecv {
    driver: Rc<Driver>,
    idx: u32,
    generation: u32,
    /// The final CQE was consumed: the slot is freed, nothing more will come.
    done: bool,
}

impl MultiRecv {
    /// Arm a multishot receive on `fd`; `None` if the worker has no buffer ring.
    pub(crate) fn arm(fd: RawFd) -> Option<MultiRecv> {
        let driver = Driver::current();
        {
            let inner = driver.inner.borrow();
            if inner.bufring.is_none() || inner.multishot_off {
                return None;
            }
        }
        let (idx, generation) = driver.alloc(OpKind::Multi, 1);
        {
            let mut inner = driver.inner.borrow_mut();
            inner.ops[idx as usize].state = Lifecycle::Multi {
                queue: VecDeque::new(),
                waker: None,
                cancelled: false,
            };
        }
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(idx, generation));
        driver.push(&[e]);
        Some(MultiRecv {
            driver,
            idx,
            generation,
            done: false,
        })
    }

    /// The next result, its bytes appended to `input`.
    pub(crate) async fn next(&mut self, input: &mut Vec<u8>) -> Got {
        if self.done {
            return Got::Ended;
        }
        let (res, flags) = std::future::poll_fn(|cx| self.poll_result(Some(cx.waker()))).await;
        self.apply(res, flags, input)
    }

    /// Poll for the next queued result; `None` waker: do not wait.
    fn poll_result(&mut self, waker: Option<&Waker>) -> Poll<(i32, u32)> {
        let mut inner = self.driver.inner.borrow_mut();
        let slot = &mut inner.ops[self.idx as usize];
        debug_assert_eq!(slot.generation, self.generation);
        let Lifecycle::Multi {
            queue, waker: w, ..
        } = &mut slot.state
        else {
            unreachable!("a multishot's slot holds a multishot");
        };
        match queue.pop_front() {
            Some(r) => Poll::Ready(r),
            None => {
                if let Some(waker) = waker {
                    match w {
                        Some(old) if old.will_wake(waker) => {}
                        _ => *w = Some(waker.clone()),
                    }
                }
                Poll::Pending
            }
        }
    }

    /// Consume one result: copy its bytes into `input` and recycle its buffer; free the slot
    /// after the final one.
    fn apply(&mut self, res: i32, flags: u32, input: &mut Vec<u8>) -> Got {
        let mut inner = self.driver.inner.borrow_mut();
        if !cqueue::more(flags) {
            self.done = true;
            let slot = &mut inner.ops[self.idx as usize];
            slot.state = Lifecycle::Free;
            inner.free.push(self.idx);
        }
        let bid = cqueue::buffer_select(flags);
        let bufring = inner
            .bufring
            .as_mut()
            .expect("a multishot needs the buffer ring");
        if let Some(bid) = bid {
            if res > 0 {
                input.extend_from_slice(bufring.bytes(bid, res as usize));
            }
            bufring.recycle(bid);
        }
        match res {
            n if n > 0 => Got::Data(n as usize),
            0 => Got::Closed,
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => Got::Ended,
            e if e == -libc::EINVAL => {
                // A kernel without multishot receive (before 6.0): plain receives from now on.
                inner.multishot_off = true;
                Got::Ended
            }
            _ => Got::Closed,
        }
    }

    /// Cancel the multishot and append everything it received, up to its final result, to
    /// `input`. Returns false if the peer closed or the receive failed meanwhile.
    pub(crate) async fn stop(mut self, input: &mut Vec<u8>) -> bool {
        let mut open = true;
        if !self.done {
            self.driver.cancel(user_data(self.idx, self.generation));
        }
        while !self.done {
            if let Got::Closed = self.next(input).await {
                open = false;
            }
        }
        open
    }
}

impl Drop for MultiRecv {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Recycle what is queued; the slot becomes an orphan whose later CQEs recycle their
        // buffers in the driver (`complete`), freed at the final one.
        let cancel = {
            let mut inner = self.driver.inner.borrow_mut();
            let super::Inner {
                ops, free, bufring, ..
            } = &mut *inner;
            let slot = &mut ops[self.idx as usize];
            let prev = std::mem::replace(&mut slot.state, Lifecycle::Orphan(None));
            let mut ended = false;
            if let Lifecycle::Multi { queue, .. } = prev {
                for (_, flags) in queue {
                    if let (Some(bid), Some(br)) = (cqueue::buffer_select(flags), bufring.as_mut())
                    {
                        br.recycle(bid);
                    }
                    ended |= !cqueue::more(flags);
                }
            }
            if ended {
                slot.state = Lifecycle::Free;
                free.push(self.idx);
            }
            !ended
        };
        if cancel {
            self.driver.cancel(user_data(self.idx, self.generation));
        }
    }
}

#[cfg(test)]
impl MultiRecv {
    /// Results queued and not yet consumed.
    fn queued(&self) -> usize {
        let inner = self.driver.inner.borrow();
        match &inner.ops[self.idx as usize].state {
            Lifecycle::Multi { queue, .. } => queue.len(),
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

    use super::{Got, MAX_QUEUED, MultiRecv, NBUFS};
    use crate::uring::recv::recv;
    use crate::uring::tests::{in_worker, settle};

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

    /// One multishot serves many receives, and every ring buffer goes back: more messages than
    /// the ring has buffers are received without re-arming, also after a multishot was dropped
    /// with a result unread.
    #[test]
    fn a_multishot_recycles_its_buffers_and_a_dropped_one_leaks_none() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            let fd = ours.as_raw_fd();
            let m = MultiRecv::arm(fd).expect("the buffer ring is registered");
            theirs.write_all(b"lost").unwrap();
            until_queued(&m, 1).await;
            drop(m);
            settle(&driver).await;
            let mut m = MultiRecv::arm(fd).expect("armed");
            let mut input = Vec::new();
            for i in 0..(3 * NBUFS as usize) {
                let msg = format!("m{i:05}");
                theirs.write_all(msg.as_bytes()).unwrap();
                assert_eq!(
                    m.next(&mut input).await,
                    Got::Data(msg.len()),
                    "message {i}"
                );
                assert_eq!(input, msg.as_bytes());
                input.clear();
            }
            assert_eq!(
                driver.stats().ops_in_flight,
                1,
                "re-armed instead of multishot"
            );
            // Stopped: what came is kept, nothing is left in flight.
            theirs.write_all(b"tail").unwrap();
            until_queued(&m, 1).await;
            assert!(m.stop(&mut input).await);
            assert_eq!(input, b"tail");
            settle(&driver).await;
        });
    }

    /// A client that keeps sending while nobody reads takes at most `MAX_QUEUED` + 1 results
    /// from the shared ring: the driver cancels its multishot; what it received comes out in
    /// order, then `Ended`, and the rest waits in the socket for a plain receive.
    #[test]
    fn unread_results_cancel_the_multishot_and_lose_nothing() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        in_worker(move |driver| async move {
            let fd = ours.as_raw_fd();
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
            let mut input = Vec::new();
            let mut results = 0;
            loop {
                match m.next(&mut input).await {
                    Got::Data(_) => results += 1,
                    Got::Ended => break,
                    Got::Closed => panic!("closed"),
                }
            }
            assert_eq!(results, MAX_QUEUED + 1);
            settle(&driver).await;
            while input.len() < sent.len() {
                let (r, buf) = recv(fd, std::mem::take(&mut input), None).await;
                input = buf;
                assert!(r.unwrap() > 0);
            }
            assert_eq!(input, sent);
        });
    }
}
