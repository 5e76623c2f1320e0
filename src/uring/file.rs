//! Files through the ring: stat and open beneath a directory, read at an offset.
//!
//! These run on the worker's ring like recv and send, so a page-cache miss or a slow disk
//! parks only the request that asked (the kernel's io-wq does the blocking part), never the
//! core. Each operation owns what the kernel reads or writes (the path, the `open_how`, the
//! statx buffer, the read buffer) until its final completion; an open whose future is dropped
//! closes the descriptor it produced ([`OpKind::Open`]).

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::OpKind;
use super::op::Op;

/// What a file is, as far as serving it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A regular file: may be read.
    Regular,
    /// A directory: served through its index file, if any.
    Directory,
    /// A FIFO, socket or device: never opened (opening a FIFO blocks until a writer comes).
    Other,
}

/// The metadata a static response needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) kind: FileKind,
    pub(crate) size: u64,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: i64,
    /// Nanoseconds within `mtime` (part of the ETag: two writes within a second differ).
    pub(crate) mtime_nsec: u32,
}

struct StatData {
    path: CString,
    buf: Box<MaybeUninit<libc::statx>>,
}

/// `statx(dir, path)`, following symlinks. Only type, size and mtime are asked for.
///
/// The caller must not trust the result for containment: a symlink may point outside `dir`
/// (the open that follows, [`open_beneath`], refuses that).
pub(crate) async fn stat_at(dir: RawFd, path: CString) -> io::Result<FileStat> {
    let mut data = StatData {
        path,
        buf: Box::new(MaybeUninit::zeroed()),
    };
    let entry = opcode::Statx::new(
        types::Fd(dir),
        data.path.as_ptr(),
        data.buf.as_mut_ptr().cast::<types::statx>(),
    )
    .flags(libc::AT_STATX_SYNC_AS_STAT)
    .mask(libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_MTIME)
    .build();
    // The path's and the buffer's heap blocks do not move when `data` moves into the Op.
    let (res, data) = Op::submit(entry, data).await;
    super::cqe_result(res)?;
    // SAFETY: the kernel filled the statx buffer (it was zeroed before, so every field is
    // initialised either way) and the operation is complete.
    let st = unsafe { data.buf.assume_init_ref() };
    let kind = match u32::from(st.stx_mode) & libc::S_IFMT {
        libc::S_IFREG => FileKind::Regular,
        libc::S_IFDIR => FileKind::Directory,
        _ => FileKind::Other,
    };
    Ok(FileStat {
        kind,
        size: st.stx_size,
        mtime: st.stx_mtime.tv_sec,
        mtime_nsec: st.stx_mtime.tv_nsec,
    })
}

struct OpenData {
    path: CString,
    how: Box<types::OpenHow>,
}

/// Open `path` read-only, resolved strictly beneath `dir` (`openat2` with `RESOLVE_BENEATH`):
/// `..`, absolute symlinks and symlinks that leave `dir` fail with `EXDEV`, `/proc` magic
/// links with `ELOOP`; symlinks that stay inside `dir` are followed.
pub(crate) async fn open_beneath(dir: RawFd, path: CString) -> io::Result<OwnedFd> {
    let data = OpenData {
        path,
        how: Box::new(
            types::OpenHow::new()
                .flags((libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64)
                .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS),
        ),
    };
    let entry = opcode::OpenAt2::new(types::Fd(dir), data.path.as_ptr(), &*data.how).build();
    let (res, _data) = Op::submit_kind(entry, OpKind::Open, data).await;
    let fd = super::cqe_result(res)?;
    // SAFETY: a successful open returns a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

struct ReadData {
    buf: Vec<u8>,
}

/// Read up to `len` bytes at `offset` of `fd` into the spare capacity of `buf` (reserved
/// here). On success `buf.len()` grows by the bytes read (0 = end of file).
///
/// Cancel safety: if this future is dropped the buffer stays with the ring until the read
/// completes; the caller gets nothing back and must abandon the response.
pub(crate) async fn read_at(
    fd: RawFd,
    mut buf: Vec<u8>,
    offset: u64,
    len: usize,
) -> (io::Result<usize>, Vec<u8>) {
    buf.reserve(len);
    let len = len.min(u32::MAX as usize);
    // The pointer stays valid: the Vec moves into the Op (its heap block does not move) and
    // is handed back only after the final CQE.
    let ptr = buf.as_mut_ptr().wrapping_add(buf.len());
    let entry = opcode::Read::new(types::Fd(fd), ptr, len as u32)
        .offset(offset)
        .build();
    let (res, data) = Op::submit(entry, ReadData { buf }).await;
    let mut buf = data.buf;
    match super::cqe_result(res) {
        Ok(n) => {
            let n = (n as usize).min(len);
            // SAFETY: the kernel wrote `n` bytes (at most `len`, within the reserved spare
            // capacity) starting at the old length.
            unsafe { buf.set_len(buf.len() + n) };
            (Ok(n), buf)
        }
        Err(e) => (Err(e), buf),
    }
}
