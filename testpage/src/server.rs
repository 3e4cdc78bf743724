//! The lifecycle in order: start, serve, and the shutdown sequence, every step and every policy
//! decision of it in `serve` and `sequence`.
//!
//! ```text
//! starting ──bind, STARTUP_DELAY──▶ serving ──signal──▶ draining ──DRAIN──▶ closing ──▶ exit
//!            ready file written               ready file gone     accept stops,
//!                                             /readyz 503,        idle connections close,
//!                                             still serving       in-flight requests finish
//!                                                                 within SHUTDOWN_TIMEOUT
//! ```
//!
//! The shutdown, step by step (each numbered in `sequence`):
//!
//! 1. **Signal.** The first SIGTERM or SIGINT ends serving. From then on a second one cuts the
//!    requests still running and ends serving ([`Outcome::Interrupted`], exit 128 + N).
//! 2. **Readiness withdrawn.** The ready file is removed and `/readyz` answers 503, so the
//!    kubelet takes the pod out of the endpoints.
//! 3. **Drain decision** (`drain_time`): keep serving for `DRAIN`, counted from the moment
//!    readiness was withdrawn, by whoever withdrew it. A preStop hook that removed the file and
//!    already waited shortens it or skips it; a pod that was never ready has nothing to drain.
//!    Long-lived answers are told when to say goodbye (`goodbyes`): in the drain's second half,
//!    or over the next second when a preStop hook already drained. HTTP/2 connections get their
//!    GOAWAY in the same span: HTTP/2 has no `Connection: close`, and a client would otherwise
//!    send its next calls (a gRPC `Watch` called again) to this pod until the drain ends.
//! 4. **Drain.** Accept and serve as usual: endpoints, kube-proxy rules and load balancers
//!    take a moment to notice, and connections that arrive meanwhile must be answered.
//! 5. **Stop accepting.** The listener is closed; the kernel refuses new connections.
//! 6. **Close idle connections, finish in-flight requests**, for up to `SHUTDOWN_TIMEOUT`: HTTP/1
//!    connections close after their response, HTTP/2 ones get GOAWAY, and a connection with no
//!    request in flight is dropped after `CLOSE_LINGER` (see `connections`). Answers given while
//!    draining carry `Connection: close` (see `routes::handle`), so keep-alive clients move to
//!    ready pods before this step.
//! 7. **Outcome**: [`Outcome::Graceful`] (exit 0), or [`Outcome::TimedOut`] with the requests
//!    still running (exit 3).
//!
//! Apart from the sequence, `FAIL_AFTER` ends serving at once without a drain
//! ([`Outcome::FailAfter`], exit 1), whenever it strikes: while serving, or in the middle of a
//! drain, as a crash would.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::App;
use crate::connections::{Connections, Deadlines, Router};
use crate::faults::FailAfter;
use crate::lifecycle::{State, Withdrawn};
use crate::routes::Routes;
use crate::shutdown::Goodbyes;
use crate::signals::{self, Shutdown};
use crate::Error;

/// When the pod turns ready after binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Startup {
    /// After this long (`STARTUP_DELAY`, zero by default).
    After(std::time::Duration),
    /// Never (`HANG_ON_START`): serves, but `/readyz` stays 503.
    Never,
}

/// Timings and limits of the start-up, serving and shutdown sequences.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeSettings {
    /// When to write the ready file.
    pub startup: Startup,
    /// How long to keep serving once readiness is withdrawn.
    pub drain: Duration,
    /// How long in-flight requests may take once accepting stops.
    pub shutdown_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long a connection may take to send its first request, and stay idle after.
    pub deadlines: Deadlines,
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every request in flight finished.
    Graceful,
    /// `SHUTDOWN_TIMEOUT` expired with requests still running; they were cut.
    TimedOut {
        /// Requests still running when time ran out.
        in_flight: usize,
    },
    /// `FAIL_AFTER` struck: serving stopped at once, without a drain.
    FailAfter(FailAfter),
    /// A second signal (its number) ended the drain or the close at once; requests still in
    /// flight were cut.
    Interrupted(i32),
}

/// Serves `app` on `listener` until `shutdown` asks to stop, then drains and closes; or stops at
/// once when `FAIL_AFTER` strikes.
///
/// The ready file is written only here, after the listener is bound, so a pod is never reported
/// ready before it can accept a connection.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    timings: ServeSettings,
    mut shutdown: Shutdown,
) -> Result<Outcome, Error> {
    let conns = Connections::new(
        Arc::clone(&app),
        Routes(Arc::clone(&app)),
        timings.max_connections,
        timings.deadlines,
    );
    let outcome = tokio::select! {
        outcome = sequence(listener, &app, &conns, timings, &mut shutdown) => outcome,
        failure = app.faults().failure() => {
            // A crash, but the library leaves no ready file claiming a pod that is gone.
            app.lifecycle().set_state(State::Closing);
            let _ = app.lifecycle().ready_file().remove();
            Ok(Outcome::FailAfter(failure))
        }
    };
    // Whatever ended serving, no connection, stream or socket outlives it.
    app.phases().cut();
    app.phases().all_done().await;
    outcome
}

