//! The process model: a master that binds and supervises, one worker process per core.

pub mod listener;
mod master;
pub mod worker;

use std::io;

use crate::app::Apps;
use crate::config::Config;
use listener::Protocol;

/// Bind every listener, fork the workers and supervise them until a stop signal.
/// Returns the exit code for the process.
pub fn run(config: &Config, apps: &Apps) -> io::Result<i32> {
    for m in &config.mounts {
        if !apps.contains(&m.app) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unknown app {:?} (mounted at {}); known apps: {}",
                    m.app,
                    m.prefix,
                    apps.names().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let (nofile, memlock) = crate::sys::raise_limits(64 << 20);
    let mut listeners = Vec::new();
    for a in &config.http_sockets {
        listeners.push(listener::bind(
            a,
            Protocol::Http,
            config.listen,
            config.reuse_port,
        )?);
    }
    for a in &config.uwsgi_sockets {
        listeners.push(listener::bind(
            a,
            Protocol::Uwsgi,
            config.listen,
            config.reuse_port,
        )?);
    }
    if let Some(mode) = config.chmod_socket {
        for l in &listeners {
            if let Some(path) = &l.path {
                listener::chmod(path, mode)?;
            }
        }
    }
    for l in &listeners {
        let proto = match l.protocol {
            Protocol::Http => "http",
            Protocol::Uwsgi => "uwsgi",
        };
        tracing::info!(
            "bound {proto} socket on {} (fd {}, backlog {})",
            l.local,
            l.raw(),
            config.listen
        );
    }
    tracing::info!(
        "master pid {}: {} workers pinned to cpus {:?}, {} slots each; RLIMIT_NOFILE {nofile}, RLIMIT_MEMLOCK {memlock}",
        std::process::id(),
        config.cores,
        (0..config.cores)
            .map(|i| config.cpu_for_worker(i))
            .collect::<Vec<_>>(),
        config.async_slots
    );
    let boards = crate::sys::shared_boards(config.cores)?;
    let code = master::run(config, &listeners, apps, boards);
    for l in &listeners {
        if let Some(p) = &l.path {
            let _ = std::fs::remove_file(p);
        }
    }
    code
}
