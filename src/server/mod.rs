//! The process model: a master that binds and supervises, one worker process per core.

pub mod listener;
mod master;
mod stats;
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
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("--chdir {}: {e}", dir.display())))?;
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
    let mut stats_servers = Vec::new();
    if let Some(a) = &config.stats {
        let kind = if config.stats_http {
            stats::StatsKind::JsonHttp
        } else {
            stats::StatsKind::Json
        };
        stats_servers.push(stats::StatsServer::bind(&resolve(a)?, kind)?);
    }
    if let Some(a) = &config.metrics {
        stats_servers.push(stats::StatsServer::bind(
            &resolve(a)?,
            stats::StatsKind::Metrics,
        )?);
    }
    for s in &stats_servers {
        let what = match s.kind {
            stats::StatsKind::Json => "stats server (JSON)",
            stats::StatsKind::JsonHttp => "stats server (JSON over HTTP)",
            stats::StatsKind::Metrics => "metrics server (Prometheus over HTTP)",
        };
        tracing::info!("{what} on {}", s.local);
    }
    drop_privileges(config)?;
    let pidfile = match &config.pidfile {
        Some(p) => {
            std::fs::write(p, format!("{}\n", std::process::id()))
                .map_err(|e| io::Error::new(e.kind(), format!("--pidfile {}: {e}", p.display())))?;
            Some(p.clone())
        }
        None => None,
    };
    // Room for every worker twice over (old and new during a reload) plus one more round.
    let nboards = config.cores * 3;
    let boards = crate::sys::shared_zeroed::<crate::scoreboard::WorkerBoard>(nboards)?;
    let table = &crate::sys::shared_zeroed::<crate::scoreboard::SignalTable>(1)?[0];
    crate::scoreboard::set_signal_table(table);
    let slot_boards =
        crate::sys::shared_zeroed::<crate::scoreboard::SlotBoard>(nboards * config.async_slots)?;
    crate::scoreboard::set_slot_boards(slot_boards, config.async_slots);
    let stats_paths: Vec<_> = stats_servers
        .iter()
        .filter_map(|s| s.path.clone())
        .collect();
    let code = master::run(master::Shared {
        config,
        listeners: &listeners,
        apps,
        boards,
        table,
        stats: stats_servers,
    });
    for l in &listeners {
        if let Some(p) = &l.path {
            let _ = std::fs::remove_file(p);
        }
    }
    for p in stats_paths.iter().chain(pidfile.iter()) {
        let _ = std::fs::remove_file(p);
    }
    code
}

/// A stats or metrics address as written, resolved.
fn resolve(addr: &str) -> io::Result<crate::config::ListenAddr> {
    crate::config::resolve_listen_addr(addr)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// `--gid`, `--uid` (after binding: the sockets stay open), `--refuse-root`.
fn drop_privileges(config: &Config) -> io::Result<()> {
    use nix::unistd::{Gid, Group, Uid, User};
    let bad = |opt: &str, v: &str, why: String| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--{opt} {v}: {why}"))
    };
    if let Some(g) = &config.gid {
        let gid = match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| bad("gid", g, e.to_string()))?
                    .ok_or_else(|| bad("gid", g, "no such group".into()))?
                    .gid
            }
        };
        nix::unistd::setgroups(&[gid]).map_err(|e| bad("gid", g, e.to_string()))?;
        nix::unistd::setgid(gid).map_err(|e| bad("gid", g, e.to_string()))?;
        tracing::info!("set gid to {gid}");
    }
    if let Some(u) = &config.uid {
        let uid = match u.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                User::from_name(u)
                    .map_err(|e| bad("uid", u, e.to_string()))?
                    .ok_or_else(|| bad("uid", u, "no such user".into()))?
                    .uid
            }
        };
        nix::unistd::setuid(uid).map_err(|e| bad("uid", u, e.to_string()))?;
        tracing::info!("set uid to {uid}");
    }
    if Uid::effective().is_root() {
        if config.refuse_root {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--refuse-root: the workers would run as root; give --uid USER",
            ));
        }
        tracing::warn!("running as root: consider --uid USER (or --refuse-root to forbid this)");
    }
    Ok(())
}
