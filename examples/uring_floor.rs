//! A floor for the hello benchmark: the least a server can do per keep-alive request, without
//! ringsgi (no executor, no parser, no app), on one thread, in four ways:
//!
//! - `epoll`: level-triggered epoll, one `read` and one `write` per request (nginx's pattern);
//! - `single`: io_uring (`SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG`, ringsgi's ring), one
//!   `RECV` (`IORING_RECVSEND_POLL_FIRST`) and one `SEND` per request, one
//!   `io_uring_enter(submit + wait 1)` per loop turn;
//! - `multi`: the same ring, a multishot `RECV` per connection into a provided-buffer ring, one
//!   `SEND` per request;
//! - `single-defer`, `multi-defer`: as above on a `DEFER_TASKRUN` ring;
//! - `poll`: readiness from the ring, I/O by system calls (epoll's pattern on io_uring): one
//!   multishot `POLL_ADD` per connection, kept for its life, then one `read` and one `write`
//!   system call per request.
//! - `epring`: an epoll set (edge-triggered connections) whose descriptor is the one thing the
//!   ring polls (a multishot `POLL_ADD` on the epoll fd); each completion is followed by
//!   `epoll_wait(0)` until the set is empty, then one `read` and one `write` per ready socket.
//!   The thread still waits only in `io_uring_enter`.
//!
//! Every request is answered with ringsgi's hello response (same bytes, a fixed `Date`); a
//! read is assumed to hold one whole request (true for `wrk`, which never pipelines here).
//! Measurement only (`docs/benchmarks.md`, "Hello path CPU (issue #12), this stop"):
//!
//! ```sh
//! cargo build --release --example uring_floor
//! taskset -c 0 target/release/examples/uring_floor multi 127.0.0.1:8080
//! ```
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: ringsgi\r\nDate: Sun, 06 Dec 2026 23:21:51 GMT\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello World!";

const BUF: usize = 2048;
const NBUFS: u16 = 1024;
const BGID: u16 = 7;

/// `user_data`: the kind in the top byte, the fd (or buffer index) below.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!(
            "usage: uring_floor epoll|single|multi|single-defer|multi-defer|poll|epring ADDR"
        );
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[2])?;
    listener.set_nonblocking(true)?;
    match args[1].as_str() {
        "epoll" => epoll(listener),
        "single" => uring(listener, false, false),
        "multi" => uring(listener, true, false),
        "single-defer" => uring(listener, false, true),
        "multi-defer" => uring(listener, true, true),
        "poll" => uring_poll(listener),
        "epring" => epoll_on_ring(listener),
        m => {
            eprintln!("unknown mode {m}");
            std::process::exit(2)
        }
    }
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn epoll(listener: TcpListener) -> io::Result<()> {
    let lfd = listener.into_raw_fd();
    // SAFETY: plain syscalls on descriptors this function owns; buffers are local arrays.
    unsafe {
        let ep = check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: lfd as u64,
        };
        check(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev))?;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
        let mut buf = [0u8; BUF];
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1);
            if n < 0 {
                continue;
            }
            for e in &events[..n as usize] {
                let fd = e.u64 as RawFd;
                if fd == lfd {
                    accept_all(lfd, ep, libc::EPOLLIN as u32);
                    continue;
                }
                let r = libc::read(fd, buf.as_mut_ptr().cast(), BUF);
                if r > 0 {
                    libc::write(fd, RESPONSE.as_ptr().cast(), RESPONSE.len());
                    if http10(&buf[..r as usize]) {
                        libc::close(fd);
                    }
                } else if r == 0 || *libc::__errno_location() != libc::EAGAIN {
                    libc::close(fd);
                }
            }
        }
    }
}

/// ringsgi's ring setup (`SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG`), CQ of 4096.
fn coop_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(4096)
        .build(entries)
}

/// Accept every pending connection of the non-blocking listener `lfd` and add each to the
/// epoll set `ep` with `events`.
fn accept_all(lfd: RawFd, ep: RawFd, events: u32) {
    loop {
        // SAFETY: plain syscalls on descriptors the caller owns; `ev` is a local.
        let c = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            return;
        }
        let mut ev = libc::epoll_event {
            events,
            u64: c as u64,
        };
        // SAFETY: as above.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut ev) };
    }
}

/// An HTTP/1.0 request (the benchmark's readiness probe): answered, then closed.
fn http10(req: &[u8]) -> bool {
    req.windows(10).take(64).any(|w| w == b"HTTP/1.0\r\n")
}

struct Ring {
    ring: IoUring,
    bufs: Vec<u8>,
    br: *mut types::BufRingEntry,
    br_tail: u16,
}

