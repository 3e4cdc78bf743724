//! One connection's protocol: HTTP/1.1, or HTTP/2 without TLS (h2c, prior knowledge) when the
//! client opens with the HTTP/2 preface.
//!
//! Every connection starts as HTTP/1. hyper's HTTP/1 parser recognises the preface
//! (`PRI * HTTP/2.0 ...`) and stops before answering anything, with the bytes it read still in
//! its buffer; the connection then goes on as HTTP/2 over the same socket, those bytes put back
//! in front. Nothing is read ahead to decide: detecting the protocol first (hyper-util's `auto`
//! builder) costs every HTTP/1 connection an extra read, an allocation and a wrapper around each
//! later read, and keeps room for an HTTP/2 connection in each one. Here only HTTP/2 clients pay
//! for HTTP/2.
//!
//! A client must send the 24 bytes of the preface in one piece (as HTTP/2 clients do, with
//! their first SETTINGS); a preface cut short is answered as a bad HTTP/1 request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

type Io = TokioIo<TcpStream>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What both protocols need of the service that answers a connection's requests (a name for
/// hyper's bounds, met by every such service).
pub(crate) trait Service:
    HttpService<
    Incoming,
    Error: Into<BoxError>,
    Future: Send + 'static,
    ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
>
{
}

impl<S> Service for S where
    S: HttpService<
        Incoming,
        Error: Into<BoxError>,
        Future: Send + 'static,
        ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
    >
{
}

/// What an answer may ask of the connection its request came on (the router gets it with each
/// request): to serve the socket once the connection has handed it over (a WebSocket), or to
/// end the connection (an answer whose client stopped reading).
///
/// An upgraded socket is served inside its connection's task: it keeps the connection's slot of
/// `MAX_CONNECTIONS`, counts as an open connection, and is cut at the end of the shutdown with
/// the others. Nothing is left running detached.
#[derive(Clone)]
pub(crate) struct ConnectionHandle(Arc<Handle>);

/// A future that serves an upgraded socket to its end.
pub(crate) type Upgraded = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Handle {
    upgraded: Mutex<Option<Upgraded>>,
    cut: Notify,
    /// Answers that gave up on their client (see [`ConnectionHandle::cut`]).
    stuck: AtomicUsize,
    idle_timeout: Duration,
}

impl ConnectionHandle {
    /// A handle for a new connection whose idle limit is `idle_timeout`.
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        ConnectionHandle(Arc::new(Handle {
            upgraded: Mutex::new(None),
            cut: Notify::new(),
            stuck: AtomicUsize::new(0),
            idle_timeout,
        }))
    }

    /// The connection's idle limit (`IDLE_TIMEOUT`).
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.0.idle_timeout
    }

    /// Once the connection has answered with `101 Switching Protocols` and ended as HTTP, its
    /// task runs `serve` (which awaits the upgraded socket) instead of closing.
    pub(crate) fn on_upgrade(&self, serve: Upgraded) {
        *self.0.upgraded.lock().unwrap_or_else(|e| e.into_inner()) = Some(serve);
    }

    /// What [`Self::on_upgrade`] left, once.
    pub(crate) fn take_upgraded(&self) -> Option<Upgraded> {
        self.0
            .upgraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// One answer gives up on its client (it cannot deliver its goodbye): the connection ends
    /// as soon as nothing else is in flight on it. Over HTTP/2 the other requests of the
    /// connection finish first; only the stuck answers then hold it, and it is cut.
    pub(crate) fn cut(&self) {
        self.0.stuck.fetch_add(1, Ordering::AcqRel);
        self.0.cut.notify_one();
    }

    /// How many answers gave up ([`Self::cut`]).
    pub(crate) fn stuck(&self) -> usize {
        self.0.stuck.load(Ordering::Acquire)
    }

    /// Completes at the next [`Self::cut`] (or at once if one came unseen).
    pub(crate) async fn cut_asked(&self) {
        self.0.cut.notified().await;
    }
}

/// How both protocols are configured, shared by every connection.
#[derive(Debug)]
pub(crate) struct Builders {
    /// HTTP/1.1, where every connection starts.
    pub http1: http1::Builder,
    /// HTTP/2, for the connections that open with its preface.
    pub http2: http2::Builder<TokioExecutor>,
    /// The connection slots (`MAX_CONNECTIONS`), one taken by each connection when it is
    /// accepted: one that turns to HTTP/2 takes [`HTTP2_EXTRA_SLOTS`] more.
    pub slots: Arc<Semaphore>,
}

/// What an HTTP/2 connection takes of `MAX_CONNECTIONS` beyond the slot every connection has:
/// h2's buffers and tables make it cost two to three times an HTTP/1 connection (about 27 KiB
/// idle, 37 KiB after a 16 KiB head, against 12 KiB).
pub(crate) const HTTP2_EXTRA_SLOTS: u32 = 2;

