//! Graceful reload by re-executing the master (SIGHUP), as uWSGI does: the new image of the
//! binary on disk, with the configuration read again, takes over the listening sockets and the
//! running workers.
//!
//! The old image hands over, in one environment variable, the descriptors of its listening
//! sockets (made inheritable for the `execve`) and the pids of its workers, which stay its
//! children across the `execve` (the pid does not change). The new image adopts every socket
//! whose configured address is unchanged (so no connection is refused: the kernel accept
//! queues never close), binds the new ones, closes the ones no longer configured, forks new
//! workers, and drains each old worker once its successor accepts (`master.rs`).

use std::ffi::OsString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The environment variable that carries the [`Handover`].
const ENV: &str = "RINGSGI_HANDOVER";

/// Set in the environment of a check run (`server::run` checks the configuration, prints
/// what is wrong and returns without binding anything).
pub(super) const CHECK_ENV: &str = "RINGSGI_CHECK_CONFIG";

/// What a new image of the master inherits from the old one.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Handover {
    /// The pid that wrote it: the handover is for this process alone (the variable stays
    /// visible in `/proc/PID/environ`; a copy in another process's environment is ignored).
    pub(super) master_pid: u32,
    pub(super) sockets: Vec<Inherited>,
    /// `(worker index, pid)` of every worker alive at the handover.
    pub(super) workers: Vec<(usize, i32)>,
}

/// A listening socket handed over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Inherited {
    pub(super) fd: RawFd,
    /// `http`, `uwsgi`, `stats` or `metrics`.
    pub(super) role: String,
    /// The address as configured (`ListenAddr`'s display form): what a new configuration is
    /// matched against.
    pub(super) spec: String,
    /// The address as bound.
    pub(super) local: String,
    /// The socket file (unix sockets).
    pub(super) path: Option<PathBuf>,
    pub(super) tcp: bool,
}

impl Handover {
    /// The handover left by the previous image, if this process is one (the variable is
    /// removed, so that workers and later images do not see it).
    pub(super) fn take() -> Option<Handover> {
        let text = std::env::var(ENV).ok()?;
        crate::sys::remove_env(ENV);
        match serde_json::from_str::<Handover>(&text) {
            Ok(h) if h.master_pid == std::process::id() => Some(h),
            Ok(h) => {
                tracing::warn!(
                    "ignoring {ENV} written by pid {}, not by this process",
                    h.master_pid
                );
                None
            }
            Err(e) => {
                tracing::error!("ignoring a malformed {ENV}: {e}");
                None
            }
        }
    }

    /// Take the inherited socket with this role and configured address.
    pub(super) fn adopt(&mut self, role: &str, spec: &str) -> Option<(Inherited, OwnedFd)> {
        let pos = self
            .sockets
            .iter()
            .position(|s| s.role == role && s.spec == spec)?;
        let s = self.sockets.swap_remove(pos);
        match crate::sys::adopt_fd(s.fd) {
            Ok(fd) => Some((s, fd)),
            Err(e) => {
                tracing::error!("inherited fd {} for {role} {spec} is unusable: {e}", s.fd);
                None
            }
        }
    }

    /// Adopt every inherited request socket (HTTP, uwsgi) not adopted yet, as it was: the
    /// fallback of a reload whose new listeners could not all be bound.
    pub(super) fn keep_request_sockets(&mut self) -> Vec<super::listener::Listener> {
        self.keep_where(
            |s| s.role == "http" || s.role == "uwsgi",
            |s| tracing::warn!("reload: keeping the previous {} socket {}", s.role, s.local),
        )
    }

    /// Adopt every inherited socket that systemd passed to the first image (socket
    /// activation): the configuration does not name them, and they stay for the life of the
    /// service.
    pub(super) fn keep_activated(&mut self) -> Vec<super::listener::Listener> {
        self.keep_where(
            |s| s.spec.starts_with(super::listener::ACTIVATED_PREFIX),
            |s| {
                tracing::info!(
                    "inherited {} socket {} (socket activation) from the previous master",
                    s.role,
                    s.local
                )
            },
        )
    }

