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
//! Both kinds share one goodbye timer (`shutdown::Goodbye`), one payload ([`stamp`]) and one
//! count of how they ended ([`Open`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::app::App;
use crate::pod_info::Stamp;
use crate::protocol::ConnectionHandle;
use crate::shutdown::Goodbye;
use crate::websocket::{
    self, read_messages, Inbound, Limits, Writer, CLOSE_TIMEOUT, MESSAGE_TIMEOUT,
};

/// Time between two events of a stream.
pub(crate) const EVENT_EVERY: Duration = Duration::from_secs(1);

/// What a client is told to wait before reconnecting (the `retry:` field), in milliseconds.
pub(crate) const RETRY_MS: u64 = 1000;

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
        app.streams().meters().open.inc();
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
        let m = self.app.streams().meters();
        let counter = match self.ended {
            Some(Ended::Clean) => &m.clean,
            Some(Ended::ByClient) => &m.by_client,
            // Told to go, but gone before its goodbye: serving ended under it.
            None if self.app.phases().now().begun() => &m.cut,
            None => &m.by_client,
        };
        counter.inc();
        m.open.dec();
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
    ///
    /// The answer is counted as ended cleanly once its `Bye` has been passed on: a connection
    /// that cannot send (a client that reads nothing) does not ask for it.
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

