//! Listening sockets: the only place that creates them.
//!
//! The master binds every listener before forking; workers inherit the descriptors and share
//! the kernel accept queues.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::ListenAddr;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (`--http-socket`).
    Http,
    /// The uwsgi binary protocol (`--socket`).
    Uwsgi,
}

/// A bound, listening socket.
#[derive(Debug)]
pub struct Listener {
    /// The descriptor, inherited by every worker.
    pub fd: OwnedFd,
    /// What it speaks.
    pub protocol: Protocol,
    /// The address as bound (port 0 resolved to the real port).
    pub local: String,
    /// The socket file to remove at exit (unix sockets).
    pub path: Option<PathBuf>,
    /// Whether peers have addresses (TCP) or not (unix).
    pub tcp: bool,
    /// The address as configured (a reload matches the new configuration against it).
    pub spec: String,
}

impl Listener {
    /// The raw descriptor.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Bind and listen on `addr` with `backlog`. Non-blocking, close-on-exec, `TCP_NODELAY`
/// (inherited by accepted sockets), `SO_REUSEADDR`; `SO_REUSEPORT` only if asked.
pub fn bind(
    addr: &ListenAddr,
    protocol: Protocol,
    backlog: u32,
    reuse_port: bool,
) -> io::Result<Listener> {
    let what = |e: io::Error| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"));
    match addr {
        ListenAddr::Tcp(sa) => {
            let sock = Socket::new(
                Domain::for_address(*sa),
                Type::STREAM.nonblocking().cloexec(),
                None,
            )
            .map_err(what)?;
            sock.set_reuse_address(true).map_err(what)?;
            if reuse_port {
                sock.set_reuse_port(true).map_err(what)?;
            }
            if sa.is_ipv6() {
                sock.set_only_v6(true).map_err(what)?;
            }
            sock.set_nodelay(true).map_err(what)?;
            sock.bind(&(*sa).into()).map_err(what)?;
            sock.listen(backlog as i32).map_err(what)?;
            let local = sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.to_string())
                .unwrap_or_else(|| addr.to_string());
            Ok(Listener {
                fd: sock.into(),
                protocol,
                local,
                path: None,
                tcp: true,
                spec: addr.to_string(),
            })
        }
        ListenAddr::Unix(path) => {
            // A socket file left by a previous run that nobody listens on is replaced.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    if std::os::unix::net::UnixStream::connect(path).is_ok() {
                        return Err(what(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            "another process is listening on it",
                        )));
                    }
                    std::fs::remove_file(path).map_err(what)?;
                } else {
                    return Err(what(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the path exists and is not a socket",
                    )));
                }
            }
            let sock = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)
                .map_err(what)?;
            sock.bind(&SockAddr::unix(path).map_err(what)?)
                .map_err(what)?;
            sock.listen(backlog as i32).map_err(what)?;
            Ok(Listener {
                fd: sock.into(),
                protocol,
                local: path.display().to_string(),
                path: Some(path.clone()),
                tcp: false,
                spec: addr.to_string(),
            })
        }
        ListenAddr::Abstract(name) => {
            let sock = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)
                .map_err(what)?;
            let sa = SockAddr::unix(format!("\0{name}")).map_err(what)?;
            sock.bind(&sa).map_err(what)?;
            sock.listen(backlog as i32).map_err(what)?;
            Ok(Listener {
                fd: sock.into(),
                protocol,
                local: format!("@{name}"),
                path: None,
                tcp: false,
                spec: addr.to_string(),
            })
        }
    }
}

/// The spec of the `index`-th socket passed by systemd, as a reload hands it over: it is not
/// in the configuration, so a new image keeps every inherited socket whose spec has this form.
pub(crate) fn activated_spec(index: usize, name: &str) -> String {
    format!("{ACTIVATED_PREFIX}{index}:{name}")
}

/// What every [`activated_spec`] starts with.
pub(crate) const ACTIVATED_PREFIX: &str = "systemd:";

/// A listening socket passed by systemd (socket activation): made non-blocking (the accept
/// loops rely on it; systemd passes blocking sockets) with `TCP_NODELAY` for TCP, as [`bind`]
/// does. Its file, if it is a unix socket, belongs to systemd: it is never removed here.
pub(crate) fn from_activated(
    fd: OwnedFd,
    protocol: Protocol,
    index: usize,
    name: &str,
) -> io::Result<Listener> {
    let sock = Socket::from(fd);
    let what = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("socket activation: socket {index} ({name:?}): {e}"),
        )
    };
    sock.set_nonblocking(true).map_err(what)?;
    sock.set_cloexec(true).map_err(what)?;
    let addr = sock.local_addr().map_err(what)?;
    let (local, tcp) = match addr.as_socket() {
        Some(sa) => {
            sock.set_nodelay(true).map_err(what)?;
            (sa.to_string(), true)
        }
        None => (
            addr.as_pathname()
                .map(|p| p.display().to_string())
                .or_else(|| {
                    addr.as_abstract_namespace()
                        .map(|n| format!("@{}", String::from_utf8_lossy(n)))
                })
                .unwrap_or_else(|| "unix socket".to_owned()),
            false,
        ),
    };
    Ok(Listener {
        fd: sock.into(),
        protocol,
        local,
        path: None,
        tcp,
        spec: activated_spec(index, name),
    })
}

/// Set the permissions of a unix-socket file (`--chmod-socket`): connecting needs write
/// permission on it, so this decides who may talk to the listener (uWSGI's `chmod-socket`).
/// Abstract sockets have no file and are left alone by the caller.
pub fn chmod(path: &std::path::Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "--chmod-socket {mode:o}: cannot chmod {}: {e}",
                path.display()
            ),
        )
    })
}