    /// Adopt, as request listeners, the inherited sockets `which` selects (`log` each).
    fn keep_where(
        &mut self,
        which: impl Fn(&Inherited) -> bool,
        log: impl Fn(&Inherited),
    ) -> Vec<super::listener::Listener> {
        use super::listener::{Listener, Protocol};
        let (keep, rest): (Vec<Inherited>, Vec<Inherited>) =
            self.sockets.drain(..).partition(|s| which(s));
        self.sockets = rest;
        keep.into_iter()
            .filter_map(|s| {
                let fd = crate::sys::adopt_fd(s.fd).ok()?;
                log(&s);
                Some(Listener {
                    fd,
                    protocol: if s.role == "uwsgi" {
                        Protocol::Uwsgi
                    } else {
                        Protocol::Http
                    },
                    local: s.local,
                    path: s.path,
                    tcp: s.tcp,
                    spec: s.spec,
                })
            })
            .collect()
    }

    /// Whether it carries sockets from systemd (socket activation).
    pub(super) fn has_activated(&self) -> bool {
        self.sockets
            .iter()
            .any(|s| s.spec.starts_with(super::listener::ACTIVATED_PREFIX))
    }

    /// Close the inherited sockets that the new configuration no longer has (and remove
    /// their socket files).
    pub(super) fn close_rest(&mut self) {
        for s in self.sockets.drain(..) {
            if let Ok(fd) = crate::sys::adopt_fd(s.fd) {
                tracing::info!(
                    "closing {} socket {} (no longer configured)",
                    s.role,
                    s.local
                );
                drop(fd);
                if let Some(p) = &s.path {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// How the master was started: what a reload executes again.
#[derive(Debug, Clone)]
pub(super) struct Restart {
    /// The binary's path (a new binary installed there is what runs after the reload).
    pub(super) exe: PathBuf,
    pub(super) args: Vec<OsString>,
    /// The working directory at start (relative paths in the arguments are relative to it).
    pub(super) cwd: PathBuf,
}

impl Restart {
    /// Capture the command line, binary and working directory (before `--chdir`).
    ///
    /// The paths are kept as the user gave them, not resolved: with a release layout such as
    /// `current -> releases/v2`, a reload after switching the link runs the new release's
    /// binary with its configuration. The binary is `argv[0]` (relative to the logical
    /// working directory `$PWD`, or found on `PATH`), else `/proc/self/exe`.
    pub(super) fn capture() -> Option<Restart> {
        use std::os::unix::fs::MetadataExt;
        let args: Vec<OsString> = std::env::args_os().collect();
        let physical = std::env::current_dir().ok()?;
        let same = |a: &std::path::Path, b: &std::path::Path| match (a.metadata(), b.metadata()) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        };
        let cwd = std::env::var_os("PWD")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && same(p, &physical))
            .unwrap_or(physical);
        let argv0 = args.first().map(PathBuf::from);
        let exe = match argv0 {
            Some(a) if a.as_os_str().as_encoded_bytes().contains(&b'/') => Some(cwd.join(a)),
            Some(a) => std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(&a))
                    .find(|c| c.is_file())
            }),
            None => None,
        }
        .filter(|p| p.is_file())
        .or_else(|| std::env::current_exe().ok())?;
        Some(Restart { exe, args, cwd })
    }

