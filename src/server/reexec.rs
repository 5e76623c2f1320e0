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
    pub(super) fn exec(
        &self,
        handover: &Handover,
        inherit: &[RawFd],
        check: &dyn Fn(&crate::config::Config) -> io::Result<()>,
    ) -> io::Error {
        let here = std::env::current_dir();
        let err = self.try_exec(handover, inherit, check);
        // Still here: the running master goes on where it was (`--chdir`).
        if let Ok(dir) = here {
            let _ = std::env::set_current_dir(dir);
        }
        err
    }

    fn try_exec(
        &self,
        handover: &Handover,
        inherit: &[RawFd],
        check: &dyn Fn(&crate::config::Config) -> io::Result<()>,
    ) -> io::Error {
        if let Err(e) = std::env::set_current_dir(&self.cwd) {
            return io::Error::new(
                e.kind(),
                format!("cannot return to {}: {e}", self.cwd.display()),
            );
        }
        let config = match crate::config::load_from_args(self.args.clone()) {
            Ok(c) => c,
            Err(e) => {
                return io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the configuration does not load: {e}"),
                );
            }
        };
        if let Err(e) = check(&config) {
            return io::Error::new(e.kind(), format!("the new configuration is refused: {e}"));
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

/// `execve` the binary with the handover in the environment and the master's signals
/// blocked. Not `std::process::Command::exec`: that resets the signal mask and SIGPIPE's
/// disposition, which would leave the master killable meanwhile (and with SIGPIPE at its
/// default if the `execve` fails). Returns only on failure, with the mask restored.
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
    let old = match master_signals().thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK) {
        Ok(old) => old,
        Err(e) => return e.into(),
    };
    let err = match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => io::Error::from(e),
        Ok(never) => match never {},
    };
    let _ = old.thread_set_mask();
    err
}

fn restore(fds: &[RawFd]) {
    for &fd in fds {
        let _ = crate::sys::set_cloexec(fd, true);
    }
}
