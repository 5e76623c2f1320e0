//! Name lookups off the core: the system resolver blocks, so it runs on glommio's blocking
//! thread pool while the worker serves its other slots.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolve `host` (a name or an address literal) for `port` with the system resolver
/// (`getaddrinfo`: /etc/hosts, DNS, ...), without blocking the worker's core.
///
/// ```no_run
/// # async fn handler() -> std::io::Result<()> {
/// let addrs = ringsgi::resolve("localhost", 80).await?;
/// println!("{addrs:?}");
/// # Ok(()) }
/// ```
pub async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    crate::harakiri::note_wait("resolve (name lookup)");
    let host = host.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect)
        })
        .await
}