    /// Check that the configuration still loads, then replace this process with a new image
    /// of the binary that inherits `handover`. Returns only on failure, with nothing changed.
    pub(super) fn exec(&self, handover: &Handover, inherit: &[RawFd]) -> io::Error {
        // Blocked from here, not just across the execve: a signal that arrives during the
        // check stays pending, for the new image (or for this one if the reload fails)
        // instead of setting a flag in an image about to be replaced.
        let old_mask =
            match master_signals().thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK) {
                Ok(m) => m,
                Err(e) => return e.into(),
            };
        tracing::info!(
            "SIGHUP received: executing {} again; the workers drain once their successors accept",
            self.exe.display()
        );
        let here = std::env::current_dir();
        let err = self.try_exec(handover, inherit);
        let _ = old_mask.thread_set_mask();
        // Still here: the running master goes on where it was (`--chdir`).
        if let Ok(dir) = here {
            let _ = std::env::set_current_dir(dir);
        }
        err
    }

    /// Run the binary with [`CHECK_ENV`] set: it loads the configuration, runs the checks
    /// that have no side effect and exits 0, or prints why not and exits non-zero.
    fn check(&self, activated: bool) -> Result<(), io::Error> {
        let mut cmd = std::process::Command::new(&self.exe);
        if activated {
            // The listeners systemd passed carry over: a configuration without any of its
            // own is fine.
            cmd.env(crate::config::ACTIVATED_ENV, "1");
        }
        let out = cmd
            .args(&self.args[1..])
            .current_dir(&self.cwd)
            .env(CHECK_ENV, "1")
            .env_remove(ENV)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot run {}: {e}", self.exe.display()))
            })?;
        if out.status.success() {
            return Ok(());
        }
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the new configuration is refused ({}): {why}", out.status),
        ))
    }

    fn try_exec(&self, handover: &Handover, inherit: &[RawFd]) -> io::Error {
        if let Err(e) = std::env::set_current_dir(&self.cwd) {
            return io::Error::new(
                e.kind(),
                format!("cannot return to {}: {e}", self.cwd.display()),
            );
        }
        // The new binary judges its own configuration (a release may add options or apps
        // the running one does not know): run it in check mode, like `nginx -t`.
        if let Err(e) = self.check(handover.has_activated()) {
            return e;
        }
        let json = match serde_json::to_string(handover) {
            Ok(j) => j,
            Err(e) => return io::Error::other(e),
        };
        for &fd in inherit {
            if let Err(e) = crate::sys::set_cloexec(fd, false) {
                restore(inherit);
                return e;
            }
        }
        let err = execve(&self.exe, &self.args, &json);
        restore(inherit);
        io::Error::new(
            err.kind(),
            format!("cannot execute {}: {err}", self.exe.display()),
        )
    }
}

/// The signals the master handles, blocked across the `execve`: between the new image's
/// start and its handlers' installation they stay pending (a SIGTERM then is a graceful stop,
/// not a kill of the master and, through the parent-death signal, of every worker).
/// `master::run` unblocks them once its handlers are in place.
pub(super) fn master_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGCHLD,
    ] {
        set.add(sig);
    }
    set
}

/// `execve` the binary with the handover in the environment (the caller blocked the master's
/// signals). Not `std::process::Command::exec`: that resets the signal mask and SIGPIPE's
/// disposition, which would leave the master killable meanwhile (and with SIGPIPE at its
/// default if the `execve` fails). Returns only on failure.
fn execve(exe: &std::path::Path, args: &[OsString], handover: &str) -> io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr =
        |b: &[u8]| CString::new(b).map_err(|_| io::Error::other("a NUL byte in an argument"));
    let build = || -> io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let path = cstr(exe.as_os_str().as_bytes())?;
        let argv = args
            .iter()
            .map(|a| cstr(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            if k == ENV {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            // A variable that cannot be passed (a NUL byte) is dropped, not fatal.
            if let Ok(c) = CString::new(kv) {
                env.push(c);
            }
        }
        env.push(cstr(format!("{ENV}={handover}").as_bytes())?);
        Ok((path, argv, env))
    };
    let (path, argv, env) = match build() {
        Ok(x) => x,
        Err(e) => return e,
    };
    // The caller has blocked the master's signals (see `Restart::exec`).
    match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => io::Error::from(e),
        Ok(never) => match never {},
    }
}

fn restore(fds: &[RawFd]) {
    for &fd in fds {
        let _ = crate::sys::set_cloexec(fd, true);
    }
}
