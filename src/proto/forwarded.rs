//! The client's address behind trusted HTTP proxies: `Forwarded` (RFC 7239) and
//! `X-Forwarded-For`, believed only from the addresses `--forwarded-allow-ips` lists (gunicorn's
//! option). Pure functions.
//!
//! The walk is the safe one: start from the connection's peer and, while the current hop is a
//! trusted proxy, step to the address it says it received the request from (the rightmost
//! entry not yet taken). The first untrusted hop is the client; a client cannot forge its way
//! past a proxy that appends what it saw. If every hop is trusted, the leftmost entry is the
//! client.

use std::net::{IpAddr, SocketAddr};

/// One `--forwarded-allow-ips` entry: an address, a CIDR block, or `*` (everyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trusted {
    /// Any peer.
    Any,
    /// `ADDR/BITS` (a bare address is `/32` or `/128`).
    Net(IpAddr, u8),
}

impl Trusted {
    /// Parse `"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`, `"fd00::/8"` or `"*"`.
    pub fn parse(s: &str) -> Result<Trusted, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Trusted::Any);
        }
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address, a CIDR block or *"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Trusted::Net(ip, bits))
    }

    fn contains(self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            Trusted::Any => true,
            Trusted::Net(net, bits) => match (canonical(net), ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, a dual-stack listener's view) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is in `trusted`.
pub fn is_trusted(trusted: &[Trusted], ip: IpAddr) -> bool {
    trusted.iter().any(|t| t.contains(ip))
}

/// The client's address for a request from `peer` with these header values, or `None` to
/// keep `peer` (it is not trusted, or no header names another hop). `forwarded` (RFC 7239)
/// wins over `x_forwarded_for` when both are present. A malformed header is ignored (the
/// peer stays the client). The port is the one `Forwarded` gives, else 0 (unknown).
pub fn client(
    trusted: &[Trusted],
    peer: IpAddr,
    forwarded: Option<&[u8]>,
    x_forwarded_for: Option<&[u8]>,
) -> Option<SocketAddr> {
    if !is_trusted(trusted, peer) {
        return None;
    }
    let hops: Vec<SocketAddr> = match (forwarded, x_forwarded_for) {
        (Some(f), _) => forwarded_for(f)?,
        (None, Some(x)) => x_forwarded(x)?,
        (None, None) => return None,
    };
    let mut client = None;
    for hop in hops.iter().rev() {
        client = Some(*hop);
        if !is_trusted(trusted, hop.ip()) {
            break;
        }
    }
    client
}

/// The addresses of `X-Forwarded-For: a, b, c` (ports 0).
fn x_forwarded(v: &[u8]) -> Option<Vec<SocketAddr>> {
    let v = std::str::from_utf8(v).ok()?;
    v.split(',')
        .map(|s| {
            let s = s.trim();
            let s = s
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or(s);
            s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
        })
        .collect()
}

/// The `for=` of each element of `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`.
/// An element without `for=`, or with an obfuscated or `unknown` one, makes the header unusable.
fn forwarded_for(v: &[u8]) -> Option<Vec<SocketAddr>> {
    let v = std::str::from_utf8(v).ok()?;
    v.split(',')
        .map(|element| {
            let value = element.split(';').find_map(|pair| {
                let (k, val) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(val.trim())
            })?;
            let value = value.trim_matches('"');
            if let Ok(sa) = value.parse::<SocketAddr>() {
                return Some(sa);
            }
            let bare = value
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or(value);
            bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(list: &str) -> Vec<Trusted> {
        list.split(',')
            .map(|s| Trusted::parse(s).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn trusted_entries() {
        let list = t("127.0.0.1,10.0.0.0/8,fd00::/8");
        assert!(is_trusted(&list, ip("127.0.0.1")));
        assert!(is_trusted(&list, ip("10.200.1.1")));
        assert!(is_trusted(&list, ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(is_trusted(&list, ip("fd12::1")));
        assert!(!is_trusted(&list, ip("127.0.0.2")));
        assert!(!is_trusted(&list, ip("11.0.0.1")));
        assert!(is_trusted(&t("*"), ip("203.0.113.1")));
        assert!(is_trusted(&t("0.0.0.0/0"), ip("203.0.113.1")));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", "::/129"] {
            assert!(Trusted::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let list = t("127.0.0.1,10.0.0.0/8");
        // client -> 10.0.0.5 (proxy) -> 127.0.0.1 (nginx) -> us. A forged leftmost entry
        // does not win: the first untrusted hop from the right does.
        let xff = b"6.6.6.6, 198.51.100.7, 10.0.0.5";
        assert_eq!(
            client(&list, ip("127.0.0.1"), None, Some(xff)),
            Some("198.51.100.7:0".parse().unwrap())
        );
        // An untrusted peer's headers are ignored.
        assert_eq!(client(&list, ip("198.51.100.1"), None, Some(xff)), None);
        // Every hop trusted: the leftmost.
        assert_eq!(
            client(&list, ip("127.0.0.1"), None, Some(b"10.1.1.1, 10.0.0.5")),
            Some("10.1.1.1:0".parse().unwrap())
        );
        // Malformed: ignored.
        assert_eq!(
            client(&list, ip("127.0.0.1"), None, Some(b"x, 1.2.3.4")),
            None
        );
    }

    #[test]
    fn rfc7239_forwarded_wins_and_carries_ports() {
        let list = t("127.0.0.1");
        let f = b"for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https";
        assert_eq!(
            client(&list, ip("127.0.0.1"), Some(f), Some(b"9.9.9.9")),
            Some("[2001:db8:cafe::17]:4711".parse().unwrap())
        );
        assert_eq!(
            client(&list, ip("127.0.0.1"), Some(b"For=\"192.0.2.43:80\""), None),
            Some("192.0.2.43:80".parse().unwrap())
        );
        // An obfuscated or unknown node makes the header unusable.
        assert_eq!(
            client(&list, ip("127.0.0.1"), Some(b"for=unknown"), None),
            None
        );
        assert_eq!(
            client(&list, ip("127.0.0.1"), Some(b"proto=http"), None),
            None
        );
    }
}
