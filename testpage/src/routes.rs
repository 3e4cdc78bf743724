//! The HTTP routes. Everything a response shows is computed once in [`App::new`], so serving the
//! page costs a copy of its prebuilt headers, a clone of shared bytes and two atomic loads for
//! the faults. Answers are made synchronously ([`Answer::Now`]); only those that wait (`LATENCY`,
//! `/delay`, gRPC) become a future of their own.
//!
//! [`App::new`]: crate::app::App::new

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

use crate::app::{App, TEXT_PLAIN};
use crate::duration;
use crate::faults::{Fault, FaultChange};
use crate::grpc::{self, GrpcBody};
use crate::lifecycle::EnableError;
use crate::live::{self, EventStream};
use crate::protocol::ConnectionHandle;

/// Longest wait `/delay/{duration}` grants.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(60);

/// The live rollout view: one self-contained page (HTML, and its CSS and script served beside
/// it, so that its policy can forbid every inline script), polling `/`.
const UI: &[u8] = include_bytes!("ui.html");
const UI_JS: &[u8] = include_bytes!("ui.js");
const UI_CSS: &[u8] = include_bytes!("ui.css");

/// What the live view may do: load its own script and style, talk to its own origin, and
/// nothing else; never be framed by another page (a framed view could be clicked into applying
/// faults by the page around it, the request then coming from the view's own origin).
const UI_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
);

/// Sent by the live view's polls; answered with `Connection: close`.
const X_TESTPAGE_VIEW: HeaderName = HeaderName::from_static("x-testpage-view");

const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const JAVASCRIPT: HeaderValue = HeaderValue::from_static("text/javascript; charset=utf-8");
const CSS: HeaderValue = HeaderValue::from_static("text/css; charset=utf-8");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
/// The page's and the plain answers' content type.
const TEXT: HeaderValue = HeaderValue::from_static(TEXT_PLAIN);
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const OPENMETRICS: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");

/// The response body: the whole answer at once, a stream of events (`/events`), or a gRPC
/// answer.
pub(crate) type Body = Either<Full<Bytes>, Either<EventStream, GrpcBody>>;

/// An answer: ready at once (almost every request), or after a wait (`LATENCY`, `/delay`,
/// gRPC). Only an answer that waits is a future of its own, boxed: the page's request path
/// allocates, moves and polls no state machine.
pub(crate) enum Answer {
    /// The response.
    Now(Response<Body>),
    /// The response once the wait is over.
    Later(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
    /// Already given (a future polled after it completed).
    Given,
}

impl Future for Answer {
    type Output = Response<Body>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        match &mut *self {
            Answer::Later(wait) => wait.as_mut().poll(cx),
            Answer::Now(_) => match std::mem::replace(&mut *self, Answer::Given) {
                Answer::Now(response) => Poll::Ready(response),
                _ => unreachable!("matched as Now above"),
            },
            Answer::Given => panic!("an answer polled after it was given"),
        }
    }
}

/// The demo's routes, as the connections call them.
pub(crate) struct Routes(pub Arc<App>);

impl crate::connections::Router for Routes {
    type Body = Body;
    type Answer = Answer;

    fn answer(&self, req: Request<Incoming>, connection: &ConnectionHandle) -> Answer {
        handle(&self.0, req, connection)
    }

    fn panicked(&self) -> Response<Body> {
        let mut response = text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        identify(&self.0, &mut response);
        response
    }
}

/// An answer that waits.
fn later(wait: impl Future<Output = Response<Body>> + Send + 'static) -> Answer {
    Answer::Later(Box::pin(wait))
}