/// Start, serve, then the shutdown in seven steps.
async fn sequence<R: Router>(
    listener: TcpListener,
    app: &App,
    conns: &Connections<R>,
    timings: ServeSettings,
    shutdown: &mut Shutdown,
) -> Result<Outcome, Error> {
    let local_addr = listener.local_addr().map_err(|source| Error::Bind {
        listen: "the listener".into(),
        source,
    })?;
    let lifecycle = app.lifecycle();

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
            signal = shutdown.first() => return Ok(signal),
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
        // Notice when something else (a preStop hook, `kubectl exec rm`) withdraws readiness,
        // so that the drain can be counted from that moment.
        let mut look = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                biased;
                signal = shutdown.first() => return Ok::<_, Error>(signal),
                _ = look.tick() => lifecycle.observe_ready_file(),
            }
        }
    };

    // 1. Signal. From here on, a second one ends serving at once: an operator pressing Ctrl-C
    //    twice must not wait for the drain. (The kubelet never sends a second SIGTERM: at the
    //    end of the grace period it sends SIGKILL, which no process can catch.)
    let signal = conns.accept_until(&listener, serving).await?;
    let signal_name = signal.map_or("shutdown", signals::name);
    tracing::info!(signal = signal_name, "signal");
    app.metrics().shutdown_began();
    let stopping = async {
        // 2. Readiness withdrawn.
        let withdrawn = lifecycle.begin_draining();
        // 3. Drain decision. Streams of events (`/events`) are told to go within it, each at
        //    its own moment, so their clients reconnect elsewhere (see `live`).
        let drain = drain_time(withdrawn, timings.drain);
        app.phases()
            .depart(goodbyes(withdrawn, drain, timings.shutdown_timeout));
        tracing::info!(
            drain = %crate::duration::format(drain),
            withdrawn_ago = %crate::duration::format(withdrawn.ago),
            never_ready = !withdrawn.was_serving,
            skipped = drain.is_zero(),
            "draining"
        );
        // 4. Drain.
        conns
            .accept_until(&listener, tokio::time::sleep(drain))
            .await;

        // 5. Stop accepting.
        drop(listener);
        lifecycle.set_state(State::Closing);
        app.metrics().closing(lifecycle.connections());
        tracing::info!(
            in_flight = lifecycle.in_flight(),
            connections = lifecycle.connections(),
            "closing"
        );

        // 6. Close idle connections, finish in-flight requests, up to the timeout. Upgraded
        //    sockets are served inside their connections, so this waits for them too.
        app.phases().close();
        tokio::select! {
            () = app.phases().all_done() => Outcome::Graceful,
            () = tokio::time::sleep(timings.shutdown_timeout) => {
                // Only requests count: a connection with none in flight has nothing to lose,
                // and a stream or socket still saying goodbye is cut (and counted as cut).
                match lifecycle.in_flight() {
                    0 => Outcome::Graceful,
                    in_flight => Outcome::TimedOut { in_flight },
                }
            }
        }
    };
    // 7. Outcome.
    tokio::select! {
        outcome = stopping => Ok(outcome),
        second = shutdown.second() => {
            tracing::warn!(signal = signals::name(second), "second signal; stopping now");
            Ok(Outcome::Interrupted(second))
        }
    }
}

/// Step 3, the drain decision: how long to keep serving from now on. `DRAIN` is counted
/// from the moment readiness was withdrawn, whoever withdrew it; a pod that was never ready, or
/// whose readiness was withdrawn more than `DRAIN` ago (a preStop hook that already waited),
/// stops at once: no endpoint routes to it any more.
pub(crate) fn drain_time(withdrawn: Withdrawn, drain: Duration) -> Duration {
    if withdrawn.was_serving {
        drain.saturating_sub(withdrawn.ago)
    } else {
        Duration::ZERO
    }
}

/// After a drain that already happened (a preStop hook waited it out), how long the goodbyes
/// of long-lived answers are spread over, at most.
pub(crate) const GOODBYES_AFTER_PRESTOP: Duration = Duration::from_secs(1);

/// Step 3 for long-lived answers (`/events`, `/ws`, gRPC `Watch`, see `live`): when each says
/// goodbye. In a drain, in its second half, when the endpoint is gone and the clients reconnect
/// to pods that stay. After a drain that already happened before the signal (readiness
/// withdrawn earlier, by a preStop hook or the admin route), over the next second (half
/// `SHUTDOWN_TIMEOUT` at most), so that clients already routed elsewhere do not all reconnect
/// at the same instant. With no drain at all (`DRAIN=0`, or never ready), at once.
pub(crate) fn goodbyes(withdrawn: Withdrawn, drain: Duration, shutdown: Duration) -> Goodbyes {
    if !drain.is_zero() {
        Goodbyes {
            from: drain / 2,
            until: drain,
        }
    } else if withdrawn.was_serving && !withdrawn.ago.is_zero() {
        Goodbyes {
            from: Duration::ZERO,
            until: GOODBYES_AFTER_PRESTOP.min(shutdown / 2),
        }
    } else {
        Goodbyes {
            from: Duration::ZERO,
            until: Duration::ZERO,
        }
    }
}

/// Binds `addr`, or for [`crate::config::Listen::AllAddresses`] the IPv6 wildcard (which also
/// accepts IPv4 on Linux), falling back to `0.0.0.0` where the host has no IPv6.
pub(crate) async fn bind(listen: &crate::config::Listen) -> io::Result<TcpListener> {
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
