//! The uwsgi binary protocol (`--socket`): the packet parser and the conversion of its vars
//! into an HTTP/1.1 request head.
//!
//! A request packet is a 4-byte header, `modifier1` (u8), `datasize` (u16, little-endian),
//! `modifier2` (u8), then `datasize` bytes of vars: repeated `u16-LE key length, key, u16-LE
//! value length, value`. The request body (`CONTENT_LENGTH` bytes) follows on the same stream.
//!
//! Rather than give the application a second request representation, the vars are rewritten
//! into the HTTP/1.1 head they describe ([`to_http_head`]) and indexed by
//! [`http::parse_head`](super::http::parse_head); the CGI facts a head cannot carry (scheme,
//! server name and port, the real client) come back beside it as [`CgiMeta`].
//!
//! uWSGI closes the connection without a word on a packet it refuses (nginx then answers 502
//! and logs "upstream prematurely closed"); every error here has an HTTP status instead, so
//! the connection can answer it.

use std::net::{IpAddr, SocketAddr};

use super::http::Span;
use super::{ParseError, Parsed};

/// Bytes of the packet header.
pub const HEADER_LEN: usize = 4;

/// `modifier1` of a request for the application (nginx's `uwsgi_modifier1` default).
pub const MODIFIER_REQUEST: u8 = 0;

/// `modifier1` of a ping (`uwsgi --ping`, uWSGI's `UWSGI_MODIFIER_PING`).
pub const MODIFIER_PING: u8 = 100;

/// The answer to a ping, as uWSGI's ping plugin sends it: the request's header with
/// `modifier2` = 1 and `datasize` = 0 (uWSGI puts its "warning message" in the body when one is
/// set; there is no such thing here, so the body is always empty, which `uwsgi --ping` reads
/// as healthy).
pub const PONG: [u8; HEADER_LEN] = [MODIFIER_PING, 0, 0, 1];

/// Limits applied while parsing a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest vars block (`--buffer-size`). A larger `datasize` is refused with 431 as
    /// soon as the header is read, before the block itself is.
    pub buffer_size: usize,
    /// The most key/value pairs (`--max-vars`); more is refused with 431.
    pub max_vars: usize,
}

/// A complete, checked packet at the start of the buffer given to [`parse_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// What the packet asks for: [`MODIFIER_REQUEST`] or [`MODIFIER_PING`].
    pub modifier1: u8,
    /// The size of the vars block.
    pub datasize: u16,
    /// Unused for requests; passed on as sent.
    pub modifier2: u8,
    /// The number of key/value pairs (0 for a ping: its block is not looked at).
    pub vars: usize,
}

impl Packet {
    /// Bytes of the packet, header included: the request body starts here.
    pub fn len(&self) -> usize {
        HEADER_LEN + usize::from(self.datasize)
    }

    /// Never true: a packet has at least its header (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The vars block of this packet in `buf` (the buffer it was parsed from).
    pub fn block<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[HEADER_LEN..self.len()]
    }
}

/// Parse the packet at the start of `buf`.
///
/// `Partial` until the header and the whole vars block are in `buf`; bytes after the block (the
/// start of the body) are not looked at. Errors:
/// - [`ParseError::UwsgiTooLarge`] (431) when `datasize` is over `limits.buffer_size`, decided
///   from the header alone;
/// - [`ParseError::UnsupportedModifier`] (501) for a `modifier1` other than 0 and 100, also
///   from the header alone;
/// - [`ParseError::Malformed`] (400) for a key or value that runs past the block, a block that
///   ends inside a length, or an empty key (uWSGI: "uwsgi key cannot be null");
/// - [`ParseError::TooManyVars`] (431) beyond `limits.max_vars` pairs.
pub fn parse_packet(buf: &[u8], limits: &Limits) -> Result<Parsed<Packet>, ParseError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Parsed::Partial);
    };
    let [modifier1, lo, hi, modifier2] = *header;
    let datasize = u16::from_le_bytes([lo, hi]);
    if usize::from(datasize) > limits.buffer_size {
        return Err(ParseError::UwsgiTooLarge);
    }
    if modifier1 != MODIFIER_REQUEST && modifier1 != MODIFIER_PING {
        return Err(ParseError::UnsupportedModifier(modifier1));
    }
    let end = HEADER_LEN + usize::from(datasize);
    if buf.len() < end {
        return Ok(Parsed::Partial);
    }
    let vars = if modifier1 == MODIFIER_PING {
        0
    } else {
        count_vars(&buf[HEADER_LEN..end], limits.max_vars)?
    };
    Ok(Parsed::Complete(Packet {
        modifier1,
        datasize,
        modifier2,
        vars,
    }))
}