/// Answers one request. Never fails: every problem is an HTTP status.
pub(crate) fn handle(
    app: &Arc<App>,
    mut req: Request<Incoming>,
    connection: &ConnectionHandle,
) -> Answer {
    let _in_flight = app.lifecycle().track_request();
    let started = Instant::now();
    let streaming = req.uri().path() == "/events"
        && (req.method() == Method::GET || req.method() == Method::HEAD);
    // Once readiness is withdrawn (a preStop hook, SIGTERM), ask HTTP/1 clients to reconnect, so
    // that keep-alive connections move to the pods that are still ready instead of ending in a
    // reset when this one exits. HTTP/2 has no such header; its connections get a GOAWAY in the
    // drain's second half (see `server`, step 3).
    //
    // The live view's polls (`X-Testpage-View`) are always answered this way: a browser keeps
    // one connection open and a Service balances connections, not requests, so the view would
    // otherwise see one pod until that pod goes away.
    //
    // A stream of events is too: when it ends, its client reconnects on a new connection.
    let http1 = req.version() <= Version::HTTP_11;
    let asked_to_reconnect = http1 && (streaming || has_header(&req, &X_TESTPAGE_VIEW));
    // hyper leaves out a HEAD answer's body over HTTP/1 only; over HTTP/2 a body there is a
    // protocol error to the client. The length stays that of the GET answer.
    let head_over_http2 = req.method() == Method::HEAD && req.version() == Version::HTTP_2;
    let (route, answer) = if streaming {
        ("/events", Answer::Now(events(app, &req, connection)))
    } else if req.uri().path() == "/ws"
        && (req.method() == Method::GET || req.method() == Method::HEAD)
    {
        ("/ws", Answer::Now(websocket(app, &mut req, connection)))
    } else if req.uri().path().starts_with(grpc::PATH) {
        // gRPC (HTTP/2): its statuses travel in trailers. tonic hands a `Watch` its
        // connection through the request's extensions.
        req.extensions_mut().insert(connection.clone());
        let serving = Arc::clone(app);
        let answer = later(async move {
            let response = grpc::serve(&serving, req).await;
            response.map(|b| Either::Right(Either::Right(b)))
        });
        (grpc::ROUTE, answer)
    } else {
        route(app, &req)
    };
    let finish = Finish {
        route,
        started,
        http1,
        asked_to_reconnect,
        head_over_http2,
        streaming,
    };
    match answer {
        Answer::Now(response) => Answer::Now(finish.apply(app, response)),
        Answer::Later(response) => {
            let app = Arc::clone(app);
            later(async move {
                // Counted from the first poll, which hyper makes as soon as it has the answer.
                let _in_flight = app.lifecycle().track_request();
                finish.apply(&app, response.await)
            })
        }
        Answer::Given => Answer::Given,
    }
}

/// What every answer gets once it is ready, noted from its request.
#[derive(Clone, Copy)]
struct Finish {
    route: &'static str,
    started: Instant,
    http1: bool,
    asked_to_reconnect: bool,
    head_over_http2: bool,
    /// An endless stream: no length to claim.
    streaming: bool,
}

impl Finish {
    fn apply(self, app: &App, response: Response<Body>) -> Response<Body> {
        let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let mut response = answered(app, self.route, self.started, response);
        let reconnect = self.asked_to_reconnect || (self.http1 && app.lifecycle().leaving());
        if reconnect && !upgraded {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.head_over_http2 {
            // A stream has no length: its HEAD answer claims none.
            let length = response
                .body()
                .size_hint()
                .exact()
                .filter(|_| !self.streaming);
            if let Some(length) = length {
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            *response.body_mut() = Either::Left(Full::new(Bytes::new()));
        }
        response
    }
}

/// Counts an answer in the metrics and adds the pod's identity headers.
fn answered(
    app: &App,
    route: &'static str,
    started: Instant,
    mut response: Response<Body>,
) -> Response<Body> {
    app.metrics().record(
        route,
        response.status().as_u16(),
        started.elapsed(),
        app.lifecycle().is_draining(),
    );
    // The page (`/`) comes with the identity already (`page`); other answers get it here.
    if route != "/" {
        identify(app, &mut response);
    }
    response
}

/// Adds the pod's identity headers.
fn identify(app: &App, response: &mut Response<Body>) {
    let headers = response.headers_mut();
    for (name, value) in app.identity() {
        headers.insert(name.clone(), value.clone());
    }
}

fn route(app: &Arc<App>, req: &Request<Incoming>) -> (&'static str, Answer) {
    let path = req.uri().path();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return get(app, req, path);
    }
    if req.method() == Method::POST && app.admin() {
        if let Some(answer) = admin(app, req, path) {
            return ("/admin", Answer::Now(answer));
        }
    }
    match path {
        "/" | "/healthz" | "/livez" | "/readyz" | "/healthy.html" | "/info" | "/metrics"
        | "/headers" | "/ui" | "/events" | "/ws" => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            ("other", Answer::Now(response))
        }
        _ => (
            "other",
            Answer::Now(text(StatusCode::NOT_FOUND, "not found\n")),
        ),
    }
}

