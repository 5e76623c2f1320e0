//! Background tasks: work that may outlive the request that started it (`gevent.spawn`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

thread_local! {
    /// Background tasks alive on this worker.
    static BACKGROUND: Cell<u64> = const { Cell::new(0) };
}

/// Background tasks alive on the calling worker (for stats).
pub fn background_tasks() -> u64 {
    BACKGROUND.with(Cell::get)
}

/// Decrements the background count when the task ends or is cancelled.
struct Counted;

impl Counted {
    fn new() -> Counted {
        BACKGROUND.with(|c| c.set(c.get() + 1));
        if let Some(b) = crate::scoreboard::mine() {
            b.background
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        BACKGROUND.with(|c| c.set(c.get() - 1));
        if let Some(b) = crate::scoreboard::mine() {
            b.background
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A spawned background task. Await it for its output, or [`Task::detach`] it to let it run
/// on after the request ends. Dropping a `Task` without detaching it cancels it.
#[must_use = "dropping a Task cancels it; call .detach() to let it run"]
pub struct Task<T>(glommio::Task<T>);

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Task")
    }
}

impl<T> Task<T> {
    /// Let the task run to completion on its own, after the request that started it ended.
    pub fn detach(self) {
        self.0.detach();
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// Start `future` as a background task on this worker (uWSGI/gevent's `spawn`). It does not
/// hold a request slot. It is counted in [`background_tasks`]; when the worker stops it is
/// cancelled with the worker.
///
/// ```no_run
/// # async fn handler() {
/// ringsgi::spawn(async {
///     ringsgi::sleep(std::time::Duration::from_secs(5)).await;
///     tracing::info!("still running after the response");
/// })
/// .detach();
/// # }
/// ```
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    let counted = Counted::new();
    Task(glommio::spawn_local(async move {
        let _counted = counted;
        future.await
    }))
}

/// Run `futures` concurrently for at most `timeout` (`gevent.joinall(..., timeout=)`).
///
/// Returns one entry per future, in order: `Some(output)` for those that finished, `None` for
/// those still running at the deadline, which are dropped (cancelled). To let unfinished work
/// go on, pass detached copies of the work or spawn it separately.
///
/// ```no_run
/// # async fn handler() {
/// use std::time::Duration;
/// let names = ["localhost", "ip6-localhost"];
/// let lookups = names.iter().map(|n| ringsgi::resolve(n, 80)).collect();
/// let results = ringsgi::join_all_timeout(lookups, Duration::from_secs(2)).await;
/// # let _ = results;
/// # }
/// ```
pub async fn join_all_timeout<F: Future>(
    futures: Vec<F>,
    timeout: Duration,
) -> Vec<Option<F::Output>> {
    crate::harakiri::note_wait("join_all_timeout");
    let mut futures: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut timer = Box::pin(glommio::timer::sleep(timeout));
    std::future::poll_fn(|cx| {
        let mut pending = 0;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending += 1,
                }
            }
        }
        if pending == 0 || timer.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out
}
