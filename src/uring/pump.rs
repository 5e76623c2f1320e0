//! The pump: the one task that submits our SQEs, reaps our CQEs and parks inside glommio.
//!
//! # The park protocol (see DESIGN.md, "The bridge")
//!
//! While busy the eventfd stays disabled (an always-enabled eventfd costs spurious wakes).
//! To park:
//! 1. enable the eventfd, then a full fence;
//! 2. re-check the CQ, the `SQ_TASKRUN`/`CQ_OVERFLOW` flags and pending SQEs; if anything is
//!    there, disable the eventfd and go back to work (task work still pending on this thread
//!    shows as `SQ_TASKRUN`, and the next flush's `io_uring_enter` runs it);
//! 3. otherwise arm the glommio READ on the eventfd if none is in flight and return `Pending`.
//!
//! There used to be an unconditional `io_uring_enter(GETEVENTS)` between 1 and 2, needed
//! under `DEFER_TASKRUN` (deferred work signals the eventfd only when its list goes from empty
//! to non-empty). Under `COOP_TASKRUN` our completions are posted by task work that runs on
//! this thread: either before step 1 (the CQE is then in the CQ at step 2), or at a later
//! syscall of this thread, with the eventfd enabled, which signals it. So that enter found
//! nothing whenever `SQ_TASKRUN` was clear, and it was dropped (perf3, issue #12: one system
//! call per park).
//!
//! The in-flight READ is never dropped (it may have consumed a signal) and is polled again
//! only after its own waker fired (glommio keeps a waker clone per poll). A task that pushes
//! an SQE while the pump is parked wakes the pump through [`Driver::wake_pump`].
//!
//! # How a completion reaches a parked pump
//!
//! Our ring is `COOP_TASKRUN`: when an operation completes (a socket becomes readable, in
//! softirq or in another thread), the kernel queues task work on this thread and wakes it,
//! also while it sleeps in glommio's `io_uring_enter`. Running that work posts our CQE and
//! signals the enabled eventfd directly; glommio's READ of it completes and wakes the pump
//! (tens of microseconds in `tests::raw_defer_taskrun_ring_eventfd_signal_latency`).
//!
//! The ring used to be `DEFER_TASKRUN`. There the kernel announces queued work only through
//! the eventfd, and on Linux 6.18 every such signal was sent by an RCU callback
//! (`io_eventfd_do_signal`, queued with `call_rcu_hurry`) about 16 ms after the work was
//! queued, and some never came (see ARCHITECTURE.md): an idle worker answered a median
//! 14 ms late and the watchdog the pump then had found true saves.
//!
//! # No timer
//!
//! A worker never needs a timer to notice work: a parked pump is woken by the eventfd READ
//! or by a task that pushed an SQE, and by nothing else. There used to be a 100 ms watchdog
//! timer per park as a last line of defence; with the `COOP_TASKRUN` ring it found no work
//! that no wakeup had announced in the issue #12 campaign (`benches/bridge_campaign.py`,
//! figures in `docs/benchmarks.md`), so it was removed. A lost wakeup now fails
//! `uring::tests::bridge_never_loses_a_wakeup` and
//! `tests/idle.rs::a_quiet_worker_wakes_for_each_request_without_a_timer` (nothing else is
//! armed there to rescue it) instead of costing 100 ms silently.

use std::future::Future;
use std::io;
use std::os::fd::IntoRawFd;
use std::os::unix::io::FromRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::task::{Context, Poll, Wake, Waker};

use glommio::io::BufferedFile;

use super::Driver;

/// Waker handed to the eventfd READ: records that the READ is ready to be polled again and
/// wakes the pump task.
struct ReadWaker {
    fired: AtomicBool,
    pump: std::sync::Mutex<Option<Waker>>,
}

impl Wake for ReadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Some(w) = self.pump.lock().expect("pump waker lock").as_ref() {
            w.wake_by_ref();
        }
    }
}

type ReadFuture = Pin<Box<dyn Future<Output = glommio::Result<glommio::io::ReadResult, ()>>>>;

/// The pump future. Runs until the worker stops (it never completes on its own).
pub(crate) struct Pump {
    driver: Rc<Driver>,
    file: Rc<BufferedFile>,
    read: Option<ReadFuture>,
    read_waker: Arc<ReadWaker>,
    waker: Waker,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump")
            .field("armed", &self.read.is_some())
            .finish()
    }
}

/// Build the pump for this thread's driver. Spawn it on the worker's executor.
pub(crate) fn pump(driver: Rc<Driver>) -> io::Result<Pump> {
    let efd = driver.dup_eventfd()?;
    // SAFETY: `efd` is a fresh duplicate that the BufferedFile takes ownership of.
    let file = unsafe { BufferedFile::from_raw_fd(efd.into_raw_fd()) };
    let read_waker = Arc::new(ReadWaker {
        fired: AtomicBool::new(false),
        pump: std::sync::Mutex::new(None),
    });
    let waker = Waker::from(read_waker.clone());
    Ok(Pump {
        driver,
        file: Rc::new(file),
        read: None,
        read_waker,
        waker,
    })
}

impl Pump {
    /// Poll the eventfd READ (only when just armed or after its waker fired).
    /// Returns true if it completed (the eventfd was signalled).
    fn poll_read(&mut self, just_armed: bool) -> bool {
        if !just_armed && !self.read_waker.fired.swap(false, Ordering::AcqRel) {
            return false;
        }
        let fut = self.read.as_mut().expect("read armed");
        let mut cx = Context::from_waker(&self.waker);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => {
                if let Err(e) = r {
                    tracing::error!("eventfd read failed in the ring bridge: {e}");
                }
                self.read = None;
                self.driver.note_eventfd_wake();
                true
            }
            Poll::Pending => false,
        }
    }
}

impl Future for Pump {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.driver.parked.set(false);
        this.driver.pump_waker.borrow_mut().take();
        // Woken (by the READ or by a task with new SQEs): stop signalling while busy.
        this.driver.set_eventfd_enabled(false);
        {
            let mut slot = this.read_waker.pump.lock().expect("pump waker lock");
            match slot.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // A completed READ (its waker fired) is consumed whatever else happens.
        if this.read.is_some() {
            this.poll_read(false);
        }
        // Bound the work done per poll so that the other tasks of the queue get to run.
        for _ in 0..8 {
            let submitted = this.driver.flush()?;
            let reaped = this.driver.reap();
            if submitted > 0 || reaped > 0 {
                // Let the woken tasks run, then come back.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Nothing to do: park. No `io_uring_enter` here: task work still pending on our
            // ring shows in `IORING_SQ_TASKRUN` (then `has_work`, and the next flush runs it);
            // task work queued from now on runs at a later syscall of this thread, with the
            // eventfd enabled, and signals it (see the module docs).
            this.driver.set_eventfd_enabled(true);
            fence(Ordering::SeqCst);
            if this.driver.has_work() {
                this.driver.set_eventfd_enabled(false);
                continue;
            }
            let just_armed = if this.read.is_none() {
                let file = this.file.clone();
                this.read = Some(Box::pin(async move { file.read_at(0, 8).await }));
                true
            } else {
                false
            };
            if this.poll_read(just_armed) {
                // Signalled between the check and now: back to work.
                this.driver.set_eventfd_enabled(false);
                continue;
            }
            this.driver.note_park();
            *this.driver.pump_waker.borrow_mut() = Some(cx.waker().clone());
            this.driver.parked.set(true);
            return Poll::Pending;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
