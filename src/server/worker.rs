//! One worker: a pinned glommio `LocalExecutor` on the process's main thread, its own ring,
//! its slot pool, and one accept loop per listener.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use glommio::{LocalExecutorBuilder, Placement};

use crate::app::Apps;
use crate::config::Config;
use crate::conn::{self, ConnCtx};
use crate::proto::http::Limits;
use crate::request::Peer;
use crate::scoreboard::WorkerBoard;
use crate::server::listener::{Listener, Protocol};
use crate::slot::SlotPool;
use crate::static_files::StaticFiles;
use crate::uring::{Driver, accept::Acceptor, pump};

/// glommio's preemption interval. The reactor (timers and glommio I/O, including the pump's
/// eventfd READ) is polled between task-queue runs; with the default 100 ms a `sleep(5ms)`
/// fires ~100 ms late under load. 1 ms measured ~7 ms worst case here (glommio-notes 1.2).
pub const PREEMPT_TIMER: Duration = Duration::from_millis(1);

/// glommio's registered file-I/O buffer. ringsgi does no DMA file I/O through glommio, so the
/// minimum that leaves room under an 8 MiB RLIMIT_MEMLOCK for every worker.
pub const IO_MEMORY: usize = 128 << 10;

/// SQ entries of our ring (the CQ gets 4x). In-flight operations are not bounded by this:
/// SQEs beyond it wait in the driver's backlog for the next submit.
pub const RING_ENTRIES: u32 = 1024;

/// Largest head limit that the HTTP parser enforces (headers per request).
const MAX_HEADERS: usize = 100;

/// Run worker `index` until the process is told to stop. Never returns on success.
pub(crate) fn run(
    config: &Config,
    index: usize,
    board: usize,
    channel: OwnedFd,
    listeners: &[Listener],
    apps: &Apps,
    boards: &'static [WorkerBoard],
) -> io::Result<()> {
    // From here on this process's log lines go through its own logger thread: the executor
    // never waits for the log's disk.
    crate::logsink::start_worker_thread()?;
    let board_index = board;
    let board = &boards[board];
    board.reset(std::process::id() as i32);
    board
        .slots
        .store(config.async_slots as u32, Ordering::Relaxed);
    crate::scoreboard::set_mine(board);
    crate::harakiri::set_worker(index);
    crate::signals::set_channel(channel.as_raw_fd());
    let cpu = config.cpu_for_worker(index);
    // Pin this thread (the executor runs on it) before the executor exists, so that its
    // rings and memory are set up on the CPU that will use them.
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        return Err(io::Error::other(format!(
            "worker {index}: cannot pin to cpu {cpu} (sched_setaffinity failed)"
        )));
    }
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("ringsgi-w{index}"))
        .preempt_timer(PREEMPT_TIMER)
        .io_memory(IO_MEMORY)
        .make()
        .map_err(|e| io::Error::other(format!("worker {index}: cannot build the executor: {e}")))?;
    let mut routes = Vec::new();
    for (id, m) in config.mounts.iter().enumerate() {
        let app = apps
            .build(&m.app)
            .ok_or_else(|| io::Error::other(format!("unknown app {:?}", m.app)))?;
        routes.push((m.prefix.clone(), app, id));
    }
    let statics = StaticFiles::open(&config.static_maps, config.static_index.as_deref())?;
    let multishot = !routes.iter().any(|(_, app, _)| app.reads_connection());
    let ctx = Rc::new(ConnCtx {
        worker: index,
        slots: SlotPool::new(config.async_slots),
        routes,
        limits: Limits {
            max_head: config.buffer_size,
            max_body: config.limit_post,
            max_headers: MAX_HEADERS,
        },
        uwsgi: crate::proto::uwsgi::Limits {
            buffer_size: config.buffer_size,
            max_vars: config.max_vars,
        },
        socket_timeout: config.socket_timeout,
        keepalive_timeout: config.keepalive_timeout,
        header_timeout: config.header_timeout,
        proxy_protocol: config.proxy_protocol,
        forwarded_allow: config.forwarded_allow.clone(),
        scratch: Default::default(),
        parked: Default::default(),
        log: !config.disable_logging,
        logformat: config.logformat.clone(),
        requests: Cell::new(0),
        stopping: Cell::new(false),
        harakiri: config.harakiri,
        harakiri_verbose: config.harakiri_verbose,
        board: Some(board),
        boards,
        max_requests: config.max_requests,
        idle: Default::default(),
        board_index,
        listeners: listeners
            .iter()
            .map(|l| (l.raw(), l.tcp, l.protocol))
            .collect(),
        statics,
        multishot,
    });
    ctx.slots.publish_to(&board.busy_slots);
    let fds: Vec<(i32, bool, Protocol)> = listeners
        .iter()
        .map(|l| (l.raw(), l.tcp, l.protocol))
        .collect();
    crate::request::set_http_listeners(
        fds.iter()
            .filter(|l| l.2 == Protocol::Http)
            .map(|&(fd, tcp, _)| (fd, tcp)),
    );
    let slots = config.async_slots;
    // SIGTERM asks for a graceful stop: its handler writes to this pipe.
    let (stop_rx, stop_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    crate::sys::worker_stop_on_sigterm(stop_tx)?;
    let mercy = config.reload_mercy;
    let harakiri = config.harakiri;
    ex.run(async move {
        let driver = Driver::install(RING_ENTRIES)?;
        let pump = pump::pump(driver)?;
        let mut pump_task = glommio::spawn_local(pump);
        let mut accepts = Vec::new();
        for (fd, _tcp, _protocol) in fds {
            accepts.push(glommio::spawn_local(accept_loop(
                Acceptor::new(fd)?,
                ctx.clone(),
            )));
        }
        let signals = glommio::spawn_local(crate::signals::receive_loop(
            channel.as_raw_fd(),
            index,
            harakiri,
        ));
        board.ready.store(1, Ordering::Release);
        tracing::info!(
            "worker {index} ready (pid {}, pinned to cpu {cpu}, {slots} slots)",
            std::process::id()
        );
        let stopped = future::or(
            async {
                // By reference: the pump must keep running during a graceful stop.
                (&mut pump_task).await?;
                Ok::<bool, io::Error>(false)
            },
            async {
                crate::primitives::wait_fd_read(std::os::fd::AsFd::as_fd(&stop_rx), None).await?;
                Ok(true)
            },
        )
        .await?;
        if stopped {
            graceful_stop(&ctx, accepts, mercy).await;
        }
        drop(signals);
        drop(channel);
        Ok(())
    })
}

