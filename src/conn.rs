//! The connection loop: the only place that orders the steps of serving a connection.
//!
//! read and parse the head (no slot held, within `--header-timeout`) → take a slot → call the
//! app (panics caught) → finish the response → drain the body → release the slot → keep-alive
//! (idle connections are parked after 100 ms: no task, no buffer) or close.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;

use crate::app::App;
use crate::harakiri::{self, Guarded};
use crate::proto::http::{self, Limits};
use crate::proto::uwsgi::{self, CgiMeta};
use crate::proto::{ParseError, Parsed};
use crate::request::{Body, BodyState, Peer, Request};
use crate::response::Response;
use crate::scoreboard::WorkerBoard;
use crate::slot::{SlotBufs, SlotGuard, SlotPool};
use crate::static_files::{self, StaticFiles};
use crate::uring;
use crate::uring::multi::{Got, MultiRecv};
use crate::uring::send::Sending;

/// What every connection of a worker shares.
pub(crate) struct ConnCtx {
    /// The worker's index (0-based).
    pub(crate) worker: usize,
    pub(crate) slots: Rc<SlotPool>,
    /// Mounted apps, longest prefix first, each with its index in mount order.
    pub(crate) routes: Vec<(String, Rc<dyn App>, usize)>,
    pub(crate) limits: Limits,
    /// Packet limits of the uwsgi listeners (`--buffer-size`, `--max-vars`).
    pub(crate) uwsgi: uwsgi::Limits,
    /// Inactivity limit while reading a head or body and while writing.
    pub(crate) socket_timeout: Duration,
    /// How long an idle keep-alive connection is kept (zero: no keep-alive).
    pub(crate) keepalive_timeout: Duration,
    /// Total time a request head or uwsgi packet may take, from its first byte (from the
    /// accept on a new connection): `--header-timeout`.
    pub(crate) header_timeout: Duration,
    /// HTTP connections start with a PROXY protocol header (`--enable-proxy-protocol`).
    pub(crate) proxy_protocol: bool,
    /// Peers whose `Forwarded`/`X-Forwarded-For` are believed (`--forwarded-allow-ips`).
    pub(crate) forwarded_allow: Vec<crate::proto::forwarded::Trusted>,
    /// The index that heads are parsed into while they arrive, before they have a slot. Heads
    /// are parsed synchronously (never across an await), so one per worker serves every
    /// connection; a complete head's index is swapped into its slot.
    pub(crate) scratch: std::cell::RefCell<http::HeadIndex>,
    /// Idle keep-alive connections parked without a task or a buffer.
    pub(crate) parked: std::cell::RefCell<ParkedConns>,
    /// Request log on.
    pub(crate) log: bool,
    /// The request log's format (`--logformat`).
    pub(crate) logformat: crate::logsink::LogFormat,
    /// Requests served by this worker.
    pub(crate) requests: std::cell::Cell<u64>,
    /// The worker is stopping: finish the current request, then close.
    pub(crate) stopping: std::cell::Cell<bool>,
    /// Per-request deadline (`--harakiri`).
    pub(crate) harakiri: Option<Duration>,
    /// Log what a harakiri'd request was waiting on.
    pub(crate) harakiri_verbose: bool,
    /// This worker's scoreboard entry, read by the master.
    pub(crate) board: Option<&'static WorkerBoard>,
    /// Every worker's entry (accept balancing).
    pub(crate) boards: &'static [WorkerBoard],
    /// Recycle the worker after this many requests (`--max-requests`).
    pub(crate) max_requests: Option<u64>,
    /// Connections waiting for their next request without a slot: shut for reading when the
    /// worker drains, so that each either serves a request that already arrived (with
    /// `Connection: close`) or closes at once instead of at exit.
    pub(crate) idle: std::cell::RefCell<FdSet>,
    /// This worker's index in `boards` (not its worker index: during a reload the old and
    /// the new worker of one index both have a board).
    pub(crate) board_index: usize,
    /// `--static-map` directories, looked up before the apps (empty: one `is_empty()`).
    pub(crate) statics: StaticFiles,
    /// The listening sockets, whether each is TCP, and what each speaks.
    pub(crate) listeners: Vec<(i32, bool, crate::server::listener::Protocol)>,
    /// Kept-alive connections wait for their requests with a multishot receive
    /// (`uring::multi`): false when a mounted app may read the connection itself
    /// ([`App::reads_connection`]), which a multishot armed while it runs would take from it.
    pub(crate) multishot: bool,
}

/// A set of descriptors as a bitmap indexed by descriptor: an insert and a remove per
/// kept-alive request cost a bit operation each, not a hash of the descriptor (issue #12).
#[derive(Default)]
pub(crate) struct FdSet {
    words: Vec<u64>,
}

impl FdSet {
    pub(crate) fn insert(&mut self, fd: i32) {
        let (w, bit) = (fd as usize / 64, fd as usize % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << bit;
    }

    pub(crate) fn remove(&mut self, fd: &i32) {
        let (w, bit) = (*fd as usize / 64, *fd as usize % 64);
        if let Some(word) = self.words.get_mut(w) {
            *word &= !(1 << bit);
        }
    }

    /// The descriptors in the set, in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            (0..64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| (w * 64 + b) as i32)
        })
    }
}

/// Set once when this worker starts draining: responses from then on say `Connection: close`.
static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this worker is draining.
pub(crate) fn draining() -> bool {
    DRAINING.load(std::sync::atomic::Ordering::Relaxed)
}

impl ConnCtx {
    /// This worker's index in `boards`.
    pub(crate) fn worker_board(&self) -> usize {
        self.board_index
    }

    /// Client connections open on this worker.
    pub(crate) fn open_conns(&self) -> usize {
        self.boards[self.board_index]
            .conns
            .load(std::sync::atomic::Ordering::Relaxed) as usize
    }

    /// Start draining: no new requests on kept-alive connections, `Connection: close` on the
    /// responses still to come, idle connections closed (after serving a request that already
    /// arrived on one).
    pub(crate) fn drain(&self) {
        DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
        self.stopping.set(true);
        for fd in self.idle.borrow().iter() {
            // The pending recv completes with what already arrived, or with 0 (end of file).
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
        }
    }
}

/// Largest rest of an unread request body that is read and discarded to keep a connection
/// alive; beyond it the connection is closed instead.
const MAX_DRAIN: u64 = 256 * 1024;

/// Growth step of a connection's input buffer while a head is incomplete. A head's first
/// bytes arrive in a buffer of the worker's pool (`uring::pool`, 1 KiB: most request heads
/// fit, nginx's `client_header_buffer_size` default is 1k too) and are copied into the input
/// buffer at their size; only a head that needs more reads grows it by this much.
const HEAD_READ: usize = 1024;

impl ConnCtx {
    /// The app mounted at the longest prefix of `path`, and its index in mount order (the
    /// order of `--mount`: the stats' `apps[]`).
    ///
    /// On the path's bytes: `Request::path` would check them for UTF-8 once more per request
    /// (httparse did when it parsed the target).
    fn route(&self, path: &[u8]) -> Option<(usize, &Rc<dyn App>)> {
        self.routes.iter().find_map(|(prefix, app, id)| {
            let hit = prefix == "/"
                || (path.starts_with(prefix.as_bytes())
                    && matches!(path.get(prefix.len()), None | Some(b'/')));
            hit.then_some((*id, app))
        })
    }
}

