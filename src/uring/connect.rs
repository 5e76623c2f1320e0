//! connect on the ring, with an optional linked timeout.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, types};
use socket2::SockAddr;

use super::op::{Op, timed_result};

struct ConnectData {
    /// The address the kernel reads; boxed so that its address is stable.
    _addr: Box<SockAddr>,
    _ts: Option<Box<types::Timespec>>,
}

/// Connect `fd` to `addr`. `ErrorKind::TimedOut` if `timeout` passes first.
pub(crate) async fn connect(
    fd: RawFd,
    addr: SockAddr,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let addr = Box::new(addr);
    let entry = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len()).build();
    let (res, _data) = match timeout {
        None => {
            Op::submit(
                entry,
                ConnectData {
                    _addr: addr,
                    _ts: None,
                },
            )
            .await
        }
        Some(d) => {
            let ts = Box::new(super::timespec(d));
            let t = opcode::LinkTimeout::new(&*ts as *const types::Timespec).build();
            Op::submit_linked(
                entry,
                t,
                ConnectData {
                    _addr: addr,
                    _ts: Some(ts),
                },
            )
            .await
        }
    };
    timed_result(res).map(|_| ())
}
