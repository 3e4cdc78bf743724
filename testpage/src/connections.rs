//! Connections: the accept loop, the connection cap and every connection's deadlines.
//!
//! Every phase of a connection has a deadline, so no client can hold a connection (and a file
//! descriptor) by saying nothing:
//!
//! | phase | limit |
//! |---|---|
//! | from accept to the first request (HTTP/1 head, or HTTP/2 preface and headers) | `HEADER_TIMEOUT` ([`HEADER_READ_TIMEOUT`]) |
//! | after the first request, a connection with no request in flight (HTTP/1 keep-alive and each later head, HTTP/2 idle) | `IDLE_TIMEOUT` (75 s) |
//! | after shutdown began, a connection with no request in flight | [`CLOSE_LINGER`] |
//!
//! At most `MAX_CONNECTIONS` connections are open at once, WebSockets included: an upgraded
//! socket is served in its connection's task and slot (see the `websocket` module), and an
//! HTTP/2 connection takes three slots (see the `protocol` module). At the limit, or when the
//! process runs out of file descriptors, connections that have had no request in flight for
//! [`SHED_AFTER`] are closed to make room (as nginx reuses idle keep-alive connections), and new
//! connections wait in the kernel's listen backlog until a slot frees. A flood of silent
//! connections therefore delays a real client by about a second, not by the full timeout.
//!
//! `Connections` is what [`crate::server`] drives: `Connections::accept_until` serves until
//! a future completes (it runs once while serving and once while draining), then
//! `Connections::close` and `Connections::cut` end them.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::protocol::{Builders, ConnectionHandle, Graceful};
use crate::shutdown::{Departure, Phase};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What answers every connection's requests: the demo's routes (`routes::Routes`), or a
/// service's own. The connections own everything else: the cap, the deadlines, upgrades, the
/// shutdown.
pub(crate) trait Router: Send + Sync + 'static {
    /// The body of every answer.
    type Body: Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;
    /// An answer: ready, or to be awaited inside the connection.
    type Answer: Future<Output = Response<Self::Body>> + Send + Unpin + 'static;

    /// Answers one request that came on `connection` (for an upgrade, or to give up on a
    /// client that stopped reading).
    fn answer(&self, req: Request<Incoming>, connection: &ConnectionHandle) -> Self::Answer;

    /// What to answer when `answer`, or its future, panicked (the panic is logged; the other
    /// requests and connections go on).
    fn panicked(&self) -> Response<Self::Body>;
}

/// How long a new connection may take to send its first request (`HEADER_TIMEOUT`'s default).
/// Silent clients, and clients that send a head slowly, are cut off after this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may say nothing, by phase (the settings `HEADER_TIMEOUT` and
/// `IDLE_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From accept to the first request.
    pub header: Duration,
    /// After a request, with none in flight.
    pub idle: Duration,
}

/// At the connection limit, connections idle for at least this long are closed to make room.
pub const SHED_AFTER: Duration = Duration::from_secs(1);

/// Once shutdown has begun, how long a connection with no request in flight has to take its
/// GOAWAY or its close before it is dropped.
pub const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Requests at once on one HTTP/2 connection (a probe or a gRPC client uses one or two).
pub const MAX_STREAMS: u32 = 8;

/// The largest request head accepted; larger ones get `431` (HTTP/1) or a stream reset (HTTP/2).
///
/// A connection keeps the buffer its largest head needed for as long as it stays open, so this
/// times `MAX_CONNECTIONS` must fit the pod's memory: the default 512 connections each holding
/// a head just under 16 KiB take about 14 MiB, inside the tutorials' `memory: 20Mi` (at 64 KiB
/// they took 38 MiB). Node.js has the same default.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most header lines in an HTTP/1 request (hyper's default); more get `431`.
pub const MAX_HEADERS: usize = 100;

