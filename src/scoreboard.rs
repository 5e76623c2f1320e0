//! The shared-memory scoreboard: the only worker state the master reads.
//!
//! The master maps one [`WorkerBoard`] per worker before forking. A worker writes its own
//! board around every poll of a request future: while a poll runs, `busy_since_ms` says when
//! it started and `deadline_ms` holds the request's harakiri deadline. A handler that never
//! yields leaves `busy_since_ms` set while the clock passes the deadline; the master sees
//! that and kills the worker (hard harakiri), naming the request from `info`.
//!
//! Writes are relaxed atomics guarded by a sequence counter (odd while a write is under way)
//! so that the master never logs a torn request line.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Bytes of request description kept per worker (`"GET /uri" from ADDR`).
pub(crate) const INFO_BYTES: usize = 128;

/// One worker's entry. `repr(C)` and all atomics: valid when zeroed, shareable across fork.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WorkerBoard {
    /// The worker's pid (0 before its start).
    pub(crate) pid: AtomicI32,
    /// The slot being polled.
    pub(crate) slot: AtomicU32,
    /// Sequence counter: odd while the fields below are being written.
    seq: AtomicU64,
    /// `monotonic_ms` when the current poll of a request began; 0 when no request is polled.
    pub(crate) busy_since_ms: AtomicU64,
    /// Harakiri deadline of the request being polled (`monotonic_ms`); 0 for none.
    pub(crate) deadline_ms: AtomicU64,
    /// When that request started (`monotonic_ms`).
    pub(crate) started_ms: AtomicU64,
    /// Requests finished by this worker.
    pub(crate) requests: AtomicU64,
    /// Open client connections (for accept balancing between workers).
    pub(crate) conns: AtomicU64,
    /// 1 while the worker has an accept armed.
    pub(crate) accepting: AtomicU32,
    /// How many of the worker's accept loops wait for a connection (none queued when they
    /// last looked): such a worker takes the next one at once (accept balancing).
    pub(crate) accept_waits: AtomicU32,
    /// 1 once the worker's accept loops run, 0 again when it drains: the master retires the
    /// worker it replaces only once its successor is ready (reload and recycling never leave a
    /// listener without an accepting worker); stats show it as `accepting`.
    pub(crate) ready: AtomicU32,
    /// Set by the worker when it wants to be replaced (`--max-requests` reached); the master
    /// starts its replacement and then stops it gracefully.
    pub(crate) recycle: AtomicU32,
    /// Request slots of the worker, and how many are busy.
    pub(crate) slots: AtomicU32,
    pub(crate) busy_slots: AtomicU32,
    /// Times every slot was busy ("async queue is full").
    pub(crate) queue_full: AtomicU64,
    /// Background tasks alive.
    pub(crate) background: AtomicU64,
    /// Requests cancelled by the in-worker harakiri.
    pub(crate) harakiri_count: AtomicU64,
    /// Handler panics.
    pub(crate) exceptions: AtomicU64,
    /// uWSGI signals handled.
    pub(crate) signals: AtomicU64,
    /// Response bytes written (heads included).
    pub(crate) tx: AtomicU64,
    /// Sum of request durations in microseconds (for the average response time).
    pub(crate) rt_us: AtomicU64,
    /// The request line and peer of the request being polled, NUL padded.
    info: [AtomicU64; INFO_BYTES / 8],
    /// Requests of every app (and of none: static files, 404s), by duration.
    pub(crate) all: AppBoard,
    /// Per mounted app, in mount order (the first [`MAX_APPS`]).
    pub(crate) apps: [AppBoard; MAX_APPS],
}

/// Apps whose requests are counted apart in the stats (`apps[]`) and metrics; mounts beyond
/// this many are counted in the worker's totals only.
pub(crate) const MAX_APPS: usize = 16;

/// Upper bounds, in seconds, of the request-duration histogram buckets: OpenTelemetry's
/// advice for `http.server.request.duration`. Requests above the last one count only in
/// `+Inf` (the request count).
pub(crate) const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// [`DURATION_BUCKETS`] as written in Prometheus' `le` labels.
pub(crate) const DURATION_LE: [&str; DURATION_BUCKETS.len()] = [
    "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5",
    "7.5", "10",
];

/// Counters of one app in one worker: requests, failures and a duration histogram.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct AppBoard {
    pub(crate) requests: AtomicU64,
    pub(crate) exceptions: AtomicU64,
    /// Sum of request durations, microseconds.
    pub(crate) duration_us: AtomicU64,
    /// Requests per bucket of [`DURATION_BUCKETS`] (not cumulative: the one each fell in).
    pub(crate) buckets: [AtomicU64; DURATION_BUCKETS.len()],
}

