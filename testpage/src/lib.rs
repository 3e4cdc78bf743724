//! testpage: a demo workload for Kubernetes rollouts.
//!
//! It answers `I am: <pod IP>, the version is: <VERSION>`, reports readiness through a file that
//! a preStop hook can delete, and drains gracefully on SIGTERM.
//!
//! # Layout
//!
//! - [`config`] — flags and environment, validated into a [`config::Config`].
//! - [`pod_info`] — the pod's IP, names and version; the `/info` document.
//! - [`page`] — the `MESSAGE` template.
//! - [`readiness`] — the ready file.
//! - [`lifecycle`] — states, signals, in-flight accounting.
//! - [`routes`] — the HTTP handlers.
//! - [`server`] — the accept loop and the shutdown sequence.
//! - [`telemetry`] — logging.
//! - [`duration`] — `500ms` / `10s` / bare-seconds parsing, shared with `probe`.

pub mod config;
pub mod duration;
pub mod lifecycle;
pub mod page;
pub mod pod_info;
pub mod readiness;
pub mod routes;
pub mod server;
pub mod telemetry;

use std::future::Future;
use std::io;
use std::sync::Arc;

use config::Config;
use lifecycle::Lifecycle;
use pod_info::PodInfo;
use readiness::{ReadyFile, ReadyFileError};
use routes::App;
use server::{Outcome, ShutdownTimings};

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
}

/// Runs testpage with `config` until `shutdown` completes and the shutdown sequence ends.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Outcome, Error> {
    // A ready file left by a previous run of this container must not make the kubelet route
    // traffic here before the port is bound.
    let ready_file = ReadyFile::new(config.ready_file.clone());
    ready_file.remove_stale()?;

    let listener = server::bind(&config.listen)
        .await
        .map_err(|source| Error::Bind {
            listen: format!("{:?}", config.listen),
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
    let page = config.template.render(&pod);
    let app = Arc::new(App::new(pod, page, Lifecycle::new(ready_file)));
    let timings = ShutdownTimings {
        drain: config.drain,
        shutdown_timeout: config.shutdown_timeout,
    };
    server::serve(listener, app, timings, shutdown).await
}
