//! Static files (`--static-map /MOUNT=DIR`, `--static-index NAME`), served before the apps.
//!
//! The decisions are pure functions over bytes, unit-tested at the bottom: which mount a path
//! falls under and which relative file it names ([`relative_path`]: refuses traversal and
//! encoded separators), the validators ([`etag`], [`not_modified`]) and the byte range
//! ([`parse_range`], [`if_range_allows`]). [`serve`] does the I/O on the worker's ring only
//! (statx, openat2: `uring::file`). A body of up to [`SPLICE_MIN`] bytes is read into the
//! output buffer and leaves with the head in one send; a longer one is spliced file → pipe →
//! socket (`uring::splice`), with no copy through user space. Every step waits at most the
//! connection's `--socket-timeout` on the client: a slow client holds its own slot and
//! nothing else.
//!
//! Containment does not rest on the path checks alone: every file is opened with
//! `RESOLVE_BENEATH` relative to the mount's directory (opened once per worker), so `..` and
//! symlinks that leave the directory fail in the kernel even if a check here were wrong.
//!
//! As in uWSGI, only GET and HEAD are served, and a file that does not exist falls through to
//! the app mounted at that path (so an app can serve what the directory lacks).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::config::StaticMount;
use crate::request::Request;
use crate::response::Response;
use crate::uring;
use crate::uring::file::{FileKind, FileStat};

/// Bytes read from a file and sent per step. Large enough that a 1 MiB file is four
/// read+send pairs; small enough that a slot holds little memory while its client is slow.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Bodies longer than this are spliced (file → pipe → socket, no copy through user space);
/// shorter ones are read into the output buffer behind the head and leave with it in one
/// send, which costs less than the extra send and the two io-wq splices (measured in
/// `docs/benchmarks.md`, "Static files (issue #5)").
pub(crate) const SPLICE_MIN: u64 = 64 * 1024;

/// One mounted directory.
#[derive(Debug)]
struct Root {
    /// URL prefix, as in `--mount` (no trailing `/` except `/` itself).
    prefix: String,
    /// The directory, opened once per worker: every lookup is relative to it, beneath it.
    dir: OwnedFd,
}

/// A worker's static mounts. Empty unless `--static-map` was given, and then the per-request
/// cost is one `is_empty()`.
#[derive(Debug, Default)]
pub(crate) struct StaticFiles {
    /// Longest prefix first (the order of `Config::static_maps`).
    roots: Vec<Root>,
    /// `--static-index`.
    index: Option<String>,
}

impl StaticFiles {
    /// Open every mount's directory (at worker start; the master checked they exist).
    pub(crate) fn open(maps: &[StaticMount], index: Option<&str>) -> io::Result<StaticFiles> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut roots = Vec::with_capacity(maps.len());
        for m in maps {
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&m.dir)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("--static-map {}: {}: {e}", m.prefix, m.dir.display()),
                    )
                })?;
            roots.push(Root {
                prefix: m.prefix.clone(),
                dir: dir.into(),
            });
        }
        Ok(StaticFiles {
            roots,
            index: index.map(str::to_owned),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The mount `path` falls under (segment boundary, longest first) and the rest of the
    /// path after its prefix (empty or starting with `/`).
    fn lookup<'p>(&self, path: &'p str) -> Option<(&Root, &'p str)> {
        self.roots.iter().find_map(|r| {
            let rest = if r.prefix == "/" {
                path.strip_prefix('/').map(|_| path)?
            } else {
                path.strip_prefix(r.prefix.as_str())?
            };
            (rest.is_empty() || rest.starts_with('/')).then_some((r, rest))
        })
    }
}

/// Why a path was refused before touching the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A `%` not followed by two hex digits: 400.
    BadEscape,
    /// A `..` segment, before or after decoding: 403.
    Traversal,
    /// `%2f` or `%5c`: a separator smuggled inside a segment: 403.
    EncodedSeparator,
    /// A NUL byte (`%00`): it would cut the path short in the kernel: 403.
    Nul,
    /// A backslash: a separator on other systems, never a legitimate name here: 403.
    Backslash,
}

