//! Coarse deadlines for the data path: one timer wheel per worker instead of one glommio timer
//! per operation.
//!
//! Every `recv` and `send` of a connection carries an inactivity deadline (`--socket-timeout`,
//! `--keepalive-timeout`), and almost none of them ever fires. A glommio timer per operation
//! costs a precise clock read, a `BTreeMap` insert and remove in glommio's reactor and a timer
//! poll on every wake of the operation: together ~4% of all CPU in the hello benchmark's
//! profile. Here a deadline is a slot in a hashed wheel ([`BUCKETS`] buckets of [`TICK_MS`]):
//! arming it reads the coarse clock (`CLOCK_MONOTONIC_COARSE`, a plain load from the vDSO page)
//! and pushes an index into a bucket; dropping it removes the index in O(1). One task per
//! worker, the ticker, sleeps on a single glommio timer until the earliest armed bucket and
//! fires what is due there.
//!
//! Resolution: a deadline fires at most [`TICK_MS`] plus one clock tick (the kernel's jiffy)
//! late, and never before its time on the coarse clock. That is right for I/O inactivity
//! limits measured in seconds; `sleep` and harakiri keep glommio's precise timers.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Width of one bucket.
const TICK_MS: u64 = 4;
/// Buckets in the wheel (a power of two). Span: `BUCKETS * TICK_MS` = 16.4 s; a deadline
/// further out waits in its bucket for as many turns as it needs (its absolute tick is kept).
const BUCKETS: usize = 4096;
const MASK: u64 = BUCKETS as u64 - 1;

/// The coarse monotonic clock in milliseconds.
fn now_ms() -> u64 {
    crate::sys::coarse_monotonic_ms()
}

enum State {
    /// On the free list.
    Free,
    /// In bucket `due & MASK` at position `pos`; the waker of the operation waiting on it.
    Armed {
        due: u64,
        pos: u32,
        waker: Option<Waker>,
    },
    /// Its time passed; waits for its [`Deadline`] to see it.
    Fired,
}

struct Entry {
    generation: u32,
    state: State,
}

/// One worker's wheel.
pub(crate) struct Wheel {
    inner: RefCell<Inner>,
    /// The ticker's waker while it sleeps, and the tick it sleeps until (`u64::MAX`: no
    /// deadline is armed, it sleeps until one is).
    ticker: RefCell<Option<Waker>>,
    ticker_until: Cell<u64>,
    /// Whether the ticker task has been spawned (lazily, on the first deadline).
    ticker_running: Cell<bool>,
}

struct Inner {
    entries: Vec<Entry>,
    free: Vec<u32>,
    buckets: Vec<Vec<u32>>,
    /// One bit per bucket: set while the bucket holds an entry.
    occupied: Vec<u64>,
    /// Every tick up to this one has been fired.
    fired_through: u64,
    armed: usize,
}

thread_local! {
    static WHEEL: Rc<Wheel> = Rc::new(Wheel::new());
}

impl Wheel {
    fn new() -> Wheel {
        Wheel {
            inner: RefCell::new(Inner {
                entries: Vec::new(),
                free: Vec::new(),
                buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
                occupied: vec![0; BUCKETS / 64],
                fired_through: now_ms() / TICK_MS,
                armed: 0,
            }),
            ticker: RefCell::new(None),
            ticker_until: Cell::new(u64::MAX),
            ticker_running: Cell::new(false),
        }
    }

    fn current() -> Rc<Wheel> {
        WHEEL.with(Rc::clone)
    }

