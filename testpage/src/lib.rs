//! testpage: a demo workload for Kubernetes rollouts.
//!
//! It answers `I am: <pod IP>, the version is: <VERSION>`, reports readiness through a file that
//! a preStop hook can delete, and drains gracefully on SIGTERM.
//!
//! # Layout
//!
//! Read [`server`] first: it tells the whole life of the process, the shutdown step by step.
//!
//! - [`config`] — flags and environment, each value parsed by clap into [`config::Args`].
//! - [`signals`] — SIGTERM and SIGINT, and [`signals::Shutdown`], what [`run`] waits on.
//! - [`server`] — the lifecycle in order: ready, serve, the shutdown sequence and its policy.
//! - `shutdown` — the shutdown's phases, told to everything that serves, and the one wait for
//!   every task that serves to end. Imports nothing of the crate.
//! - [`connections`] — the accept loop, the connection cap and every connection's deadlines.
//! - `protocol` — HTTP/1.1, or HTTP/2 (h2c) when a connection opens with its preface.
//! - `lifecycle` — the state, readiness and in-flight counts the handlers and server share.
//! - [`readiness`] — the ready file, written and removed only by its owner.
//! - `app` — what the handlers share: identity, page, lifecycle, faults, metrics.
//! - `routes` — the HTTP handlers.
//! - `live` — `/events` and `/ws`, the long-lived answers, and how they leave at shutdown.
//! - `streams` — how many long-lived answers are open, how the others ended, the memory their
//!   messages share.
//! - `websocket` — the WebSocket protocol of `/ws`: frames read whole, limits, close codes.
//! - `grpc` — gRPC health (`grpc.health.v1`): `Check` and `Watch`.
//! - [`pod_info`] — the pod's IP, names and version; the `/info` document; the `X-*` headers.
//! - [`page`] — the `MESSAGE` template.
//! - [`faults`] — error rate, latency and `FAIL_AFTER` for rollout tests.
//! - `metrics` — Prometheus metrics and shutdown telemetry.
//! - [`telemetry`] — logging.
//! - [`duration`] — `500ms` / `1m30s` / bare-seconds parsing, shared with `probe`.

pub(crate) mod app;
pub mod config;
pub mod connections;
pub mod duration;
pub mod faults;
pub(crate) mod grpc;
pub(crate) mod lifecycle;
pub(crate) mod live;
pub(crate) mod metrics;
pub mod page;
pub mod pod_info;
pub(crate) mod protocol;
pub mod readiness;
pub(crate) mod routes;
pub mod server;
pub(crate) mod shutdown;
pub mod signals;
pub(crate) mod streams;
pub mod telemetry;
pub(crate) mod websocket;

use std::io;
use std::sync::Arc;

use app::App;
use config::Config;
use faults::Faults;
use lifecycle::Lifecycle;
use pod_info::PodInfo;
use readiness::{ReadyFile, ReadyFileError};
use server::{Outcome, ServeSettings, Startup};
use signals::Shutdown;

/// A Tokio runtime with a worker thread per CPU the process may use. One CPU or less (the
/// tutorial's `cpu: 10m`, `taskset`) gets a single-threaded runtime: worker threads beyond the
/// CPU quota only add memory, throttling and hand-offs between threads.
/// `available_parallelism` reads the affinity mask and the cgroup quota.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()
    }
}

/// A runtime failure; `main` exits 1 with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// The address as configured.
        listen: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The ready file could not be written or removed.
    #[error(transparent)]
    ReadyFile(#[from] ReadyFileError),
    /// `CRASH_ON_START` asked for it.
    #[error("CRASH_ON_START is set")]
    CrashOnStart,
}

/// Runs testpage with `config` until `shutdown` asks it to stop and the shutdown sequence ends.
/// It may run any number of times in one process (the tests do): nothing outlives a run.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<Outcome, Error> {
    // A ready file left by a previous run of this container must not make the kubelet route
    // traffic here before the port is bound.
    let ready_file = ReadyFile::new(config.ready_file.clone());
    ready_file.remove_stale()?;
    if config.crash_on_start {
        return Err(Error::CrashOnStart);
    }

    let listener = server::bind(&config.listen)
        .await
        .map_err(|source| Error::Bind {
            listen: config.listen.to_string(),
            source,
        })?;

    let (ip, ip_source) = match config.pod_ip {
        Some(ip) => (ip, pod_info::IpSource::PodIp),
        None => pod_info::discover_ip(&config.interface),
    };
    let pod = PodInfo {
        ip,
        version: config.version,
        hostname: pod_info::hostname(),
        pod: config.pod_name,
        namespace: config.pod_namespace,
        node: config.node_name,
        color: config.color,
    };
    tracing::info!(
        addr = %listener.local_addr().map_err(|source| Error::Bind { listen: "the listener".into(), source })?,
        ip = %pod.ip,
        ip_source = ?ip_source,
        version = %pod.version,
        pod = pod.pod_name(),
        "started"
    );
    let page = config.template.render(&pod, config.newline);
    let faults = Faults::new(
        config.error_rate,
        config.error_code,
        config.latency,
        config.fail_after,
    );
    if let Some(limit) = open_files_limit().filter(|&l| l < config.max_connections as u64 + 64) {
        tracing::warn!(
            max_connections = config.max_connections,
            open_files_limit = limit,
            "MAX_CONNECTIONS is near or above the open-file limit; accept will fail before it"
        );
    }
    let app = Arc::new(App::new(
        pod,
        page,
        Lifecycle::new(ready_file),
        faults,
        config.admin,
        config.max_connections,
        &config.content_type,
    ));
    let startup = if config.hang_on_start {
        Startup::Never
    } else {
        Startup::After(config.startup_delay.sample())
    };
    let timings = ServeSettings {
        startup,
        drain: config.drain,
        shutdown_timeout: config.shutdown_timeout,
        max_connections: config.max_connections,
        deadlines: connections::Deadlines {
            header: config.header_timeout,
            idle: config.idle_timeout,
        },
    };
    let outcome = server::serve(listener, Arc::clone(&app), timings, shutdown).await;
    let (since_sigterm, drain_requests, closed) = app.metrics().shutdown_summary();
    let streams = app.streams().counts();
    tracing::info!(
        seconds_since_sigterm = format!("{since_sigterm:.3}"),
        drain_requests,
        connections_closed_at_shutdown = closed,
        streams_ended_cleanly = streams.clean,
        // Still open now means cut with the connections: their tasks have not noticed yet.
        streams_cut = streams.cut + streams.open,
        "shutdown summary"
    );
    outcome
}

/// The soft limit on open files (`ulimit -n`), from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
