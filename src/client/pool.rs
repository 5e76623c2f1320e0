//! The per-worker connection pool: idle HTTP/1.1 connections keyed by scheme and authority,
//! an idle timeout, and a limit of connections per key.
//!
//! Nothing here is shared between threads: the pool belongs to one worker's executor, so a
//! `RefCell` and wakers suffice. A connection counts against its key's limit from the moment
//! its opening starts ([`HostSlot`]) until it is dropped; idle ones count too.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use super::PoolStats;
use super::body::Body;

/// What connections are pooled by: scheme, host (lower case) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// One open connection: hyper's handle to send on it, and its protocol task.
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<Body>,
    /// Drives the connection (reads, writes, keep-alive). Dropping the handle cancels it,
    /// which closes the socket: a connection we give up on never lingers.
    _task: glommio::Task<()>,
    /// Its place in the key's count.
    slot: HostSlot,
    /// Taken from the pool (a request may find it dead and be retried).
    pub(crate) reused: bool,
}

/// A place in a key's connection count; released when dropped.
pub(crate) struct HostSlot {
    pool: Weak<Pool>,
    key: Key,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut hosts = pool.hosts.borrow_mut();
            if let Some(h) = hosts.get_mut(&self.key) {
                h.open -= 1;
                h.wake_all();
                if h.open == 0 && h.waiters.is_empty() {
                    hosts.remove(&self.key);
                }
            }
        }
    }
}

/// What [`Pool::acquire`] found.
pub(crate) enum Acquired {
    /// A pooled connection, ready to send on.
    Idle(Conn),
    /// No idle connection, but room for a new one: open it holding this slot.
    New(HostSlot),
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One key's connections.
#[derive(Default)]
struct Host {
    /// Ready connections, the most recently used last (taken first: the warmest).
    idle: Vec<Idle>,
    /// Connections counted against the limit: opening, in use, waiting to be returned, idle.
    open: usize,
    /// Requests waiting for a connection at the limit.
    waiters: Vec<Waker>,
}

impl Host {
    fn wake_all(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }
}

/// The pool of one [`Client`](super::Client) (and its clones), on one worker.
pub(crate) struct Pool {
    hosts: RefCell<HashMap<Key, Host>>,
    idle_timeout: Duration,
    per_host: usize,
    /// A sweeper task is running (closes connections idle past the timeout).
    sweeping: Cell<bool>,
    opened: Cell<u64>,
    reused: Cell<u64>,
    retried: Cell<u64>,
}

impl Pool {
    pub(crate) fn new(idle_timeout: Duration, per_host: usize) -> Rc<Pool> {
        Rc::new(Pool {
            hosts: RefCell::new(HashMap::new()),
            idle_timeout,
            per_host,
            sweeping: Cell::new(false),
            opened: Cell::new(0),
            reused: Cell::new(0),
            retried: Cell::new(0),
        })
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            opened: self.opened.get(),
            reused: self.reused.get(),
            retried: self.retried.get(),
            idle: self.hosts.borrow().values().map(|h| h.idle.len()).sum(),
        }
    }

    pub(crate) fn note_retry(&self) {
        self.retried.set(self.retried.get() + 1);
    }