/// SIGTERM (stop, reload, recycling): stop accepting, close idle keep-alive connections, let
/// requests in progress and background tasks finish for at most `mercy` (`--reload-mercy`),
/// then return (the process exits; whatever is left is cancelled).
async fn graceful_stop(ctx: &Rc<ConnCtx>, accepts: Vec<glommio::Task<()>>, mercy: Duration) {
    // Dropping the accept tasks cancels their waits for connections. Nothing is lost or
    // stranded: a connection is either ours (taken by `accept4`, served below like any
    // other) or still in the shared accept queue, where the non-exclusive waits of the
    // other workers (the successor) see it (`uring/accept.rs`).
    drop(accepts);
    let board = &ctx.boards[ctx.worker_board()];
    board.accepting.store(0, Ordering::Relaxed);
    // Stats show a draining worker as not accepting.
    board.ready.store(0, Ordering::Relaxed);
    ctx.drain();
    let deadline = std::time::Instant::now() + mercy;
    let busy = || {
        ctx.slots.busy_count()
            + crate::primitives::background_tasks() as usize
            + ctx.open_conns()
            + usize::from(gevent_hub_busy())
    };
    tracing::info!(
        "worker {} stopping: {} requests in progress, {} connections, {} background tasks, up to {} s",
        ctx.worker,
        ctx.slots.busy_count(),
        ctx.open_conns(),
        crate::primitives::background_tasks(),
        mercy.as_secs_f64()
    );
    // uWSGI's lines for the requests still running (its gevent plugin's wording): each busy
    // slot once, then how many are left every second.
    let pid = std::process::id();
    for (core, s) in crate::scoreboard::slot_boards(ctx.worker_board())
        .iter()
        .enumerate()
    {
        if s.read().0 {
            let (method, uri) = s.request_line().unwrap_or_default();
            let addr = s
                .peer()
                .map_or_else(|| "unix".to_owned(), |a| a.ip().to_string());
            tracing::info!(
                "worker {} (pid: {pid}) core {core} is managing \"{method} {uri}\" for {addr}",
                ctx.worker
            );
        }
    }
    let mut next_report = std::time::Instant::now();
    loop {
        if busy() == 0 || std::time::Instant::now() >= deadline {
            break;
        }
        let running = ctx.slots.busy_count();
        if running > 0 && std::time::Instant::now() >= next_report {
            tracing::info!(
                "waiting for {running} running requests on worker {} (pid: {pid})...",
                ctx.worker
            );
            next_report += Duration::from_secs(1);
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if busy() > 0 {
        tracing::warn!(
            "worker {}: --reload-mercy passed with {} requests, {} connections and {} background tasks left: cancelling them",
            ctx.worker,
            ctx.slots.busy_count(),
            ctx.open_conns(),
            crate::primitives::background_tasks()
        );
        // Under --gevent the requests still running get `Harakiri` thrown in, so that their
        // `finally` blocks and `close()` run before the process exits (bounded: 1 s more).
        if ctx.slots.busy_count() > 0 && gevent_cancel_requests() > 0 {
            let until = std::time::Instant::now() + Duration::from_secs(1);
            while ctx.slots.busy_count() > 0 && std::time::Instant::now() < until {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    } else {
        tracing::info!("worker {} stopped gracefully", ctx.worker);
    }
}

/// --gevent: cancel the request greenlets still running (after --reload-mercy); how many.
fn gevent_cancel_requests() -> usize {
    #[cfg(feature = "python")]
    {
        crate::python::gevent_cancel_requests()
    }
    #[cfg(not(feature = "python"))]
    {
        0
    }
}

/// --gevent-wait-for-hub: gevent's hub still has background greenlets or timers.
fn gevent_hub_busy() -> bool {
    #[cfg(feature = "python")]
    {
        crate::python::gevent_hub_busy()
    }
    #[cfg(not(feature = "python"))]
    {
        false
    }
}

/// Run `future` to completion on the calling thread inside a one-core ringsgi runtime (a glommio
/// executor with this worker's ring and pump), so that the primitives (`sleep`, `wait_fd_read`,
/// `connect`, ...) work outside a server: in tools, tests and benchmarks.
///
/// ```
/// let slept = ringsgi::server::worker::block_on(async {
///     let t0 = std::time::Instant::now();
///     ringsgi::sleep(std::time::Duration::from_millis(10)).await;
///     t0.elapsed()
/// })
/// .unwrap();
/// assert!(slept >= std::time::Duration::from_millis(10));
/// ```
pub fn block_on<T: 'static>(
    future: impl std::future::Future<Output = T> + 'static,
) -> io::Result<T> {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(PREEMPT_TIMER)
        .io_memory(IO_MEMORY)
        .make()
        .map_err(|e| io::Error::other(format!("cannot build the executor: {e}")))?;
    ex.run(async move {
        let driver = Driver::install(RING_ENTRIES)?;
        glommio::spawn_local(pump::pump(driver)?).detach();
        let out = future.await;
        Driver::uninstall();
        Ok(out)
    })
}

/// Connections a worker may hold beyond a live worker that waits for connections before it
/// stops accepting.
///
/// Without it, a worker that happens to run first when a burst of keep-alive connections
/// arrives could take most of them while another worker sits idle.
const BALANCE_SLACK: u64 = 8;
/// How often a worker that waits for connections while holding more than the slack compares
/// its load again; also the longest interval between two checks of a worker that stopped
/// accepting for balance.
const BALANCE_CHECK: Duration = Duration::from_millis(10);
/// The first check of a worker that stopped accepting for balance; the interval then doubles
/// up to [`BALANCE_CHECK`]. The peer it stopped for was idle and has been woken by the same
/// connections: once it runs it no longer waits, and this worker should take connections
/// again within about a millisecond, not 10 (gevent4: fixed 10 ms pauses left a CPU idle
/// about 30 times per run of the article's test, in the middle of its bursts).
const BALANCE_FIRST_CHECK: Duration = Duration::from_millis(1);
/// A worker inside one poll for longer than this is stuck (a handler that does not yield):
/// it does not count as a place for connections to go.
const STUCK_MS: u64 = 50;

/// What accept balancing reads of another worker's board.
#[derive(Clone, Copy, Debug)]
struct PeerLoad {
    /// Running, accepting, and not stuck inside one poll.
    live: bool,
    /// One of its accept loops waits for a connection (none was queued when it looked).
    waiting: bool,
    conns: u64,
}

/// Whether a worker holding `mine` connections should leave new connections to a peer: only
/// to a live peer that waits for connections (it takes the next one at once) and holds
/// clearly fewer. A busy peer takes queued connections at its own pace whether or not this
/// worker stops, so stopping for it would only leave a CPU idle while connections wait
/// (gevent4: the article's test, a burst of 1000 new connections on 2 workers; a strict
/// 50/50 split made the worker that shared its CPU with the client set the pace).
fn leave_to_peer(mine: u64, peers: impl IntoIterator<Item = PeerLoad>) -> bool {
    mine > BALANCE_SLACK
        && peers
            .into_iter()
            .any(|p| p.live && p.waiting && p.conns + BALANCE_SLACK < mine)
}

/// Whether this worker holds clearly more connections than another live worker that waits
/// for connections ([`leave_to_peer`]).
fn overloaded(ctx: &ConnCtx) -> bool {
    let me = ctx.worker_board();
    let mine = ctx.boards[me].conns.load(Ordering::Relaxed);
    if mine <= BALANCE_SLACK {
        return false;
    }
    let now = crate::sys::monotonic_ms();
    leave_to_peer(
        mine,
        ctx.boards
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != me)
            .map(|(_, b)| PeerLoad {
                live: b.pid.load(Ordering::Relaxed) != 0
                    && b.accepting.load(Ordering::Relaxed) == 1
                    && b.alive(now, STUCK_MS),
                waiting: b.accept_waits.load(Ordering::Relaxed) > 0,
                conns: b.conns.load(Ordering::Relaxed),
            }),
    )
}

/// Counts an accept loop in its board's `accept_waits` while it lives (also when the loop's
/// future is dropped mid-wait).
struct AcceptWait<'a>(&'a crate::scoreboard::WorkerBoard);

impl<'a> AcceptWait<'a> {
    fn new(board: &'a crate::scoreboard::WorkerBoard) -> Self {
        board.accept_waits.fetch_add(1, Ordering::Relaxed);
        AcceptWait(board)
    }
}

impl Drop for AcceptWait<'_> {
    fn drop(&mut self) {
        self.0.accept_waits.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why an accept loop stopped taking connections for now.
enum Pause {
    /// Every slot is busy.
    Full,
    /// This worker holds clearly more connections than another worker that waits for some.
    Balance,
}

/// Accept connections on `listener` while a slot is free and this worker is not clearly more
/// loaded than another; stop accepting otherwise, so that new connections stay in the shared
/// kernel backlog for the other workers.
///
/// Connections are taken one at a time with `accept4`, with a turn of the executor between
/// two (the new connection's task and the pump run, so that slots fill and a burst is shared
/// with the other workers); when none is queued the loop waits with a non-exclusive poll,
/// which it may drop at any time (slots gone, balance, drain) without stranding a connection
/// (`uring/accept.rs`).
async fn accept_loop(acceptor: Acceptor, ctx: Rc<ConnCtx>) {
    let board = &ctx.boards[ctx.worker_board()];
    let listener = acceptor.listener();
    loop {
        ctx.slots.wait_free().await;
        let mut check = BALANCE_FIRST_CHECK;
        while overloaded(&ctx) {
            glommio::timer::sleep(check).await;
            check = (check * 2).min(BALANCE_CHECK);
        }
        board.accepting.store(1, Ordering::Relaxed);
        let pause = loop {
            if ctx.slots.free_count() == 0 {
                break Pause::Full;
            }
            if overloaded(&ctx) {
                break Pause::Balance;
            }
            let failed = match acceptor.try_accept() {
                Ok(Some(fd)) => {
                    spawn_conn(&ctx, fd, listener);
                    future::yield_now().await;
                    continue;
                }
                Ok(None) => {
                    // Nothing queued: wait for a connection, unless the last slot goes or
                    // the balance turns first (dropping the wait strands nothing).
                    let watch_balance = board.conns.load(Ordering::Relaxed) > BALANCE_SLACK;
                    let waiting = AcceptWait::new(board);
                    let event = future::or(
                        future::or(async { Some(acceptor.readable().await) }, async {
                            ctx.slots.wait_exhausted().await;
                            None
                        }),
                        async {
                            if !watch_balance {
                                return future::pending().await;
                            }
                            loop {
                                glommio::timer::sleep(BALANCE_CHECK).await;
                                if overloaded(&ctx) {
                                    return None;
                                }
                            }
                        },
                    )
                    .await;
                    drop(waiting);
                    match event {
                        Some(Ok(())) | None => continue,
                        Some(Err(e)) => e,
                    }
                }
                Err(e) => e,
            };
            tracing::error!("worker {}: accept failed: {failed}", ctx.worker);
            // Out of descriptors (or a broken listener): back off instead of spinning on the
            // error, the connection stays queued for this worker or another.
            glommio::timer::sleep(Duration::from_millis(100)).await;
        };
        if matches!(pause, Pause::Full) {
            ctx.slots.note_full();
            board.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        board.accepting.store(0, Ordering::Relaxed);
    }
}

/// Serve an accepted connection in a task of its own.
fn spawn_conn(ctx: &Rc<ConnCtx>, fd: OwnedFd, listener: i32) {
    let (tcp, protocol) = ctx
        .listeners
        .iter()
        .find(|&&(l, _, _)| l == listener)
        .map_or((false, Protocol::Http), |&(_, tcp, p)| (tcp, p));
    let peer = peer_of(&fd, tcp);
    ctx.boards[ctx.worker_board()]
        .conns
        .fetch_add(1, Ordering::Relaxed);
    let ctx = ctx.clone();
    // One task type per protocol: a task's future is as large as the largest state of what it
    // awaits, and one `async` block awaiting either connection loop was both side by side
    // (8.6 KB instead of 4.3 KB measured; every connection pays it while it has a task).
    match protocol {
        // `serve` counts the connection off itself: an `async` block around it would store
        // its arguments a second time (mem10k).
        Protocol::Http => glommio::spawn_local(conn::serve(fd, peer, ctx)).detach(),
        Protocol::Uwsgi => glommio::spawn_local(async move {
            conn::serve_uwsgi(fd, peer, ctx.clone()).await;
            ctx.boards[ctx.worker_board()]
                .conns
                .fetch_sub(1, Ordering::Relaxed);
        })
        .detach(),
    };
}

fn peer_of(fd: &OwnedFd, tcp: bool) -> Peer {
    if !tcp {
        return Peer::Unix;
    }
    let sock = socket2::SockRef::from(fd);
    match sock.peer_addr().ok().and_then(|a| a.as_socket()) {
        Some(a) => Peer::Tcp(a),
        None => {
            let _ = fd.as_raw_fd();
            Peer::Unix
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BALANCE_SLACK, PeerLoad, leave_to_peer};

    fn peer(live: bool, waiting: bool, conns: u64) -> PeerLoad {
        PeerLoad {
            live,
            waiting,
            conns,
        }
    }

    #[test]
    fn connections_are_left_to_an_idle_peer_holding_clearly_fewer() {
        assert!(leave_to_peer(100, [peer(true, true, 0)]));
        assert!(leave_to_peer(
            BALANCE_SLACK + 1,
            [peer(true, false, 0), peer(true, true, 0)]
        ));
    }

    #[test]
    fn a_busy_peer_does_not_stop_this_worker() {
        // gevent4: it takes queued connections at its own pace anyway; stopping for it only
        // left this worker's CPU idle in the middle of a burst.
        assert!(!leave_to_peer(500, [peer(true, false, 0)]));
    }

    #[test]
    fn within_the_slack_or_toward_a_dead_peer_this_worker_goes_on() {
        assert!(!leave_to_peer(BALANCE_SLACK, [peer(true, true, 0)]));
        assert!(!leave_to_peer(20, [peer(true, true, 20 - BALANCE_SLACK)]));
        assert!(!leave_to_peer(100, [peer(false, true, 0)]));
        assert!(!leave_to_peer(100, []));
    }
}