/// How a request ended, for the connection loop.
enum Next {
    /// Wait for the next request on this connection.
    KeepAlive,
    /// Close now.
    Close,
    /// Close after a lingering read: the client may still be sending bytes we did not read
    /// (an error answered mid-request, a body not drained). Closing with unread input sends an
    /// RST, which can destroy our response in flight to the client.
    Linger,
    /// uwsgi only: read and discard this many more bytes, the rest of a request body the front
    /// server is bound to send (it announced it in `CONTENT_LENGTH`), then close. A bounded
    /// [`Linger`](Next::Linger) is not enough there: nginx sends the whole body before it
    /// reads our answer, so a close with part of the body unread resets the connection,
    /// nginx's write fails (EPIPE, "while sending request to upstream") and the client gets
    /// 502 instead of our response.
    Discard(u64),
}

/// Serve one accepted connection until it closes.
///
/// A connection holds a slot only while one of its requests is in progress: from a complete
/// head to the last byte of its response (to the submission of a kept-alive response's last
/// send of at most 16 KiB, which the connection settles: [`settle`]). Waiting for a request
/// and reading its head cost the connection its input buffer and its task, nothing more, so
/// a client that sends its head
/// slowly (slowloris) keeps nobody else from being served; `--header-timeout` bounds how long
/// it may take (nginx's `client_header_timeout`: a total, not an inactivity limit).
///
/// Returns `serve_from`'s future itself (an `async fn` wrapper would store its arguments again).
pub(crate) fn serve(fd: OwnedFd, peer: Peer, ctx: Rc<ConnCtx>) -> impl Future<Output = ()> {
    serve_from(fd, peer, ctx, Start::Accepted)
}

/// Counts a connection off the worker's `conns` when dropped.
struct Counted<'a>(&'a ConnCtx);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.boards[self.0.worker_board()]
            .conns
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where a connection task starts.
enum Start {
    /// A connection just accepted.
    Accepted,
    /// A parked connection that turned readable (see [`Parked`]): a kept-alive one (`None`),
    /// or a new one still without its first request (`Some`: its head's deadline, from the
    /// accept).
    Woken(Option<Instant>),
}

/// The connection loop, from a new connection or a parked one that turned readable. The
/// connection was counted in the worker's `conns` when it was accepted (or parked); it is
/// counted off when this ends, whichever way.
async fn serve_from(fd: OwnedFd, mut peer: Peer, ctx: Rc<ConnCtx>, start: Start) {
    let _counted = Counted(&ctx);
    let raw = fd.as_raw_fd();
    // Whether the PROXY header (`--enable-proxy-protocol`) was read: it comes once, before the
    // first request (a connection parked before its first byte has not sent it yet).
    let mut proxied = false;
    // Empty: the first bytes arrive in a buffer of the worker's pool and are copied here
    // exactly (`uring::recv::recv_first`); only a head that needs more reads grows it.
    let mut input: Vec<u8> = Vec::new();
    // The last send of the previous response, submitted but not yet settled: settled after
    // the next receive (submitted together with it), or before anything else happens on the
    // connection (see `uring::send::Sending`).
    let mut sending: Option<Sending> = None;
    // The multishot receive of a kept-alive connection (`uring::multi`): armed at its first
    // idle wait, it stays armed from one request to the next and is the only reader of the
    // socket while it is; stopped (every byte it took appended to `input`) before anything
    // else reads it (a body, parking) and dropped (cancelled) before a linger or a close.
    let mut ms: Option<MultiRecv> = None;
    let (mut fresh, mut woken, first_deadline) = match start {
        Start::Accepted => (true, false, Instant::now() + ctx.header_timeout),
        Start::Woken(None) => (false, true, Instant::now()),
        Start::Woken(Some(deadline)) => (true, true, deadline),
    };
    loop {
        // The head's deadline: --header-timeout from the accept for a new connection, from
        // the first byte for a kept-alive one, from the end of the previous request for a
        // pipelined one.
        let head_deadline = if fresh {
            if input.is_empty() && !woken {
                // The first request usually comes with the connection: try at once, wait for
                // the hot window, then park the connection until its first byte.
                let left = first_deadline.saturating_duration_since(Instant::now());
                let window = HOT_IDLE.min(left);
                let (r, buf) = uring::recv::recv_first(raw, input, window, false).await;
                input = buf;
                match r {
                    Some(Ok(n)) if n > 0 => {}
                    // Closed or failed before sending anything: close without a word.
                    Some(_) => break,
                    None if left > window => {
                        drop(input);
                        park(&ctx, fd, peer, first_deadline, true);
                        return;
                    }
                    // The header timeout itself: read_head answers 408.
                    None => {}
                }
            }
            woken = false;
            if ctx.proxy_protocol && !proxied {
                // The load balancer's PROXY header comes before the client's first byte.
                match read_proxy_header(raw, &mut input, first_deadline).await {
                    Ok(source) => {
                        proxied = true;
                        if let Some(client) = source {
                            peer = Peer::Tcp(client);
                        }
                    }
                    Err(why) => {
                        tracing::warn!(
                            "{peer}: {why} on a --enable-proxy-protocol listener: closed"
                        );
                        break;
                    }
                }
            }
            Some(first_deadline)
        } else if input.is_empty() {
            // Idle: wait for the next request's first byte without holding a slot.
            let r = if woken {
                // Parked, and readable now: the bytes (or the end of file) are there.
                woken = false;
                let (r, buf) = uring::recv::recv_first(raw, input, ctx.socket_timeout, false).await;
                input = buf;
                r.unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
            } else {
                if ctx.stopping.get() {
                    break;
                }
                // Only a connection that has served a request may be closed while idle when
                // the worker drains (its client retries); a fresh one waits for its first
                // request.
                ctx.idle.borrow_mut().insert(raw);
                if input.capacity() > IDLE_KEEP {
                    input = Vec::new();
                }
                let window = HOT_IDLE.min(ctx.keepalive_timeout);
                let (r, buf) = if ctx.multishot && uring::multi::ready(&mut ms, raw) {
                    uring::multi::recv_idle(&mut ms, raw, input, window).await
                } else {
                    uring::recv::recv_first(raw, input, window, true).await
                };
                input = buf;
                if let Some(s) = sending.take()
                    && !settle(&ctx, &peer, s).await
                {
                    ctx.idle.borrow_mut().remove(&raw);
                    break;
                }
                match r {
                    Some(r) => {
                        ctx.idle.borrow_mut().remove(&raw);
                        r
                    }
                    None if ctx.keepalive_timeout > window => {
                        // Quiet for the hot window: park it (no task, no buffer) until its
                        // next request or --keepalive-timeout.
                        // (No clock read per request for this: the window just passed.)
                        debug_assert!(ms.is_none(), "recv_idle stops the multishot");
                        drop(input);
                        let idle_since = Instant::now()
                            .checked_sub(window)
                            .unwrap_or_else(Instant::now);
                        park(&ctx, fd, peer, idle_since + ctx.keepalive_timeout, false);
                        return;
                    }
                    None => {
                        ctx.idle.borrow_mut().remove(&raw);
                        break;
                    }
                }
            };
            match r {
                // --header-timeout from now, read only if the head needs another receive.
                Ok(n) if n > 0 => None,
                // Closed, failed, or idle past --keepalive-timeout: close without a word.
                _ => break,
            }
        } else {
            None
        };
        let head = read_head(&ctx, raw, &mut input, head_deadline, &mut ms).await;
        let head_len = match head {
            Head::Complete(n) => n,
            Head::Closed if fresh && input.is_empty() => break,
            Head::Closed => {
                tracing::info!("{peer}: connection closed inside a request head");
                break;
            }
            Head::TimedOut(got) => {
                if got == 0 {
                    tracing::info!("{peer}: no request within --header-timeout: 408");
                } else {
                    tracing::info!(
                        "{peer}: request head incomplete after --header-timeout ({got} bytes): 408"
                    );
                }
                drop(ms.take());
                error_response(&ctx, raw, 408).await;
                if got > 0 {
                    // The client may still be sending its head: do not reset the answer.
                    linger(&fd).await;
                }
                break;
            }
            Head::Refused(e) => {
                tracing::warn!(
                    "{peer}: bad request ({}): {} (worker {})",
                    e.describe(),
                    e.status(),
                    ctx.worker
                );
                drop(ms.take());
                error_response(&ctx, raw, e.status()).await;
                linger(&fd).await;
                break;
            }
        };
        if ms.is_some() && !multishot_may_stay(&ctx) {
            // The body is read with plain receives (`request::Body`): no multishot may take its
            // bytes. Everything it took so far goes into the input, in order (how it ended
            // shows again to the body's own receives).
            let m = ms.take().expect("checked");
            let _ = m.stop(&mut input).await;
        }
        let slot = take_slot(&ctx, &input, head_len).await;
        // Pinned where it is built: awaited by value, the request's future (~1 KB) was copied
        // twice per request into this task's state (`IntoFuture`, then the await's slot). In a
        // block of its own, so that its place in the task ends with it: alive across the
        // awaits below, it took 608 bytes more in every connection task (1,752 bytes).
        let (next, rest, last_send) = {
            let serving = std::pin::pin!(request(&ctx, raw, &peer, slot, input, head_len));
            serving.await
        };
        input = rest;
        fresh = false;
        sending = last_send;
        let keep = matches!(next, Next::KeepAlive)
            && !ctx.keepalive_timeout.is_zero()
            && !ctx.stopping.get();
        if !(keep && input.is_empty())
            && let Some(s) = sending.take()
            && !settle(&ctx, &peer, s).await
        {
            // A pipelined request is answered, a connection closed or lingered on, only once
            // every byte of this response is out.
            break;
        }
        match next {
            Next::KeepAlive if keep => {}
            Next::Linger | Next::Discard(_) => {
                drop(ms.take());
                linger(&fd).await;
                break;
            }
            _ => break,
        }
    }
    // Cancelled before the descriptor is closed (the driver gives back what it still takes).
    drop(ms);
    if let Some(s) = sending.take() {
        settle(&ctx, &peer, s).await;
    }
    uring::close::close(fd);
}

