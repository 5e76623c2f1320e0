//! The built-in apps shipped with the binary; the default config mounts all of them.

mod cpubound;
mod crazy;
mod echo;
mod hello;
mod panic;
mod signals;
mod sleep;
mod sleeping;
mod spin;

use std::rc::Rc;

use ringsgi::Apps;
use ringsgi::config::Config;

/// The registry of built-in apps, by the names the configuration uses.
pub(crate) fn builtin(config: &Config) -> Apps {
    let names = config.crazy_names.clone();
    let mut apps = Apps::new();
    apps.register("hello", || hello::Hello)
        .register("sleep", || sleep::Sleep)
        .register("cpubound", || cpubound::CpuBound)
        .register("echo", || echo::Echo)
        .register("crazy", move || crazy::Crazy {
            names: Rc::new(names.clone()),
        })
        .register("sleeping", || sleeping::Sleeping)
        .register("spin", || spin::Spin)
        .register("panic", || panic::Panic)
        .register("signals", signals::Signals::new);
    apps
}