/// How long a stream's goodbye may take to be taken by its connection, and its answer to end.
pub(crate) const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// Hands the stream's answer its last message, `bye`, and waits until the answer has ended. A
/// client that reads nothing (a full socket, an HTTP/2 window at zero) would hold the answer,
/// and the shutdown, until the shutdown timeout: after [`GOODBYE_GRACE`] its connection is cut
/// instead (the stream is counted as cut).
pub(crate) async fn say_goodbye<T>(
    sender: &mpsc::Sender<Message<T>>,
    bye: T,
    connection: Option<&ConnectionHandle>,
) {
    let delivered = tokio::time::timeout(GOODBYE_GRACE, async {
        if sender.send(Message::Bye(bye)).await.is_ok() {
            sender.closed().await;
        }
    });
    if delivered.await.is_err() {
        if let Some(connection) = connection {
            connection.cut();
        }
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
pub(crate) fn events(app: &Arc<App>, connection: ConnectionHandle) -> Option<EventStream> {
    // One message waits at most: a client that does not read misses events (they are
    // dropped, not queued) but still gets its goodbye on time.
    let (sender, outbox) = Outbox::new(Open::new(app)?);
    app.phases()
        .spawn(send_events(Arc::clone(app), sender, connection));
    Some(EventStream(outbox))
}

async fn send_events(
    app: Arc<App>,
    sender: mpsc::Sender<Message<Bytes>>,
    connection: ConnectionHandle,
) {
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
    let mut goodbye = Goodbye::new(app.phases());
    let mut tick = tokio::time::interval(EVENT_EVERY);
    tick.tick().await;
    let mut seq = 1;
    loop {
        tokio::select! {
            biased;
            () = goodbye.due() => {
                // The goodbye waits for room if it must: it is the one message that matters.
                return say_goodbye(&sender, event("bye", seq), Some(&connection)).await;
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
/// upgrade (an HTTP/1.1 GET with the upgrade headers); `None` when every slow slot is taken.
/// The socket is served by the connection it came on ([`ConnectionHandle::on_upgrade`]).
pub(crate) fn websocket(
    app: &Arc<App>,
    req: &mut hyper::Request<hyper::body::Incoming>,
    connection: &ConnectionHandle,
) -> Option<Result<hyper::Response<http_body_util::Empty<Bytes>>, String>> {
    // HTTP/1.0 has no upgrade, and HTTP/2 would need its extended CONNECT (RFC 8441).
    if req.version() != hyper::Version::HTTP_11
        || req.method() != hyper::Method::GET
        || !fastwebsockets::upgrade::is_upgrade_request(req)
    {
        return Some(Err("a WebSocket upgrade over HTTP/1.1 is required\n".into()));
    }
    // A body would be read as frames or not depending on how the bytes arrive: refused.
    let headers = req.headers();
    let has_body = headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || headers
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        return Some(Err("a WebSocket upgrade request has no body\n".into()));
    }
    let mut open = Open::new(app)?;
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(error) => return Some(Err(format!("bad WebSocket upgrade: {error}\n"))),
    };
    let app = Arc::clone(app);
    let idle = connection.idle_timeout();
    connection.on_upgrade(Box::pin(async move {
        let how = match upgrade.await {
            Ok(ws) => serve_socket(&app, ws.into_inner(), idle).await,
            Err(_) => Some(Ended::ByClient),
        };
        if let Some(how) = how {
            open.ended(how);
        }
    }));
    Some(Ok(response))
}

/// What the writer of a socket does next.
enum Turn {
    Goodbye,
    Inbound(Option<Inbound>),
    Event,
    Ping,
}

/// Serves an upgraded socket (see [`crate::websocket`] for how, and why so): `None` when it
/// was cut, its goodbye undeliverable.
async fn serve_socket<S>(app: &App, io: S, idle: Duration) -> Option<Ended>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (to_writer, mut inbox) = mpsc::channel(1);
    let limits = Limits {
        idle,
        message: MESSAGE_TIMEOUT,
        budget: app.streams().message_memory(),
    };
    // The reader runs for the socket's whole life, never cancelled halfway through a frame.
    let reader = async move {
        read_messages(read, to_writer, limits).await;
        std::future::pending::<()>().await;
    };
    let writer = async move {
        let mut out = Writer::new(write);
        let stamp = stamp(app);
        let mut goodbye = Goodbye::new(app.phases());
        // The first event goes at once: a client that reconnects sees the pod that answered.
        let mut tick = tokio::time::interval(EVENT_EVERY);
        // Pings show a client that only listens is still there; any frame from it counts.
        let mut ping = tokio::time::interval((idle / 2).max(Duration::from_millis(100)));
        ping.tick().await;
        let mut seq = 0u64;
        loop {
            let turn = tokio::select! {
                biased;
                () = goodbye.due() => Turn::Goodbye,
                inbound = inbox.recv() => Turn::Inbound(inbound),
                _ = tick.tick() => Turn::Event,
                _ = ping.tick() => Turn::Ping,
            };
            // A write blocked by a client that does not read gives way to the goodbye.
            let written = match turn {
                Turn::Goodbye => return close_going_away(&mut out, &mut inbox).await,
                Turn::Inbound(None) | Turn::Inbound(Some(Inbound::Gone)) => {
                    return Some(Ended::ByClient)
                }
                Turn::Inbound(Some(Inbound::Close(code))) => {
                    let code = code.unwrap_or(websocket::code::NORMAL);
                    let _ = out.close(code, "").await;
                    return Some(Ended::ByClient);
                }
                Turn::Inbound(Some(Inbound::Violation(v))) => {
                    let _ = out.close(v.code, v.reason).await;
                    return Some(Ended::ByClient);
                }
                Turn::Inbound(Some(Inbound::Idle)) => {
                    let _ = out.close(websocket::code::GOING_AWAY, "idle").await;
                    return Some(Ended::ByClient);
                }
                Turn::Inbound(Some(Inbound::Ping(payload))) => {
                    or_goodbye(&mut goodbye, out.pong(&payload)).await
                }
                Turn::Inbound(Some(Inbound::Message { text, data, held })) => {
                    let written = or_goodbye(&mut goodbye, out.echo(text, &data)).await;
                    drop(held);
                    written
                }
                Turn::Event => {
                    seq += 1;
                    or_goodbye(&mut goodbye, out.text(stamp(seq).as_bytes())).await
                }
                Turn::Ping => or_goodbye(&mut goodbye, out.ping()).await,
            };
            match written {
                Written::Done(Ok(())) => {}
                Written::Done(Err(_)) => return Some(Ended::ByClient),
                Written::ThenGoodbye => return close_going_away(&mut out, &mut inbox).await,
                // The goodbye came while the client was not reading: it cannot be delivered.
                Written::Stuck => return None,
            }
        }
    };
    tokio::select! {
        how = writer => how,
        () = reader => None,
    }
}

/// How a write went when the goodbye may come in the middle of it.
enum Written {
    /// Before the goodbye.
    Done(Result<(), websocket::WriteFailed>),
    /// The goodbye came while writing, and the write ended within [`CLOSE_TIMEOUT`] of it:
    /// the close comes next.
    ThenGoodbye,
    /// The goodbye came and the client still did not take the write: no close can follow.
    Stuck,
}

/// `write`, unless the goodbye comes first; then `write` has [`CLOSE_TIMEOUT`] to end (a client
/// reading slowly is behind, not gone) before the socket gives up on it.
async fn or_goodbye(
    goodbye: &mut Goodbye,
    write: impl Future<Output = Result<(), websocket::WriteFailed>>,
) -> Written {
    tokio::pin!(write);
    tokio::select! {
        biased;
        done = &mut write => Written::Done(done),
        () = goodbye.due() => match tokio::time::timeout(CLOSE_TIMEOUT, write).await {
            Ok(Ok(())) => Written::ThenGoodbye,
            _ => Written::Stuck,
        },
    }
}

/// Sends the close with 1001 and waits, briefly, for the client's: `None` when the client did
/// not take the close or did not answer it within [`CLOSE_TIMEOUT`] each.
async fn close_going_away<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut Writer<W>,
    inbox: &mut mpsc::Receiver<Inbound>,
) -> Option<Ended> {
    out.close(websocket::code::GOING_AWAY, "going away")
        .await
        .ok()?;
    let answer = tokio::time::timeout(CLOSE_TIMEOUT, async {
        loop {
            match inbox.recv().await {
                Some(Inbound::Close(_)) => return Some(Ended::Clean),
                // Messages sent before the client saw the close are dropped, not echoed.
                Some(Inbound::Message { .. } | Inbound::Ping(_)) => {}
                Some(Inbound::Gone) | None => return Some(Ended::ByClient),
                Some(Inbound::Violation(_) | Inbound::Idle) => return None,
            }
        }
    });
    answer.await.ok().flatten()
}