/// Check the framing of a whole vars block; returns the number of pairs.
fn count_vars(mut block: &[u8], max_vars: usize) -> Result<usize, ParseError> {
    let mut n = 0;
    while !block.is_empty() {
        let (key, rest) = take_string(block)?;
        if key.is_empty() {
            return Err(ParseError::Malformed("uwsgi var with an empty name"));
        }
        let (_, rest) = take_string(rest)?;
        n += 1;
        if n > max_vars {
            return Err(ParseError::TooManyVars);
        }
        block = rest;
    }
    Ok(n)
}

/// Split a `u16-LE length, bytes` string off the front of `b`.
fn take_string(b: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let Some((len, rest)) = b.split_first_chunk::<2>() else {
        return Err(ParseError::Malformed(
            "uwsgi vars block ends inside a length",
        ));
    };
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return Err(ParseError::Malformed("uwsgi var runs past the vars block"));
    }
    Ok(rest.split_at(len))
}

/// The key/value pairs of a vars block, in order.
///
/// Stops at the first framing error; [`parse_packet`] has checked the block of a
/// [`Packet`], so on one there is none.
#[derive(Debug, Clone)]
pub struct Vars<'b> {
    rest: &'b [u8],
}

/// Iterate over the pairs of a vars block (e.g. [`Packet::block`]).
pub fn vars(block: &[u8]) -> Vars<'_> {
    Vars { rest: block }
}

impl<'b> Iterator for Vars<'b> {
    type Item = (&'b [u8], &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, rest) = take_string(self.rest).ok()?;
        let (value, rest) = take_string(rest).ok()?;
        self.rest = rest;
        Some((key, value))
    }
}

/// Append a packet with `vars` to `out` (what nginx's uwsgi module sends): for clients, tests
/// and benchmarks.
///
/// # Panics
///
/// If a key, a value or the whole block is longer than 65 535 bytes: the format cannot say so.
pub fn encode(out: &mut Vec<u8>, modifier1: u8, modifier2: u8, vars: &[(&[u8], &[u8])]) {
    let start = out.len();
    out.extend_from_slice(&[modifier1, 0, 0, modifier2]);
    for (k, v) in vars {
        for s in [k, v] {
            let len = u16::try_from(s.len()).expect("uwsgi string longer than 65535 bytes");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s);
        }
    }
    let size = u16::try_from(out.len() - start - HEADER_LEN).expect("uwsgi vars over 64 KiB");
    out[start + 1..start + 3].copy_from_slice(&size.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Vars -> HTTP/1.1 head
// ---------------------------------------------------------------------------------------------

/// What a uwsgi request says about itself that an HTTP head does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgiMeta {
    /// The client spoke TLS to the front server: `UWSGI_SCHEME` or `REQUEST_SCHEME` is
    /// `https`, or `HTTPS` is `on` or `1`.
    pub https: bool,
    /// `SERVER_NAME` (else the `Host` without its port), in the buffer [`to_http_head`] wrote,
    /// after the head.
    pub server_name: Span,
    /// `SERVER_PORT`, if it is a port number.
    pub server_port: Option<u16>,
    /// The real client, from `REMOTE_ADDR` and `REMOTE_PORT` (port 0 if absent), if
    /// `REMOTE_ADDR` is an IP address (nginx on a unix socket sends `unix:`).
    pub remote: Option<SocketAddr>,
}

/// Vars that would contradict the packet's framing or talk to the front server rather than to
/// us: the uwsgi body is exactly `CONTENT_LENGTH` bytes whatever the client's framing was, the
/// connection is never kept alive, and a `100 Continue` sent to nginx would be taken for the
/// response (nginx has already answered the client's `Expect`).
const DROPPED: [&[u8]; 5] = [
    b"TRANSFER_ENCODING",
    b"CONTENT_LENGTH",
    b"CONTENT_TYPE",
    b"CONNECTION",
    b"EXPECT",
];