fn get(app: &Arc<App>, req: &Request<Incoming>, path: &str) -> (&'static str, Answer) {
    let (route, response) = match path {
        "/" => return ("/", page(app, req)),
        "/healthz" | "/livez" if app.lifecycle().is_live() => {
            ("/healthz", text(StatusCode::OK, "ok\n"))
        }
        "/healthz" | "/livez" => (
            "/healthz",
            text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n"),
        ),
        "/readyz" | "/healthy.html" if app.lifecycle().is_ready() => {
            ("/readyz", text(StatusCode::OK, "ready\n"))
        }
        "/readyz" | "/healthy.html" => (
            "/readyz",
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        ),
        "/info" => ("/info", json(&app.info())),
        "/metrics" => (
            "/metrics",
            body(
                StatusCode::OK,
                OPENMETRICS,
                app.metrics().encode(app.snapshot()).into(),
            ),
        ),
        "/headers" => ("/headers", json(&headers_json(req))),
        "/ui" | "/ui/" => ("/ui", ui(HTML, UI)),
        "/ui.js" | "/ui/ui.js" => ("/ui", ui(JAVASCRIPT, UI_JS)),
        "/ui.css" | "/ui/ui.css" => ("/ui", ui(CSS, UI_CSS)),
        "/fault" if app.admin() => ("/admin", json(&app.faults().settings())),
        _ => {
            if let Some(wait) = path.strip_prefix("/delay/") {
                return ("/delay", delay(app, wait));
            } else if let Some(code) = path.strip_prefix("/status/") {
                ("/status", status(code))
            } else {
                ("other", text(StatusCode::NOT_FOUND, "not found\n"))
            }
        }
    };
    (route, Answer::Now(response))
}

/// The page, with the configured faults: added latency, a share of errors, a crash after
/// `FAIL_AFTER` requests.
fn page(app: &Arc<App>, req: &Request<Incoming>) -> Answer {
    let fault = app.faults().draw();
    let as_json = wants_json(req);
    if fault.delay.is_zero() {
        return Answer::Now(page_after(app, fault, as_json));
    }
    let waiting = Arc::clone(app);
    later(async move {
        if !waiting.sleep_in_slot(fault.delay).await {
            let mut response = too_many_slow();
            identify(&waiting, &mut response);
            return response;
        }
        page_after(&waiting, fault, as_json)
    })
}

/// The page once its latency, if any, has passed.
fn page_after(app: &App, fault: Fault, as_json: bool) -> Response<Body> {
    // The request that reaches FAIL_AFTER is answered; the server then stops (see `server`).
    app.faults().count_page_request();
    let mut response = if let Some(code) = fault.fail_with {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        text(code, "injected error (ERROR_RATE)\n")
    } else if as_json {
        json(&app.info())
    } else {
        // The usual answer: its headers, identity included, are copied whole.
        let mut response = Response::new(Either::Left(Full::new(app.page())));
        *response.headers_mut() = app.page_headers().clone();
        return response;
    };
    identify(app, &mut response);
    response
}

