//! Long-lived answers: `GET /events`, a stream of server-sent events, and `GET /ws`, a
//! WebSocket, and their part in the shutdown.
//!
//! A stream never ends by itself, so a pod that only waited for it would be held until SIGKILL
//! and the client would see the connection cut. Instead, once the drain begins (step 3 of
//! [`crate::server`]), every stream is told to go: it sends a last event, `bye`, and ends, at a
//! moment drawn at random in the second half of the drain, so its client reconnects once the
//! pod's endpoint is gone (to a pod that stays) and not every client at the same instant. The
//! stream's `retry:` field tells the client how soon to reconnect. Answers to `/events` always
//! carry `Connection: close`: the reconnection opens a new connection, which the Service sends
//! to a ready pod. A WebSocket closes with 1001 "going away" at the same kind of moment.
//!
//! Both kinds share one [`Goodbye`] timer, one payload ([`stamp`]) and one count of how they
//! ended ([`Open`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::app::App;
use crate::metrics::StreamMeters;
use crate::pod_info::Stamp;

/// The largest WebSocket message `/ws` reads (and echoes); a larger one ends the connection.
pub(crate) const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Time between two events of a stream.
pub(crate) const EVENT_EVERY: Duration = Duration::from_secs(1);

/// What a client is told to wait before reconnecting (the `retry:` field), in milliseconds.
pub(crate) const RETRY_MS: u64 = 1000;

/// When the streams were told to go, and the span, from then, in which each says goodbye.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Departure {
    at: Instant,
    span: Goodbyes,
}

impl Departure {
    /// A moment for one goodbye, drawn at random in the span (now, if that is past).
    pub(crate) fn moment(self) -> Instant {
        let spread = self.span.until.saturating_sub(self.span.from);
        let jitter = Duration::from_micros(fastrand::u64(0..=spread.as_micros() as u64));
        (self.at + self.span.from + jitter).max(Instant::now())
    }
}

/// Where in the shutdown long-lived answers say goodbye, counted from the drain decision: each
/// at its own moment drawn at random between `from` and `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Goodbyes {
    /// The earliest goodbye.
    pub from: Duration,
    /// The latest goodbye.
    pub until: Duration,
}

/// The streams open now and how the others ended (the metrics' meters), and the order to go.
#[derive(Debug)]
pub(crate) struct Streams {
    departure: watch::Sender<Option<Departure>>,
    meters: StreamMeters,
}

/// How many streams ended each way, for the shutdown summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamCounts {
    /// Open now.
    pub open: u64,
    /// Ended with a last event, when told to go.
    pub clean: u64,
    /// Closed by their client.
    pub by_client: u64,
    /// Cut when serving ended.
    pub cut: u64,
}

impl Streams {
    /// No stream yet, counted on `meters`.
    pub(crate) fn new(meters: StreamMeters) -> Self {
        Streams {
            departure: watch::Sender::new(None),
            meters,
        }
    }

    /// Tells every stream, open or yet to open, to go within `span` from now.
    pub(crate) fn depart(&self, span: Goodbyes) -> Departure {
        let departure = Departure {
            at: Instant::now(),
            span,
        };
        self.departure.send_replace(Some(departure));
        departure
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> StreamCounts {
        let m = &self.meters;
        StreamCounts {
            open: u64::try_from(m.open.get()).unwrap_or(0),
            clean: m.clean.get(),
            by_client: m.by_client.get(),
            cut: m.cut.get(),
        }
    }
}

/// How a long-lived answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Said goodbye when told to go: the last event handed to the connection, or the close
    /// answered by the WebSocket's client.
    Clean,
    /// Its client left.
    ByClient,
}

/// One long-lived answer (a stream of events or a WebSocket) while it lasts. It holds one of
/// the slow slots (like `/delay`), and counts how its answer ended when it is dropped: as it
/// was told, or, if nobody told it, as cut once the drain had begun and as left by its client
/// before.
#[derive(Debug)]
pub(crate) struct Open {
    app: Arc<App>,
    ended: Option<Ended>,
    _slot: OwnedSemaphorePermit,
}

