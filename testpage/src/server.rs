//! The accept loop and the shutdown sequence.
//!
//! [`serve`] takes a bound listener and a `shutdown` future (the first signal in `main`, any
//! future in tests), and runs the whole lifecycle: ready, serve, drain, close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::lifecycle::State;
use crate::routes::{self, App};
use crate::Error;

/// How long a client may take to send a request's headers. Slow or stalled clients are cut off
/// after this instead of holding a connection (and a file descriptor) forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head accepted; larger ones get `431` (HTTP/1) or a stream reset (HTTP/2).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// When the pod turns ready after binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// After this long (`STARTUP_DELAY`, zero by default).
    After(std::time::Duration),
    /// Never (`HANG_ON_START`): serves, but `/readyz` stays 503.
    Never,
}

/// Timings of the start-up and shutdown sequences.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownTimings {
    /// When to write the ready file.
    pub startup: Startup,
    /// How long to keep serving after the signal.
    pub drain: Duration,
    /// How long in-flight requests may take once accepting stops.
    pub shutdown_timeout: Duration,
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every in-flight request finished.
    Graceful,
    /// `SHUTDOWN_TIMEOUT` expired with requests still running.
    TimedOut {
        /// Requests still running when time ran out.
        in_flight: usize,
    },
}

/// Serves `app` on `listener` until `shutdown` completes, then drains and closes.
///
/// The ready file is written only here, after the listener is bound, so a pod is never reported
/// ready before it can accept a connection.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    timings: ShutdownTimings,
    shutdown: impl Future<Output = ()>,
) -> Result<Outcome, Error> {
    let local_addr = listener.local_addr().map_err(|source| Error::Bind {
        listen: "the listener".into(),
        source,
    })?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = GracefulShutdown::new();
    let conns = Connections {
        builder,
        graceful: &graceful,
        app: &app,
    };

    let lifecycle = app.lifecycle();
    tokio::pin!(shutdown);

    // Serve until the first signal, turning ready once the start-up delay is over. A slow
    // start (STARTUP_DELAY) or a hang (HANG_ON_START) still answers liveness probes.
    let serving = async {
        let startup = async {
            match timings.startup {
                Startup::After(delay) => tokio::time::sleep(delay).await,
                Startup::Never => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            () = startup => {}
        }
        lifecycle.become_ready(local_addr)?;
        let ready_file = lifecycle
            .ready_file()
            .path()
            .map(|p| p.display().to_string());
        tracing::info!(
            addr = %local_addr,
            ready_file = ready_file.as_deref().unwrap_or("disabled"),
            "ready"
        );
        shutdown.await;
        Ok::<(), Error>(())
    };
    conns.accept_until(&listener, serving).await?;
    app.metrics().sigterm();

    // Drain: readiness is withdrawn at once, but endpoints, kube-proxy rules and load balancers
    // take a moment to notice. Until they do, new connections still arrive here and must be
    // answered, or they fail (the race the zero-downtime tutorial measures).
    let drain = lifecycle.begin_draining(timings.drain);
    conns
        .accept_until(&listener, tokio::time::sleep(drain))
        .await;

    // Close: stop accepting (the kernel refuses new connections once the socket is closed), tell
    // every connection to finish (idle ones close now, HTTP/2 gets GOAWAY), and wait for the
    // requests still running, up to the timeout.
    drop(listener);
    lifecycle.set_state(State::Closing);
    app.metrics().closing(lifecycle.connections());
    tracing::info!(
        in_flight = lifecycle.in_flight(),
        connections = lifecycle.connections(),
        "closing"
    );
    tokio::select! {
        () = graceful.shutdown() => Ok(Outcome::Graceful),
        () = tokio::time::sleep(timings.shutdown_timeout) => Ok(Outcome::TimedOut {
            in_flight: lifecycle.in_flight(),
        }),
    }
}

/// What a new connection needs.
struct Connections<'a> {
    builder: auto::Builder<TokioExecutor>,
    graceful: &'a GracefulShutdown,
    app: &'a Arc<App>,
}

impl Connections<'_> {
    /// Accepts and serves connections until `until` completes, and returns its output.
    async fn accept_until<T>(&self, listener: &TcpListener, until: impl Future<Output = T>) -> T {
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                done = &mut until => return done,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.serve_connection(stream, peer),
                    Err(error) => accept_error(error).await,
                },
            }
        }
    }

    fn serve_connection(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(self.app);
        let service = service_fn(move |req| routes::handle(Arc::clone(&app), req));
        let conn = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = self.graceful.watch(conn);
        let app = Arc::clone(self.app);
        app.lifecycle().connection_opened();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            app.lifecycle().connection_closed();
        });
    }
}

/// Accept fails on a full file-descriptor table or a connection reset before accept; neither is
/// a reason to stop serving. Pause briefly on resource exhaustion so the loop does not spin.
async fn accept_error(error: io::Error) {
    tracing::warn!(%error, "accept failed");
    if !matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Binds `addr`, or for [`crate::config::Listen::AllAddresses`] the IPv6 wildcard (which also
/// accepts IPv4 on Linux), falling back to `0.0.0.0` where the host has no IPv6.
pub async fn bind(listen: &crate::config::Listen) -> io::Result<TcpListener> {
    use crate::config::Listen;
    use std::net::{Ipv4Addr, Ipv6Addr};
    match *listen {
        Listen::Exact(addr) => TcpListener::bind(addr).await,
        Listen::AllAddresses(port) => {
            match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
                Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
                    tracing::debug!(error = %e, "no IPv6; listening on IPv4 only");
                    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await
                }
                result => result,
            }
        }
    }
}