/// The admin routes change the pod's state, so a web page from another origin must not be able
/// to call them: a student's browser can reach the pod's NodePort, and a cross-site form POST
/// (a "simple request") needs no CORS preflight. Browsers say where a request comes from:
/// `Sec-Fetch-Site`, which page scripts cannot set, decides when present (it stays right behind
/// a proxy that rewrites `Host`); older browsers send only `Origin`, which must then name the
/// host the request was sent to. Clients that are not browsers (curl, `kubectl exec`, probe)
/// send neither and keep working.
fn cross_origin(req: &Request<Incoming>) -> Option<String> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return (site != "same-origin" && site != "none").then(|| {
            format!(
                "Sec-Fetch-Site: {}",
                String::from_utf8_lossy(site.as_bytes())
            )
        });
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| headers.get(header::HOST).map(HeaderValue::as_bytes));
    // A browser leaves the scheme's default port out of Origin; a Host header may carry it.
    let (origin_host, default_port) = match origin.as_bytes() {
        o if o.starts_with(b"http://") => (Some(&o[7..]), &b":80"[..]),
        o if o.starts_with(b"https://") => (Some(&o[8..]), &b":443"[..]),
        _ => (None, &b""[..]),
    };
    let host = host.map(|h| {
        h.strip_suffix(default_port)
            .filter(|_| !default_port.is_empty())
            .unwrap_or(h)
    });
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => None,
        _ => Some(format!(
            "Origin: {}",
            String::from_utf8_lossy(origin.as_bytes())
        )),
    }
}

fn admin(app: &App, req: &Request<Incoming>, path: &str) -> Option<Response<Body>> {
    if !matches!(
        path,
        "/readyz/disable" | "/readyz/enable" | "/healthz/disable" | "/healthz/enable" | "/fault"
    ) {
        return None;
    }
    if let Some(from) = cross_origin(req) {
        tracing::warn!(path, from, "cross-origin admin request refused");
        return Some(text(
            StatusCode::FORBIDDEN,
            format!("admin routes answer same-origin requests only ({from})\n"),
        ));
    }
    let lifecycle = app.lifecycle();
    let answer = match path {
        "/readyz/disable" => match lifecycle.withdraw_readiness() {
            Ok(()) => text(StatusCode::OK, "readiness disabled\n"),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "/readyz/enable" => match lifecycle.restore_readiness() {
            Ok(()) => text(StatusCode::OK, "readiness enabled\n"),
            Err(e @ EnableError::NotServing(_)) => text(StatusCode::CONFLICT, format!("{e}\n")),
            Err(e @ EnableError::File(_)) => {
                text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
            }
        },
        "/healthz/disable" => {
            lifecycle.set_live(false);
            text(StatusCode::OK, "liveness disabled\n")
        }
        "/healthz/enable" => {
            lifecycle.set_live(true);
            text(StatusCode::OK, "liveness enabled\n")
        }
        "/fault" => match req.uri().query().unwrap_or("").parse::<FaultChange>() {
            Ok(FaultChange {
                version: Some(version),
                ..
            }) if version != app.pod().version => text(
                StatusCode::CONFLICT,
                format!(
                    "this pod serves version {}, not {version}\n",
                    app.pod().version
                ),
            ),
            Ok(change) => {
                app.faults().set(&change);
                tracing::info!(?change, "faults changed");
                json(&app.faults().settings())
            }
            Err(problem) => text(StatusCode::BAD_REQUEST, format!("{problem}\n")),
        },
        _ => return None,
    };
    Some(answer)
}

fn delay(app: &Arc<App>, wait: &str) -> Answer {
    match duration::parse(wait) {
        Ok(wait) => {
            let waiting = Arc::clone(app);
            later(async move {
                if waiting.sleep_in_slot(wait.min(MAX_DELAY)).await {
                    body(StatusCode::OK, TEXT, waiting.page())
                } else {
                    too_many_slow()
                }
            })
        }
        Err(problem) => Answer::Now(text(
            StatusCode::BAD_REQUEST,
            format!("bad delay: {problem}\n"),
        )),
    }
}

fn too_many_slow() -> Response<Body> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many slow requests at once: part of MAX_CONNECTIONS is kept for quick ones\n",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `/status/{code}`: that status, for 200-599. 100-199 are informational and cannot end an
/// HTTP exchange, so they get 400 saying so, like anything outside 100-599.
fn status(code: &str) -> Response<Body> {
    match code.parse::<u16>().ok().filter(|c| (100..=599).contains(c)) {
        Some(code) if code >= 200 => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            let reason = status.canonical_reason().unwrap_or("");
            text(status, format!("{code} {reason}\n"))
        }
        Some(code) => text(
            StatusCode::BAD_REQUEST,
            format!("{code} is informational: HTTP cannot send it as a final answer\n"),
        ),
        None => text(
            StatusCode::BAD_REQUEST,
            format!("bad status {code:?}: use 100-599\n"),
        ),
    }
}