impl Open {
    /// `None` when every slow slot is taken: streams and waiting requests together keep an
    /// eighth of `MAX_CONNECTIONS` for probes and quick requests.
    pub(crate) fn new(app: &Arc<App>) -> Option<Open> {
        let slot = app.slow_slot()?;
        app.streams().meters.open.inc();
        Some(Open {
            app: Arc::clone(app),
            ended: None,
            _slot: slot,
        })
    }

    /// Notes how the answer ended, for the count at drop.
    fn ended(&mut self, how: Ended) {
        self.ended = Some(how);
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let streams = self.app.streams();
        let m = &streams.meters;
        let counter = match self.ended {
            Some(Ended::Clean) => &m.clean,
            Some(Ended::ByClient) => &m.by_client,
            // Told to go, but gone before its goodbye: serving ended under it.
            None if streams.departure.borrow().is_some() => &m.cut,
            None => &m.by_client,
        };
        counter.inc();
        m.open.dec();
    }
}

/// When a long-lived answer says goodbye: once the drain has begun, at a moment drawn at random
/// in its second half (by then the pod's endpoint is gone, and the clients do not all
/// reconnect at once); at once for an answer opened after that moment.
#[derive(Debug)]
pub(crate) struct Goodbye {
    departure: watch::Receiver<Option<Departure>>,
    at: Option<Instant>,
}

impl Goodbye {
    pub(crate) fn new(app: &App) -> Goodbye {
        let mut departure = app.streams().departure.subscribe();
        let at = departure.borrow_and_update().map(Departure::moment);
        Goodbye { departure, at }
    }

    /// Completes at the goodbye. Cancel-safe: a `select!` may drop it and call it again.
    pub(crate) async fn due(&mut self) {
        loop {
            if let Some(at) = self.at {
                return tokio::time::sleep_until(at).await;
            }
            // The sender lives in the `App`, which every answer holds: it is never dropped first.
            if self.departure.changed().await.is_err() {
                return std::future::pending().await;
            }
            self.at = self.departure.borrow_and_update().map(Departure::moment);
        }
    }
}

/// The data of every message: the pod's version and name, and a sequence number, as JSON
/// ([`Stamp`]).
fn stamp(app: &App) -> impl Fn(u64) -> String {
    let (version, pod) = (app.pod().version.clone(), app.pod().pod_name().to_owned());
    move |seq| {
        let stamp = Stamp {
            version: version.clone(),
            pod: pod.clone(),
            seq,
        };
        // Two strings and a number: serialising cannot fail.
        serde_json::to_string(&stamp).unwrap_or_default()
    }
}

/// One message of a stream: an event, or the last one.
#[derive(Debug)]
pub(crate) enum Message<T> {
    Event(T),
    Bye(T),
}

/// What a stream's task has sent and its answer has not yet passed on, and the count of how
/// the answer ends: clean once its `Bye` has been passed on.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    messages: mpsc::Receiver<Message<T>>,
    open: Open,
}

impl<T> Outbox<T> {
    /// A stream whose task sends at most one message ahead of its client (the rest are
    /// dropped by the task, see [`send_events`]), and the sender for that task.
    pub(crate) fn new(open: Open) -> (mpsc::Sender<Message<T>>, Outbox<T>) {
        let (sender, messages) = mpsc::channel(1);
        (sender, Outbox { messages, open })
    }

    /// The next message; `None` after the `Bye` or once the task has stopped.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.open.ended.is_some() {
            return Poll::Ready(None);
        }
        self.messages.poll_recv(cx).map(|message| {
            message.map(|message| match message {
                Message::Event(item) => item,
                Message::Bye(item) => {
                    self.open.ended(Ended::Clean);
                    item
                }
            })
        })
    }
}