/// Write into `out` (cleared first) the HTTP/1.1 request head that the vars `block` of a
/// request packet describe, followed by the server name that [`CgiMeta::server_name`] spans.
///
/// - request line: `REQUEST_METHOD`, then `REQUEST_URI`, or `PATH_INFO` (percent-encoded
///   again, `/` if empty) plus `?QUERY_STRING` when it is absent, then `HTTP/1.0` if
///   `SERVER_PROTOCOL` says so and `HTTP/1.1` otherwise (nginx sends `HTTP/2.0` for an h2
///   client; what reaches us is one request with a known length either way);
/// - one header per `HTTP_*` var in order (`HTTP_X_FOO` → `X-Foo`), except those in
///   [`DROPPED`]; `Host` from `SERVER_NAME` if there is no `HTTP_HOST`;
/// - `Content-Type` from `CONTENT_TYPE` (else `HTTP_CONTENT_TYPE`) and `Content-Length` from
///   `CONTENT_LENGTH`, when not empty (nginx sends both, empty, for a request without a body).
///
/// Of a var sent twice the last one counts, as in uWSGI. A value that goes into the head and
/// holds CR, LF or NUL (or whitespace, in the method and `REQUEST_URI`) is refused with
/// [`ParseError::Malformed`] rather than cleaned: it could only come from a broken or hostile
/// front server.
pub fn to_http_head(block: &[u8], out: &mut Vec<u8>) -> Result<CgiMeta, ParseError> {
    out.clear();
    let mut method = None;
    let mut uri = None;
    let mut path_info = None;
    let mut query = None;
    let mut protocol = None;
    let mut content_type = None;
    let mut http_content_type = None;
    let mut content_length = None;
    let mut server_name = None;
    let mut server_port = None;
    let mut http_host = false;
    let mut scheme = None;
    let mut https = None;
    let mut remote_addr = None;
    let mut remote_port = None;
    for (k, v) in vars(block) {
        match k {
            b"REQUEST_METHOD" => method = Some(v),
            b"REQUEST_URI" => uri = Some(v),
            b"PATH_INFO" => path_info = Some(v),
            b"QUERY_STRING" => query = Some(v),
            b"SERVER_PROTOCOL" => protocol = Some(v),
            b"CONTENT_TYPE" => content_type = Some(v),
            b"HTTP_CONTENT_TYPE" => http_content_type = Some(v),
            b"CONTENT_LENGTH" => content_length = Some(v),
            b"SERVER_NAME" => server_name = Some(v),
            b"SERVER_PORT" => server_port = Some(v),
            b"HTTP_HOST" => http_host = true,
            b"UWSGI_SCHEME" => scheme = Some(v),
            b"REQUEST_SCHEME" => scheme = scheme.or(Some(v)),
            b"HTTPS" => https = Some(v),
            b"REMOTE_ADDR" => remote_addr = Some(v),
            b"REMOTE_PORT" => remote_port = Some(v),
            _ => {}
        }
    }

    // Request line.
    let method = method.ok_or(ParseError::Malformed(
        "uwsgi request without REQUEST_METHOD",
    ))?;
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::Malformed("uwsgi REQUEST_METHOD is not a token"));
    }
    out.extend_from_slice(method);
    out.push(b' ');
    match uri.filter(|u| !u.is_empty()) {
        Some(uri) => {
            if !uri.iter().all(|&b| b.is_ascii_graphic() || b >= 0x80) {
                return Err(ParseError::Malformed(
                    "uwsgi REQUEST_URI holds whitespace or control bytes",
                ));
            }
            out.extend_from_slice(uri);
        }
        None => {
            let path = path_info.unwrap_or_default();
            if !path.starts_with(b"/") {
                out.push(b'/');
            }
            percent_encode_path(out, path);
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                if !q.iter().all(|&b| b.is_ascii_graphic() || b >= 0x80) {
                    return Err(ParseError::Malformed(
                        "uwsgi QUERY_STRING holds whitespace or control bytes",
                    ));
                }
                out.push(b'?');
                out.extend_from_slice(q);
            }
        }
    }
    out.extend_from_slice(if protocol == Some(b"HTTP/1.0") {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

    // Headers.
    for (k, v) in vars(block) {
        let Some(name) = k.strip_prefix(b"HTTP_") else {
            continue;
        };
        if DROPPED.contains(&name) {
            continue;
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ParseError::Malformed(
                "uwsgi HTTP_ var name is not a header name",
            ));
        }
        let mut upper = true;
        for &b in name {
            if b == b'_' {
                out.push(b'-');
                upper = true;
            } else {
                out.push(if upper {
                    b.to_ascii_uppercase()
                } else {
                    b.to_ascii_lowercase()
                });
                upper = false;
            }
        }
        push_value(out, v)?;
    }
    if !http_host && let Some(name) = server_name {
        out.extend_from_slice(b"Host");
        push_value(out, name)?;
    }
    if let Some(ct) = content_type.or(http_content_type).filter(|v| !v.is_empty()) {
        out.extend_from_slice(b"Content-Type");
        push_value(out, ct)?;
    }
    if let Some(cl) = content_length.filter(|v| !v.is_empty()) {
        out.extend_from_slice(b"Content-Length");
        push_value(out, cl)?;
    }
    out.extend_from_slice(b"\r\n");

    // The CGI facts.
    let is = |v: Option<&[u8]>, what: &[u8]| v.is_some_and(|v| v.eq_ignore_ascii_case(what));
    let https = match scheme {
        Some(s) => s.eq_ignore_ascii_case(b"https"),
        None => is(https, b"on") || is(https, b"1"),
    };
    let name_start = out.len();
    match server_name {
        Some(name) => {
            if has_ctl(name) {
                return Err(ParseError::Malformed(
                    "uwsgi SERVER_NAME holds CR, LF or NUL",
                ));
            }
            out.extend_from_slice(name);
        }
        None => {
            // The Host header, without its port.
            let host = vars(block)
                .filter(|(k, _)| *k == b"HTTP_HOST")
                .last()
                .map(|(_, v)| v)
                .unwrap_or_default();
            out.extend_from_slice(split_host_port(host).0);
        }
    }
    let server_name = Span {
        start: name_start as u32,
        len: (out.len() - name_start) as u32,
    };
    let server_port = server_port.and_then(parse_port);
    let remote = remote_addr
        .and_then(|a| std::str::from_utf8(a).ok()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, remote_port.and_then(parse_port).unwrap_or(0)));
    Ok(CgiMeta {
        https,
        server_name,
        server_port,
        remote,
    })
}

