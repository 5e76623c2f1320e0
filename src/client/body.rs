//! The request body: bytes held whole (which a retry or redirect can send again) or a stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body: empty, whole bytes, or a stream of chunks sent as they come (chunked
/// transfer encoding, unless a `Content-Length` header is set). Not `Send`: a stream may
/// borrow nothing but may hold worker-local state.
pub struct Body(Inner);

enum Inner {
    Full(Option<Bytes>),
    Stream(Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError>>>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Full(b) => write!(f, "Body({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            Inner::Stream(_) => f.write_str("Body(stream)"),
        }
    }
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body(Inner::Full(None))
    }

    /// A body sent chunk by chunk as `stream` yields them; an `Err` aborts the request
    /// ([`ErrorKind::Request`](super::ErrorKind::Request)).
    ///
    /// ```no_run
    /// # async fn handler(req: &mut ringsgi::Request) -> Result<(), ringsgi::client::Error> {
    /// use ringsgi::client::{Body, Client};
    /// let parts = futures_lite::stream::iter(vec![
    ///     Ok::<_, std::io::Error>(bytes::Bytes::from("hello, ")),
    ///     Ok(bytes::Bytes::from("world")),
    /// ]);
    /// let client = Client::new();
    /// client.post("http://127.0.0.1:9000/upload").body(Body::from_stream(parts)).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn from_stream<S, E>(stream: S) -> Body
    where
        S: futures_lite::Stream<Item = Result<Bytes, E>> + 'static,
        E: Into<BoxError> + 'static,
    {
        Body(Inner::Stream(Box::pin(StreamBody(Box::pin(stream)))))
    }

    /// Any `http_body::Body` (for example one built with `http-body-util`).
    pub fn wrap<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        Body(Inner::Stream(Box::pin(body.map_err(Into::into))))
    }

    /// A copy, if the body is held whole (a stream can be sent once only).
    pub(crate) fn try_clone(&self) -> Option<Body> {
        match &self.0 {
            Inner::Full(b) => Some(Body(Inner::Full(b.clone()))),
            Inner::Stream(_) => None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body(Inner::Full((!b.is_empty()).then_some(b)))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::from(Bytes::from(v))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Body::from(Bytes::from_static(s))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(s) => s.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(b) => b.is_none(),
            Inner::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Stream(s) => s.size_hint(),
        }
    }
}

/// A `Stream` of byte chunks as an `http_body::Body`.
struct StreamBody<E>(Pin<Box<dyn futures_lite::Stream<Item = Result<Bytes, E>>>>);

impl<E: Into<BoxError>> http_body::Body for StreamBody<E> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(Frame::data).map_err(Into::into)))
    }
}