impl Refusal {
    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::BadEscape => 400,
            _ => 403,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The file named by `rest` (the URL path after the mount prefix), relative to the mount's
/// directory: percent-decoded once, empty and `.` segments dropped, a trailing `/` kept (so
/// that `file.txt/` fails with `ENOTDIR` as it should). `.` for the directory itself.
///
/// Refused: `..` segments before and after decoding, encoded `/` and `\`, NUL, `\`, bad
/// escapes. The result never starts with `/`, so the kernel resolves it from the mount's
/// directory.
pub(crate) fn relative_path(rest: &str) -> Result<Vec<u8>, Refusal> {
    let raw = rest.as_bytes();
    if raw.split(|&b| b == b'/').any(|seg| seg == b"..") {
        return Err(Refusal::Traversal);
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Refusal::BadEscape);
            };
            let c = h << 4 | l;
            match c {
                b'/' | b'\\' => return Err(Refusal::EncodedSeparator),
                0 => return Err(Refusal::Nul),
                _ => decoded.push(c),
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if decoded.contains(&0) {
        return Err(Refusal::Nul);
    }
    if decoded.contains(&b'\\') {
        return Err(Refusal::Backslash);
    }
    let mut out = Vec::with_capacity(decoded.len());
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => return Err(Refusal::Traversal),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(seg);
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    } else if decoded.ends_with(b"/") {
        out.push(b'/');
    }
    Ok(out)
}

/// A strong validator from what changes when the file changes: `"<mtime hex>-<size hex>"`,
/// nginx's shape, with the nanoseconds so that two writes within a second differ.
pub(crate) fn etag(st: &FileStat) -> String {
    if st.mtime_nsec == 0 {
        format!("\"{:x}-{:x}\"", st.mtime, st.size)
    } else {
        format!("\"{:x}.{:x}-{:x}\"", st.mtime, st.mtime_nsec, st.size)
    }
}

/// `Last-Modified` as an IMF-fixdate (RFC 9110 §5.6.7).
fn http_date(mtime: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64);
    httpdate::fmt_http_date(t)
}

/// Whether the client's copy is current: 304 instead of the body.
///
/// RFC 9110 §13.1.2: `If-None-Match` uses the weak comparison (`W/` ignored) and `*` matches
/// any current file; §13.1.3: `If-Modified-Since` is ignored when `If-None-Match` is present,
/// and otherwise holds if the file was not modified after the given date (an unparsable date
/// is ignored).
pub(crate) fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    etag: &str,
    mtime: i64,
) -> bool {
    if let Some(inm) = if_none_match {
        let ours = etag.as_bytes();
        let ours = ours.strip_prefix(b"W/").unwrap_or(ours);
        return inm.split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == ours
        });
    }
    let Some(ims) = if_modified_since else {
        return false;
    };
    let Some(since) = std::str::from_utf8(ims)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
    else {
        return false;
    };
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    mtime <= since
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// No range, several ranges, or one we do not understand: the whole file, 200
    /// (RFC 9110 §14.2: a server MAY ignore the Range header field).
    Whole,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// A valid range that selects nothing (starts at or past the end): 416.
    Unsatisfiable,
}

/// Parse a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110 §14.1.2). `b` past
/// the end is clamped; a suffix longer than the file is the whole file (as a 206).
pub(crate) fn parse_range(header: Option<&[u8]>, size: u64) -> RangeReq {
    let Some(h) = header else {
        return RangeReq::Whole;
    };
    let Some(spec) = std::str::from_utf8(h)
        .ok()
        .and_then(|s| s.trim().strip_prefix("bytes="))
    else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            None => RangeReq::Whole,
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if size == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (a, b) => {
            let Some(start) = num(a) else {
                return RangeReq::Whole;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return RangeReq::Whole,
                }
            };
            if start >= size {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Part {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
    }
}

/// `If-Range` (RFC 9110 §13.1.5): the range applies only if the validator still matches,
/// by strong comparison for an ETag, or the exact `Last-Modified` date; otherwise the client
/// gets the whole (changed) file.
pub(crate) fn if_range_allows(if_range: Option<&[u8]>, etag: &str, last_modified: &str) -> bool {
    match if_range.map(<[u8]>::trim_ascii) {
        None => true,
        Some(v) if v.starts_with(b"W/") => false,
        Some(v) if v.starts_with(b"\"") => v == etag.as_bytes(),
        Some(v) => v == last_modified.as_bytes(),
    }
}

/// Whether an error of stat or open means "no such file here" (fall through to the app).
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG)
    )
}

