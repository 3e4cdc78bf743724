//! The HTTP routes. Everything a response shows is computed once in [`App::new`], so serving the
//! page costs a clone of shared bytes and three header copies.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};

use crate::duration;
use crate::lifecycle::Lifecycle;
use crate::pod_info::{Info, PodInfo};

/// Longest wait `/delay/{duration}` grants.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// The response header carrying `VERSION`.
pub const X_VERSION: HeaderName = HeaderName::from_static("x-version");
/// The response header carrying the pod name (or hostname).
pub const X_POD: HeaderName = HeaderName::from_static("x-pod");
/// The response header carrying the pod IP.
pub const X_POD_IP: HeaderName = HeaderName::from_static("x-pod-ip");

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The response body type.
pub type Body = Full<Bytes>;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pod: PodInfo,
    page: Bytes,
    identity: [(HeaderName, HeaderValue); 3],
    started_at: String,
    lifecycle: Lifecycle,
}

impl App {
    /// Prepares the page and headers for `pod`. `Config` has already rejected values that a
    /// header cannot carry (control characters); UTF-8 is sent as is.
    pub fn new(pod: PodInfo, page: String, lifecycle: Lifecycle) -> Self {
        let header = |value: &str| {
            HeaderValue::from_bytes(value.as_bytes())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        };
        let identity = [
            (X_VERSION, header(&pod.version)),
            (X_POD, header(pod.pod_name())),
            (X_POD_IP, header(&pod.ip.to_string())),
        ];
        App {
            page: Bytes::from(page),
            identity,
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            pod,
            lifecycle,
        }
    }

    /// The lifecycle state shared with the server.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The pod facts this app reports.
    pub fn pod(&self) -> &PodInfo {
        &self.pod
    }

    /// The `/info` document as it stands now.
    pub fn info(&self) -> Info {
        Info {
            ip: self.pod.ip.to_string(),
            version: self.pod.version.clone(),
            hostname: self.pod.hostname.clone(),
            pod: self.pod.pod.clone(),
            namespace: self.pod.namespace.clone(),
            node: self.pod.node.clone(),
            color: self.pod.color.clone(),
            started_at: self.started_at.clone(),
            state: self.lifecycle.state().as_str().to_owned(),
        }
    }

    fn info_json(&self) -> Bytes {
        let mut json = serde_json::to_vec(&self.info()).unwrap_or_default();
        json.push(b'\n');
        Bytes::from(json)
    }
}

/// Answers one request. Never fails: every problem is an HTTP status.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let _in_flight = app.lifecycle.track_request();
    let mut response = route(&app, &req).await;
    let headers = response.headers_mut();
    for (name, value) in &app.identity {
        headers.insert(name.clone(), value.clone());
    }
    // While draining, ask HTTP/1 clients to reconnect, so that keep-alive connections move to
    // the pods that are still ready instead of ending in a reset when this one exits. HTTP/2 has
    // no such header; its clients get a GOAWAY when the server closes.
    if app.lifecycle.state() != crate::lifecycle::State::Serving
        && req.version() <= Version::HTTP_11
    {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

async fn route(app: &App, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return match path {
            "/" | "/healthz" | "/livez" | "/readyz" | "/healthy.html" | "/info" => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    match path {
        "/" if wants_json(req) => body(StatusCode::OK, JSON, app.info_json()),
        "/" => page(app),
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" | "/healthy.html" if app.lifecycle.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" | "/healthy.html" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/info" => body(StatusCode::OK, JSON, app.info_json()),
        _ => match path.strip_prefix("/delay/") {
            Some(wait) => delay(app, wait).await,
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

async fn delay(app: &App, wait: &str) -> Response<Body> {
    match duration::parse(wait) {
        Ok(wait) => {
            tokio::time::sleep(wait.min(MAX_DELAY)).await;
            page(app)
        }
        Err(problem) => text(StatusCode::BAD_REQUEST, format!("bad delay: {problem}\n")),
    }
}

fn wants_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(16).any(|w| w == b"application/json"))
}

fn page(app: &App) -> Response<Body> {
    body(StatusCode::OK, TEXT, app.page.clone())
}

fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    body(status, TEXT, message.into())
}

fn body(status: StatusCode, content_type: HeaderValue, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}