impl Ring {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every SQE points at memory that lives as long as the ring (`RESPONSE`, the
        // per-connection buffers, the provided buffers).
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit().expect("submit");
        }
    }

    /// Give provided buffer `bid` back to the kernel.
    fn recycle(&mut self, bid: u16) {
        let mask = NBUFS - 1;
        // SAFETY: `br` is the registered ring of `NBUFS` entries; the tail is published with a
        // release store after the entry is written.
        unsafe {
            let e = &mut *self.br.add((self.br_tail & mask) as usize);
            e.set_addr(self.bufs.as_ptr().add(bid as usize * BUF) as u64);
            e.set_len(BUF as u32);
            e.set_bid(bid);
            self.br_tail = self.br_tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.br) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.br_tail, std::sync::atomic::Ordering::Release);
        }
    }
}

fn uring(listener: TcpListener, multi: bool, defer: bool) -> io::Result<()> {
    let mut b = IoUring::builder();
    b.setup_single_issuer().setup_cqsize(4096);
    if defer {
        b.setup_defer_taskrun();
    } else {
        b.setup_coop_taskrun().setup_taskrun_flag();
    }
    let ring = b.build(1024)?;
    let lfd = listener.as_raw_fd();
    // The provided-buffer ring (page-aligned, as the kernel requires).
    let ring_bytes = NBUFS as usize * std::mem::size_of::<types::BufRingEntry>();
    // SAFETY: an anonymous private mapping, checked.
    let br = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ring_bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if br == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut r = Ring {
        ring,
        bufs: vec![0u8; NBUFS as usize * BUF],
        br: br.cast(),
        br_tail: 0,
    };
    if multi {
        // SAFETY: the mapping holds NBUFS entries and lives until the process exits.
        unsafe {
            r.ring
                .submitter()
                .register_buf_ring_with_flags(br as u64, NBUFS, BGID, 0)?;
        }
        for bid in 0..NBUFS {
            r.recycle(bid);
        }
    }
    // Per-connection receive buffers for `single` (indexed by fd).
    let mut conn_bufs: Vec<Vec<u8>> = Vec::new();
    r.push(
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(ACCEPT),
    );
    let arm = |r: &mut Ring, conn_bufs: &mut Vec<Vec<u8>>, fd: RawFd, first: bool| {
        if multi {
            r.push(
                opcode::RecvMulti::new(types::Fd(fd), BGID)
                    .build()
                    .user_data(RECV | fd as u64),
            );
        } else {
            if conn_bufs.len() <= fd as usize {
                conn_bufs.resize_with(fd as usize + 1, Vec::new);
            }
            let buf = &mut conn_bufs[fd as usize];
            if buf.is_empty() {
                buf.resize(BUF, 0);
            }
            r.push(
                opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), BUF as u32)
                    .ioprio(if first { 0 } else { 1 })
                    .build()
                    .user_data(RECV | fd as u64),
            );
        }
    };
    let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
    loop {
        match r.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        done.clear();
        done.extend(
            r.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &done {
            let fd = (ud & 0xffff_ffff) as RawFd;
            match ud & (0xff << 56) {
                ACCEPT => {
                    if res >= 0 {
                        arm(&mut r, &mut conn_bufs, res, true);
                    }
                    if !cqueue::more(flags) {
                        r.push(
                            opcode::AcceptMulti::new(types::Fd(lfd))
                                .build()
                                .user_data(ACCEPT),
                        );
                    }
                }
                RECV => {
                    if res <= 0 {
                        if multi && res == -libc::ENOBUFS {
                            arm(&mut r, &mut conn_bufs, fd, false);
                            continue;
                        }
                        if !multi || !cqueue::more(flags) {
                            r.push(opcode::Close::new(types::Fd(fd)).build().user_data(SEND));
                        }
                        continue;
                    }
                    let data = if multi {
                        let bid = cqueue::buffer_select(flags).expect("a provided buffer");
                        let at = bid as usize * BUF;
                        let old = http10(&r.bufs[at..at + res as usize]);
                        r.recycle(bid);
                        old
                    } else {
                        http10(&conn_bufs[fd as usize][..res as usize])
                    };
                    if data {
                        // The readiness probe (HTTP/1.0): answer, shut down; the next
                        // receive sees the end of file and closes.
                        // SAFETY: plain syscalls on a connection this loop owns.
                        unsafe {
                            libc::write(fd, RESPONSE.as_ptr().cast(), RESPONSE.len());
                            libc::shutdown(fd, libc::SHUT_RDWR);
                        }
                        if !multi || !cqueue::more(flags) {
                            arm(&mut r, &mut conn_bufs, fd, false);
                        }
                        continue;
                    }
                    r.push(
                        opcode::Send::new(types::Fd(fd), RESPONSE.as_ptr(), RESPONSE.len() as u32)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(SEND | fd as u64),
                    );
                    if !multi || !cqueue::more(flags) {
                        arm(&mut r, &mut conn_bufs, fd, false);
                    }
                }
                _ => {}
            }
        }
    }
}