impl AppBoard {
    fn note(&self, micros: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.duration_us.fetch_add(micros, Ordering::Relaxed);
        let secs = micros as f64 / 1e6;
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(cumulative bucket counts, sum in seconds, count)`, Prometheus' histogram form.
    pub(crate) fn histogram(&self) -> (Vec<u64>, f64, u64) {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        let count = self.requests.load(Ordering::Relaxed).max(acc);
        (
            cumulative,
            self.duration_us.load(Ordering::Relaxed) as f64 / 1e6,
            count,
        )
    }
}

/// What the master reads about a busy worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Busy {
    pub(crate) slot: u32,
    pub(crate) busy_since_ms: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) started_ms: u64,
    pub(crate) info: String,
}

impl WorkerBoard {
    /// A request's poll begins (worker side).
    pub(crate) fn enter(
        &self,
        slot: u32,
        now_ms: u64,
        deadline_ms: u64,
        started_ms: u64,
        info: &[u8],
    ) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        self.slot.store(slot, Ordering::Relaxed);
        self.deadline_ms.store(deadline_ms, Ordering::Relaxed);
        self.started_ms.store(started_ms, Ordering::Relaxed);
        for (i, word) in self.info.iter().enumerate() {
            let mut b = [0u8; 8];
            let from = (i * 8).min(info.len());
            let to = (i * 8 + 8).min(info.len());
            b[..to - from].copy_from_slice(&info[from..to]);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.busy_since_ms.store(now_ms, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A poll of a request without a deadline begins (worker side): only `busy_since_ms`, so
    /// that other workers can tell a stuck executor from a busy one.
    pub(crate) fn enter_plain(&self, now_ms: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        self.deadline_ms.store(0, Ordering::Relaxed);
        // No request line: an earlier one must not be taken for this poll's.
        self.info[0].store(0, Ordering::Relaxed);
        self.busy_since_ms.store(now_ms, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Whether this worker's executor is making progress: not inside one poll for more than
    /// `stuck_ms` (read by other workers).
    pub(crate) fn alive(&self, now_ms: u64, stuck_ms: u64) -> bool {
        let since = self.busy_since_ms.load(Ordering::Relaxed);
        since == 0 || now_ms.saturating_sub(since) < stuck_ms
    }

    /// The poll returned (worker side).
    pub(crate) fn leave(&self) {
        self.busy_since_ms.store(0, Ordering::Release);
    }

    /// Reset at worker start.
    pub(crate) fn reset(&self, pid: i32) {
        self.busy_since_ms.store(0, Ordering::Relaxed);
        self.conns.store(0, Ordering::Relaxed);
        self.accepting.store(0, Ordering::Relaxed);
        self.accept_waits.store(0, Ordering::Relaxed);
        self.deadline_ms.store(0, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Release);
    }

    /// Zero every field (master side: before a worker is forked onto this board, and after
    /// its worker is reaped, so that nobody balances connections toward a dead worker).
    pub(crate) fn clear(&self) {
        self.pid.store(0, Ordering::Relaxed);
        self.busy_since_ms.store(0, Ordering::Relaxed);
        self.deadline_ms.store(0, Ordering::Relaxed);
        self.conns.store(0, Ordering::Relaxed);
        self.accepting.store(0, Ordering::Relaxed);
        self.accept_waits.store(0, Ordering::Relaxed);
        self.ready.store(0, Ordering::Relaxed);
        self.recycle.store(0, Ordering::Relaxed);
        self.busy_slots.store(0, Ordering::Relaxed);
        self.background.store(0, Ordering::Relaxed);
        for c in [
            &self.requests,
            &self.queue_full,
            &self.harakiri_count,
            &self.exceptions,
            &self.signals,
            &self.tx,
            &self.rt_us,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
    }

    /// Count one finished request (worker side).
    pub(crate) fn note_request(&self, app: Option<usize>, wire_bytes: u64, micros: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.tx.fetch_add(wire_bytes, Ordering::Relaxed);
        self.rt_us.fetch_add(micros, Ordering::Relaxed);
        self.all.note(micros);
        if let Some(a) = app.and_then(|a| self.apps.get(a)) {
            a.note(micros);
        }
    }

    /// A request of `app` failed (its handler panicked or raised).
    pub(crate) fn note_exception(&self, app: Option<usize>) {
        self.exceptions.fetch_add(1, Ordering::Relaxed);
        if let Some(a) = app.and_then(|a| self.apps.get(a)) {
            a.exceptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A consistent snapshot of the request being polled, if any (master side).
    pub(crate) fn busy(&self) -> Option<Busy> {
        for _ in 0..100 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let busy_since_ms = self.busy_since_ms.load(Ordering::Relaxed);
            let snap = Busy {
                slot: self.slot.load(Ordering::Relaxed),
                busy_since_ms,
                deadline_ms: self.deadline_ms.load(Ordering::Relaxed),
                started_ms: self.started_ms.load(Ordering::Relaxed),
                info: {
                    let bytes: Vec<u8> = self
                        .info
                        .iter()
                        .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
                        .take_while(|&b| b != 0)
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                },
            };
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return (busy_since_ms != 0).then_some(snap);
            }
        }
        None
    }
}

/// One request slot's entry (uWSGI's per-core stats): written by its worker at the start and
/// end of every request, read by the stats server.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlotBoard {
    in_request: AtomicU32,
    /// Sequence counter of `line`: odd while it is being written.
    line_seq: AtomicU32,
    /// Bytes of `line` in use.
    line_len: AtomicU32,
    requests: AtomicU64,
    /// Wall-clock start of the request in progress, seconds since the epoch.
    start: AtomicU64,
    /// `METHOD URI` of the request in progress (cut at `SLOT_LINE` bytes), for the stats'
    /// `vars`.
    line: [AtomicU64; SLOT_LINE / 8],
    /// The client's address (see [`SlotBoard::peer`]): family and port, then the IP.
    peer: [AtomicU64; 3],
}

/// Bytes of a slot's request line kept for stats.
const SLOT_LINE: usize = 96;

impl SlotBoard {
    /// A request starts on this slot (worker side): a clock read and a copy of at most
    /// `SLOT_LINE` bytes, no formatting.
    pub(crate) fn enter(
        &self,
        epoch_secs: u64,
        method: &[u8],
        uri: &[u8],
        peer: Option<std::net::SocketAddr>,
    ) {
        let seq = self.line_seq.load(Ordering::Relaxed);
        self.line_seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let mut line = [0u8; SLOT_LINE];
        let m = method.len().min(SLOT_LINE - 1);
        line[..m].copy_from_slice(&method[..m]);
        line[m] = b' ';
        let u = uri.len().min(SLOT_LINE - m - 1);
        line[m + 1..m + 1 + u].copy_from_slice(&uri[..u]);
        for (word, bytes) in self.line.iter().zip(line.chunks_exact(8)) {
            word.store(
                u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
        self.line_len.store((m + 1 + u) as u32, Ordering::Relaxed);
        let (head, ip) = match peer {
            Some(std::net::SocketAddr::V4(a)) => {
                (4 << 32 | u64::from(a.port()), u128::from(a.ip().to_bits()))
            }
            Some(std::net::SocketAddr::V6(a)) => (6 << 32 | u64::from(a.port()), a.ip().to_bits()),
            None => (0, 0),
        };
        self.peer[0].store(head, Ordering::Relaxed);
        self.peer[1].store(ip as u64, Ordering::Relaxed);
        self.peer[2].store((ip >> 64) as u64, Ordering::Relaxed);
        self.line_seq.store(seq.wrapping_add(2), Ordering::Release);
        self.start.store(epoch_secs, Ordering::Relaxed);
        self.in_request.store(1, Ordering::Release);
    }

    /// `(method, uri)` of the request in progress, if it reads consistently (stats side).
    pub(crate) fn request_line(&self) -> Option<(String, String)> {
        let seq = self.line_seq.load(Ordering::Acquire);
        let len = self.line_len.load(Ordering::Relaxed) as usize;
        if seq % 2 == 1 || len == 0 || len > SLOT_LINE {
            return None;
        }
        let bytes: Vec<u8> = self
            .line
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .take(len)
            .collect();
        std::sync::atomic::fence(Ordering::Acquire);
        if self.line_seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        let text = String::from_utf8_lossy(&bytes);
        let (m, u) = text.split_once(' ')?;
        Some((m.to_owned(), u.to_owned()))
    }

    /// The client of the request in progress (`None`: a unix socket, or a torn read). Read by
    /// its own worker (graceful stop's busy-slot lines), so no sequence check is needed there.
    pub(crate) fn peer(&self) -> Option<std::net::SocketAddr> {
        let head = self.peer[0].load(Ordering::Relaxed);
        let ip = u128::from(self.peer[1].load(Ordering::Relaxed))
            | u128::from(self.peer[2].load(Ordering::Relaxed)) << 64;
        let port = head as u16;
        match head >> 32 {
            4 => Some((std::net::Ipv4Addr::from_bits(ip as u32), port).into()),
            6 => Some((std::net::Ipv6Addr::from_bits(ip), port).into()),
            _ => None,
        }
    }

    /// The request on this slot ended (worker side).
    pub(crate) fn leave(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_request.store(0, Ordering::Release);
    }

    /// `(in_request, requests, start)` (stats side).
    pub(crate) fn read(&self) -> (bool, u64, u64) {
        (
            self.in_request.load(Ordering::Acquire) == 1,
            self.requests.load(Ordering::Relaxed),
            self.start.load(Ordering::Relaxed),
        )
    }

    fn clear(&self) {
        self.in_request.store(0, Ordering::Relaxed);
        self.line_len.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.start.store(0, Ordering::Relaxed);
    }
}

/// Every board's slot entries, `slots_per_board` per board, in board order.
static SLOTS: std::sync::OnceLock<(&'static [SlotBoard], usize)> = std::sync::OnceLock::new();

/// Record the shared slot entries (master, before forking).
pub(crate) fn set_slot_boards(all: &'static [SlotBoard], per_board: usize) {
    let _ = SLOTS.set((all, per_board));
}

/// The slot entries of board `board` (empty if there are none).
pub(crate) fn slot_boards(board: usize) -> &'static [SlotBoard] {
    match SLOTS.get() {
        Some((all, per)) => all.get(board * per..(board + 1) * per).unwrap_or(&[]),
        None => &[],
    }
}

/// Zero the slot entries of board `board` (master, before a worker is forked onto it).
///
/// Whole pages are released rather than written ([`crate::sys::zero_shared_pages`]), so that
/// the master does not keep `--async` records per worker resident.
pub(crate) fn clear_slot_boards(board: usize) {
    let slots = slot_boards(board);
    let zeroed = crate::sys::zero_shared_pages(slots);
    for (i, s) in slots.iter().enumerate() {
        if !zeroed.contains(&i) {
            s.clear();
        }
    }
}

/// This process's own board (set once in a worker at start; `None` in the master).
static MINE: std::sync::OnceLock<&'static WorkerBoard> = std::sync::OnceLock::new();

/// Record this worker's board.
pub(crate) fn set_mine(board: &'static WorkerBoard) {
    let _ = MINE.set(board);
}

/// This worker's board, for counters written from anywhere in the worker.
pub(crate) fn mine() -> Option<&'static WorkerBoard> {
    MINE.get().copied()
}

/// Where each uWSGI signal number goes, registered by the workers and read by the master when
/// it routes a raised signal (the handlers themselves live in every worker).
///
/// Entry encoding: 0 unregistered, 1 `worker` (any one), 2 `workers` (all), `3 + i` worker
/// index `i` (`worker<i+1>` in uWSGI's 1-based naming).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SignalTable {
    pub(crate) targets: [AtomicU32; 256],
    /// Signals raised that no worker registered, or that found a full channel.
    pub(crate) unrouted: AtomicU64,
}

static TABLE: std::sync::OnceLock<&'static SignalTable> = std::sync::OnceLock::new();

/// Record the shared signal table (master, before forking).
pub(crate) fn set_signal_table(t: &'static SignalTable) {
    let _ = TABLE.set(t);
}

/// The shared signal table, if this process has one.
pub(crate) fn signal_table() -> Option<&'static SignalTable> {
    TABLE.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> WorkerBoard {
        WorkerBoard {
            pid: AtomicI32::new(0),
            slot: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(0),
            started_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            conns: AtomicU64::new(0),
            accepting: AtomicU32::new(0),
            accept_waits: AtomicU32::new(0),
            ready: AtomicU32::new(0),
            recycle: AtomicU32::new(0),
            slots: AtomicU32::new(0),
            busy_slots: AtomicU32::new(0),
            queue_full: AtomicU64::new(0),
            background: AtomicU64::new(0),
            harakiri_count: AtomicU64::new(0),
            exceptions: AtomicU64::new(0),
            signals: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            rt_us: AtomicU64::new(0),
            info: Default::default(),
            all: AppBoard::default(),
            apps: Default::default(),
        }
    }

    #[test]
    fn le_labels_spell_the_bucket_bounds() {
        for (le, b) in DURATION_LE.iter().zip(DURATION_BUCKETS) {
            assert_eq!(le.parse::<f64>().unwrap(), b);
        }
    }

    #[test]
    fn durations_fall_in_their_buckets_per_app() {
        let b = board();
        b.note_request(Some(1), 10, 3_000); // 3 ms: the 5 ms bucket
        b.note_request(Some(1), 10, 5_000); // exactly 5 ms: still the 5 ms bucket (le)
        b.note_request(Some(1), 10, 200_000); // 200 ms: the 250 ms bucket
        b.note_request(None, 10, 30_000_000); // 30 s: +Inf only, worker total only
        b.note_exception(Some(1));
        let (cum, sum, count) = b.apps[1].histogram();
        assert_eq!(count, 3);
        assert_eq!(cum[0], 2);
        assert_eq!(cum[5], 2, "0.1 s bucket");
        assert_eq!(cum[6], 3, "0.25 s bucket");
        assert_eq!(*cum.last().unwrap(), 3);
        assert!((sum - 0.208).abs() < 1e-9, "{sum}");
        assert_eq!(b.apps[1].exceptions.load(Ordering::Relaxed), 1);
        let (cum, _, count) = b.all.histogram();
        assert_eq!((count, *cum.last().unwrap()), (4, 3));
        assert_eq!(b.apps[0].histogram().2, 0);
    }

    #[test]
    fn enter_leave_round_trip() {
        let b = board();
        assert_eq!(b.busy(), None);
        b.enter(7, 1000, 2000, 900, b"\"GET /spin\" from 127.0.0.1:5");
        assert_eq!(
            b.busy(),
            Some(Busy {
                slot: 7,
                busy_since_ms: 1000,
                deadline_ms: 2000,
                started_ms: 900,
                info: "\"GET /spin\" from 127.0.0.1:5".into()
            })
        );
        b.leave();
        assert_eq!(b.busy(), None);
    }

    #[test]
    fn slot_request_line_round_trips_and_is_cut_at_its_size() {
        let s = SlotBoard {
            in_request: AtomicU32::new(0),
            line_seq: AtomicU32::new(0),
            line_len: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            start: AtomicU64::new(0),
            line: Default::default(),
            peer: Default::default(),
        };
        assert_eq!(s.request_line(), None);
        assert_eq!(s.peer(), None);
        s.enter(7, b"GET", b"/a?b=c", Some("10.1.2.3:4567".parse().unwrap()));
        assert_eq!(s.read(), (true, 0, 7));
        assert_eq!(s.request_line(), Some(("GET".into(), "/a?b=c".into())));
        assert_eq!(s.peer(), Some("10.1.2.3:4567".parse().unwrap()));
        let long = vec![b'x'; 300];
        s.enter(8, b"POST", &long, Some("[::1]:80".parse().unwrap()));
        let (m, u) = s.request_line().unwrap();
        assert_eq!((m.as_str(), u.len()), ("POST", SLOT_LINE - 5));
        assert_eq!(s.peer(), Some("[::1]:80".parse().unwrap()));
        s.enter(8, b"GET", b"/", None);
        assert_eq!(s.peer(), None);
        s.leave();
        assert_eq!(s.read(), (false, 1, 8));
    }

    #[test]
    fn long_info_is_truncated_and_short_info_overwrites() {
        let b = board();
        let long = vec![b'x'; 300];
        b.enter(1, 1, 0, 1, &long);
        assert_eq!(b.busy().unwrap().info.len(), INFO_BYTES);
        b.enter(1, 2, 0, 1, b"short");
        assert_eq!(b.busy().unwrap().info, "short");
    }

    /// Zeroing records by releasing their pages leaves every record of the range zero and
    /// every record outside `items` as it was. (Records of `items` outside the range may share
    /// a released page in part: the caller clears them, as `clear_slot_boards` does.)
    #[test]
    fn zero_shared_pages_zeroes_the_range_and_nothing_else() {
        let slots = crate::sys::shared_zeroed::<SlotBoard>(200).unwrap();
        for s in slots {
            s.enter(7, b"GET", b"/x", None);
            s.leave();
        }
        let part = &slots[5..190];
        let zeroed = crate::sys::zero_shared_pages(part);
        // Records of a few hundred bytes, 4 KiB pages: most of the 185 are on whole pages.
        assert!(zeroed.len() > 100, "{zeroed:?}");
        for i in zeroed {
            assert_eq!(part[i].read().1, 0, "record {}", i + 5);
            assert_eq!(part[i].line_len.load(Ordering::Relaxed), 0);
        }
        for s in slots[..5].iter().chain(&slots[190..]) {
            assert_eq!(s.read(), (false, 1, 7));
        }
    }
}