impl Builders {
    /// Serves `service` on `stream`, with HTTP/1 upgrades (WebSockets).
    pub(crate) fn serve<S: Service>(
        self: &Arc<Self>,
        stream: TcpStream,
        service: S,
    ) -> Connection<S> {
        let http1 = self
            .http1
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        Connection {
            state: State::Http1(http1),
            builders: Arc::clone(self),
            closing: false,
            leaving: false,
            _http2_slots: None,
        }
    }
}

/// A connection being served: a future that completes when the connection ends.
pub(crate) struct Connection<S>
where
    S: HttpService<Incoming>,
{
    state: State<S>,
    builders: Arc<Builders>,
    /// `graceful_shutdown` was called: an HTTP/2 connection that starts later is told too.
    closing: bool,
    /// [`Graceful::leave_when_http2`] was called: if the connection turns to HTTP/2, it sends
    /// GOAWAY as it does.
    leaving: bool,
    /// The extra slots of an HTTP/2 connection, given back when it ends.
    _http2_slots: Option<OwnedSemaphorePermit>,
}

// The HTTP/1 variant is inline on purpose: the caller boxes the whole connection once, and
// boxing it again would cost every connection a second allocation.
#[allow(clippy::large_enum_variant)]
enum State<S>
where
    S: HttpService<Incoming>,
{
    Http1(http1::UpgradeableConnection<Io, S>),
    /// Boxed: an HTTP/2 connection is several times larger, and rare here.
    Http2(Pin<Box<http2::Connection<Rewind, S, TokioExecutor>>>),
    Done,
}

/// A connection that can be asked to finish.
pub(crate) trait Graceful: Future<Output = Result<(), hyper::Error>> {
    /// Asks the connection to finish: HTTP/1 closes once the response in flight is written (at
    /// once when idle), HTTP/2 sends GOAWAY. Keep polling it until it completes.
    fn graceful_shutdown(self: Pin<&mut Self>);

    /// The connection speaks HTTP/2.
    fn is_http2(&self) -> bool;

    /// An HTTP/2 connection sends GOAWAY now (as [`Self::graceful_shutdown`]); an HTTP/1
    /// connection goes on, and sends GOAWAY as soon as it turns to HTTP/2, if it does.
    fn leave_when_http2(self: Pin<&mut Self>);
}

impl<S: Service> Graceful for Connection<S> {
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        if std::mem::replace(&mut self.closing, true) {
            return;
        }
        match &mut self.state {
            State::Http1(conn) => Pin::new(conn).graceful_shutdown(),
            State::Http2(conn) => conn.as_mut().graceful_shutdown(),
            State::Done => {}
        }
    }

    fn is_http2(&self) -> bool {
        matches!(self.state, State::Http2(_))
    }

    fn leave_when_http2(mut self: Pin<&mut Self>) {
        if self.is_http2() {
            self.graceful_shutdown();
        } else {
            self.leaving = true;
        }
    }
}

impl<S: Service> Future for Connection<S> {
    type Output = Result<(), hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Http1(conn) => match ready!(Pin::new(conn).poll(cx)) {
                    Err(error) if error.is_parse_version_h2() => {
                        let State::Http1(conn) = std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!("matched as HTTP/1 above")
                        };
                        let Some(parts) = conn.into_parts() else {
                            return Poll::Ready(Err(error));
                        };
                        let io = Rewind {
                            read: parts.read_buf,
                            io: parts.io,
                        };
                        match Arc::clone(&this.builders.slots)
                            .try_acquire_many_owned(HTTP2_EXTRA_SLOTS)
                        {
                            Ok(slots) => this._http2_slots = Some(slots),
                            // No room for it: closed before anything is answered (its client
                            // tries again, as at any connection limit).
                            Err(_) => {
                                tracing::debug!("no room for an HTTP/2 connection: closing it");
                                return Poll::Ready(Ok(()));
                            }
                        }
                        let mut http2 =
                            Box::pin(this.builders.http2.serve_connection(io, parts.service));
                        if this.closing || this.leaving {
                            this.closing = true;
                            http2.as_mut().graceful_shutdown();
                        }
                        this.state = State::Http2(http2);
                    }
                    ended => {
                        this.state = State::Done;
                        return Poll::Ready(ended);
                    }
                },
                State::Http2(conn) => {
                    let ended = ready!(conn.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(ended);
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The socket with the bytes HTTP/1 already read put back in front of it.
pub(crate) struct Rewind {
    read: Bytes,
    io: Io,
}

impl Read for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl Write for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