/// At most one "accept failed" or "connection limit reached" line per this period.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Everything a new connection needs, and the signals that end connections.
pub(crate) struct Connections<R> {
    router: Arc<R>,
    builders: Arc<Builders>,
    app: Arc<App>,
    /// Open connections at most: each holds a permit until it closes, so all permits back
    /// means every connection is closed.
    limit: Arc<Semaphore>,
    /// Bumped each time there is no room for a new connection: connections idle for
    /// [`SHED_AFTER`] close. (The shutdown's phases come from `App::phases`.)
    shed: watch::Sender<u64>,
    deadlines: Deadlines,
    /// Throttles the accept loop's warnings.
    log: Mutex<Throttle>,
}

impl<R: Router> Connections<R> {
    /// Ready to accept for `app`, answered by `router`, at most `max_connections` at once, each
    /// closed when it says nothing for longer than its `deadlines` allow.
    pub(crate) fn new(
        app: Arc<App>,
        router: R,
        max_connections: usize,
        deadlines: Deadlines,
    ) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // No timer of hyper's per request head: each connection's own timer (`drive`) bounds
            // every phase, heads included, and costs nothing per request.
            .header_read_timeout(None)
            .max_buf_size(MAX_HEADER_BYTES)
            // The buffer can hold more than the limit at once (it grows by doubling): a head
            // that arrives whole is measured too.
            .max_header_size(MAX_HEADER_BYTES);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            // hyper allows 200 streams per connection, and each answer a client leaves unread
            // holds memory until the idle timeout: 512 connections x 200 streams took 249 MiB.
            .max_concurrent_streams(MAX_STREAMS);
        app.metrics().max_connections(max_connections);
        let limit = Arc::new(Semaphore::new(max_connections));
        Connections {
            router: Arc::new(router),
            builders: Arc::new(Builders {
                http1,
                http2,
                slots: Arc::clone(&limit),
            }),
            app,
            limit,
            shed: watch::Sender::new(0),
            deadlines,
            log: Mutex::new(Throttle::default()),
        }
    }

    /// Accepts and serves connections until `until` completes, and returns its output.
    pub(crate) async fn accept_until<T>(
        &self,
        listener: &TcpListener,
        until: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(until);
        // Counts each time the limit is reached, not each look while it holds.
        let mut at_limit = false;
        loop {
            // A free slot first: at the limit, new connections wait in the listen backlog
            // instead of taking file descriptors and memory.
            let permit = match Arc::clone(&self.limit).try_acquire_owned() {
                Ok(permit) => {
                    at_limit = false;
                    permit
                }
                Err(_) => {
                    if !std::mem::replace(&mut at_limit, true) {
                        self.app.metrics().limit_reached();
                    }
                    self.warn("connection limit reached; closing idle connections", None);
                    self.shed.send_modify(|n| *n += 1);
                    tokio::select! {
                        biased;
                        done = &mut until => return done,
                        permit = Arc::clone(&self.limit).acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => continue,
                        },
                        // Connections too fresh to shed may be idle by now.
                        () = tokio::time::sleep(SHED_AFTER / 4) => continue,
                    }
                }
            };
            tokio::select! {
                biased;
                done = &mut until => return done,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.serve_connection(stream, peer, permit),
                    Err(error) => self.accept_error(error).await,
                },
            }
        }
    }

    fn serve_connection(&self, stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let handle = ConnectionHandle::new(self.deadlines.idle);
        let service = {
            let router = Arc::clone(&self.router);
            let activity = Arc::clone(&activity);
            let handle = handle.clone();
            service_fn(move |req: Request<Incoming>| {
                let request = activity.begin();
                // A panic in a handler fails its request, not the process: the others go on
                // and so does the drain.
                let answer = catch_unwind(AssertUnwindSafe(|| router.answer(req, &handle)));
                let router = Arc::clone(&router);
                async move {
                    // The request stays in flight until its body is sent: a stream of events
                    // keeps its connection from counting as idle for as long as it runs.
                    let answered = match answer {
                        Ok(answer) => Unwinding(answer).await,
                        Err(panic) => Err(panic),
                    };
                    let response = answered.unwrap_or_else(|panic| {
                        tracing::error!(panic = panic_text(&panic), "a handler panicked");
                        router.panicked()
                    });
                    Ok::<_, Infallible>(response.map(|body| Tracked {
                        body,
                        request: Some(request),
                    }))
                }
            })
        };
        // Boxed here, once: the task then holds a pointer, and spawning it copies a few words
        // instead of the whole connection state.
        let conn = Box::pin(self.builders.serve(stream, service));
        let app = Arc::clone(&self.app);
        let mut rules = Rules {
            phase: app.phases().watch(),
            shed: self.shed.subscribe(),
            deadlines: self.deadlines,
        };
        let counted = Counted::new(Arc::clone(&app));
        self.app.phases().spawn(async move {
            let (result, mut end) = drive(conn, &activity, &mut rules, &handle).await;
            // Upgraded (a WebSocket): the socket is served here, in the connection's slot.
            if let Some(socket) = handle.take_upgraded() {
                end = tokio::select! {
                    () = socket => End::Finished,
                    () = rules.cut_ordered() => End::Cut,
                    () = handle.cut_asked() => End::Cut,
                };
            }
            match end {
                End::Finished => {}
                End::TimedOut => app.metrics().timed_out(),
                End::Cut => tracing::debug!(%peer, "connection cut at shutdown"),
            }
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(counted);
            drop(permit);
        });
    }

    /// Accept fails on a full file-descriptor table or a connection reset before accept;
    /// neither is a reason to stop serving. Pause briefly on resource exhaustion so the loop
    /// does not spin, and log at most one line per [`LOG_EVERY`].
    async fn accept_error(&self, error: io::Error) {
        self.app.metrics().accept_error();
        self.warn("accept failed", Some(&error));
        // Out of file descriptors: make room the same way as at the connection limit.
        self.shed.send_modify(|n| *n += 1);
        if !matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        ) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn warn(&self, message: &'static str, error: Option<&io::Error>) {
        let mut throttle = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(suppressed) = throttle.allow(message) {
            match error {
                Some(error) => tracing::warn!(%error, suppressed, "{message}"),
                None => tracing::warn!(suppressed, "{message}"),
            }
        }
    }
}

