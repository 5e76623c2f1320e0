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
    // Before --chdir: a reload runs the same command line from the same directory.
    if std::env::var_os(reexec::CHECK_ENV).is_some() {
        // A reload's check run of this binary (see reexec.rs): check, bind nothing.
        preflight(config, apps)?;
        return Ok(0);
    }
    let restart = reexec::Restart::capture();
    let handover = reexec::Handover::take();
    let inherited: Vec<i32> = handover
        .as_ref()
        .map(|h| h.workers.iter().map(|&(_, pid)| pid).collect())
        .unwrap_or_default();
    let result = start(config, apps, restart, handover);
    if let Err(e) = &result
        && !inherited.is_empty()
    {
        // The last resort of a reload that cannot start: the previous workers are still
        // serving; let them finish what they have instead of killing them with this process.
        tracing::error!(
            "the reloaded master cannot start: {e}; stopping the previous workers gracefully"
        );
        // The previous image blocked them across its execve; a second SIGTERM or a SIGINT
        // must be able to end this wait.
        let _ = reexec::master_signals().thread_unblock();
        master::drain_pids(&inherited, config.reload_mercy);
    }
    result
}

/// Checks without side effects, run at start and by a reload before it executes the new image
/// (so that a reload with, say, an unknown app or user is refused instead of fatal).
pub(super) fn preflight(config: &Config, apps: &Apps) -> io::Result<()> {
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
    for m in &config.mounts {
        apps.check(&m.app)?;
    }
    if let Some(dir) = &config.chdir
        && !dir.is_dir()
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("--chdir {}: not a directory", dir.display()),
        ));
    }
    if let Some(owner) = &config.chown_socket {
        resolve_owner(owner)?;
    }
    resolve_ids(config)?;
    for (num, path) in &config.file_monitors {
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("--file-monitor {num} {}: no such file", path.display()),
            ));
        }
    }
    for written in [&config.stats, &config.metrics].into_iter().flatten() {
        resolve(written)?;
    }
    Ok(())
}

fn start(
    config: &Config,
    apps: &Apps,
    restart: Option<reexec::Restart>,
    mut handover: Option<reexec::Handover>,
) -> io::Result<i32> {
    preflight(config, apps)?;
    // With a handover, a step that fails for one socket (or the pid file) is logged and
    // skipped: failing would take the previous workers, and the sockets that did carry over,
    // down with this process.
    let reloading = handover.is_some();
    let soft = |what: io::Error| -> io::Result<()> {
        if reloading {
            tracing::error!("reload: {what}; going on without it");
            Ok(())
        } else {
            Err(what)
        }
    };
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("--chdir {}: {e}", dir.display())))?;
    }
    let (nofile, memlock) = crate::sys::raise_limits(64 << 20);
    // Pass 1: adopt what a previous image handed over (listeners and stats sockets); then close
    // what it handed over that is no longer configured (an address that changed role is free
    // again); pass 2: bind the rest.
    let mut pending = Vec::new();
    for (addrs, protocol, role) in [
        (&config.http_sockets, Protocol::Http, "http"),
        (&config.uwsgi_sockets, Protocol::Uwsgi, "uwsgi"),
    ] {
        for a in addrs {
            let spec = a.to_string();
            let adopted = handover.as_mut().and_then(|h| h.adopt(role, &spec));
            let adopted = adopted.map(|(s, fd)| {
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
            });
            pending.push((a, protocol, adopted));
        }
    }
    let stats_kind = if config.stats_http {
        stats::StatsKind::JsonHttp
    } else {
        stats::StatsKind::Json
    };
    let mut stats_pending = Vec::new();
    for (written, kind, role) in [
        (&config.stats, stats_kind, "stats"),
        (&config.metrics, stats::StatsKind::Metrics, "metrics"),
    ] {
        let Some(written) = written else { continue };
        let addr = resolve(written)?;
        let spec = addr.to_string();
        let adopted = handover
            .as_mut()
            .and_then(|h| h.adopt(role, &spec))
            .map(|(s, fd)| stats::StatsServer::adopt(fd, kind, s.local, s.path, spec));
        stats_pending.push((addr, kind, adopted));
    }
    let mut listeners = Vec::new();
    let mut bind_failed = false;
    for (a, protocol, adopted) in pending {
        match adopted {
            Some(l) => {
                // A changed --listen applies to the sockets that carried over too.
                if let Err(e) = socket2::SockRef::from(&l.fd).listen(config.listen as i32) {
                    soft(io::Error::new(
                        e.kind(),
                        format!("listen on {}: {e}", l.local),
                    ))?;
                }
                listeners.push(l);
            }
            None => match listener::bind(a, protocol, config.listen, config.reuse_port) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    soft(e)?;
                    bind_failed = true;
                }
            },
        }
    }
    let inherited_workers = match handover.as_mut() {
        Some(h) => {
            if bind_failed {
                // Never fewer listeners than before a reload: keep serving every previous
                // request socket the new configuration could not replace.
                listeners.extend(h.keep_request_sockets());
            }
            h.close_rest();
            std::mem::take(&mut h.workers)
        }
        None => Vec::new(),
    };
    let mut stats_servers = Vec::new();
    for (addr, kind, adopted) in stats_pending {
        match adopted {
            Some(s) => stats_servers.push(s),
            None => match stats::StatsServer::bind(&addr, kind) {
                Ok(s) => stats_servers.push(s),
                Err(e) => soft(e)?,
            },
        }
    }
    if let Some(owner) = &config.chown_socket {
        let (uid, gid) = resolve_owner(owner)?;
        for l in &listeners {
            if let Some(path) = &l.path
                && let Err(e) = nix::unistd::chown(path, Some(uid), gid)
            {
                soft(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "--chown-socket {owner}: cannot chown {}: {e}",
                        path.display()
                    ),
                ))?;
            }
        }
    }
    if let Some(mode) = config.chmod_socket {
        for l in &listeners {
            if let Some(path) = &l.path
                && let Err(e) = listener::chmod(path, mode)
            {
                soft(e)?;
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
        Some(p) => match std::fs::write(p, format!("{}\n", std::process::id())) {
            Ok(()) => Some(p.clone()),
            Err(e) => {
                soft(io::Error::new(
                    e.kind(),
                    format!("--pidfile {}: {e}", p.display()),
                ))?;
                None
            }
        },
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
/// `--gid`/`--uid` resolved to ids, and the checks that go with them (`--refuse-root`).
fn resolve_ids(
    config: &Config,
) -> io::Result<(Option<nix::unistd::Gid>, Option<nix::unistd::Uid>)> {
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
    if uid.is_none_or(|u| u.is_root()) && root && config.refuse_root {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--refuse-root: the workers would run as root; give --uid USER",
        ));
    }
    Ok((gid, uid))
}

fn resolve_privileges(config: &Config) -> io::Result<()> {
    let (gid, uid) = resolve_ids(config)?;
    let root = nix::unistd::Uid::effective().is_root();
    let workers_root = uid.is_none_or(|u| u.is_root()) && root;
    if workers_root {
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
