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
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The environment variable that carries the [`Handover`].
const ENV: &str = "RINGSGI_HANDOVER";

/// What a new image of the master inherits from the old one.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Handover {
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
        match serde_json::from_str(&text) {
            Ok(h) => Some(h),
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
    pub(super) fn capture() -> Option<Restart> {
        Some(Restart {
            exe: std::env::current_exe().ok()?,
            args: std::env::args_os().collect(),
            cwd: std::env::current_dir().ok()?,
        })
    }

    /// Check that the configuration still loads, then replace this process with a new image
    /// of the binary that inherits `handover`. Returns only on failure, with nothing changed.
    pub(super) fn exec(&self, handover: &Handover, inherit: &[RawFd]) -> io::Error {
        let here = std::env::current_dir();
        let err = self.try_exec(handover, inherit);
        // Still here: the running master goes on where it was (`--chdir`).
        if let Ok(dir) = here {
            let _ = std::env::set_current_dir(dir);
        }
        err
    }

    fn try_exec(&self, handover: &Handover, inherit: &[RawFd]) -> io::Error {
        if let Err(e) = std::env::set_current_dir(&self.cwd) {
            return io::Error::new(
                e.kind(),
                format!("cannot return to {}: {e}", self.cwd.display()),
            );
        }
        if let Err(e) = crate::config::load_from_args(self.args.clone()) {
            return io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the configuration does not load: {e}"),
            );
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
        let err = std::process::Command::new(&self.exe)
            .arg0(&self.args[0])
            .args(&self.args[1..])
            .env(ENV, json)
            .exec();
        restore(inherit);
        io::Error::new(
            err.kind(),
            format!("cannot execute {}: {err}", self.exe.display()),
        )
    }
}

fn restore(fds: &[RawFd]) {
    for &fd in fds {
        let _ = crate::sys::set_cloexec(fd, true);
    }
}