/// Append `: value\r\n`, refusing a value that would end the header line early.
fn push_value(out: &mut Vec<u8>, v: &[u8]) -> Result<(), ParseError> {
    if has_ctl(v) {
        return Err(ParseError::Malformed("uwsgi var value holds CR, LF or NUL"));
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

fn has_ctl(v: &[u8]) -> bool {
    v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
/// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `PATH_INFO` is decoded (nginx's `$document_uri`): encode again what cannot stand in a
/// request-target or would change its meaning there (`%`, `?`, `#`).
fn percent_encode_path(out: &mut Vec<u8>, path: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in path {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

fn parse_port(v: &[u8]) -> Option<u16> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Split `host[:port]` (or `[v6]:port`); the port is `None` when absent or not a number.
pub fn split_host_port(host: &[u8]) -> (&[u8], Option<u16>) {
    if let Some(colon) = host.iter().rposition(|&b| b == b':') {
        let (name, port) = (&host[..colon], &host[colon + 1..]);
        // A colon inside brackets, or a bare IPv6 address, is not a port separator.
        if !port.contains(&b']') && (!name.contains(&b':') || name.ends_with(b"]")) {
            return (name, parse_port(port));
        }
    }
    (host, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{self, BodyFraming, HeadIndex};
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        buffer_size: 4096,
        max_vars: 128,
    };

    fn packet(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        let v: Vec<(&[u8], &[u8])> = vars
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        encode(&mut out, 0, 0, &v);
        out
    }

    fn head(vars: &[(&str, &str)]) -> Result<(String, CgiMeta, String), ParseError> {
        let p = packet(vars);
        let mut out = Vec::new();
        let meta = to_http_head(&p[HEADER_LEN..], &mut out)?;
        let name = String::from_utf8(meta.server_name.of(&out).to_vec()).unwrap();
        out.truncate(meta.server_name.start as usize);
        Ok((String::from_utf8(out).unwrap(), meta, name))
    }

    #[test]
    fn packet_is_byte_exact() {
        let p = packet(&[("A", "bc"), ("", "")]);
        assert_eq!(p, b"\0\x0b\0\0\x01\0A\x02\0bc\0\0\0\0");
    }

    #[test]
    fn parses_a_packet_and_ignores_the_body_after_it() {
        let mut p = packet(&[("REQUEST_METHOD", "GET"), ("X", "")]);
        let len = p.len();
        p.extend_from_slice(b"body");
        let got = parse_packet(&p, &LIMITS).unwrap();
        assert_eq!(
            got,
            Parsed::Complete(Packet {
                modifier1: 0,
                datasize: (len - 4) as u16,
                modifier2: 0,
                vars: 2
            })
        );
        let Parsed::Complete(pk) = got else {
            unreachable!()
        };
        assert_eq!(pk.len(), len);
        let all: Vec<_> = vars(pk.block(&p)).collect();
        assert_eq!(all, [(&b"REQUEST_METHOD"[..], &b"GET"[..]), (b"X", b"")]);
    }

    #[test]
    fn every_prefix_is_partial() {
        let p = packet(&[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/")]);
        for n in 0..p.len() {
            assert_eq!(parse_packet(&p[..n], &LIMITS), Ok(Parsed::Partial), "{n}");
        }
    }

    #[test]
    fn datasize_over_buffer_size_is_431_from_the_header_alone() {
        let small = Limits {
            buffer_size: 512,
            max_vars: 128,
        };
        let e = parse_packet(&[0, 0x01, 0x02, 0], &small).unwrap_err();
        assert_eq!(e, ParseError::UwsgiTooLarge);
        assert_eq!(e.status(), 431);
        assert!(e.describe().contains("--buffer-size"));
        // Exactly at the limit is fine (and partial).
        assert_eq!(
            parse_packet(&[0, 0x00, 0x02, 0], &small),
            Ok(Parsed::Partial)
        );
    }

    #[test]
    fn too_many_vars_is_431_naming_max_vars() {
        let few = Limits {
            buffer_size: 4096,
            max_vars: 2,
        };
        let ok = packet(&[("A", "1"), ("B", "2")]);
        assert!(matches!(parse_packet(&ok, &few), Ok(Parsed::Complete(_))));
        let over = packet(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let e = parse_packet(&over, &few).unwrap_err();
        assert_eq!(e, ParseError::TooManyVars);
        assert_eq!(e.status(), 431);
        assert!(e.describe().contains("--max-vars"));
    }

    #[test]
    fn truncated_or_overrunning_vars_are_400() {
        let cases: [&[u8]; 5] = [
            b"\0\x01\0\0\x01",            // block ends inside a key length
            b"\0\x04\0\0\x05\0AB",        // key runs past the block
            b"\0\x04\0\0\x01\0A\x01",     // block ends inside a value length
            b"\0\x05\0\0\x01\0A\x09\0",   // value runs past the block
            b"\0\x05\0\0\0\0\x01\0x\0\0", // empty key (and a body after)
        ];
        for c in cases {
            let e = parse_packet(c, &LIMITS).unwrap_err();
            assert!(matches!(e, ParseError::Malformed(_)), "{c:?}: {e:?}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn ping_and_other_modifiers() {
        assert_eq!(
            parse_packet(&[100, 0, 0, 0], &LIMITS),
            Ok(Parsed::Complete(Packet {
                modifier1: 100,
                datasize: 0,
                modifier2: 0,
                vars: 0
            }))
        );
        let e = parse_packet(&[5, 0, 0, 0], &LIMITS).unwrap_err();
        assert_eq!(e, ParseError::UnsupportedModifier(5));
        assert_eq!(e.status(), 501);
    }

    #[test]
    fn nginx_request_becomes_an_http_head() {
        let (h, meta, name) = head(&[
            ("QUERY_STRING", "a=1"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
            ("REQUEST_URI", "/echo/x?a=1"),
            ("PATH_INFO", "/echo/x"),
            ("DOCUMENT_ROOT", "/srv"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "https"),
            ("HTTPS", "on"),
            ("REMOTE_ADDR", "10.1.2.3"),
            ("REMOTE_PORT", "5555"),
            ("SERVER_PORT", "443"),
            ("SERVER_NAME", "example.org"),
            ("HTTP_HOST", "example.org:8443"),
            ("HTTP_X_FORWARDED_FOR", "1.1.1.1"),
            ("HTTP_CONTENT_LENGTH", "3"),
            ("HTTP_CONTENT_TYPE", "text/plain"),
            ("HTTP_TRANSFER_ENCODING", "chunked"),
            ("HTTP_CONNECTION", "keep-alive"),
            ("HTTP_EXPECT", "100-continue"),
            ("HTTP_ACCEPT", "*/*"),
        ])
        .unwrap();
        assert_eq!(
            h,
            "POST /echo/x?a=1 HTTP/1.1\r\nHost: example.org:8443\r\nX-Forwarded-For: 1.1.1.1\r\n\
             Accept: */*\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
        );
        assert_eq!(name, "example.org");
        assert!(meta.https);
        assert_eq!(meta.server_port, Some(443));
        assert_eq!(meta.remote, Some("10.1.2.3:5555".parse().unwrap()));

        let mut idx = HeadIndex::default();
        let limits = http::Limits {
            max_head: 8192,
            max_body: None,
            max_headers: 100,
        };
        assert_eq!(
            http::parse_head(h.as_bytes(), &limits, &mut idx),
            Ok(Parsed::Complete(h.len()))
        );
        assert_eq!(idx.framing, BodyFraming::Length(3));
        assert!(!idx.expect_continue);
    }

    #[test]
    fn fallbacks_path_info_host_scheme() {
        let (h, meta, name) = head(&[
            ("REQUEST_METHOD", "GET"),
            ("PATH_INFO", "/a b/100%?#"),
            ("QUERY_STRING", "q=1"),
            ("SERVER_PROTOCOL", "HTTP/1.0"),
            ("SERVER_NAME", "srv"),
            ("SERVER_PORT", "x"),
            ("UWSGI_SCHEME", "http"),
            ("HTTPS", "on"),
            ("REMOTE_ADDR", "unix:"),
            ("CONTENT_LENGTH", ""),
        ])
        .unwrap();
        assert_eq!(
            h,
            "GET /a%20b/100%25%3F%23?q=1 HTTP/1.0\r\nHost: srv\r\n\r\n"
        );
        assert_eq!(name, "srv");
        assert!(!meta.https, "UWSGI_SCHEME wins over HTTPS");
        assert_eq!(meta.server_port, None);
        assert_eq!(meta.remote, None);

        let (h, meta, name) = head(&[
            ("REQUEST_METHOD", "GET"),
            ("SERVER_PROTOCOL", "HTTP/2.0"),
            ("HTTP_HOST", "[::1]:81"),
            ("HTTPS", "1"),
            ("REMOTE_ADDR", "::1"),
        ])
        .unwrap();
        assert_eq!(h, "GET / HTTP/1.1\r\nHost: [::1]:81\r\n\r\n");
        assert_eq!(name, "[::1]");
        assert!(meta.https);
        assert_eq!(meta.remote, Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn injection_is_refused() {
        let bad: &[&[(&str, &str)]] = &[
            &[("REQUEST_METHOD", "GET"), ("HTTP_X", "a\r\nX-Evil: 1")],
            &[("REQUEST_METHOD", "GET"), ("HTTP_X", "a\0")],
            &[("REQUEST_METHOD", "GET"), ("HTTP_X\r\nY", "1")],
            &[("REQUEST_METHOD", "GET"), ("HTTP_X Y", "1")],
            &[("REQUEST_METHOD", "GET"), ("HTTP_", "1")],
            &[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/ HTTP/1.1\r\n")],
            &[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/a b")],
            &[("REQUEST_METHOD", "GET /x"), ("REQUEST_URI", "/")],
            &[("REQUEST_METHOD", "GET"), ("QUERY_STRING", "a\nb")],
            &[("REQUEST_METHOD", "GET"), ("SERVER_NAME", "a\rb")],
            &[("REQUEST_METHOD", "GET"), ("CONTENT_TYPE", "a\nb")],
            &[("REQUEST_URI", "/")],
        ];
        for vars in bad {
            let e = head(vars).unwrap_err();
            assert_eq!(e.status(), 400, "{vars:?}");
        }
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port(b"a:80"), (&b"a"[..], Some(80)));
        assert_eq!(split_host_port(b"a"), (&b"a"[..], None));
        assert_eq!(split_host_port(b"[::1]:8"), (&b"[::1]"[..], Some(8)));
        assert_eq!(split_host_port(b"[::1]"), (&b"[::1]"[..], None));
        assert_eq!(split_host_port(b"::1"), (&b"::1"[..], None));
        assert_eq!(split_host_port(b"a:x"), (&b"a"[..], None));
    }

    fn var_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            prop::collection::vec(any::<u8>(), 1..40),
            prop::collection::vec(any::<u8>(), 0..200),
        )
    }

    proptest! {
        #[test]
        fn any_encoded_vars_round_trip(
            vs in prop::collection::vec(var_strategy(), 0..60),
            m2 in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let refs: Vec<(&[u8], &[u8])> =
                vs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            let mut p = Vec::new();
            encode(&mut p, 0, m2, &refs);
            let len = p.len();
            p.extend_from_slice(&body);
            let limits = Limits { buffer_size: 65535, max_vars: 60 };
            let Parsed::Complete(pk) = parse_packet(&p, &limits).unwrap() else {
                panic!("partial");
            };
            prop_assert_eq!(pk.len(), len);
            prop_assert_eq!(pk.vars, vs.len());
            prop_assert_eq!(pk.modifier2, m2);
            let back: Vec<(&[u8], &[u8])> = vars(pk.block(&p)).collect();
            prop_assert_eq!(back, refs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            small in any::<bool>(),
        ) {
            let limits = Limits {
                buffer_size: if small { 64 } else { 65535 },
                max_vars: if small { 3 } else { 128 },
            };
            match parse_packet(&bytes, &limits) {
                Ok(Parsed::Complete(pk)) => {
                    prop_assert_eq!(pk.len(), 4 + usize::from(u16::from_le_bytes([bytes[1], bytes[2]])));
                    prop_assert!(pk.len() <= bytes.len());
                    prop_assert_eq!(vars(pk.block(&bytes)).count(), pk.vars);
                    let mut out = Vec::new();
                    if let Ok(meta) = to_http_head(pk.block(&bytes), &mut out) {
                        prop_assert!(meta.server_name.range().end <= out.len());
                    }
                }
                Ok(Parsed::Partial) => prop_assert!(
                    bytes.len() < 4
                        || bytes.len() < 4 + usize::from(u16::from_le_bytes([bytes[1], bytes[2]]))
                ),
                Err(e) => prop_assert!(matches!(e.status(), 400 | 431 | 501)),
            }
        }

        #[test]
        fn converted_heads_never_inject(
            vs in prop::collection::vec(var_strategy(), 0..20),
        ) {
            // Half the names as HTTP_* so that they become header lines.
            let keys: Vec<Vec<u8>> = vs
                .iter()
                .enumerate()
                .map(|(i, (k, _))| if i % 2 == 0 { [b"HTTP_", &k[..]].concat() } else { k.clone() })
                .collect();
            let mut refs: Vec<(&[u8], &[u8])> = vec![(b"REQUEST_METHOD", b"GET")];
            refs.extend(keys.iter().zip(&vs).map(|(k, (_, v))| (k.as_slice(), v.as_slice())));
            let mut p = Vec::new();
            encode(&mut p, 0, 0, &refs);
            let mut out = Vec::new();
            if let Ok(meta) = to_http_head(&p[4..], &mut out) {
                let h = &out[..meta.server_name.start as usize];
                // Exactly one empty line, at the end, and no bare CR or LF.
                let end = h.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                prop_assert_eq!(end + 4, h.len());
                for (i, &b) in h.iter().enumerate() {
                    if b == b'\n' { prop_assert_eq!(h[i - 1], b'\r'); }
                    if b == b'\r' { prop_assert_eq!(h[i + 1], b'\n'); }
                    prop_assert_ne!(b, 0);
                }
            }
        }
    }
}