/// One open connection in the lifecycle's count, for as long as it lives: counted out when its
/// task ends, whether it returns or unwinds.
struct Counted(Arc<App>);

impl Counted {
    fn new(app: Arc<App>) -> Self {
        app.lifecycle().connection_opened();
        Counted(app)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.lifecycle().connection_closed();
    }
}

/// A future whose panic is caught and given as its output.
struct Unwinding<F>(F);

impl<F: Future + Unpin> Future for Unwinding<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// A panic's message, when it has one.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Lets a repeated warning through at most once per [`LOG_EVERY`], counting the rest.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<(&'static str, Instant)>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(lines suppressed since the last one)` when this line may be logged.
    fn allow(&mut self, message: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some((last, at)) if last == message && now.duration_since(at) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some((message, now));
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// What one connection is doing, as its requests start and end.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests being answered on this connection.
    in_flight: AtomicUsize,
    /// A request has been answered.
    served: AtomicBool,
    /// Milliseconds from `opened` to the end of the last request (read only while none is in
    /// flight, so the start of a request need not be noted).
    last_ms: AtomicU64,
}

/// Ends one request on a connection.
struct RequestGuard(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(Arc::clone(self))
    }

    /// When this connection is due to be closed for saying nothing; `None` while a request
    /// is in flight (requests have their own bounds: `/delay` and `LATENCY` stop at 60 s).
    fn deadline(&self, shutting_down: bool, deadlines: Deadlines) -> Option<Instant> {
        let limit = if shutting_down {
            CLOSE_LINGER
        } else if self.served.load(Ordering::Relaxed) {
            deadlines.idle
        } else {
            deadlines.header
        };
        self.idle_since().map(|since| since + limit)
    }

    /// Requests being answered now.
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Since when no request has been in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.served.store(true, Ordering::Relaxed);
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that ends its request once it has given its last frame (or is dropped).
///
/// Not when that frame is sent: an answer that waits for a client that reads nothing (HTTP/2
/// flow control at zero, a full socket) leaves its connection idle, and the idle timeout and
/// shedding close it.
struct Tracked<B> {
    body: B,
    request: Option<RequestGuard>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.body.is_end_stream() {
            self.request = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How a connection ended.
enum End {
    /// The client or the protocol closed it.
    Finished,
    /// It said nothing for too long, or was idle when room was needed.
    TimedOut,
    /// Serving ended while it was still open.
    Cut,
}

/// What tells a connection to close: the shutdown's phase, the need for room, its idle limit.
struct Rules {
    phase: watch::Receiver<Phase>,
    shed: watch::Receiver<u64>,
    deadlines: Deadlines,
}

impl Rules {
    /// Completes once serving is over (or the server is gone).
    async fn cut_ordered(&mut self) {
        // An error means the server is gone: so is the connection.
        let _ = self.phase.wait_for(|p| p.cut()).await;
    }
}

/// Runs one connection to its end, closing it when it has no request in flight for longer
/// than its phase allows, when room is needed, and at shutdown.
async fn drive<C: Graceful>(
    mut conn: Pin<Box<C>>,
    activity: &Activity,
    rules: &mut Rules,
    handle: &ConnectionHandle,
) -> (Result<(), hyper::Error>, End) {
    let mut seen_shed = *rules.shed.borrow_and_update();
    let mut shedding = true;
    let departure = rules.phase.borrow_and_update().departure();
    let mut end = End::Finished;
    let mut shutting_down = false;
    // The timer wakes at the earliest moment a limit could pass, then looks at the activity:
    // requests reset the count without touching the timer.
    let check = rules.deadlines.header.min(rules.deadlines.idle);
    // In the drain: when an HTTP/2 connection sends its GOAWAY. A connection accepted once the
    // drain has begun draws its moment now.
    let mut goaway = departure.map(Departure::moment);
    // A connection draws its moment once: later orders (room needed, every SHED_AFTER / 4 at
    // the limit) leave it alone.
    let mut departing = departure.is_some();
    let timer = tokio::time::sleep_until(sooner(tokio::time::Instant::now() + check, goaway));
    tokio::pin!(timer);
    // Asks the connection to finish (HTTP/1 closes once the response in flight is written,
    // HTTP/2 sends GOAWAY) and gives it CLOSE_LINGER once idle before the socket is dropped.
    macro_rules! close {
        () => {{
            conn.as_mut().graceful_shutdown();
            shutting_down = true;
            activity.touch();
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + CLOSE_LINGER);
        }};
    }
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => return (result, end),
            // An answer whose client stopped reading gave up on it: the connection ends once
            // the stuck answers are all that is left in flight on it.
            () = handle.cut_asked() => {
                if activity.in_flight() <= handle.stuck() {
                    return (Ok(()), End::Cut);
                }
                timer.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
            }
            changed = rules.shed.changed(), if shedding => {
                // The sender lives as long as the accept loop; once it is gone, nothing sheds.
                shedding = changed.is_ok();
                if shedding {
                    let shed = *rules.shed.borrow_and_update();
                    let idle = activity
                        .idle_since()
                        .is_some_and(|since| since.elapsed() >= SHED_AFTER);
                    if std::mem::replace(&mut seen_shed, shed) != shed && idle && !shutting_down {
                        end = End::TimedOut;
                        close!();
                    }
                }
            }
            changed = rules.phase.changed() => {
                let Ok(()) = changed else {
                    // The server is gone: so is this connection.
                    return (Ok(()), End::Cut);
                };
                let phase = *rules.phase.borrow_and_update();
                if phase.cut() {
                    return (Ok(()), End::Cut);
                }
                if phase.closing() && !shutting_down {
                    close!();
                } else if let Some(departure) =
                    phase.departure().filter(|_| !departing && !shutting_down)
                {
                    departing = true;
                    let at = departure.moment();
                    goaway = Some(at);
                    if at < timer.deadline() {
                        timer.as_mut().reset(at);
                    }
                }
            }
            () = &mut timer => {
                if handle.stuck() > 0 && activity.in_flight() <= handle.stuck() {
                    return (Ok(()), End::Cut);
                }
                if goaway.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    goaway = None;
                    if !shutting_down {
                        // An HTTP/1 connection may still turn to HTTP/2 (its preface not read
                        // yet): it then says goodbye at once, its moment being past.
                        if conn.is_http2() {
                            close!();
                            continue;
                        }
                        conn.as_mut().leave_when_http2();
                    }
                }
                let now = Instant::now();
                match activity.deadline(shutting_down, rules.deadlines) {
                    // The peer ignored the close: drop the socket.
                    Some(due) if due <= now && shutting_down => {
                        let end = if matches!(end, End::TimedOut) { end } else { End::Cut };
                        return (Ok(()), end);
                    }
                    Some(due) if due <= now => {
                        end = End::TimedOut;
                        close!();
                    }
                    Some(due) => timer.as_mut().reset(sooner(due.into(), goaway)),
                    // A request in flight: look again later (its end restarts the count).
                    None => {
                        let again = if shutting_down || handle.stuck() > 0 {
                            CLOSE_LINGER
                        } else {
                            check
                        };
                        timer.as_mut().reset(sooner((now + again).into(), goaway));
                    }
                }
            }
        }
    }
}

