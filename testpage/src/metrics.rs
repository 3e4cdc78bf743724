//! Prometheus metrics (`/metrics`, OpenMetrics text) and the shutdown telemetry logged on exit.
//!
//! `testpage_build_info{version,color}` carries the version as a label, so dashboards can split
//! traffic by version during a rollout.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Status code.
    pub code: u16,
    /// The route, e.g. `/`, `/readyz`, `/delay`.
    pub route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    how: &'static str,
}

/// The meters of long-lived answers (`/events`, `/ws`, gRPC `Watch`), kept by
/// `streams::Streams` as they open and end.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamMeters {
    /// Open now.
    pub open: Gauge,
    /// Ended with their goodbye when the pod went.
    pub clean: Counter,
    /// Ended by their client.
    pub by_client: Counter,
    /// Still open when serving ended.
    pub cut: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    color: String,
}

/// Values read from the lifecycle when `/metrics` is scraped, rather than counted on every
/// request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Requests being answered.
    pub in_flight: usize,
    /// Open client connections.
    pub connections: usize,
}

/// Every metric testpage exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    page_ok: Counter,
    duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    page_duration: Histogram,
    in_flight: Gauge,
    connections: Gauge,
    ready: Gauge,
    draining: Gauge,
    since_sigterm: Gauge<f64, std::sync::atomic::AtomicU64>,
    drain_requests: Counter,
    closed_at_shutdown: Gauge,
    max_connections: Gauge,
    limit_reached: Counter,
    timed_out: Counter,
    accept_errors: Counter,
    streams: StreamMeters,
    sigterm_at: OnceLock<Instant>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 52 s: probes, the page, and /delay up to its 60 s cap.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Metrics {
    /// Registers every metric; `version` and `color` label `testpage_build_info`.
    pub(crate) fn new(version: &str, color: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let duration: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being answered",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "http_connections_open",
            "Open client connections",
            connections.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "testpage_ready",
            "1 while /readyz answers 200",
            ready.clone(),
        );
        let draining = Gauge::default();
        registry.register("testpage_draining", "1 after SIGTERM", draining.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_owned(),
                color: color.to_owned(),
            })
            .set(1);
        registry.register(
            "testpage_build_info",
            "Version and colour of this pod",
            build,
        );
        let since_sigterm = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "testpage_seconds_since_sigterm",
            "Seconds since the first SIGTERM (0 before it)",
            since_sigterm.clone(),
        );
        let drain_requests = Counter::default();
        registry.register(
            "testpage_drain_requests",
            "Requests answered after SIGTERM",
            drain_requests.clone(),
        );
        let closed_at_shutdown = Gauge::default();
        registry.register(
            "testpage_connections_closed_at_shutdown",
            "Connections still open when accepting stopped",
            closed_at_shutdown.clone(),
        );
        let max_connections = Gauge::default();
        registry.register(
            "testpage_connections_max",
            "MAX_CONNECTIONS: open connections at most",
            max_connections.clone(),
        );
        let limit_reached = Counter::default();
        registry.register(
            "testpage_connection_limit_reached",
            "Times accepting paused because MAX_CONNECTIONS connections were open",
            limit_reached.clone(),
        );
        let timed_out = Counter::default();
        registry.register(
            "testpage_connections_timed_out",
            "Connections closed for sending no request within their deadline",
            timed_out.clone(),
        );
        let accept_errors = Counter::default();
        registry.register(
            "testpage_accept_errors",
            "Failed accepts (e.g. the open-file limit reached)",
            accept_errors.clone(),
        );
        let open = Gauge::default();
        registry.register(
            "testpage_streams_open",
            "Long-lived answers open: /events, /ws, gRPC Watch",
            open.clone(),
        );
        let ended = Family::<EndLabel, Counter>::default();
        registry.register(
            "testpage_streams_ended",
            "Long-lived answers ended: clean (goodbye at shutdown), by_client, cut",
            ended.clone(),
        );
        let end = |how| ended.get_or_create(&EndLabel { how }).clone();
        let streams = StreamMeters {
            open,
            clean: end("clean"),
            by_client: end("by_client"),
            cut: end("cut"),
        };
        // The page's own handles, so its hot path skips the label lookup.
        let page_ok = requests
            .get_or_create(&RequestLabels {
                code: 200,
                route: "/",
            })
            .clone();
        let page_duration = duration.get_or_create(&RouteLabel { route: "/" }).clone();
        Metrics {
            registry,
            requests,
            page_ok,
            duration,
            page_duration,
            in_flight,
            connections,
            ready,
            draining,
            since_sigterm,
            drain_requests,
            closed_at_shutdown,
            max_connections,
            limit_reached,
            timed_out,
            accept_errors,
            streams,
            sigterm_at: OnceLock::new(),
        }
    }

    /// The meters of long-lived answers.
    pub(crate) fn streams(&self) -> &StreamMeters {
        &self.streams
    }

    /// Counts an answer.
    pub(crate) fn record(&self, route: &'static str, code: u16, took: Duration, draining: bool) {
        if route == "/" && code == 200 {
            self.page_ok.inc();
            self.page_duration.observe(took.as_secs_f64());
        } else {
            self.requests
                .get_or_create(&RequestLabels { code, route })
                .inc();
            self.duration
                .get_or_create(&RouteLabel { route })
                .observe(took.as_secs_f64());
        }
        if draining {
            self.drain_requests.inc();
        }
    }

    /// Notes the connection limit.
    pub(crate) fn max_connections(&self, limit: usize) {
        self.max_connections.set(limit as i64);
    }

    /// Counts a pause of the accept loop at the connection limit.
    pub(crate) fn limit_reached(&self) {
        self.limit_reached.inc();
    }

    /// Counts a connection closed for saying nothing in time.
    pub(crate) fn timed_out(&self) {
        self.timed_out.inc();
    }

    /// Counts a failed accept.
    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }

    /// Notes the start of the shutdown (the first SIGTERM or SIGINT; the metric names say
    /// SIGTERM, the signal a pod gets).
    pub(crate) fn shutdown_began(&self) {
        self.draining.set(1);
        self.sigterm_at.get_or_init(Instant::now);
    }

    /// Notes the connections still open when accepting stops.
    pub(crate) fn closing(&self, connections: usize) {
        self.closed_at_shutdown.set(connections as i64);
    }

    /// Seconds since the first SIGTERM, if there was one.
    pub(crate) fn seconds_since_sigterm(&self) -> Option<f64> {
        self.sigterm_at.get().map(|at| at.elapsed().as_secs_f64())
    }

    /// The shutdown numbers for the final log line: seconds since SIGTERM, requests answered
    /// after it, connections open when accepting stopped.
    pub(crate) fn shutdown_summary(&self) -> (f64, u64, i64) {
        (
            self.seconds_since_sigterm().unwrap_or(0.0),
            self.drain_requests.get(),
            self.closed_at_shutdown.get(),
        )
    }

    /// The exposition, with the point-in-time gauges brought up to date.
    pub(crate) fn encode(&self, now: Snapshot) -> String {
        self.ready.set(i64::from(now.ready));
        self.in_flight.set(now.in_flight as i64);
        self.connections.set(now.connections as i64);
        self.since_sigterm
            .set(self.seconds_since_sigterm().unwrap_or(0.0));
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