    /// Arm a deadline `timeout` after `now` (coarse milliseconds).
    fn arm(&self, now: u64, timeout: Duration) -> (u32, u32) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX / 4);
        // Round up: a deadline never fires before its time.
        let due = (now.saturating_add(ms)).div_ceil(TICK_MS);
        let (idx, generation) = {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            // A deadline already in the past still goes through the ticker: one tick late.
            let due = due.max(inner.fired_through + 1);
            let idx = match inner.free.pop() {
                Some(i) => i,
                None => {
                    inner.entries.push(Entry {
                        generation: 0,
                        state: State::Free,
                    });
                    (inner.entries.len() - 1) as u32
                }
            };
            let b = (due & MASK) as usize;
            let pos = inner.buckets[b].len() as u32;
            inner.buckets[b].push(idx);
            inner.occupied[b / 64] |= 1 << (b % 64);
            inner.armed += 1;
            let e = &mut inner.entries[idx as usize];
            e.state = State::Armed {
                due,
                pos,
                waker: None,
            };
            (idx, e.generation)
        };
        if due < self.ticker_until.get() {
            self.ticker_until.set(due);
            if let Some(w) = self.ticker.borrow_mut().take() {
                w.wake();
            }
        }
        (idx, generation)
    }

    /// Remove entry `idx` (its deadline was dropped).
    fn disarm(&self, idx: u32, generation: u32) {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let e = &mut inner.entries[idx as usize];
        if e.generation != generation {
            return;
        }
        if let State::Armed { due, pos, .. } = e.state {
            let b = (due & MASK) as usize;
            inner.unlink(b, pos);
            inner.armed -= 1;
        }
        let e = &mut inner.entries[idx as usize];
        e.state = State::Free;
        e.generation = e.generation.wrapping_add(1);
        inner.free.push(idx);
    }

    fn poll_entry(&self, idx: u32, generation: u32, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        let e = &mut inner.entries[idx as usize];
        debug_assert_eq!(e.generation, generation);
        match &mut e.state {
            State::Fired => Poll::Ready(()),
            State::Armed { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            State::Free => unreachable!("a live deadline's entry is never free"),
        }
    }

    /// Fire every entry due at or before `now_tick`; wake their operations.
    fn advance(&self, now_tick: u64) {
        let mut wake = Vec::new();
        {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            let from = inner.fired_through + 1;
            if now_tick < from {
                return;
            }
            // More than one turn: every bucket once.
            let to = now_tick.min(from + MASK);
            let mut t = from;
            while t <= to {
                let b = (t & MASK) as usize;
                if inner.occupied[b / 64] & (1 << (b % 64)) == 0 {
                    t += 1;
                    continue;
                }
                let mut i = 0;
                while i < inner.buckets[b].len() {
                    let idx = inner.buckets[b][i];
                    let e = &mut inner.entries[idx as usize];
                    match &mut e.state {
                        State::Armed { due, waker, .. } if *due <= now_tick => {
                            if let Some(w) = waker.take() {
                                wake.push(w);
                            }
                            e.state = State::Fired;
                            inner.unlink(b, i as u32);
                            inner.armed -= 1;
                            // `unlink` moved the last entry to `i`: look at `i` again.
                        }
                        _ => i += 1,
                    }
                }
                t += 1;
            }
            inner.fired_through = now_tick;
        }
        for w in wake {
            w.wake();
        }
    }

    /// The earliest tick with an armed entry in its bucket, at or after `fired_through + 1`
    /// (an entry there may belong to a later turn: the ticker then looks again).
    fn next_bucket(&self) -> Option<u64> {
        let inner = self.inner.borrow();
        if inner.armed == 0 {
            return None;
        }
        let start = inner.fired_through + 1;
        let mut off = 0u64;
        while off < BUCKETS as u64 {
            let t = start + off;
            let b = (t & MASK) as usize;
            // The bits of this word from bucket `b` on.
            let rest = inner.occupied[b / 64] >> (b % 64);
            if rest != 0 {
                return Some(t + u64::from(rest.trailing_zeros()));
            }
            off += 64 - (b % 64) as u64;
        }
        // Unreachable while `armed > 0`; be safe.
        Some(start + MASK)
    }
}

impl Inner {
    /// Remove position `pos` of bucket `b` (swap with the last, fix the moved entry's `pos`).
    fn unlink(&mut self, b: usize, pos: u32) {
        let bucket = &mut self.buckets[b];
        bucket.swap_remove(pos as usize);
        if let Some(&moved) = bucket.get(pos as usize)
            && let State::Armed { pos: p, .. } = &mut self.entries[moved as usize].state
        {
            *p = pos;
        }
        if bucket.is_empty() {
            self.occupied[b / 64] &= !(1 << (b % 64));
        }
    }
}

/// The ticker: sleeps on one glommio timer until the earliest armed bucket, fires what is due.
async fn ticker(wheel: Rc<Wheel>) {
    loop {
        let now_tick = now_ms() / TICK_MS;
        wheel.advance(now_tick);
        match wheel.next_bucket() {
            None => {
                wheel.ticker_until.set(u64::MAX);
                std::future::poll_fn(|cx| {
                    if wheel.inner.borrow().armed > 0 {
                        return Poll::Ready(());
                    }
                    *wheel.ticker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                })
                .await;
            }
            Some(t) => {
                wheel.ticker_until.set(t);
                let wait = Duration::from_millis((t * TICK_MS).saturating_sub(now_ms()));
                let mut timer = std::pin::pin!(glommio::timer::sleep(wait));
                // Woken early when a deadline earlier than `t` is armed (`arm` lowers
                // `ticker_until` and wakes us).
                std::future::poll_fn(|cx| {
                    if timer.as_mut().poll(cx).is_ready() || wheel.ticker_until.get() != t {
                        return Poll::Ready(());
                    }
                    *wheel.ticker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                })
                .await;
                wheel.ticker.borrow_mut().take();
            }
        }
    }
}