/// The body of an `/events` answer: what its task sends, as it sends it.
#[derive(Debug)]
pub(crate) struct EventStream(Outbox<Bytes>);

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_next(cx)
            .map(|bytes| bytes.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Starts the stream of one `/events` answer and returns its body, or `None` when every slow
/// slot is taken.
pub(crate) fn events(app: &Arc<App>) -> Option<EventStream> {
    // One message waits at most: a client that does not read misses events (they are
    // dropped, not queued) but still gets its goodbye on time.
    let (sender, outbox) = Outbox::new(Open::new(app)?);
    tokio::spawn(send_events(Arc::clone(app), sender));
    Some(EventStream(outbox))
}

async fn send_events(app: Arc<App>, sender: mpsc::Sender<Message<Bytes>>) {
    let stamp = stamp(&app);
    let event = |kind: &str, seq: u64| {
        Bytes::from(format!(
            "id: {seq}\nevent: {kind}\ndata: {}\n\n",
            stamp(seq)
        ))
    };
    // First of all, how soon to reconnect: a stream may end with its first event.
    let retry = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
    if sender.send(Message::Event(retry)).await.is_err() {
        return;
    }
    let mut goodbye = Goodbye::new(&app);
    let mut tick = tokio::time::interval(EVENT_EVERY);
    tick.tick().await;
    let mut seq = 1;
    loop {
        tokio::select! {
            biased;
            () = goodbye.due() => {
                // The goodbye waits for room if it must: it is the one message that matters.
                let _ = sender.send(Message::Bye(event("bye", seq))).await;
                return;
            }
            _ = tick.tick() => {
                // A client that does not keep up misses events rather than piling them up.
                match sender.try_send(Message::Event(event("message", seq))) {
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    _ => seq += 1,
                }
            }
            () = sender.closed() => return,
        }
    }
}

/// `GET /ws`: a WebSocket that sends an event a second, echoes what its client sends, and
/// closes with 1001 "going away" at its goodbye, like a stream of events. `Err` without an
/// upgrade; `None` when every slow slot is taken.
pub(crate) fn websocket(
    app: &Arc<App>,
    req: &mut hyper::Request<hyper::body::Incoming>,
) -> Option<Result<hyper::Response<http_body_util::Empty<Bytes>>, String>> {
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Some(Err("a WebSocket upgrade is required\n".into()));
    }
    let mut open = Open::new(app)?;
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(error) => return Some(Err(format!("bad WebSocket upgrade: {error}\n"))),
    };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let how = match upgrade.await {
            Ok(ws) => serve_socket(&app, ws).await,
            Err(_) => Ended::ByClient,
        };
        open.ended(how);
    });
    Some(Ok(response))
}

async fn serve_socket(
    app: &App,
    mut ws: fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
) -> Ended {
    use fastwebsockets::{Frame, OpCode, Payload};
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    // fastwebsockets would buffer whatever length a frame announces, up to 64 MiB.
    ws.set_max_message_size(MAX_WS_MESSAGE);
    let stamp = stamp(app);
    let mut goodbye = Goodbye::new(app);
    let mut tick = tokio::time::interval(EVENT_EVERY);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            () = goodbye.due() => {
                if ws.write_frame(Frame::close(1001, b"going away")).await.is_err() {
                    return Ended::ByClient;
                }
                // The client's close answers ours. A client that never answers keeps the socket
                // until the shutdown timeout, which cuts it (counted as cut, outcome TimedOut).
                loop {
                    match ws.read_frame().await {
                        Ok(frame) if frame.opcode == OpCode::Close => return Ended::Clean,
                        Ok(_) => {}
                        Err(_) => return Ended::ByClient,
                    }
                }
            }
            frame = ws.read_frame() => match frame {
                Ok(frame) => match frame.opcode {
                    OpCode::Text | OpCode::Binary => {
                        let echo = Frame::new(true, frame.opcode, None, frame.payload);
                        if ws.write_frame(echo).await.is_err() {
                            return Ended::ByClient;
                        }
                    }
                    OpCode::Close => return Ended::ByClient,
                    _ => {}
                },
                Err(_) => return Ended::ByClient,
            },
            _ = tick.tick() => {
                seq += 1;
                let text = Frame::text(Payload::Owned(stamp(seq).into_bytes()));
                if ws.write_frame(text).await.is_err() {
                    return Ended::ByClient;
                }
            }
        }
    }
}

impl Streams {
    /// Completes once no stream or WebSocket is open.
    pub(crate) async fn all_ended(&self) {
        while self.meters.open.get() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