/// The most of the request's header values `/headers` echoes, in bytes: the answer stays small
/// whatever the head (16 KiB at most), so a client that sends large heads and reads nothing
/// makes no connection hold much.
const HEADERS_ECHOED: usize = 8 * 1024;

fn headers_json(req: &Request<Incoming>) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    let mut room = HEADERS_ECHOED;
    let mut left_out = 0;
    for name in req.headers().keys() {
        let mut values = Vec::new();
        for value in req.headers().get_all(name) {
            // Bytes that are not UTF-8 show as `?`, one for one.
            let mut text: String = String::from_utf8_lossy(value.as_bytes())
                .chars()
                .map(|c| {
                    if c == char::REPLACEMENT_CHARACTER {
                        '?'
                    } else {
                        c
                    }
                })
                .collect();
            if text.len() > room {
                left_out += text.len() - room;
                let cut = (0..=room)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push('…');
            }
            room -= text.len().min(room);
            values.push(serde_json::Value::from(text));
        }
        let value = match <[serde_json::Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => many.into(),
        };
        map.insert(name.as_str().to_owned(), value);
    }
    if left_out > 0 {
        map.insert(
            "…".to_owned(),
            format!("{left_out} bytes of header values not shown (at most {HEADERS_ECHOED})")
                .into(),
        );
    }
    map
}

// A request has a few headers (at most hyper's limit of 100), and comparing their names one by one
// costs less than hashing the name looked for: about 700 instructions less per page for the two
// lookups below (bench/NOTES.md).

/// Whether the request has a header named `name`.
fn has_header(req: &Request<Incoming>, name: &HeaderName) -> bool {
    req.headers().keys().any(|n| n == name)
}

fn wants_json(req: &Request<Incoming>) -> bool {
    req.headers().iter().any(|(name, value)| {
        name == header::ACCEPT
            && value
                .as_bytes()
                .windows(16)
                .any(|w| w == b"application/json")
    })
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            body(StatusCode::OK, JSON, bytes.into())
        }
        Err(error) => {
            tracing::error!(%error, "cannot encode a JSON answer");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the answer\n",
            )
        }
    }
}

fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    body(status, TEXT, message.into())
}

/// `GET /events`: server-sent events, one a second, until the drain tells the stream to go.
/// `HEAD` gets the headers alone; no stream starts. Streams share the slow slots with `/delay`
/// and `LATENCY`: when all are taken, 503 with `Retry-After`, which `EventSource` retries.
fn events(
    app: &Arc<App>,
    req: &Request<Incoming>,
    connection: &ConnectionHandle,
) -> Response<Body> {
    let body = if req.method() == Method::HEAD {
        Either::Left(Full::new(Bytes::new()))
    } else {
        match live::events(app, connection.clone()) {
            Some(stream) => Either::Right(Either::Left(stream)),
            None => return too_many_slow(),
        }
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, EVENT_STREAM);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /ws`: the upgrade (101), or 426 without one (`HEAD`, HTTP/1.0, HTTP/2, no upgrade
/// headers), or 503 when every slow slot is taken.
fn websocket(
    app: &Arc<App>,
    req: &mut Request<Incoming>,
    connection: &ConnectionHandle,
) -> Response<Body> {
    match live::websocket(app, req, connection) {
        Some(Ok(upgrade)) => {
            let (parts, _) = upgrade.into_parts();
            Response::from_parts(parts, Either::Left(Full::new(Bytes::new())))
        }
        Some(Err(problem)) => text(StatusCode::UPGRADE_REQUIRED, problem),
        None => too_many_slow(),
    }
}

/// A part of the live view, with its policy.
fn ui(content_type: HeaderValue, bytes: &'static [u8]) -> Response<Body> {
    let mut response = body(StatusCode::OK, content_type, Bytes::from_static(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, UI_POLICY);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn body(status: StatusCode, content_type: HeaderValue, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}
