//! The process model: a master that binds and supervises, one worker process per core.

pub mod listener;
mod master;
mod reexec;
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
    // Before --chdir: a reload runs the same command line from the same directory.
    let restart = reexec::Restart::capture();
    let mut handover = reexec::Handover::take();
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("--chdir {}: {e}", dir.display())))?;
    }
    let (nofile, memlock) = crate::sys::raise_limits(64 << 20);
    let mut listeners = Vec::new();
    for (addrs, protocol, role) in [
        (&config.http_sockets, Protocol::Http, "http"),
        (&config.uwsgi_sockets, Protocol::Uwsgi, "uwsgi"),
    ] {
        for a in addrs {
            let spec = a.to_string();
            let adopted = handover.as_mut().and_then(|h| h.adopt(role, &spec));
            listeners.push(match adopted {
                Some((s, fd)) => {
                    tracing::info!(
                        "inherited {role} socket {} from the previous master",
                        s.local
                    );
                    listener::Listener {
                        fd,
                        protocol,
                        local: s.local,
                        path: s.path,
                        tcp: s.tcp,
                        spec,
                    }
                }
                None => listener::bind(a, protocol, config.listen, config.reuse_port)?,
            });
        }
    }
    if let Some(owner) = &config.chown_socket {
        let (uid, gid) = resolve_owner(owner)?;
        for l in &listeners {
            if let Some(path) = &l.path {
                nix::unistd::chown(path, Some(uid), gid).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "--chown-socket {owner}: cannot chown {}: {e}",
                            path.display()
                        ),
                    )
                })?;
            }
        }
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
    let stats_kind = if config.stats_http {
        stats::StatsKind::JsonHttp
    } else {
        stats::StatsKind::Json
    };
    for (written, kind, role) in [
        (&config.stats, stats_kind, "stats"),
        (&config.metrics, stats::StatsKind::Metrics, "metrics"),
    ] {
        let Some(written) = written else { continue };
        let addr = resolve(written)?;
        let spec = addr.to_string();
        stats_servers.push(match handover.as_mut().and_then(|h| h.adopt(role, &spec)) {
            Some((s, fd)) => stats::StatsServer::adopt(fd, kind, s.local, s.path, spec),
            None => stats::StatsServer::bind(&addr, kind)?,
        });
    }
    let inherited_workers = match handover.as_mut() {
        Some(h) => {
            h.close_rest();
            std::mem::take(&mut h.workers)
        }
        None => Vec::new(),
    };
    for s in &stats_servers {
        let what = match s.kind {
            stats::StatsKind::Json => "stats server (JSON)",
            stats::StatsKind::JsonHttp => "stats server (JSON over HTTP)",
            stats::StatsKind::Metrics => "metrics server (Prometheus over HTTP)",
        };
        tracing::info!("{what} on {}", s.local);
    }
    resolve_privileges(config)?;
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
        restart,
        inherited_workers,
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

/// `USER[:GROUP]` (names or numbers) of `--chown-socket`.
fn resolve_owner(owner: &str) -> io::Result<(nix::unistd::Uid, Option<nix::unistd::Gid>)> {
    use nix::unistd::{Gid, Group, Uid, User};
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--chown-socket {owner}: {why}"),
        )
    };
    let (user, group) = match owner.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (owner, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => Uid::from_raw(n),
        Err(_) => {
            User::from_name(user)
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad(format!("no such user {user:?}")))?
                .uid
        }
    };
    let gid = match group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad(format!("no such group {g:?}")))?
                    .gid
            }
        }),
    };
    Ok((uid, gid))
}

/// The user and group workers switch to (`--uid`, `--gid`), resolved once by the master.
static PRIVILEGES: std::sync::OnceLock<(Option<nix::unistd::Gid>, Option<nix::unistd::Uid>)> =
    std::sync::OnceLock::new();

/// Resolve `--uid`/`--gid` (a bad name is a startup error, not a worker crash loop) and apply
/// `--refuse-root`. The master keeps its privileges, as nginx's does: it runs no application
/// code, and it must be able to remove the pid file and unix socket files at exit. Each
/// worker switches right after the fork ([`drop_privileges_in_worker`]).
fn resolve_privileges(config: &Config) -> io::Result<()> {
    use nix::unistd::{Gid, Group, Uid, User};
    let bad = |opt: &str, v: &str, why: String| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--{opt} {v}: {why}"))
    };
    let gid = match &config.gid {
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| bad("gid", g, e.to_string()))?
                    .ok_or_else(|| bad("gid", g, "no such group".into()))?
                    .gid
            }
        }),
        None => None,
    };
    let uid = match &config.uid {
        Some(u) => Some(match u.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                User::from_name(u)
                    .map_err(|e| bad("uid", u, e.to_string()))?
                    .ok_or_else(|| bad("uid", u, "no such user".into()))?
                    .uid
            }
        }),
        None => None,
    };
    let root = Uid::effective().is_root();
    if (uid.is_some() || gid.is_some()) && !root {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--uid/--gid need the server to start as root",
        ));
    }
    let workers_root = uid.is_none_or(|u| u.is_root()) && root;
    if workers_root {
        if config.refuse_root {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--refuse-root: the workers would run as root; give --uid USER",
            ));
        }
        tracing::warn!(
            "workers run as root: consider --uid USER (or --refuse-root to forbid this)"
        );
    } else if let Some(u) = uid {
        tracing::info!(
            "workers will run as uid {u}{}",
            gid.map_or(String::new(), |g| format!(", gid {g}"))
        );
    }
    let _ = PRIVILEGES.set((gid, uid));
    Ok(())
}

/// In a freshly forked worker: switch to `--gid`/`--uid` (group first, while still allowed).
pub(crate) fn drop_privileges_in_worker() -> io::Result<()> {
    let Some((gid, uid)) = PRIVILEGES.get() else {
        return Ok(());
    };
    if let Some(g) = gid {
        nix::unistd::setgroups(&[*g])?;
        nix::unistd::setgid(*g)?;
    }
    if let Some(u) = uid {
        nix::unistd::setuid(*u)?;
    }
    Ok(())
}
