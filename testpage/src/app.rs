//! What every request handler and the server share: the pod's identity and page, the lifecycle,
//! the faults, the metrics, and the slots for requests that wait.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::faults::Faults;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, Snapshot};
use crate::pod_info::{Info, PodInfo, X_POD, X_POD_IP, X_VERSION};
use crate::shutdown::Phases;
use crate::streams::Streams;

/// The content type of text answers, the page's among them.
pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pod: PodInfo,
    page: Bytes,
    identity: [(HeaderName, HeaderValue); 3],
    /// The page's headers, built once: a response takes a copy instead of hashing each name.
    page_headers: HeaderMap,
    started_at: String,
    lifecycle: Lifecycle,
    faults: Faults,
    metrics: Metrics,
    admin: bool,
    /// The long-lived answers (`/events`, `/ws`, gRPC `Watch`).
    streams: Streams,
    /// The shutdown's phase, and every task that serves.
    phases: Phases,
    /// Requests that may wait at once (`/delay`, `LATENCY`): fewer than `MAX_CONNECTIONS`, so
    /// slow requests can never hold every connection and lock probes out.
    slow: Arc<Semaphore>,
}

/// How many requests may wait (`/delay`, `LATENCY`, streams, WebSockets) at once with
/// `max_connections`: all but an eighth kept for probes and other quick requests, and at least
/// four, the room an HTTP/2 connection (a kubelet `grpc:` probe) needs beside the one the
/// accept loop holds for the next connection.
pub(crate) fn slow_slots(max_connections: usize) -> usize {
    max_connections
        .saturating_sub((max_connections / 8).max(4))
        .max(1)
}

impl App {
    /// Prepares the page and headers for `pod`. `Config` has already rejected values that a
    /// header cannot carry (control characters); UTF-8 is sent as is.
    pub(crate) fn new(
        pod: PodInfo,
        page: String,
        lifecycle: Lifecycle,
        faults: Faults,
        admin: bool,
        max_connections: usize,
        content_type: &str,
    ) -> Self {
        // Shared bytes: copying a value into an answer updates a reference count.
        let header = |value: &str| {
            HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
                .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        };
        let identity = [
            (X_VERSION, header(&pod.version)),
            (X_POD, header(pod.pod_name())),
            (X_POD_IP, header(&pod.ip.to_string())),
        ];
        let mut page_headers = HeaderMap::with_capacity(identity.len() + 1);
        // `Config` has already refused a content type a header cannot carry.
        let content_type = HeaderValue::from_str(content_type)
            .unwrap_or_else(|_| HeaderValue::from_static(TEXT_PLAIN));
        page_headers.insert(header::CONTENT_TYPE, content_type);
        page_headers.extend(identity.iter().cloned().map(|(n, v)| (Some(n), v)));
        let metrics = Metrics::new(&pod.version, pod.color.as_deref().unwrap_or(""));
        let streams = Streams::new(metrics.streams().clone());
        App {
            page: Bytes::from(page),
            identity,
            page_headers,
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            pod,
            lifecycle,
            faults,
            metrics,
            admin,
            slow: Arc::new(Semaphore::new(slow_slots(max_connections))),
            streams,
            phases: Phases::new(),
        }
    }

    /// The lifecycle state shared with the server.
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The fault knobs.
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The pod facts this app reports.
    pub(crate) fn pod(&self) -> &PodInfo {
        &self.pod
    }

    /// The long-lived answers.
    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The shutdown's phase, and every task that serves.
    pub(crate) fn phases(&self) -> &Phases {
        &self.phases
    }

    /// The rendered page.
    pub(crate) fn page(&self) -> Bytes {
        self.page.clone()
    }

    /// `X-Version`, `X-Pod` and `X-Pod-IP`, sent with every answer.
    pub(crate) fn identity(&self) -> &[(HeaderName, HeaderValue); 3] {
        &self.identity
    }

    /// The headers of the page: its `Content-Type` (`CONTENT_TYPE`) and the identity.
    pub(crate) fn page_headers(&self) -> &HeaderMap {
        &self.page_headers
    }

    /// Whether the admin routes are on (`ADMIN`).
    pub(crate) fn admin(&self) -> bool {
        self.admin
    }

    /// The `/info` document as it stands now.
    pub(crate) fn info(&self) -> Info {
        Info {
            pod_info: self.pod.clone(),
            started_at: self.started_at.clone(),
            state: self.lifecycle.state().as_str().to_owned(),
        }
    }

    /// The gauges `/metrics` reports besides the counters.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            ready: self.lifecycle.is_ready(),
            in_flight: self.lifecycle.in_flight(),
            connections: self.lifecycle.connections(),
        }
    }

    /// One of the slow slots for as long as the permit lives (a long-lived answer); `None` when
    /// every slot is taken.
    pub(crate) fn slow_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slow).try_acquire_owned().ok()
    }

    /// Waits `wait` in one of the slow slots; `false`, at once, when every slot is taken.
    pub(crate) async fn sleep_in_slot(&self, wait: Duration) -> bool {
        if wait.is_zero() {
            return true;
        }
        let Ok(_slot) = self.slow.try_acquire() else {
            return false;
        };
        tokio::time::sleep(wait).await;
        true
    }
}

#[cfg(test)]
impl App {
    /// An app of version `test`, with no ready file, no faults and `max_connections`.
    pub(crate) fn for_tests(max_connections: usize) -> Arc<App> {
        let pod = PodInfo {
            ip: std::net::Ipv4Addr::new(192, 0, 2, 1).into(),
            version: "test".into(),
            hostname: "host".into(),
            pod: None,
            namespace: None,
            node: None,
            color: None,
        };
        let faults = Faults::new(
            0.0,
            500,
            crate::duration::Spread::fixed(Duration::ZERO),
            None,
        );
        let lifecycle = Lifecycle::new(crate::readiness::ReadyFile::new(None));
        Arc::new(App::new(
            pod,
            "page\n".into(),
            lifecycle,
            faults,
            true,
            max_connections,
            TEXT_PLAIN,
        ))
    }
}
