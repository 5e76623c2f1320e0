//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a TCP load balancer sends
//! before the client's bytes, carrying the client's address. Pure functions over bytes.
//!
//! Spec: haproxy.org's `proxy-protocol.txt`. Version 1 is one text line,
//! `PROXY TCP4|TCP6|UNKNOWN SRC DST SRCPORT DSTPORT\r\n`, at most 107 bytes. Version 2 is a
//! 16-byte binary header (a 12-byte signature, version/command, family/protocol, a big-endian
//! length) and that many bytes of addresses and TLVs. `LOCAL` (v2) and `UNKNOWN` (v1) carry
//! no address: the connection's own peer stays the client (health checks of the balancer).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Parsed;

/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest version 1 line, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;

/// Largest version 2 header we accept (16 + addresses + TLVs); the spec allows 64 KiB of
/// TLVs, load balancers send a few hundred bytes at most.
pub const V2_MAX: usize = 16 + 2048;

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header took: the client's own bytes start there.
    pub len: usize,
    /// The client's address and port, if the header carries one (`None`: v1 `UNKNOWN`, v2
    /// `LOCAL` or an unspecified or unix family).
    pub source: Option<SocketAddr>,
}

/// Why a connection's first bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither signature: the peer does not speak the protocol (or is not the balancer).
    NotProxy,
    /// A PROXY header that breaks the spec (bad field, too long, bad version).
    Malformed(&'static str),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::NotProxy => f.write_str("no PROXY protocol header"),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
        }
    }
}

/// Parse the PROXY header at the start of `buf` (version 1 or 2).
pub fn parse(buf: &[u8]) -> Result<Parsed<Header>, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::Partial);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(Parsed::Partial)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Ok(Parsed::Partial)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed<Header>, ProxyError> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Malformed("v1 line longer than 107 bytes"))
        } else {
            Ok(Parsed::Partial)
        };
    };
    let len = end + 2;
    let line = std::str::from_utf8(&buf[6..end])
        .map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let mut f = line.split(' ');
    let family = f.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored.
        return Ok(Parsed::Complete(Header { len, source: None }));
    }
    let fields: Vec<&str> = f.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(ProxyError::Malformed("v1 needs SRC DST SRCPORT DSTPORT"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::Malformed("v1 TCP4 source is not an IPv4 address"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::Malformed("v1 TCP6 source is not an IPv6 address"))?,
        _ => {
            return Err(ProxyError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    // Ports: decimal, no leading zeros beyond "0", at most 65535.
    let port: u16 = sport
        .parse()
        .ok()
        .filter(|_| !(sport.len() > 1 && sport.starts_with('0')))
        .ok_or(ProxyError::Malformed("v1 source port is not a port number"))?;
    Ok(Parsed::Complete(Header {
        len,
        source: Some(SocketAddr::new(ip, port)),
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed<Header>, ProxyError> {
    if buf.len() < 16 {
        return Ok(Parsed::Partial);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(ProxyError::Malformed("v2 header larger than 2 KiB"));
    }
    if buf.len() < len {
        return Ok(Parsed::Partial);
    }
    let addrs = &buf[16..len];
    match ver_cmd & 0x0f {
        // LOCAL: the balancer's own connection (health check): keep the real peer.
        0 => return Ok(Parsed::Complete(Header { len, source: None })),
        1 => {}
        _ => {
            return Err(ProxyError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ));
        }
    }
    let source = match buf[13] >> 4 {
        // AF_INET: src(4) dst(4) sport(2) dport(2)
        1 => {
            if addrs.len() < 12 {
                return Err(ProxyError::Malformed("v2 IPv4 addresses cut short"));
            }
            let ip = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            let port = u16::from_be_bytes([addrs[8], addrs[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // AF_INET6: src(16) dst(16) sport(2) dport(2)
        2 => {
            if addrs.len() < 36 {
                return Err(ProxyError::Malformed("v2 IPv6 addresses cut short"));
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&addrs[..16]);
            let port = u16::from_be_bytes([addrs[32], addrs[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        // AF_UNSPEC, AF_UNIX: no client address to report.
        0 | 3 => None,
        _ => return Err(ProxyError::Malformed("v2 address family unknown")),
    };
    Ok(Parsed::Complete(Header { len, source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, addrs: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | cmd);
        b.push(fam);
        b.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        b.extend_from_slice(addrs);
        b
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let b = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let h = parse(b).unwrap();
        assert_eq!(
            h,
            Parsed::Complete(Header {
                len: 41,
                source: Some("192.0.2.7:56324".parse().unwrap())
            })
        );
        assert_eq!(&b[41..45], b"GET ");
        let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").unwrap();
        assert_eq!(
            h,
            Parsed::Complete(Header {
                len: 40,
                source: Some("[2001:db8::1]:1".parse().unwrap())
            })
        );
        let h = parse(b"PROXY UNKNOWN whatever\r\n").unwrap();
        assert_eq!(
            h,
            Parsed::Complete(Header {
                len: 24,
                source: None
            })
        );
    }

    #[test]
    fn v1_partial_and_bad() {
        for cut in 1..41 {
            let b = &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"[..cut];
            assert_eq!(parse(b), Ok(Parsed::Partial), "{cut}");
        }
        for bad in [
            &b"PROXY TCP4 192.0.2.700 10.0.0.1 1 2\r\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 01 2\r\n",
            b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(ProxyError::Malformed(_))));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PROXX"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn v2_families_commands_and_tlvs() {
        let mut a4 = vec![203, 0, 113, 9, 10, 0, 0, 1];
        a4.extend_from_slice(&4242u16.to_be_bytes());
        a4.extend_from_slice(&443u16.to_be_bytes());
        // A TLV after the addresses (type, length, value) is skipped.
        a4.extend_from_slice(&[0x04, 0, 2, 0xaa, 0xbb]);
        let mut b = v2(1, 0x11, &a4);
        b.extend_from_slice(b"GET /");
        let h = parse(&b).unwrap();
        assert_eq!(
            h,
            Parsed::Complete(Header {
                len: 16 + a4.len(),
                source: Some("203.0.113.9:4242".parse().unwrap())
            })
        );
        let mut a6 = vec![0u8; 36];
        a6[0] = 0x20;
        a6[1] = 0x01;
        a6[15] = 5;
        a6[32..34].copy_from_slice(&7u16.to_be_bytes());
        let h = parse(&v2(1, 0x21, &a6)).unwrap();
        assert_eq!(
            h,
            Parsed::Complete(Header {
                len: 52,
                source: Some("[2001::5]:7".parse().unwrap())
            })
        );
        // LOCAL: no address, the header is still consumed.
        assert_eq!(
            parse(&v2(0, 0x00, &[])).unwrap(),
            Parsed::Complete(Header {
                len: 16,
                source: None
            })
        );
        // Cut anywhere: partial.
        let whole = v2(1, 0x11, &a4);
        for cut in 1..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Parsed::Partial), "{cut}");
        }
        // Bad version, command, short addresses, oversized.
        let mut bad = v2(1, 0x11, &a4);
        bad[12] = 0x11;
        assert!(matches!(parse(&bad), Err(ProxyError::Malformed(_))));
        assert!(matches!(
            parse(&v2(2, 0x11, &a4)),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x11, &a4[..6])),
            Err(ProxyError::Malformed(_))
        ));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&huge), Err(ProxyError::Malformed(_))));
    }
}