/// Whether a kept-alive connection's multishot receive may stay armed while the request whose
/// head was just indexed in the worker's scratch index is served: only if it has no body (a
/// body is read with plain receives).
fn multishot_may_stay(ctx: &ConnCtx) -> bool {
    matches!(
        ctx.scratch.borrow().framing,
        http::BodyFraming::None | http::BodyFraming::Length(0)
    )
}

/// Settle the last send of the previous response (see [`Sending`]): `false` if it failed
/// (logged; the connection must be closed). Its buffer goes back to the worker's spares.
async fn settle(ctx: &ConnCtx, peer: &Peer, s: Sending) -> bool {
    let (r, buf) = match s.try_settle() {
        Ok(done) => done,
        // Still in flight, or only part of it went out: wait, bounded by --socket-timeout.
        Err(s) => rare(s.settle(ctx.socket_timeout)).await,
    };
    crate::response::recycle_out(buf);
    match r {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("{peer}: sending the response failed: {e}; closing");
            false
        }
    }
}

/// Read and remove the PROXY protocol header at the start of `input` (reading more until
/// `deadline`): the client address it carries (`None`: the balancer's own connection, v2
/// `LOCAL` or v1 `UNKNOWN`), or why the connection must be closed.
async fn read_proxy_header(
    fd: i32,
    input: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Option<std::net::SocketAddr>, String> {
    use crate::proto::proxy;
    loop {
        match proxy::parse(input) {
            Ok(Parsed::Complete(h)) => {
                input.drain(..h.len);
                return Ok(h.source);
            }
            Ok(Parsed::Partial) => match read_before(fd, input, deadline).await {
                Ok(true) => {}
                Ok(false) => return Err("closed inside its PROXY header".into()),
                Err(()) => return Err("no PROXY header within --header-timeout".into()),
            },
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// How long a kept-alive connection waits for its next request as a task with a receive armed
/// (its input buffer pinned) before it is parked ([`Parked`]). Back-to-back requests never
/// reach it, so the hot path is one `recv` per request as before; a connection that is quiet
/// for longer costs a parked entry instead of its task and buffer (~5 KB).
const HOT_IDLE: Duration = Duration::from_millis(100);

/// An input buffer larger than this (grown by a body or a long head) is dropped before an
/// idle wait, so that a hot idle connection pins little: the wait itself needs no buffer
/// (`uring::recv::recv_first`), and the next request's bytes are copied into one of their
/// size. A smaller one (the size of the last request) is kept for the next.
const IDLE_KEEP: usize = HEAD_READ;

/// An idle keep-alive connection parked without a task, a future or a buffer: its descriptor,
/// its peer and a readiness watch on our ring (`uring::watch`: a `POLL_ADD` consumes no bytes,
/// so it can be cancelled safely). When it turns readable, [`parked_loop`] spawns a new
/// connection task for it; past `--keepalive-timeout` it is closed silently.
struct Parked {
    fd: OwnedFd,
    peer: Peer,
    /// A new connection without its first request: its head's deadline (ms since
    /// [`ParkedConns::base`]); `None` for a kept-alive one.
    head_deadline: Option<u64>,
}

/// The key of the watch of the parked connection at slab index `idx`, generation `generation`
/// (which tells its result from an earlier watch's under the same index).
fn parked_key(idx: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(idx)
}

/// After this many connections were parked, the heap is trimmed (see [`TRIM_QUIET`]): the
/// tasks and buffers they had are freed in the middle of the heap, where glibc keeps them
/// resident (measured: ~800 B per parked connection left behind without it, ~270 B with it).
const TRIM_AFTER: u32 = 256;
/// The trim waits for this long without parking (the end of a burst)...
const TRIM_QUIET: Duration = Duration::from_secs(1);
/// ... but no longer than this after the burst began ...
const TRIM_MAX_WAIT: Duration = Duration::from_secs(30);
/// ... and comes at least this long after the previous one: `malloc_trim` walks the heap's
/// free chunks, so a worker with a large heap (an embedded interpreter) pays for each call.
const TRIM_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The worker's parked connections: a slab (index = the watch's key, with a generation per
/// entry) and the order they expire in. Every connection is parked with the same timeout, so
/// that order is the order they were parked in: a FIFO, and one timer for all of them.
pub(crate) struct ParkedConns {
    slots: Vec<(u32, Option<Parked>)>,
    free: Vec<u32>,
    /// `(deadline in ms since base, index, generation)` of kept-alive connections
    /// (`--keepalive-timeout`), oldest first ...
    expiry: std::collections::VecDeque<(u64, u32, u32)>,
    /// ... and of new ones without their first request (`--header-timeout` from the accept).
    expiry_fresh: std::collections::VecDeque<(u64, u32, u32)>,
    base: Instant,
    /// The waker of [`parked_loop`], for a new first deadline or a trim to schedule, and
    /// the flag that tells it to compute its wait again.
    waker: Option<std::task::Waker>,
    rearm: bool,
    running: bool,
    /// Connections parked since the heap was last trimmed, and when the next trim is due.
    since_trim: u32,
    trim_at: Option<Instant>,
    /// When the parking that the next trim is for passed [`TRIM_AFTER`].
    trim_first: Option<Instant>,
    last_trim: Option<Instant>,
}

impl Default for ParkedConns {
    fn default() -> Self {
        ParkedConns {
            slots: Vec::new(),
            free: Vec::new(),
            expiry: Default::default(),
            expiry_fresh: Default::default(),
            base: Instant::now(),
            waker: None,
            rearm: false,
            running: false,
            since_trim: 0,
            trim_at: None,
            trim_first: None,
            last_trim: None,
        }
    }
}

impl ParkedConns {
    /// Store `p`; returns its index and generation.
    fn insert(&mut self, p: Parked) -> (u32, u32) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.1 = Some(p);
        (idx, slot.0)
    }

    /// Take the entry at `idx` if it is still of `generation`.
    fn take(&mut self, idx: u32, generation: u32) -> Option<Parked> {
        let slot = self.slots.get_mut(idx as usize)?;
        if slot.0 != generation || slot.1.is_none() {
            return None;
        }
        // 30 bits: a key must fit below the ring's watch tag (`uring::watch::MAX_KEY`).
        slot.0 = slot.0.wrapping_add(1) & 0x3fff_ffff;
        self.free.push(idx);
        slot.1.take()
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }
}

/// Park an idle connection until `deadline` (see [`Parked`]): a kept-alive one, or (`fresh`) a
/// new one that has not sent its first request (its deadline is its head's). A kept-alive one
/// stays in `ctx.idle`, so that a drain shuts it for reading (which wakes it, and it closes).
fn park(ctx: &Rc<ConnCtx>, fd: OwnedFd, peer: Peer, deadline: Instant, fresh: bool) {
    // The parked table owns the connection now: it counts it (the task that parked it ends).
    ctx.boards[ctx.worker_board()]
        .conns
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let driver = uring::Driver::current();
    let raw = fd.as_raw_fd();
    let mut parked = ctx.parked.borrow_mut();
    let at = parked.ms(deadline);
    let (idx, generation) = parked.insert(Parked {
        fd,
        peer,
        head_deadline: fresh.then_some(at),
    });
    driver.watch(raw, libc::POLLIN as u32, parked_key(idx, generation));
    // Each FIFO has one timeout, so its deadlines only grow: the loop must learn of a new one
    // only when its FIFO was empty.
    let fifo = if fresh {
        &mut parked.expiry_fresh
    } else {
        &mut parked.expiry
    };
    let mut wake = fifo.is_empty();
    fifo.push_back((at, idx, generation));
    parked.since_trim += 1;
    if parked.since_trim >= TRIM_AFTER {
        // One trim when the burst is over (1 s without parking), one every 30 s while parking
        // goes on, never two within 10 s.
        let now = Instant::now();
        let first = *parked.trim_first.get_or_insert(now);
        let mut at = (now + TRIM_QUIET).min(first + TRIM_MAX_WAIT);
        if let Some(last) = parked.last_trim {
            at = at.max(last + TRIM_MIN_INTERVAL);
        }
        wake |= parked.trim_at.is_none();
        parked.trim_at = Some(at);
    }
    let waker = if wake {
        parked.rearm = true;
        parked.waker.take()
    } else {
        None
    };
    let start = !std::mem::replace(&mut parked.running, true);
    // glommio runs a spawned task at once: no borrow may be held across the spawn.
    drop(parked);
    if let Some(w) = waker {
        w.wake();
    }
    if start {
        glommio::spawn_local(parked_loop(ctx.clone())).detach();
    }
}

/// Close a parked connection (idle past `--keepalive-timeout`).
fn close_parked(ctx: &ConnCtx, p: Parked) {
    ctx.idle.borrow_mut().remove(&p.fd.as_raw_fd());
    uring::close::close(p.fd);
    ctx.boards[ctx.worker_board()]
        .conns
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Answer `408` to a new connection parked without its first request past `--header-timeout`,
/// and close it (in a task of its own: the answer is a send).
fn timed_out_parked(ctx: &Rc<ConnCtx>, p: Parked) {
    let ctx = ctx.clone();
    glommio::spawn_local(async move {
        tracing::info!("{}: no request within --header-timeout: 408", p.peer);
        error_response(&ctx, p.fd.as_raw_fd(), 408).await;
        close_parked(&ctx, p);
    })
    .detach();
}

/// The one task that serves every parked connection of the worker: a readable one gets a new
/// connection task (which reads its request), an expired one is closed; the heap is trimmed
/// after bursts of parking.
async fn parked_loop(ctx: Rc<ConnCtx>) {
    let driver = uring::Driver::current();
    loop {
        let now = Instant::now();
        // 1. Close the expired connections: kept-alive ones silently, new ones with 408.
        for fresh in [false, true] {
            loop {
                let mut parked = ctx.parked.borrow_mut();
                let now_ms = parked.ms(now);
                let fifo = if fresh {
                    &mut parked.expiry_fresh
                } else {
                    &mut parked.expiry
                };
                match fifo.front() {
                    Some(&(at, idx, generation)) if at <= now_ms => {
                        fifo.pop_front();
                        if let Some(p) = parked.take(idx, generation) {
                            drop(parked);
                            driver.unwatch(parked_key(idx, generation));
                            if fresh {
                                timed_out_parked(&ctx, p);
                            } else {
                                close_parked(&ctx, p);
                            }
                        }
                    }
                    _ => break,
                }
            }
        }
        // 2. Trim the heap once a burst of parked connections has freed its tasks.
        let trim_due = {
            let mut parked = ctx.parked.borrow_mut();
            match parked.trim_at {
                Some(t) if t <= now => {
                    parked.trim_at = None;
                    parked.trim_first = None;
                    parked.last_trim = Some(now);
                    parked.since_trim = 0;
                    true
                }
                _ => false,
            }
        };
        if trim_due {
            crate::sys::trim_heap();
            tracing::debug!(
                "worker {}: heap trimmed after parking in {} us",
                ctx.worker,
                now.elapsed().as_micros()
            );
        }
        // 3. Wait for a watch result, the next deadline, or (with none) a new parked one.
        let next = {
            let parked = ctx.parked.borrow();
            let at = |f: &std::collections::VecDeque<(u64, u32, u32)>| {
                f.front()
                    .map(|&(at, _, _)| parked.base + Duration::from_millis(at))
            };
            [at(&parked.expiry), at(&parked.expiry_fresh), parked.trim_at]
                .into_iter()
                .flatten()
                .min()
        };
        let ready = futures_lite::future::or(
            std::future::poll_fn(|cx| match driver.next_watch(cx.waker()) {
                Some(r) => std::task::Poll::Ready(Some(r)),
                None => {
                    let mut parked = ctx.parked.borrow_mut();
                    if std::mem::take(&mut parked.rearm) {
                        // A new first deadline or a trim: compute the wait again.
                        return std::task::Poll::Ready(None);
                    }
                    parked.waker = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            }),
            async {
                match next {
                    Some(at) => glommio::timer::sleep(at.saturating_duration_since(now)).await,
                    None => std::future::pending::<()>().await,
                }
                None
            },
        )
        .await;
        let Some((key, _events)) = ready else {
            continue;
        };
        let taken = ctx
            .parked
            .borrow_mut()
            .take((key & 0xffff_ffff) as u32, (key >> 32) as u32);
        if let Some(p) = taken {
            // Readable (a request, an end of file or an error: the receive tells which). The
            // table's count of the connection passes to the new task.
            ctx.idle.borrow_mut().remove(&p.fd.as_raw_fd());
            let ctx = ctx.clone();
            let start = Start::Woken(
                p.head_deadline
                    .map(|ms| ctx.parked.borrow().base + Duration::from_millis(ms)),
            );
            glommio::spawn_local(serve_from(p.fd, p.peer, ctx, start)).detach();
        }
    }
}

/// How reading a request head (or a uwsgi packet) ended. No slot is held while reading.
enum Head {
    /// The head is complete: its first `n` bytes of the input (for HTTP indexed in the
    /// worker's scratch index, see [`take_slot`]).
    Complete(usize),
    /// The client closed the connection, or a read failed.
    Closed,
    /// `--header-timeout` passed before the head was complete, with this many bytes of it
    /// received (the input buffer itself is gone with the cancelled read).
    TimedOut(usize),
    /// The head breaks a rule or a limit: answer with its status and close.
    Refused(ParseError),
}

/// Read until `input` starts with a complete request head, or `deadline` passes (`None`:
/// `--header-timeout` from now, the clock read only if the head needs another receive: a
/// kept-alive request's head usually comes whole with its first byte). Parses into
/// the worker's scratch index (a head can be checked against every limit without a slot);
/// `input` grows by [`HEAD_READ`] steps up to `--buffer-size`.
async fn read_head(
    ctx: &ConnCtx,
    fd: i32,
    input: &mut Vec<u8>,
    deadline: Option<Instant>,
    ms: &mut Option<MultiRecv>,
) -> Head {
    let mut deadline = deadline;
    loop {
        if !input.is_empty() {
            let parsed = http::parse_head(input, &ctx.limits, &mut ctx.scratch.borrow_mut());
            match parsed {
                Ok(Parsed::Complete(n)) => return Head::Complete(n),
                Ok(Parsed::Partial) => {}
                Err(e) => return Head::Refused(e),
            }
            if input.capacity() - input.len() < 512 {
                let want = (input.len() + HEAD_READ).min(ctx.limits.max_head + 1);
                input.reserve(want.saturating_sub(input.len()).max(512));
            }
        }
        let got = input.len();
        let at = *deadline.get_or_insert_with(|| Instant::now() + ctx.header_timeout);
        if let Some(m) = ms.as_mut().filter(|m| !m.is_done()) {
            // The connection's multishot receive is its only reader: the rest of the head
            // comes through it.
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Head::TimedOut(got);
            }
            let more = futures_lite::future::or(async { Some(m.next(input).await) }, async {
                uring::wheel::Deadline::after(left).await;
                None
            })
            .await;
            match more {
                Some(Got::Data(_)) => continue,
                Some(Got::Eof | Got::Failed(_)) => {
                    *ms = None;
                    return Head::Closed;
                }
                // Ended without an error: the rest is read with plain receives.
                Some(Got::Ended) => *ms = None,
                None => return Head::TimedOut(got),
            }
        }
        *ms = None;
        match read_before(fd, input, at).await {
            Ok(true) => {}
            Ok(false) => return Head::Closed,
            Err(()) => return Head::TimedOut(got),
        }
    }
}

/// One `recv` into `input` that ends at `deadline` at the latest: `Ok(true)` if bytes arrived,
/// `Ok(false)` at end of file or on an error, `Err(())` once the deadline has passed.
async fn read_before(fd: i32, input: &mut Vec<u8>, deadline: Instant) -> Result<bool, ()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(());
    }
    if input.is_empty() {
        // The first bytes: into a pool buffer, copied exactly (no buffer while waiting).
        let (r, buf) = uring::recv::recv_first(fd, std::mem::take(input), left, false).await;
        *input = buf;
        return match r {
            None => Err(()),
            Some(Ok(n)) => Ok(n > 0),
            Some(Err(_)) => Ok(false),
        };
    }
    let (r, buf) = uring::recv::recv(fd, std::mem::take(input), Some(left)).await;
    *input = buf;
    match r {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(()),
        Err(_) => Ok(false),
    }
}

/// Take a slot for the complete head at the start of `input`, with the head indexed in the
/// slot's own index: when a slot is free the scratch index [`read_head`] filled is swapped in
/// (no second parse); when every slot is busy the request waits (FIFO), and the head is indexed
/// again once it has its slot (the scratch index was reused by others meanwhile).
async fn take_slot(ctx: &ConnCtx, input: &[u8], head_len: usize) -> SlotGuard {
    if let Some(mut slot) = ctx.slots.try_acquire() {
        slot.swap_index(&mut ctx.scratch.borrow_mut());
        return slot;
    }
    let mut slot = ctx.slots.acquire().await;
    let mut index = ctx.scratch.borrow_mut();
    let again = http::parse_head(input, &ctx.limits, &mut index);
    debug_assert!(matches!(again, Ok(Parsed::Complete(n)) if n == head_len));
    slot.swap_index(&mut index);
    slot
}

/// Serve one accepted connection of a uwsgi listener (`--socket`): one request, then close
/// (the plain uwsgi protocol has no keep-alive; nginx opens a connection per request).
///
/// The same discipline as HTTP: the packet (header and vars) must arrive within
/// `--header-timeout` of the accept and is read without a slot; the slot is taken once it is
/// complete; a body is read within `--socket-timeout` between reads. Unlike uWSGI, a refused
/// packet gets an HTTP error response and a log line naming the option that raises the limit;
/// uWSGI closes silently and nginx turns that into a 502.
pub(crate) async fn serve_uwsgi(fd: OwnedFd, peer: Peer, ctx: Rc<ConnCtx>) {
    let raw = fd.as_raw_fd();
    let deadline = Instant::now() + ctx.header_timeout;
    let mut input = Vec::new();
    let next = match read_packet(&ctx, raw, &mut input, deadline).await {
        Head::Complete(_) => {
            let slot = ctx.slots.acquire().await;
            uwsgi_request(&ctx, raw, &peer, slot, input).await
        }
        Head::Closed if input.is_empty() => Next::Close,
        Head::Closed => {
            tracing::info!("{peer}: connection closed inside a uwsgi packet");
            Next::Close
        }
        Head::TimedOut(got) => {
            tracing::info!(
                "{peer}: no complete uwsgi packet within --header-timeout ({got} bytes): 408"
            );
            error_response(&ctx, raw, 408).await;
            if got == 0 { Next::Close } else { Next::Linger }
        }
        Head::Refused(e) => refuse_uwsgi(&ctx, raw, &peer, &input, e, None).await,
    };
    match next {
        Next::Linger => linger(&fd).await,
        Next::Discard(left) => discard(raw, left, ctx.socket_timeout).await,
        Next::KeepAlive | Next::Close => {}
    }
    uring::close::close(fd);
}

/// Read until `input` starts with a complete uwsgi packet (header and vars), or `deadline`
/// passes. Refusals are decided as early as the bytes allow (a too large or unknown packet from
/// its 4-byte header).
async fn read_packet(ctx: &ConnCtx, fd: i32, input: &mut Vec<u8>, deadline: Instant) -> Head {
    loop {
        if !input.is_empty() {
            match uwsgi::parse_packet(input, &ctx.uwsgi) {
                Ok(Parsed::Complete(p)) => return Head::Complete(p.len()),
                Ok(Parsed::Partial) => {}
                Err(e) => return Head::Refused(e),
            }
            // The header says how much is coming: make room for all of it at once.
            let want = match input.get(1..3) {
                Some(&[lo, hi]) => uwsgi::HEADER_LEN + usize::from(u16::from_le_bytes([lo, hi])),
                _ => uwsgi::HEADER_LEN,
            };
            input.reserve(want.saturating_sub(input.len()).max(512));
        }
        let got = input.len();
        match read_before(fd, input, deadline).await {
            Ok(true) => {}
            Ok(false) => return Head::Closed,
            Err(()) => return Head::TimedOut(got),
        }
    }
}

/// Convert the complete uwsgi packet at the start of `input` while holding `slot`, then serve
/// it like an HTTP request (ping: answer [`uwsgi::PONG`]).
async fn uwsgi_request(
    ctx: &ConnCtx,
    fd: i32,
    peer: &Peer,
    mut slot: SlotGuard,
    input: Vec<u8>,
) -> Next {
    let started = request_start(ctx);
    let slot_id = slot.id();
    let mut bufs = slot.take_bufs();
    let parsed = match uwsgi::parse_packet(&input, &ctx.uwsgi) {
        Ok(Parsed::Complete(p)) => Ok(p),
        Ok(Parsed::Partial) => Err(ParseError::Malformed("uwsgi packet incomplete")),
        Err(e) => Err(e),
    };
    // The packet's length, to find the body after it if the request is refused.
    let packet_len = parsed.as_ref().ok().map(|p| p.len());
    // Ping, or the vars rewritten as an HTTP head and indexed by the HTTP parser.
    let converted = parsed.and_then(|p| {
        if p.modifier1 == uwsgi::MODIFIER_PING {
            return Ok((p, None));
        }
        let meta = uwsgi::to_http_head(p.block(&input), &mut bufs.head)?;
        let limits = Limits {
            // The head is never larger than the vars block it came from, plus the few bytes
            // of defaults: it always fits.
            max_head: bufs.head.len(),
            max_body: ctx.limits.max_body,
            max_headers: http::MAX_HEADERS,
        };
        match http::parse_head(&bufs.head, &limits, &mut bufs.index)? {
            Parsed::Complete(_) => Ok((p, Some(meta))),
            Parsed::Partial => Err(ParseError::Malformed("uwsgi vars make no complete head")),
        }
    });
    match converted {
        Ok((p, Some(meta))) => {
            slot.put_bufs(bufs);
            let (next, _, sending) =
                respond(ctx, fd, peer, slot, input, p.len(), Some(meta), started).await;
            // Never kept alive: every send was awaited.
            debug_assert!(sending.is_none());
            next
        }
        Ok((_, None)) => {
            tracing::info!(
                "{peer}: uwsgi ping: pong (worker {} slot {slot_id})",
                ctx.worker
            );
            let _ =
                uring::send::send_all(fd, uwsgi::PONG.to_vec(), 0, Some(ctx.socket_timeout)).await;
            slot.put_bufs(bufs);
            Next::Close
        }
        Err(e) => {
            slot.put_bufs(bufs);
            drop(slot);
            refuse_uwsgi(ctx, fd, peer, &input, e, packet_len).await
        }
    }
}

/// Answer a refused uwsgi request (`e`; `packet_len` when the packet itself was complete and
/// well framed) and log why, naming the option that raises the limit. Holds no slot.
async fn refuse_uwsgi(
    ctx: &ConnCtx,
    fd: i32,
    peer: &Peer,
    input: &[u8],
    e: ParseError,
    packet_len: Option<usize>,
) -> Next {
    let limit = match e {
        ParseError::UwsgiTooLarge => {
            let size = u16::from_le_bytes([input[1], input[2]]);
            format!(
                ": {size} bytes of vars, limit {}: raise --buffer-size",
                ctx.uwsgi.buffer_size
            )
        }
        ParseError::TooManyVars => {
            format!(": limit {} vars: raise --max-vars", ctx.uwsgi.max_vars)
        }
        ParseError::UnsupportedModifier(m) => format!(": modifier1 {m}"),
        ParseError::BodyTooLarge => ": raise --limit-post".to_owned(),
        ParseError::HeadTooLarge => {
            format!(": more than {} HTTP_ vars", http::MAX_HEADERS)
        }
        _ => String::new(),
    };
    tracing::warn!(
        "{peer}: bad uwsgi request ({}{limit}): {} (worker {})",
        e.describe(),
        e.status(),
        ctx.worker
    );
    error_response(ctx, fd, e.status()).await;
    // A body refused from its length is still on its way: take it all (see
    // `Next::Discard`). Other refusals linger as on the HTTP listener.
    match (e, packet_len) {
        (ParseError::BodyTooLarge, Some(len)) => {
            let declared = uwsgi::vars(&input[uwsgi::HEADER_LEN..len])
                .filter(|(k, _)| *k == b"CONTENT_LENGTH")
                .last()
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
            match declared {
                Some(n) => Next::Discard(n.saturating_sub((input.len() - len) as u64)),
                None => Next::Linger,
            }
        }
        _ => Next::Linger,
    }
}

/// Longest a lingering close waits for the client to stop sending (in total, and per read).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_READ: Duration = Duration::from_millis(500);
/// Most bytes read and discarded by a lingering close.
const LINGER_MAX: usize = 1 << 20;

/// nginx's lingering close: stop sending (our response is complete), then read and discard
/// what the client still sends, bounded, so that the close does not reset the connection
/// before the client has read the response. Holds no slot.
async fn linger(fd: &OwnedFd) {
    if socket2::SockRef::from(fd)
        .shutdown(std::net::Shutdown::Write)
        .is_err()
    {
        return;
    }
    let fd = fd.as_raw_fd();
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = Vec::with_capacity(4096);
    let mut total = 0;
    while total < LINGER_MAX && Instant::now() < deadline {
        buf.clear();
        let (r, b) = uring::recv::recv(fd, buf, Some(LINGER_READ)).await;
        buf = b;
        match r {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Read and discard `left` bytes (the rest of a uwsgi request body), each read bounded by
/// `timeout` (`--socket-timeout`), as an app reading the body would be. Holds no slot.
async fn discard(fd: i32, mut left: u64, timeout: Duration) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while left > 0 {
        buf.clear();
        let (r, b) = uring::recv::recv(fd, buf, Some(timeout)).await;
        buf = b;
        match r {
            Ok(n) if n > 0 => left = left.saturating_sub(n as u64),
            _ => break,
        }
    }
}

/// When a request starts, for its duration (stats, log) and its harakiri deadline.
///
/// Without `--harakiri`: when the executor's current turn began (`glommio::turn_started`, a
/// clock read the executor takes anyway and every task of the turn shares), not a clock read
/// per request. That is earlier than the request's task by what ran before it in the turn
/// (tasks run until the 1 ms preemption timer, unless one of them blocks the executor): that
/// time counts as the request's, as a wait in the executor's run queue would. With
/// `--harakiri`, a clock read of its own, as before: the deadline is `--harakiri` from the
/// request's own start, even in a turn that a blocking handler made long.
fn request_start(ctx: &ConnCtx) -> Instant {
    match (ctx.harakiri, glommio::turn_started()) {
        (None, Some(turn)) => turn,
        _ => Instant::now(),
    }
}

/// Count a finished request and write its log line (unless `--disable-logging`).
#[allow(clippy::too_many_arguments)]
fn log_request(
    ctx: &ConnCtx,
    peer: &Peer,
    req: &Request,
    app: Option<usize>,
    status: u16,
    bytes: u64,
    wire: u64,
    started: Instant,
    slot: crate::slot::SlotId,
    note: &str,
) {
    let n = ctx.requests.get() + 1;
    ctx.requests.set(n);
    // One clock read for the stats and the log line.
    let elapsed = started.elapsed();
    if let Some(b) = ctx.board {
        b.note_request(app, wire, elapsed.as_micros() as u64);
    }
    if ctx.max_requests == Some(n) {
        tracing::info!(
            "worker {}: --max-requests {n} reached: asking the master for a replacement",
            ctx.worker
        );
        if let Some(b) = ctx.board {
            b.recycle.store(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if ctx.log && ctx.logformat != crate::logsink::LogFormat::Default {
        let micros = elapsed.as_micros() as u64;
        let addr = match &req.peer {
            Peer::Tcp(a) => a.ip().to_string(),
            other => other.to_string(),
        };
        let line = crate::logsink::render(
            &ctx.logformat,
            &crate::logsink::Entry {
                addr: &addr,
                user: None,
                start: std::time::SystemTime::now() - elapsed,
                method: req.method(),
                uri: req.target(),
                proto: req.version(),
                status,
                size: bytes,
                rsize: wire,
                micros,
                uagent: req.header("user-agent"),
                referer: req.header("referer"),
                host: req.header("host"),
                wid: ctx.worker,
                core: slot.0,
            },
        );
        crate::logsink::write_line(line.as_bytes());
    } else if ctx.log {
        tracing::info!(
            target: "ringsgi::request",
            "{peer} {} {} => {status} {bytes} bytes in {} ms (worker {} slot {slot}{note})",
            req.method(),
            req.target(),
            elapsed.as_millis(),
            ctx.worker
        );
    }
}

/// Answer one request whose complete head (`head_len` bytes at the start of `input`) is
/// indexed in `slot`'s index. Returns what to do next and the connection's input buffer with
/// the consumed bytes removed.
///
/// Not an `async fn`: it returns `respond`'s future itself. An `async fn` layer here stored its
/// arguments twice and `respond`'s whole future inside its own (520 bytes more in every
/// connection task; issue #12).
fn request<'a>(
    ctx: &'a ConnCtx,
    fd: i32,
    peer: &'a Peer,
    mut slot: SlotGuard,
    input: Vec<u8>,
    head_len: usize,
) -> impl Future<Output = (Next, Vec<u8>, Option<Sending>)> + 'a {
    let started = request_start(ctx);
    // Copy the head into the slot, the body stream over the connection buffer.
    slot.set_head(&input[..head_len]);
    respond(ctx, fd, peer, slot, input, head_len, None, started)
}

/// Serve a request whose head is in the slot's buffers (`head`, indexed in `index`), its body
/// starting at `body_start` in `input`: call the app, finish the response, drain the body, give the
/// buffers back to the slot. `cgi` is set for a uwsgi request (never kept alive, streamed
/// responses delimited by close).
///
/// Not an `async fn`: the request and response are built here, before the future exists, and
/// the future is an `async move` block that holds each of them once. An `async fn` keeps
/// every argument in its future for its whole life and a second copy of whatever the body
/// moves out of it (the slot's 176 bytes twice, the uwsgi metadata twice...), and the slot
/// would hold an empty set of buffer descriptors while the request and response own the
/// real ones: 1,376 bytes of future in every connection task before, while a request ran
/// (mem10k).
#[allow(clippy::too_many_arguments)]
fn respond<'a>(
    ctx: &'a ConnCtx,
    fd: i32,
    peer: &'a Peer,
    slot: SlotGuard,
    input: Vec<u8>,
    body_start: usize,
    cgi: Option<CgiMeta>,
    started: Instant,
) -> impl Future<Output = (Next, Vec<u8>, Option<Sending>)> + 'a {
    let slot_id = slot.id();
    let (hold, bufs) = slot.split();
    let SlotBufs { head, index } = bufs;
    let version = index.version;
    let framing = index.framing;
    let expect_continue = index.expect_continue;
    let keep_alive = index.keep_alive
        && !ctx.keepalive_timeout.is_zero()
        && cgi.is_none()
        && !ctx.stopping.get();
    let head_only = index.method.of(&head) == b"HEAD";
    let stat = SlotStat::enter(
        ctx,
        slot_id,
        index.method.of(&head),
        index.target.of(&head),
        peer,
    );
    let mut req = Request {
        head,
        index,
        peer: match cgi.and_then(|c| c.remote) {
            Some(client) => Peer::Tcp(client),
            None => peer.clone(),
        },
        worker: ctx.worker,
        slot: slot_id,
        // Built in place: a `body` local moved in here would keep its own place in the future.
        body: Body::new(fd, input, body_start, framing, ctx.limits.max_body),
        cgi: cgi.map(Box::new),
    };
    req.body.timeout = ctx.socket_timeout;
    req.body.continue_pending = expect_continue && !req.body.is_done();
    // Behind a trusted HTTP proxy the client is the one its headers name (looked up only
    // when the head has one of them: no header search per request otherwise).
    if req.cgi.is_none()
        && req.index.forwarded
        && let Peer::Tcp(p) = req.peer
        && let Some(client) = crate::proto::forwarded::client(
            &ctx.forwarded_allow,
            p.ip(),
            req.header("forwarded"),
            req.header("x-forwarded-for"),
        )
    {
        req.peer = Peer::Tcp(client);
    }
    // Its output buffers come from the worker's spares when it writes its head (a sleeping
    // request holds none) and go back when it is dropped.
    let mut resp = Response::new(fd, version, keep_alive, head_only, ctx.socket_timeout);
    resp.close_delimited = cgi.is_some();
    // The last send of a kept-alive response is settled by the connection loop, with the
    // next receive already submitted (`serve_from`). Not for a request that expects
    // `100 Continue`: an app that answers first and reads the body then makes the body
    // write `100 Continue`, which must not overtake an unsettled response.
    resp.defer_last = keep_alive && !expect_continue;
    // 3. The app, with panics caught, raced against its harakiri deadline.
    let hctx = harakiri::new_ctx(
        slot_id,
        started,
        ctx.harakiri,
        // The request line for the master's log; formatted only when a deadline is configured
        // (a deadline set later by set_user_harakiri alone shows only the slot).
        if ctx.harakiri.is_some() {
            format!("\"{} {}\" from {peer}", req.method(), req.target()).into_bytes()
        } else {
            Vec::new()
        },
        ctx.board,
    );
    let statics = !ctx.statics.is_empty();
    async move {
        // Held to the end: the scoreboard shows the slot busy until the request is done.
        let _stat = stat;
        // Routed once: the app's index goes to the stats with the request's end.
        let routed = ctx.route(req.index.path.of(&req.head));
        let app_id = routed.map(|(id, _)| id);
        let outcome = match routed.map(|(_, app)| app) {
            Some(app) if !statics => {
                let app = app.clone();
                let call = Guarded::new(
                    hctx.clone(),
                    AssertUnwindSafe(app.call(&mut req, &mut resp)).catch_unwind(),
                );
                futures_lite::future::or(async { Some(call.await) }, async {
                    harakiri::expired(&hctx).await;
                    None
                })
                .await
            }
            None if !statics => Some(Ok(rare(resp.send_error(404)).await)),
            app => {
                // Static files first (GET/HEAD under a --static-map), then the app, under the
                // same deadline; a missing file falls through to the app, as in uWSGI.
                let app = app.cloned();
                let (req, resp) = (&mut req, &mut resp);
                // Boxed: the static-file path's future (~1 KB) would otherwise be part of every
                // connection task, served by `--static-map` or not (issue #12).
                let handler = Box::pin(async move {
                    if let Some(done) = static_files::serve(&ctx.statics, req, resp).await {
                        return done;
                    }
                    match app {
                        Some(app) => app.call(req, resp).await,
                        None => resp.send_error(404).await,
                    }
                });
                let call = Guarded::new(hctx.clone(), AssertUnwindSafe(handler).catch_unwind());
                futures_lite::future::or(async { Some(call.await) }, async {
                    harakiri::expired(&hctx).await;
                    None
                })
                .await
            }
        };
        let Some(outcome) = outcome else {
            // Harakiri: the handler was dropped (cancelled) at its current await.
            let verbose = if ctx.harakiri_verbose {
                format!("; it was waiting on: {}", hctx.waiting_on())
            } else {
                String::new()
            };
            if let Some(b) = ctx.board {
                b.harakiri_count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::error!(
                "HARAKIRI ON WORKER {} SLOT {slot_id} (pid {}): \"{} {}\" from {peer} after {} ms{verbose}",
                ctx.worker,
                std::process::id(),
                req.method(),
                req.target(),
                started.elapsed().as_millis()
            );
            let status = if !resp.is_started() && !resp.broken {
                let _ = rare(resp.send_error(504)).await;
                504
            } else {
                resp.status
            };
            log_request(
                ctx,
                &req.peer,
                &req,
                app_id,
                status,
                resp.body_bytes,
                resp.wire_bytes,
                started,
                slot_id,
                ", harakiri",
            );
            // The connection may hold half a body or half a response: close it.
            return (Next::Close, Vec::new(), resp.sending.take());
        };
        match outcome {
            Ok(Ok(())) => {
                if !resp.is_started() {
                    tracing::error!(
                        "{} {}: the handler returned without a response: 500",
                        req.method(),
                        req.target()
                    );
                    let _ = rare(resp.send_error(500)).await;
                } else if !resp.is_finished() && !resp.broken {
                    let _ = rare(resp.finish()).await;
                }
            }
            Ok(Err(e)) => {
                // A framing error in the body (413, 400) leaves the input unusable but the
                // output fine: answer with its status, then close.
                if !resp.is_started() && !resp.broken {
                    resp.keep_alive &= !req.body.broken;
                    let status = req.body.error.map(|pe| pe.status()).unwrap_or(500);
                    tracing::error!(
                        "{} {}: handler error: {e}: {status}",
                        req.method(),
                        req.target()
                    );
                    let _ = rare(resp.send_error(status)).await;
                } else {
                    tracing::warn!(
                        "{} {}: handler error after the response started: {e}; closing",
                        req.method(),
                        req.target()
                    );
                    resp.keep_alive = false;
                }
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                if let Some(b) = ctx.board {
                    b.note_exception(app_id);
                }
                tracing::error!(
                    "{} {}: handler panicked: {msg} (worker {} slot {slot_id})",
                    req.method(),
                    req.target(),
                    ctx.worker
                );
                if !resp.is_started() && !resp.broken {
                    let _ = rare(resp.send_error(500)).await;
                }
                resp.keep_alive = false;
            }
        }
        // 4. Keep-alive only if the response is complete and the body can be skipped.
        let mut next = if resp.keep_alive && resp.is_finished() && !resp.broken {
            Next::KeepAlive
        } else {
            Next::Close
        };
        if matches!(next, Next::KeepAlive) && !req.body.is_done() {
            // A client still waiting for 100-continue will not send the body: close.
            if req.body.continue_pending || !rare(req.body.drain(MAX_DRAIN)).await {
                next = Next::Close;
            }
        }
        if matches!(next, Next::Close) && !req.body.is_done() && !resp.broken {
            next = match req.body.state {
                // uwsgi: the front server sends the whole body before it reads the response.
                BodyState::Length(left) if req.cgi.is_some() && !req.body.broken => {
                    let buffered = req.body.input.len().saturating_sub(req.body.pos);
                    Next::Discard(left.saturating_sub(buffered as u64))
                }
                _ => Next::Linger,
            };
        }
        log_request(
            ctx,
            &req.peer,
            &req,
            app_id,
            resp.status,
            resp.body_bytes,
            resp.wire_bytes,
            started,
            slot_id,
            "",
        );
        // 5. Give the buffers back to the slot (`finish` clears them); drop the consumed bytes
        // from the input. Moved out of the request, which ends here: no empty ones built.
        let Request {
            head, index, body, ..
        } = req;
        let mut input = body.input;
        let consumed = body.pos.min(input.len());
        input.drain(..consumed);
        hold.finish(SlotBufs { head, index });
        harakiri::recycle(hctx);
        (next, input, resp.sending.take())
    }
}

/// Await `f` from the heap. For the rare awaits of [`respond`] (error answers, a streamed
/// response's end, an unread body): an `async fn`'s future holds every future it awaits, each
/// in its own variant, and the largest sets the size of every connection task, idle or not;
/// boxed, these cost an allocation only when they happen (issue #12).
fn rare<F: Future>(f: F) -> std::pin::Pin<Box<F>> {
    Box::pin(f)
}

/// Keeps the scoreboard's view of a slot (uWSGI's per-core stats) up to date for as long as a
/// request holds the slot, whichever way it ends.
struct SlotStat {
    slot: Option<&'static crate::scoreboard::SlotBoard>,
}

impl SlotStat {
    fn enter(
        ctx: &ConnCtx,
        slot: crate::slot::SlotId,
        method: &[u8],
        uri: &[u8],
        peer: &Peer,
    ) -> SlotStat {
        let slot = crate::scoreboard::slot_boards(ctx.board_index).get(slot.0 as usize);
        if let Some(s) = slot {
            let peer = match peer {
                Peer::Tcp(a) => Some(*a),
                Peer::Unix => None,
            };
            s.enter(crate::sys::coarse_epoch_secs(), method, uri, peer);
        }
        SlotStat { slot }
    }
}

impl Drop for SlotStat {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            s.leave();
        }
    }
}

/// Answer a request the server refused (bad head, timeout) with `status`; the caller closes.
/// Needs no slot: the response is built in a small buffer of its own (refusals are rare).
async fn error_response(ctx: &ConnCtx, fd: i32, status: u16) {
    let mut resp = Response::new(fd, http::Version::Http11, false, false, ctx.socket_timeout);
    let _ = resp.send_error(status).await;
}

#[cfg(test)]
mod fdset_tests {
    use super::FdSet;

    #[test]
    fn fdset_inserts_removes_and_lists_in_order() {
        let mut s = FdSet::default();
        assert_eq!(s.iter().count(), 0);
        for fd in [130, 3, 64, 63, 0, 3] {
            s.insert(fd);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 63, 64, 130]);
        s.remove(&64);
        s.remove(&3);
        // Removing what is absent, also beyond the bitmap, changes nothing.
        s.remove(&3);
        s.remove(&10_000);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63, 130]);
    }
}
