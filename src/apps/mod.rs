//! The built-in apps shipped with the binary; the default config mounts all of them.

mod cpubound;
mod echo;
mod hello;
mod sleep;

use ringsgi::Apps;

/// The registry of built-in apps, by the names the configuration uses.
pub(crate) fn builtin() -> Apps {
    let mut apps = Apps::new();
    apps.register("hello", || hello::Hello)
        .register("sleep", || sleep::Sleep)
        .register("cpubound", || cpubound::CpuBound)
        .register("echo", || echo::Echo);
    apps
}
