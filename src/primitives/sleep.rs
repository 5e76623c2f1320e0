//! `sleep` and `suspend`: giving the core to the other request slots.

use std::time::Duration;

/// Sleep for `d` while the worker serves its other slots (uWSGI's `async_sleep`, with
/// sub-millisecond resolution instead of uWSGI's whole seconds).
///
/// Timers live in glommio's user-space timer structure, driven by one kernel timeout on its
/// latency ring; 100 000 concurrent sleeps on one core cost one heap entry each.
///
/// ```no_run
/// # async fn handler() {
/// ringsgi::sleep(std::time::Duration::from_millis(250)).await;
/// # }
/// ```
pub async fn sleep(d: Duration) {
    crate::harakiri::note_wait("sleep");
    if d.is_zero() {
        suspend().await;
    } else {
        glommio::timer::sleep(d).await;
    }
}

/// Let the other slots of this worker (and the completions they wait for) run, then resume
/// (uWSGI's `suspend`). A handler computing for long stretches calls it between steps.
///
/// ```no_run
/// # async fn handler() {
/// for chunk in 0..100 {
///     // ... a step of work ...
///     ringsgi::suspend().await;
/// }
/// # }
/// ```
pub async fn suspend() {
    crate::harakiri::note_wait("suspend");
    futures_lite::future::yield_now().await;
}
