//! A per-worker provided-buffer ring for the receives that wait for a request (mem10k).
//!
//! A connection waiting for its next request used to keep a receive armed on a 1 KiB buffer
//! of its own, and kept that buffer through the request. With 10,000 connections that was
//! 10 MB of buffers holding a few dozen bytes each. Here the wait is a `RECV` with
//! `IOSQE_BUFFER_SELECT`: the kernel takes a buffer from the worker's ring only when the bytes
//! arrive (an armed receive that finds nothing holds none), the connection copies exactly
//! the bytes it got into its own input and gives the buffer back at once, in the same turn
//! of its task. A ring buffer is therefore held only between a completion and the moment its
//! connection's task runs: no client, slow or not, can keep one.
//!
//! When every buffer is taken (more completions than buffers waiting for their tasks) the
//! receive ends with `-ENOBUFS` and leaves the bytes in the socket; the caller then takes them
//! with a non-blocking `recv(2)` into a buffer on its stack (`recv::recv_first`). If the
//! kernel refuses the ring, every wait uses a buffer of its own, as before.

use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, types};

/// Bytes per buffer: most request heads fit (nginx's `client_header_buffer_size` is 1k too);
/// a longer one continues in the connection's own buffer.
pub(crate) const BUF_LEN: usize = 1024;
/// Buffers in the ring (a power of two): 256 KiB per worker, touched as the ring turns.
const NBUFS: u16 = 256;
/// The buffer group of the ring.
pub(crate) const BGID: u16 = 1;

/// The ring's entries (a page-aligned mapping shared with the kernel) and the buffers they
/// point to.
pub(crate) struct BufPool {
    entries: *mut types::BufRingEntry,
    bufs: Box<[u8]>,
    tail: u16,
    /// Buffers the kernel holds (for tests: a buffer not given back is a leak).
    held: u16,
    /// Receives that found the ring empty (`-ENOBUFS`), for the stats.
    pub(super) misses: u64,
}

impl BufPool {
    /// Map and register the ring on `ring` with every buffer given to the kernel; `None` if
    /// the kernel refuses.
    pub(super) fn register(ring: &IoUring) -> Option<BufPool> {
        let bytes = Self::map_len();
        // SAFETY: an anonymous private mapping, checked below; page-aligned as the kernel
        // requires of a buffer ring.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the mapping holds NBUFS entries and outlives the registration: it is
        // unmapped in Drop, and the driver's `Inner` drops its ring (which unregisters the
        // group) before this pool (field order).
        let ok = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(map as u64, NBUFS, BGID, 0)
        };
        if let Err(e) = ok {
            tracing::debug!("provided-buffer ring refused ({e}): receives use own buffers");
            // SAFETY: the mapping made above, used by nobody.
            unsafe { libc::munmap(map, bytes) };
            return None;
        }
        let mut pool = BufPool {
            entries: map.cast(),
            // Zeroed pages from the kernel, resident only once the kernel writes into them.
            bufs: vec![0u8; NBUFS as usize * BUF_LEN].into_boxed_slice(),
            tail: 0,
            held: 0,
            misses: 0,
        };
        for bid in 0..NBUFS {
            pool.give_back(bid);
        }
        Some(pool)
    }

    fn map_len() -> usize {
        (NBUFS as usize * std::mem::size_of::<types::BufRingEntry>()).max(4096)
    }

    /// The first `len` bytes of buffer `bid` (what a receive wrote there).
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let at = bid as usize * BUF_LEN;
        &self.bufs[at..at + len.min(BUF_LEN)]
    }

    /// Buffers the kernel holds: given to it and not yet taken by a completion.
    #[cfg(test)]
    pub(super) fn free_count(&self) -> usize {
        self.held as usize
    }

    /// A completion took buffer `bid` from the ring.
    pub(super) fn taken(&mut self, _bid: u16) {
        self.held = self.held.saturating_sub(1);
    }

    /// Give buffer `bid` back to the kernel.
    pub(super) fn give_back(&mut self, bid: u16) {
        if bid >= NBUFS {
            return;
        }
        self.held += 1;
        let addr = self.bufs.as_ptr() as u64 + bid as u64 * BUF_LEN as u64;
        // SAFETY: `entries` is the registered ring of NBUFS entries; the entry at the tail is
        // not the kernel's until the tail moves past it, which the release store publishes
        // after the entry is written. The tail field overlays entry 0's `resv`, which the
        // kernel never reads as part of an entry.
        unsafe {
            let e = &mut *self.entries.add((self.tail & (NBUFS - 1)) as usize);
            e.set_addr(addr);
            e.set_len(BUF_LEN as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `register`; the ring that used it was dropped first
        // (field order in the driver's `Inner`).
        unsafe { libc::munmap(self.entries.cast(), Self::map_len()) };
    }
}