/// A coarse deadline on this worker's wheel: resolves once `timeout` has passed.
///
/// Dropping it disarms it. Must be created inside a worker's executor (the ticker is a
/// glommio task).
pub(crate) struct Deadline {
    wheel: Rc<Wheel>,
    idx: u32,
    generation: u32,
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        let wheel = Wheel::current();
        let (idx, generation) = wheel.arm(now_ms(), timeout);
        if !wheel.ticker_running.replace(true) {
            glommio::spawn_local(ticker(wheel.clone())).detach();
        }
        Deadline {
            wheel,
            idx,
            generation,
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.wheel.poll_entry(self.idx, self.generation, cx)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.wheel.disarm(self.idx, self.generation);
    }
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline").field("idx", &self.idx).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(w: &Wheel, (idx, generation): (u32, u32)) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        w.poll_entry(idx, generation, &mut cx).is_ready()
    }

    #[test]
    fn fires_at_its_tick_not_before_and_beyond_one_turn() {
        let w = Wheel::new();
        let now = w.inner.borrow().fired_through * TICK_MS;
        let short = w.arm(now, Duration::from_millis(10));
        // Longer than one turn of the wheel (16.4 s): waits in its bucket for a second turn.
        let long = w.arm(now, Duration::from_secs(20));
        assert_eq!(w.inner.borrow().armed, 2);
        w.advance((now + 9) / TICK_MS);
        assert!(!poll_once(&w, short), "fired before its time");
        w.advance((now + 12) / TICK_MS);
        assert!(poll_once(&w, short));
        // One full turn later the long deadline's bucket comes round: not yet due.
        w.advance((now + 17_000) / TICK_MS);
        assert!(
            !poll_once(&w, long),
            "a deadline beyond one turn fired a turn early"
        );
        w.advance((now + 19_999) / TICK_MS);
        assert!(!poll_once(&w, long));
        w.advance((now + 20_004) / TICK_MS);
        assert!(poll_once(&w, long));
        assert_eq!(w.inner.borrow().armed, 0);
        w.disarm(short.0, short.1);
        w.disarm(long.0, long.1);
        assert_eq!(w.inner.borrow().free.len(), 2);
    }

    #[test]
    fn disarm_removes_from_the_middle_of_a_bucket() {
        let w = Wheel::new();
        let now = w.inner.borrow().fired_through * TICK_MS;
        // Same bucket: removing the first moves the last into its place.
        let ids: Vec<_> = (0..5)
            .map(|_| w.arm(now, Duration::from_millis(100)))
            .collect();
        w.disarm(ids[0].0, ids[0].1);
        w.disarm(ids[2].0, ids[2].1);
        assert_eq!(w.inner.borrow().armed, 3);
        w.advance((now + 104) / TICK_MS);
        for &i in &[ids[1], ids[3], ids[4]] {
            assert!(poll_once(&w, i), "a remaining entry did not fire");
        }
        assert_eq!(w.inner.borrow().armed, 0);
        assert_eq!(w.next_bucket(), None);
    }

    #[test]
    fn next_bucket_finds_the_earliest_armed_tick() {
        let w = Wheel::new();
        let now = w.inner.borrow().fired_through * TICK_MS;
        assert_eq!(w.next_bucket(), None);
        let a = w.arm(now, Duration::from_millis(3_000));
        let b = w.arm(now, Duration::from_millis(400));
        assert_eq!(w.next_bucket(), Some((now + 400).div_ceil(TICK_MS)));
        w.disarm(b.0, b.1);
        assert_eq!(w.next_bucket(), Some((now + 3_000).div_ceil(TICK_MS)));
        w.disarm(a.0, a.1);
        assert_eq!(w.next_bucket(), None);
    }

    #[test]
    fn deadlines_fire_in_a_worker_and_an_earlier_one_wakes_the_ticker() {
        let order = crate::server::worker::block_on(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let (l1, l2) = (log.clone(), log.clone());
            // Armed first, due last: the ticker sleeps towards it...
            let slow = glommio::spawn_local(async move {
                Deadline::after(Duration::from_millis(1_500)).await;
                l1.borrow_mut().push("slow");
            });
            glommio::executor().yield_if_needed().await;
            // ...and must wake early for this one.
            let t0 = std::time::Instant::now();
            Deadline::after(Duration::from_millis(30)).await;
            let fast_after = t0.elapsed();
            l2.borrow_mut().push("fast");
            slow.await;
            // Dropped deadlines leave nothing armed.
            for _ in 0..100 {
                drop(Deadline::after(Duration::from_secs(5)));
            }
            (
                log.borrow().clone(),
                fast_after,
                Wheel::current().inner.borrow().armed,
            )
        })
        .unwrap();
        assert_eq!(order.0, vec!["fast", "slow"]);
        // The coarse clock lags the precise one by at most a jiffy (<= 10 ms).
        assert!(
            order.1 >= Duration::from_millis(20),
            "fired early: {:?}",
            order.1
        );
        // Not held back until the 1.5 s deadline the ticker was sleeping towards (a 50x
        // margin: this checks the early wake, not the timer's precision).
        assert!(
            order.1 < Duration::from_millis(1_000),
            "not woken early: {:?}",
            order.1
        );
        assert_eq!(order.2, 0);
    }
}