/// Whether an error of open means "not yours to see": outside the root, or no permission.
fn is_forbidden(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::ELOOP | libc::EACCES | libc::EPERM)
    )
}

/// Serve `req` from a static mount if it names one of its files. `None`: not ours (not GET
/// or HEAD, no mount matches, or no such file): the caller routes it to the app.
pub(crate) async fn serve(
    sf: &StaticFiles,
    req: &Request,
    resp: &mut Response,
) -> Option<io::Result<()>> {
    let method = req.method();
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let (root, rest) = sf.lookup(req.path())?;
    let rel = match relative_path(rest) {
        Ok(rel) => rel,
        Err(why) => {
            tracing::info!("{} {}: refused static path ({why:?})", method, req.target());
            return Some(resp.send_error(why.status()).await);
        }
    };
    let dir = root.dir.as_raw_fd();
    let mut rel = CString::new(rel).expect("NUL refused by relative_path");
    crate::harakiri::note_wait("looking up a static file");
    let mut st = match uring::file::stat_at(dir, rel.clone()).await {
        Ok(st) => st,
        Err(e) if is_missing(&e) => return None,
        Err(e) if is_forbidden(&e) => return Some(resp.send_error(403).await),
        Err(e) => return Some(Err(e)),
    };
    if st.kind == FileKind::Directory {
        let Some(index) = &sf.index else {
            return Some(resp.send_error(403).await);
        };
        let mut p = rel.into_bytes();
        if p == b"." {
            p.clear();
        } else if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(index.as_bytes());
        rel = CString::new(p).expect("index names have no NUL");
        st = match uring::file::stat_at(dir, rel.clone()).await {
            Ok(st) => st,
            Err(e) if is_missing(&e) => return None,
            Err(e) if is_forbidden(&e) => return Some(resp.send_error(403).await),
            Err(e) => return Some(Err(e)),
        };
    }
    if st.kind != FileKind::Regular {
        return Some(resp.send_error(403).await);
    }
    let mime = mime_guess::from_path(std::ffi::OsStr::from_bytes(rel.as_bytes()))
        .first_raw()
        .unwrap_or("application/octet-stream");
    let file = match uring::file::open_beneath(dir, rel).await {
        Ok(f) => f,
        Err(e) if is_missing(&e) => return None,
        Err(e) if is_forbidden(&e) => {
            tracing::info!("{} {}: refused static file: {e}", method, req.target());
            return Some(resp.send_error(403).await);
        }
        Err(e) => return Some(Err(e)),
    };
    // Shared with the ring: an orphaned splice keeps the file open until its final CQE.
    let file = Rc::new(file);
    let r = send_file(req, resp, &file, &st, mime).await;
    if let Ok(file) = Rc::try_unwrap(file) {
        uring::close::close(file);
    }
    Some(r)
}

