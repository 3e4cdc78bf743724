//! Long-lived answers: `GET /events`, a stream of server-sent events, and their part in the
//! shutdown.
//!
//! A stream never ends by itself, so a pod that only waited for it would be held until SIGKILL
//! and the client would see the connection cut. Instead, once the drain begins (step 3 of
//! [`crate::server`]), every stream is told to go: it sends a last event, `bye`, and ends, at a
//! moment drawn at random in the second half of the drain, so its client reconnects once the
//! pod's endpoint is gone (to a pod that stays) and not every client at the same instant. The
//! stream's `retry:` field tells the client how soon to reconnect. Answers to `/events` always
//! carry `Connection: close`: the reconnection opens a new connection, which the Service sends
//! to a ready pod.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::app::App;

/// Time between two events of a stream.
pub(crate) const EVENT_EVERY: Duration = Duration::from_secs(1);

/// What a client is told to wait before reconnecting (the `retry:` field), in milliseconds.
pub(crate) const RETRY_MS: u64 = 1000;

/// When the streams were told to go, and over how long they may spread their goodbyes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Departure {
    at: Instant,
    window: Duration,
}

/// The streams open now and how the others ended, and the order to go.
#[derive(Debug)]
pub(crate) struct Streams {
    departure: watch::Sender<Option<Departure>>,
    open: AtomicU64,
    /// Ended with `bye` after the order to go.
    clean: AtomicU64,
    /// Ended by their client.
    by_client: AtomicU64,
    /// Still open when serving ended: cut.
    cut: AtomicU64,
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

impl Default for Streams {
    fn default() -> Self {
        Streams {
            departure: watch::Sender::new(None),
            open: AtomicU64::new(0),
            clean: AtomicU64::new(0),
            by_client: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        }
    }
}

impl Streams {
    /// Tells every stream, open or yet to open, to go within `window` from now.
    pub(crate) fn depart(&self, window: Duration) {
        self.departure.send_replace(Some(Departure {
            at: Instant::now(),
            window,
        }));
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> StreamCounts {
        StreamCounts {
            open: self.open.load(Ordering::Relaxed),
            clean: self.clean.load(Ordering::Relaxed),
            by_client: self.by_client.load(Ordering::Relaxed),
            cut: self.cut.load(Ordering::Relaxed),
        }
    }
}

/// One message of a stream: an event, or the last one.
#[derive(Debug)]
enum Message {
    Event(Bytes),
    Bye(Bytes),
}

/// The body of an `/events` answer: what its task sends, as it sends it. It holds one of the
/// slow slots (like `/delay`) for as long as it lives, and counts how its stream ended when it
/// is dropped.
#[derive(Debug)]
pub(crate) struct EventStream {
    messages: mpsc::Receiver<Message>,
    app: Arc<App>,
    said_bye: bool,
    _slot: OwnedSemaphorePermit,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.said_bye {
            return Poll::Ready(None);
        }
        match self.messages.poll_recv(cx) {
            Poll::Ready(Some(Message::Event(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Message::Bye(bytes))) => {
                self.said_bye = true;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let streams = self.app.streams();
        let ended = if self.said_bye {
            &streams.clean
        } else if streams.departure.borrow().is_some() {
            // Told to go, but dropped before its goodbye was handed to the connection.
            &streams.cut
        } else {
            &streams.by_client
        };
        ended.fetch_add(1, Ordering::Relaxed);
        streams.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the stream of one `/events` answer and returns its body, or `None` when every slow
/// slot is taken (streams and waiting requests together keep an eighth of `MAX_CONNECTIONS`
/// for probes and quick requests).
pub(crate) fn events(app: &Arc<App>) -> Option<EventStream> {
    let slot = app.slow_slot()?;
    // One message waits here at most: a client that does not read misses events (they are
    // dropped, not queued) but still gets its goodbye on time.
    let (sender, messages) = mpsc::channel(1);
    app.streams().open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(send_events(Arc::clone(app), sender));
    Some(EventStream {
        messages,
        app: Arc::clone(app),
        said_bye: false,
        _slot: slot,
    })
}

async fn send_events(app: Arc<App>, sender: mpsc::Sender<Message>) {
    let streams = app.streams();
    let mut departure = streams.departure.subscribe();
    let identity = app.info();
    let pod = identity.pod_info.pod_name().to_owned();
    let version = identity.pod_info.version;
    let event = |kind: &str, seq: u64| {
        let data = serde_json::json!({ "version": version, "pod": pod, "seq": seq });
        Bytes::from(format!("id: {seq}\nevent: {kind}\ndata: {data}\n\n"))
    };
    // First of all, how soon to reconnect: a stream may end with its first event.
    if sender
        .send(Message::Event(Bytes::from(format!(
            "retry: {RETRY_MS}\n\n"
        ))))
        .await
        .is_err()
    {
        return;
    }
    let mut tick = tokio::time::interval(EVENT_EVERY);
    tick.tick().await;
    let mut seq = 1;
    // A stream opened during the drain has been told already.
    let mut goodbye: Option<Instant> = departure.borrow_and_update().map(goodbye_at);
    loop {
        let at_goodbye = async {
            match goodbye {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = at_goodbye => {
                // The goodbye waits for room if it must: it is the one message that matters.
                let _ = sender.send(Message::Bye(event("bye", seq))).await;
                return;
            }
            Ok(()) = departure.changed(), if goodbye.is_none() => {
                if let Some(d) = *departure.borrow_and_update() {
                    goodbye = Some(goodbye_at(d));
                }
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

/// A moment in the second half of the departure window, drawn at random: by then the pod's
/// endpoint is gone (the first half covers its removal), and the clients do not all reconnect
/// at once. Past the window (a stream opened late in the drain), at once.
fn goodbye_at(d: Departure) -> Instant {
    let half = d.window / 2;
    let jitter = Duration::from_micros(fastrand::u64(0..=half.as_micros() as u64));
    let at = d.at + half + jitter;
    at.max(Instant::now())
}

/// `GET /ws`: a WebSocket that sends an event a second, echoes what its client sends, and
/// closes with 1001 "going away" when the drain tells it to go (at the same random moment as
/// the streams of events). It holds a slow slot for as long as it lives; it is counted clean
/// when its client answers the close, cut when it is still open as serving ends.
pub(crate) fn websocket(
    app: &Arc<App>,
    req: &mut hyper::Request<hyper::body::Incoming>,
) -> Option<Result<hyper::Response<http_body_util::Empty<Bytes>>, String>> {
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Some(Err("a WebSocket upgrade is required\n".into()));
    }
    let slot = app.slow_slot()?;
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(error) => return Some(Err(format!("bad WebSocket upgrade: {error}\n"))),
    };
    app.streams().open.fetch_add(1, Ordering::Relaxed);
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let ended = match upgrade.await {
            Ok(ws) => serve_socket(&app, ws).await,
            Err(_) => Ended::ByClient,
        };
        let streams = app.streams();
        match ended {
            Ended::Clean => &streams.clean,
            Ended::ByClient => &streams.by_client,
        }
        .fetch_add(1, Ordering::Relaxed);
        streams.open.fetch_sub(1, Ordering::Relaxed);
        drop(slot);
    });
    Some(Ok(response))
}

/// How a WebSocket ended (one still open when the process ends is counted as cut).
enum Ended {
    Clean,
    ByClient,
}

async fn serve_socket(
    app: &App,
    mut ws: fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>,
) -> Ended {
    use fastwebsockets::{Frame, OpCode, Payload};
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let streams = app.streams();
    let mut departure = streams.departure.subscribe();
    let identity = app.info();
    let pod = identity.pod_info.pod_name().to_owned();
    let version = identity.pod_info.version;
    let mut tick = tokio::time::interval(EVENT_EVERY);
    let mut seq = 0u64;
    let mut goodbye: Option<Instant> = departure.borrow_and_update().map(goodbye_at);
    loop {
        let at_goodbye = async {
            match goodbye {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = at_goodbye => {
                let close = Frame::close(1001, b"going away");
                if ws.write_frame(close).await.is_err() {
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
            Ok(()) = departure.changed(), if goodbye.is_none() => {
                if let Some(d) = *departure.borrow_and_update() {
                    goodbye = Some(goodbye_at(d));
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
                let data = serde_json::json!({ "version": version, "pod": pod, "seq": seq });
                let text = Frame::text(Payload::Owned(data.to_string().into_bytes()));
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
        while self.open.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
