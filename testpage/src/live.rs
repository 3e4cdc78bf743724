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
use tokio::sync::{mpsc, watch};
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

/// The body of an `/events` answer: what its task sends, as it sends it.
#[derive(Debug)]
pub(crate) struct EventStream {
    events: mpsc::Receiver<Bytes>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Starts the stream of one `/events` answer and returns its body.
pub(crate) fn events(app: Arc<App>) -> EventStream {
    // A client that reads slowly holds one event at most here; the task then waits for it.
    let (sender, events) = mpsc::channel(1);
    tokio::spawn(send_events(app, sender));
    EventStream { events }
}

async fn send_events(app: Arc<App>, sender: mpsc::Sender<Bytes>) {
    let streams = app.streams();
    streams.open.fetch_add(1, Ordering::Relaxed);
    let mut departure = streams.departure.subscribe();
    let identity = app.info();
    let pod = identity.pod_info.pod_name().to_owned();
    let version = identity.pod_info.version;
    let event = |kind: &str, seq: u64| {
        let data = serde_json::json!({ "version": version, "pod": pod, "seq": seq });
        Bytes::from(format!("id: {seq}\nevent: {kind}\ndata: {data}\n\n"))
    };
    let mut tick = tokio::time::interval(EVENT_EVERY);
    let mut seq = 0;
    // A stream opened during the drain has been told already.
    let mut goodbye: Option<Instant> = departure.borrow_and_update().map(goodbye_at);
    let ended = loop {
        let at_goodbye = async {
            match goodbye {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let sent = tokio::select! {
            biased;
            () = at_goodbye => {
                let _ = sender.send(event("bye", seq)).await;
                break &streams.clean;
            }
            changed = departure.changed(), if goodbye.is_none() => {
                // The server is gone with its sender: serving ended.
                let Ok(()) = changed else { break &streams.cut };
                if let Some(d) = *departure.borrow_and_update() {
                    goodbye = Some(goodbye_at(d));
                }
                continue;
            }
            _ = tick.tick() => {
                let message = if seq == 0 {
                    Bytes::from(format!("retry: {RETRY_MS}\n\n"))
                } else {
                    event("message", seq)
                };
                seq += 1;
                sender.send(message).await
            }
        };
        if sent.is_err() {
            // The body is gone: its client left, or the connection was cut at the end.
            break if goodbye.is_some() {
                &streams.cut
            } else {
                &streams.by_client
            };
        }
    };
    ended.fetch_add(1, Ordering::Relaxed);
    streams.open.fetch_sub(1, Ordering::Relaxed);
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