/// The response for an open regular file: 304, 416, 206 or 200, then the body in chunks.
async fn send_file(
    req: &Request,
    resp: &mut Response,
    file: &Rc<OwnedFd>,
    st: &FileStat,
    mime: &str,
) -> io::Result<()> {
    let tag = etag(st);
    let last_modified = http_date(st.mtime);
    resp.header("ETag", &tag);
    resp.header("Last-Modified", &last_modified);
    if not_modified(
        req.header("if-none-match"),
        req.header("if-modified-since"),
        &tag,
        st.mtime,
    ) {
        resp.start_sized(304, 0)?;
        return resp.finish().await;
    }
    resp.header("Accept-Ranges", "bytes");
    let range = if if_range_allows(req.header("if-range"), &tag, &last_modified) {
        parse_range(req.header("range"), st.size)
    } else {
        RangeReq::Whole
    };
    let (status, start, len) = match range {
        RangeReq::Whole => (200, 0, st.size),
        RangeReq::Part { start, end } => {
            resp.header("Content-Range", format!("bytes {start}-{end}/{}", st.size));
            (206, start, end - start + 1)
        }
        RangeReq::Unsatisfiable => {
            resp.header("Content-Range", format!("bytes */{}", st.size));
            resp.header("Content-Type", "text/plain; charset=utf-8");
            return resp.send(416, "416 Range Not Satisfiable\n").await;
        }
    };
    resp.header("Content-Type", mime);
    resp.start_sized(status, len)?;
    if !resp.head_only && len > SPLICE_MIN {
        match uring::splice::Pipe::take() {
            Ok(pipe) => {
                resp.splice_body(file, start, len, pipe).await?;
                return resp.finish().await;
            }
            // No pipe (descriptor limit): the copying path below still works.
            Err(e) => tracing::debug!("no pipe for a static body, reading it instead: {e}"),
        }
    }
    if !resp.head_only {
        let fd = file.as_raw_fd();
        let end = start + len;
        let mut off = start;
        while off < end {
            let want = (end - off).min(CHUNK as u64) as usize;
            let n = resp
                .write_filled(|buf| uring::file::read_at(fd, buf, off, want))
                .await?;
            if n == 0 {
                // The file shrank since statx: the promised length cannot be met.
                break;
            }
            off += n as u64;
        }
    }
    resp.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_safety_table() {
        use Refusal::*;
        let ok = |p: &str| relative_path(p).map(|v| String::from_utf8(v).unwrap());
        let table: &[(&str, Result<&str, Refusal>)] = &[
            ("", Ok(".")),
            ("/", Ok(".")),
            ("/a.txt", Ok("a.txt")),
            ("/sub/a.txt", Ok("sub/a.txt")),
            ("//sub///a.txt", Ok("sub/a.txt")),
            ("/./a.txt", Ok("a.txt")),
            ("/sub/", Ok("sub/")),
            ("/a.txt/", Ok("a.txt/")),
            ("/hello%20world.txt", Ok("hello world.txt")),
            ("/%7euser", Ok("~user")),
            // Decoded once: %252e is the literal name "%2e", not "."
            ("/%252e%252e/x", Ok("%2e%2e/x")),
            ("/..", Err(Traversal)),
            ("/../etc/passwd", Err(Traversal)),
            ("/sub/../../x", Err(Traversal)),
            ("/sub/..", Err(Traversal)),
            ("/%2e%2e/etc/passwd", Err(Traversal)),
            ("/%2E%2E/x", Err(Traversal)),
            ("/.%2e/x", Err(Traversal)),
            ("/sub/%2e%2e", Err(Traversal)),
            ("/..%2fetc", Err(EncodedSeparator)),
            ("/a%2fb", Err(EncodedSeparator)),
            ("/a%2Fb", Err(EncodedSeparator)),
            ("/a%5cb", Err(EncodedSeparator)),
            ("/a.txt%00.png", Err(Nul)),
            ("/a\\..\\b", Err(Backslash)),
            ("/a%", Err(BadEscape)),
            ("/a%2", Err(BadEscape)),
            ("/a%zz", Err(BadEscape)),
        ];
        for (path, want) in table {
            let got = ok(path);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{path:?}");
        }
        assert_eq!(relative_path("/%ff").unwrap(), vec![0xff]);
        assert_eq!(Refusal::BadEscape.status(), 400);
        assert_eq!(Refusal::Traversal.status(), 403);
    }

    #[test]
    fn range_table() {
        use RangeReq::*;
        let r = |h: &str, size| parse_range(Some(h.as_bytes()), size);
        let part = |start, end| Part { start, end };
        let table: &[(&str, u64, RangeReq)] = &[
            ("bytes=0-99", 1000, part(0, 99)),
            ("bytes=100-", 1000, part(100, 999)),
            ("bytes=-100", 1000, part(900, 999)),
            ("bytes=-5000", 1000, part(0, 999)),
            ("bytes=990-5000", 1000, part(990, 999)),
            ("bytes=999-999", 1000, part(999, 999)),
            (" bytes=0-0 ", 1000, part(0, 0)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=5000-6000", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=0-1,5-6", 1000, Whole),
            ("bytes=5-1", 1000, Whole),
            ("bytes=a-b", 1000, Whole),
            ("bytes=-", 1000, Whole),
            ("bytes=+1-2", 1000, Whole),
            ("items=0-1", 1000, Whole),
            ("bytes=0-99999999999999999999999", 1000, Whole),
        ];
        for (h, size, want) in table {
            assert_eq!(r(h, *size), *want, "{h:?} of {size}");
        }
        assert_eq!(parse_range(None, 10), Whole);
    }

    #[test]
    fn conditional_table() {
        let st = FileStat {
            kind: FileKind::Regular,
            size: 0x1234,
            mtime: 1_700_000_000,
            mtime_nsec: 0,
        };
        let tag = etag(&st);
        assert_eq!(tag, "\"6553f100-1234\"");
        let date = http_date(st.mtime);
        assert_eq!(date, "Tue, 14 Nov 2023 22:13:20 GMT");
        let before = http_date(st.mtime - 1);
        let after = http_date(st.mtime + 1);
        let w = format!("W/{tag}");
        let list = format!("\"x\", {tag}");
        let b = |s: &str| Some(s.as_bytes().to_vec());
        type Case = (Option<Vec<u8>>, Option<Vec<u8>>, bool);
        let table: Vec<Case> = vec![
            (None, None, false),
            (b(&tag), None, true),
            (b(&w), None, true),
            (b(&list), None, true),
            (b("*"), None, true),
            (b("\"other\""), None, false),
            // If-None-Match takes precedence over a matching If-Modified-Since.
            (b("\"other\""), b(&date), false),
            (None, b(&date), true),
            (None, b(&after), true),
            (None, b(&before), false),
            (None, b("not a date"), false),
        ];
        for (inm, ims, want) in table {
            assert_eq!(
                not_modified(inm.as_deref(), ims.as_deref(), &tag, st.mtime),
                want,
                "{inm:?} {ims:?}"
            );
        }
        let ns = FileStat {
            mtime_nsec: 5,
            ..st
        };
        assert_ne!(etag(&ns), tag, "sub-second changes change the tag");
    }

    #[test]
    fn if_range_table() {
        let tag = "\"1-2\"";
        let lm = "Tue, 14 Nov 2023 22:13:20 GMT";
        assert!(if_range_allows(None, tag, lm));
        assert!(if_range_allows(Some(tag.as_bytes()), tag, lm));
        assert!(!if_range_allows(Some(b"\"1-3\""), tag, lm));
        assert!(!if_range_allows(Some(b"W/\"1-2\""), tag, lm));
        assert!(if_range_allows(Some(lm.as_bytes()), tag, lm));
        assert!(!if_range_allows(
            Some(b"Wed, 15 Nov 2023 22:13:20 GMT"),
            tag,
            lm
        ));
    }

    #[test]
    fn lookup_longest_mount_on_segment_boundary() {
        let fd = || -> OwnedFd { std::fs::File::open("/").unwrap().into() };
        let sf = StaticFiles {
            roots: vec![
                Root {
                    prefix: "/s/deep".into(),
                    dir: fd(),
                },
                Root {
                    prefix: "/s".into(),
                    dir: fd(),
                },
            ],
            index: None,
        };
        fn hit<'a>(sf: &'a StaticFiles, p: &'a str) -> Option<(&'a str, &'a str)> {
            sf.lookup(p).map(|(r, rest)| (r.prefix.as_str(), rest))
        }
        let hit = |p| hit(&sf, p);
        assert_eq!(hit("/s"), Some(("/s", "")));
        assert_eq!(hit("/s/a.txt"), Some(("/s", "/a.txt")));
        assert_eq!(hit("/s/deep/x"), Some(("/s/deep", "/x")));
        assert_eq!(hit("/s/deeper"), Some(("/s", "/deeper")));
        assert_eq!(hit("/sx/a"), None);
        assert_eq!(hit("/other"), None);
        let root = StaticFiles {
            roots: vec![Root {
                prefix: "/".into(),
                dir: fd(),
            }],
            index: None,
        };
        assert_eq!(root.lookup("/a/b").map(|(_, r)| r), Some("/a/b"));
        assert!(root.lookup("*").is_none());
    }
}
