//! [`RequestBody`]: the request body as an [`http_body::Body`], read from the connection only
//! when the service asks for the next frame.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use send_wrapper::SendWrapper;

use crate::request::{Body, BodyState};

/// Where the connection's body stream is, shared between the request's [`RequestBody`]
/// (wherever the service keeps it) and the adapter, which takes it back when the request ends.
pub(crate) enum Stream {
    /// Between reads.
    Idle(Body),
    /// Moved into a read in progress (a read dropped midway loses it: the connection closes).
    Reading,
    /// The request is over: nothing more may be read.
    Over,
}

pub(crate) type Shared = Rc<RefCell<Stream>>;

/// One read of the next piece of the body: takes the stream out of [`Shared`] and puts it
/// back when done, unless the request ended meanwhile.
type Read = Pin<Box<dyn Future<Output = io::Result<Option<Bytes>>>>>;

/// The body of a request handed to a tower service.
///
/// Nothing is read ahead: each [`poll_frame`](http_body::Body::poll_frame) reads the next
/// piece from the connection (at most 16 KiB, or what is already buffered), so a service that
/// reads slowly slows its client down through TCP flow control, and one that does not read
/// leaves the body in the kernel. A body over `--limit-post` ends with an error, and the
/// request is then answered with `413` whatever the service returns. `Expect: 100-continue`
/// is answered on the first read.
///
/// It is `Send` and `Sync` only so that `Send` frameworks (axum) accept it: it must stay on its
/// worker's thread, and touching it from another thread panics.
pub struct RequestBody(SendWrapper<Inner>);

struct Inner {
    shared: Shared,
    /// The read in progress, if any (a dropped one closes the connection: see `Body::fill`).
    read: Option<Read>,
    /// The end or an error was returned: nothing more comes.
    ended: bool,
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the request this body belongs to is over",
    )
}

impl RequestBody {
    pub(crate) fn new(shared: Shared) -> RequestBody {
        RequestBody(SendWrapper::new(Inner {
            shared,
            read: None,
            ended: false,
        }))
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let inner = &mut *self.get_mut().0;
        if inner.ended {
            return Poll::Ready(None);
        }
        if inner.read.is_none() {
            match &*inner.shared.borrow() {
                Stream::Idle(b) if b.is_done() => {
                    inner.ended = true;
                    return Poll::Ready(None);
                }
                Stream::Idle(_) => {}
                // The request is over (or, never, a second reader).
                Stream::Reading | Stream::Over => {
                    inner.ended = true;
                    return Poll::Ready(Some(Err(gone())));
                }
            }
            let shared = inner.shared.clone();
            inner.read = Some(Box::pin(async move {
                let Stream::Idle(mut body) = shared.replace(Stream::Reading) else {
                    return Err(gone());
                };
                crate::harakiri::note_wait("reading the request body");
                let r = body
                    .read_chunk()
                    .await
                    .map(|c| c.map(Bytes::copy_from_slice));
                let mut stream = shared.borrow_mut();
                if matches!(*stream, Stream::Reading) {
                    *stream = Stream::Idle(body);
                }
                r
            }));
        }
        let read = inner.read.as_mut().expect("a read is in progress");
        let r = ready!(read.as_mut().poll(cx));
        inner.read = None;
        Poll::Ready(match r {
            Ok(Some(data)) => Some(Ok(Frame::data(data))),
            Ok(None) => {
                inner.ended = true;
                None
            }
            Err(e) => {
                inner.ended = true;
                Some(Err(e))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        let inner = &*self.0;
        inner.ended || matches!(&*inner.shared.borrow(), Stream::Idle(b) if b.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        if self.0.ended {
            return SizeHint::with_exact(0);
        }
        match &*self.0.shared.borrow() {
            Stream::Idle(b) => match b.state {
                BodyState::Length(n) => SizeHint::with_exact(n),
                BodyState::Done => SizeHint::with_exact(0),
                BodyState::Chunked(_) => SizeHint::default(),
            },
            Stream::Reading | Stream::Over => SizeHint::default(),
        }
    }
}
