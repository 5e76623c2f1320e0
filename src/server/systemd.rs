//! systemd integration, without libsystemd: socket activation (`sd_listen_fds`) and the
//! notification protocol (`sd_notify`: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`,
//! `WATCHDOG=1`).
//!
//! Both are plain protocols over the environment and a datagram socket, documented in
//! `sd_listen_fds(3)` and `sd_notify(3)`:
//! - activation: `LISTEN_PID` (must be this process), `LISTEN_FDS` (count), descriptors from 3
//!   on, `LISTEN_FDNAMES` (colon-separated names, `FileDescriptorName=` in the socket unit);
//! - notification: one datagram per message to the `AF_UNIX` address in `NOTIFY_SOCKET`
//!   (a path, or `@name` for the abstract namespace); `WATCHDOG_USEC` (and `WATCHDOG_PID`, if
//!   set, must be this process) asks for `WATCHDOG=1` more often than that period.
//!
//! Only the master speaks to systemd (its pid is the unit's main pid, and stays so across a
//! reload: the reload re-executes the same process).

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use super::listener::Protocol;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// A listening socket passed by systemd.
#[derive(Debug)]
pub(crate) struct Activated {
    pub(crate) fd: OwnedFd,
    /// `FileDescriptorName=` as passed (empty when systemd passed none).
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
}

/// Take the sockets systemd passed to this process (`sd_listen_fds(1)` semantics: the
/// variables are removed so that the workers and a reloaded image do not see them; the
/// descriptors get `FD_CLOEXEC`). Empty when the process was not socket-activated.
///
/// Each must be a listening stream socket; its protocol comes from its name: `uwsgi` speaks
/// the uwsgi protocol, `http` (and anything else, with a note in the log) HTTP.
pub(crate) fn take_listen_fds() -> io::Result<Vec<Activated>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        crate::sys::remove_env(var);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        // Meant for another process (a parent that did not clear its environment).
        return Ok(Vec::new());
    }
    let n: RawFd = count.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={count:?} is not a number"),
        )
    })?;
    let names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |n| n.split(':').collect());
    let mut out = Vec::new();
    for i in 0..n.max(0) {
        let raw = LISTEN_FDS_START + i;
        let name = names.get(i as usize).copied().unwrap_or("").to_owned();
        crate::sys::set_cloexec(raw, true).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("socket activation: fd {raw} ({name:?}): {e}"),
            )
        })?;
        let fd = crate::sys::adopt_fd(raw).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("socket activation: fd {raw} ({name:?}): {e}"),
            )
        })?;
        let sock = socket2::SockRef::from(&fd);
        if !sock.is_listener().unwrap_or(false) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket activation: fd {raw} ({name:?}) is not a listening stream socket (use Accept=no and ListenStream=)"
                ),
            ));
        }
        let protocol = match name.as_str() {
            "uwsgi" => Protocol::Uwsgi,
            "http" => Protocol::Http,
            other => {
                tracing::info!(
                    "socket activation: fd {raw} is named {other:?}: serving HTTP on it (name it \"uwsgi\" with FileDescriptorName= for the uwsgi protocol)"
                );
                Protocol::Http
            }
        };
        out.push(Activated { fd, name, protocol });
    }
    Ok(out)
}

/// The master's link to systemd's notification socket. Does nothing without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub(crate) struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    /// `WATCHDOG_USEC`: `WATCHDOG=1` is due at half of it.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    last_status: String,
    last_status_at: Option<Instant>,
}

impl Notifier {
    /// From the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`). The variables
    /// stay set: a reload re-executes this process, and its new image reads them again.
    pub(crate) fn from_env() -> Notifier {
        let sock = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|path| match open(&path) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET={path}: {e}; not notifying systemd");
                    None
                }
            });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us && sock.is_some())
            .map(Duration::from_micros);
        if let Some(w) = watchdog {
            tracing::info!(
                "systemd watchdog: {:.3} s; WATCHDOG=1 every {:.3} s while every worker makes progress",
                w.as_secs_f64(),
                w.as_secs_f64() / 2.0
            );
        }
        Notifier {
            sock,
            watchdog,
            last_ping: None,
            last_status: String::new(),
            last_status_at: None,
        }
    }

    /// Whether a notification socket is configured.
    pub(crate) fn active(&self) -> bool {
        self.sock.is_some()
    }

    /// Send one message (newline-separated `KEY=VALUE` lines). Failures are logged, never
    /// fatal: a service manager that went away must not take the server down.
    pub(crate) fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.sock
            && let Err(e) = sock.send_to_addr(msg.as_bytes(), addr)
        {
            tracing::warn!("sd_notify {:?}: {e}", msg.lines().next().unwrap_or(""));
        }
    }

    /// `READY=1` with the current status.
    pub(crate) fn ready(&mut self, status: String) {
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.last_status = status;
        self.last_status_at = Some(Instant::now());
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (required by `Type=notify-reload`).
    pub(crate) fn reloading(&self) {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000
        });
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={ts}\nSTATUS=reloading"
        ));
    }

    /// `STOPPING=1`.
    pub(crate) fn stopping(&self, how: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={how}"));
    }

    /// `STATUS=` when it changed, at most once a second.
    pub(crate) fn status(&mut self, status: String) {
        if !self.active() || status == self.last_status {
            return;
        }
        if self
            .last_status_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.send(&format!("STATUS={status}"));
        self.last_status = status;
        self.last_status_at = Some(Instant::now());
    }

    /// Send `WATCHDOG=1` if half the period passed since the last one and `progress` (every
    /// worker makes progress). A wedged worker therefore stops the pings, and systemd acts
    /// (`WatchdogSec=`) if the master does not replace it first.
    pub(crate) fn watchdog(&mut self, progress: impl FnOnce() -> bool) {
        let Some(period) = self.watchdog else { return };
        if self.last_ping.is_some_and(|t| t.elapsed() < period / 2) {
            return;
        }
        if progress() {
            self.send("WATCHDOG=1");
            self.last_ping = Some(Instant::now());
        }
    }

    /// Half the watchdog period: how often pings go out, and how long a worker may stay in
    /// one poll before it counts as stuck.
    pub(crate) fn next_ping_period(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// How long the master may sleep before the next ping is due.
    pub(crate) fn next_ping_in(&self) -> Option<Duration> {
        let period = self.watchdog? / 2;
        Some(
            self.last_ping
                .map_or(Duration::ZERO, |t| period.saturating_sub(t.elapsed())),
        )
    }
}

fn open(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract (vsock addresses are not supported)",
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    crate::sys::set_cloexec(std::os::fd::AsRawFd::as_raw_fd(&sock), true)?;
    Ok((sock, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_messages_reach_a_datagram_listener() {
        let dir = std::env::temp_dir().join(format!("ringsgi-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixDatagram::bind(&dir).unwrap();
        let mut n = Notifier {
            sock: Some(open(dir.to_str().unwrap()).unwrap()),
            watchdog: Some(Duration::from_secs(3600)),
            last_ping: None,
            last_status: String::new(),
            last_status_at: None,
        };
        let mut buf = [0u8; 512];
        n.ready("2 workers".into());
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=2 workers");
        // No progress: no ping; progress: a ping; within half the period: no second one.
        n.watchdog(|| false);
        n.watchdog(|| true);
        n.watchdog(|| true);
        n.stopping("stopping");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=stopping");
        n.reloading();
        let len = listener.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn relative_notify_socket_is_refused() {
        assert!(open("relative/path").is_err());
        assert!(open("@ringsgi-test-abstract").is_ok());
    }
}