/// `at`, or the GOAWAY's moment if that comes first.
fn sooner(at: tokio::time::Instant, goaway: Option<tokio::time::Instant>) -> tokio::time::Instant {
    goaway.map_or(at, |g| g.min(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Answer = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

    /// A one-route router whose handler has bugs on two paths.
    struct Buggy;

    impl Router for Buggy {
        type Body = Full<Bytes>;
        type Answer = Answer;

        fn answer(&self, req: Request<Incoming>, _: &ConnectionHandle) -> Answer {
            match req.uri().path() {
                "/panic" => panic!("a bug in the handler"),
                "/panic-later" => Box::pin(async {
                    tokio::task::yield_now().await;
                    panic!("a bug in the handler's future")
                }),
                _ => Box::pin(async { Response::new(Full::new(Bytes::from_static(b"ok\n"))) }),
            }
        }

        fn panicked(&self) -> Response<Full<Bytes>> {
            let mut response = Response::new(Full::new(Bytes::from_static(b"bug\n")));
            *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_fails_its_request_and_nothing_else() {
        let app = App::for_tests(16);
        let deadlines = Deadlines {
            header: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        };
        let conns = Connections::new(Arc::clone(&app), Buggy, 16, deadlines);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answers = conns
            .accept_until(&listener, async {
                let kept = TcpStream::connect(addr).await.unwrap();
                let answers = [
                    get(addr, "/panic").await,
                    get(addr, "/panic-later").await,
                    get(addr, "/").await,
                ];
                (answers, kept)
            })
            .await;
        let ([now, later, fine], kept) = answers;
        assert!(
            now.starts_with("HTTP/1.1 500") && now.ends_with("bug\n"),
            "{now}"
        );
        assert!(later.starts_with("HTTP/1.1 500"), "{later}");
        assert!(
            fine.starts_with("HTTP/1.1 200") && fine.ends_with("ok\n"),
            "{fine}"
        );
        // The drain still ends: the connection left open closes, and every task is done.
        app.phases().close();
        tokio::time::timeout(Duration::from_secs(5), app.phases().all_done())
            .await
            .expect("every connection closed");
        assert_eq!(app.lifecycle().connections(), 0);
        drop(kept);
    }
}