    /// A live idle connection for `key`, or a slot to open one; waits while the key is at its
    /// limit with nothing idle.
    pub(crate) async fn acquire(self: &Rc<Self>, key: &Key) -> Acquired {
        std::future::poll_fn(|cx| match self.try_acquire(key, true) {
            Some(a) => Poll::Ready(a),
            None => {
                self.wait(key, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// A slot for a new connection (a retry must not take another pooled one), waiting for
    /// room; an idle connection in the way is closed to make room.
    pub(crate) async fn acquire_new(self: &Rc<Self>, key: &Key) -> HostSlot {
        std::future::poll_fn(|cx| {
            if let Some(Acquired::New(slot)) = self.try_acquire(key, false) {
                return Poll::Ready(slot);
            }
            // At the limit: close the oldest idle connection, if any, to make room.
            let oldest = self
                .hosts
                .borrow_mut()
                .get_mut(key)
                .and_then(|h| (!h.idle.is_empty()).then(|| h.idle.remove(0)));
            if let Some(idle) = oldest {
                drop(idle); // releases its slot (HostSlot::drop borrows `hosts`)
                if let Some(Acquired::New(slot)) = self.try_acquire(key, false) {
                    return Poll::Ready(slot);
                }
            }
            self.wait(key, cx.waker());
            Poll::Pending
        })
        .await
    }

    fn wait(&self, key: &Key, waker: &Waker) {
        let mut hosts = self.hosts.borrow_mut();
        let h = hosts.entry(key.clone()).or_default();
        if !h.waiters.iter().any(|w| w.will_wake(waker)) {
            h.waiters.push(waker.clone());
        }
    }

    fn try_acquire(self: &Rc<Self>, key: &Key, take_idle: bool) -> Option<Acquired> {
        let mut dead = Vec::new();
        let found = {
            let mut hosts = self.hosts.borrow_mut();
            let h = hosts.entry(key.clone()).or_default();
            let mut found = None;
            if take_idle {
                while let Some(idle) = h.idle.pop() {
                    if idle.since.elapsed() < self.idle_timeout && idle.conn.sender.is_ready() {
                        found = Some(idle.conn);
                        break;
                    }
                    dead.push(idle);
                }
            }
            match found {
                Some(mut conn) => {
                    conn.reused = true;
                    self.reused.set(self.reused.get() + 1);
                    Some(Acquired::Idle(conn))
                }
                // Dead ones still count until dropped below: count them out here.
                None if h.open - dead.len() < self.per_host => {
                    h.open += 1;
                    Some(Acquired::New(HostSlot {
                        pool: Rc::downgrade(self),
                        key: key.clone(),
                    }))
                }
                None => None,
            }
        };
        drop(dead); // each releases its slot, with `hosts` no longer borrowed
        found
    }

    /// Count a connection just opened (with its slot).
    pub(crate) fn opened(
        &self,
        sender: SendRequest<Body>,
        task: glommio::Task<()>,
        slot: HostSlot,
    ) -> Conn {
        self.opened.set(self.opened.get() + 1);
        Conn {
            sender,
            _task: task,
            slot,
            reused: false,
        }
    }

    /// Return `conn` to the pool once it can take another request (called when its response
    /// body has been read to the end; hyper is usually ready by then, else a small task waits
    /// for it); a connection that closes instead is dropped.
    pub(crate) fn give_back(self: &Rc<Self>, mut conn: Conn) {
        if conn.sender.is_ready() {
            self.put(conn);
            return;
        }
        let pool = Rc::downgrade(self);
        glommio::spawn_local(async move {
            if conn.sender.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.put(conn);
            }
        })
        .detach();
    }

    fn put(self: &Rc<Self>, conn: Conn) {
        let key = conn.slot.key.clone();
        let stray = {
            let mut hosts = self.hosts.borrow_mut();
            match hosts.get_mut(&key) {
                Some(h) => {
                    h.idle.push(Idle {
                        conn,
                        since: Instant::now(),
                    });
                    h.wake_all();
                    None
                }
                // Cannot happen (a live slot keeps its host's entry); dropped outside the
                // borrow, since dropping a connection releases its slot into `hosts`.
                None => Some(conn),
            }
        };
        drop(stray);
        if !self.sweeping.replace(true) {
            let pool = Rc::downgrade(self);
            let every = self.idle_timeout.max(Duration::from_millis(10));
            glommio::spawn_local(sweep(pool, every)).detach();
        }
    }
}

/// Close connections idle past the timeout, every `every`, while any connection is idle.
async fn sweep(pool: Weak<Pool>, every: Duration) {
    loop {
        glommio::timer::sleep(every / 2).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut expired = Vec::new();
        let left: usize = {
            let mut hosts = pool.hosts.borrow_mut();
            for h in hosts.values_mut() {
                let (keep, old): (Vec<Idle>, Vec<Idle>) = h.idle.drain(..).partition(|i| {
                    i.since.elapsed() < pool.idle_timeout && !i.conn.sender.is_closed()
                });
                h.idle = keep;
                expired.extend(old);
            }
            hosts.values().map(|h| h.idle.len()).sum()
        };
        drop(expired);
        if left == 0 {
            pool.sweeping.set(false);
            return;
        }
    }
}