/// `poll`: a multishot `POLL_ADD` per connection (armed once, like an epoll registration), and
/// per request one `read` and one `write` system call when the ring says the socket is readable.
fn uring_poll(listener: TcpListener) -> io::Result<()> {
    let mut ring = coop_ring(1024)?;
    let lfd = listener.as_raw_fd();
    let push = |ring: &mut IoUring, e: squeue::Entry| {
        // SAFETY: the SQEs below point at no user memory.
        while unsafe { ring.submission().push(&e) }.is_err() {
            ring.submit().expect("submit");
        }
    };
    push(
        &mut ring,
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(ACCEPT),
    );
    let arm = |ring: &mut IoUring, fd: RawFd| {
        push(
            ring,
            opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(RECV | fd as u64),
        );
    };
    let mut buf = [0u8; BUF];
    let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        done.clear();
        done.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &done {
            let fd = (ud & 0xffff_ffff) as RawFd;
            match ud & (0xff << 56) {
                ACCEPT => {
                    if res >= 0 {
                        arm(&mut ring, res);
                    }
                    if !cqueue::more(flags) {
                        push(
                            &mut ring,
                            opcode::AcceptMulti::new(types::Fd(lfd))
                                .build()
                                .user_data(ACCEPT),
                        );
                    }
                }
                RECV => {
                    if res < 0 {
                        continue;
                    }
                    // SAFETY: plain syscalls on a connection this loop owns, into a local buffer.
                    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), BUF) };
                    if n > 0 {
                        // SAFETY: as above; `RESPONSE` is static.
                        unsafe { libc::write(fd, RESPONSE.as_ptr().cast(), RESPONSE.len()) };
                        if http10(&buf[..n as usize]) {
                            // The readiness probe: answered, shut down; the poll then reports
                            // the end of file, which closes it below.
                            // SAFETY: as above.
                            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                        }
                    } else if n == 0
                        || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
                    {
                        // The poll holds the file: remove it, then close (linked, in order).
                        push(
                            &mut ring,
                            opcode::PollRemove::new(RECV | fd as u64)
                                .build()
                                .flags(squeue::Flags::IO_LINK)
                                .user_data(SEND),
                        );
                        push(
                            &mut ring,
                            opcode::Close::new(types::Fd(fd)).build().user_data(SEND),
                        );
                        continue;
                    }
                    if !cqueue::more(flags) {
                        arm(&mut ring, fd);
                    }
                }
                _ => {}
            }
        }
    }
}

/// `epring`: readiness from an epoll set, the set's descriptor polled by the ring, I/O by
/// system calls.
fn epoll_on_ring(listener: TcpListener) -> io::Result<()> {
    let mut ring = coop_ring(64)?;
    let lfd = listener.into_raw_fd();
    // SAFETY: plain syscalls on descriptors this function owns; buffers are local arrays; the
    // SQEs point at no user memory.
    unsafe {
        let ep = check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: lfd as u64,
        };
        check(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev))?;
        let arm = opcode::PollAdd::new(types::Fd(ep), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(RECV);
        ring.submission().push(&arm).expect("empty ring");
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
        let mut buf = [0u8; BUF];
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            let mut rearm = false;
            for c in ring.completion() {
                rearm |= !cqueue::more(c.flags());
            }
            if rearm {
                ring.submission().push(&arm).expect("drained ring");
            }
            loop {
                let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 0);
                if n <= 0 {
                    break;
                }
                for e in &events[..n as usize] {
                    let fd = e.u64 as RawFd;
                    if fd == lfd {
                        accept_all(lfd, ep, (libc::EPOLLIN | libc::EPOLLET) as u32);
                        continue;
                    }
                    // Edge-triggered: read until a short read (bytes arriving after it raise
                    // a new edge) or EAGAIN; one request per read with wrk.
                    loop {
                        let r = libc::read(fd, buf.as_mut_ptr().cast(), BUF);
                        if r > 0 {
                            libc::write(fd, RESPONSE.as_ptr().cast(), RESPONSE.len());
                            if http10(&buf[..r as usize]) {
                                libc::close(fd);
                                break;
                            }
                            if (r as usize) < BUF {
                                break;
                            }
                        } else {
                            if r == 0 || *libc::__errno_location() != libc::EAGAIN {
                                libc::close(fd);
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
}
