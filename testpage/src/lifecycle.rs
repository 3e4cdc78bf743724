//! The process's lifecycle: its state, the signals that end it, and the readiness it reports.
//!
//! ```text
//! starting ──bind + ready file──▶ serving ──SIGTERM──▶ draining ──DRAIN──▶ closing ──▶ exit
//!                                            (ready file gone,   (accept stops,
//!                                             /readyz 503,        in-flight requests finish
//!                                             still serving)      within SHUTDOWN_TIMEOUT)
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::readiness::ReadyFile;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Bound or binding, not yet ready.
    Starting = 0,
    /// Ready and serving.
    Serving = 1,
    /// Signalled: readiness withdrawn, still accepting and serving.
    Draining = 2,
    /// No longer accepting; in-flight requests are finishing.
    Closing = 3,
}

impl State {
    /// The name `/info` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Serving => "serving",
            State::Draining => "draining",
            State::Closing => "closing",
        }
    }

    fn from_u8(value: u8) -> State {
        match value {
            0 => State::Starting,
            1 => State::Serving,
            2 => State::Draining,
            _ => State::Closing,
        }
    }
}

/// State shared between the accept loop, the request handlers and the shutdown sequence.
#[derive(Debug)]
pub struct Lifecycle {
    state: AtomicU8,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    live: AtomicBool,
    addr: OnceLock<SocketAddr>,
    ready_file: ReadyFile,
}

impl Lifecycle {
    /// A lifecycle in the `starting` state.
    pub fn new(ready_file: ReadyFile) -> Self {
        Lifecycle {
            state: AtomicU8::new(State::Starting as u8),
            in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            live: AtomicBool::new(true),
            addr: OnceLock::new(),
            ready_file,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves to `state`.
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The readiness file.
    pub fn ready_file(&self) -> &ReadyFile {
        &self.ready_file
    }

    /// Writes the ready file for `addr` and moves to `serving`.
    pub fn become_ready(&self, addr: SocketAddr) -> Result<(), crate::readiness::ReadyFileError> {
        let _ = self.addr.set(addr);
        self.ready_file.create(addr)?;
        self.set_state(State::Serving);
        Ok(())
    }

    /// `POST /readyz/enable`: writes the ready file again, while serving.
    pub fn recreate_ready_file(&self) -> Result<(), String> {
        if self.ready_file.path().is_none() {
            return Err("READY_FILE is disabled: readiness follows the state alone".into());
        }
        match (self.state(), self.addr.get()) {
            (State::Serving, Some(addr)) => {
                self.ready_file.create(*addr).map_err(|e| e.to_string())
            }
            (state, _) => Err(format!("not while {}", state.as_str())),
        }
    }

    /// Liveness: false after `POST /healthz/disable`.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Sets liveness.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Counts a connection as open...
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::AcqRel);
    }

    /// ...until it closes.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Ready means serving and the ready file still exists: deleting the file from outside
    /// (a preStop hook, `kubectl exec`) takes the pod out of the endpoints.
    pub fn is_ready(&self) -> bool {
        self.state() == State::Serving && self.ready_file.exists()
    }

    /// Withdraws readiness at once and says how long to keep serving: `drain`, or nothing when
    /// the ready file was already gone, because a preStop hook has drained the pod already.
    pub fn begin_draining(&self, drain: Duration) -> Duration {
        self.set_state(State::Draining);
        let was_ready = match self.ready_file.remove() {
            Ok(was_there) => was_there,
            Err(error) => {
                tracing::warn!(%error, "could not remove the ready file; draining anyway");
                true
            }
        };
        let drain = if was_ready { drain } else { Duration::ZERO };
        tracing::info!(
            drain = %crate::duration::format(drain),
            skipped = !was_ready,
            "draining"
        );
        drain
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn track_request(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(&self.in_flight)
    }
}

/// Counts one request in flight while alive.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// SIGTERM and SIGINT, installed before anything else: as PID 1 in a container a process gets
/// no default handler, so without these `docker stop` and the kubelet would wait for SIGKILL.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

/// SIGINT's number, for exit code 128 + N.
pub const SIGINT: i32 = 2;
/// SIGTERM's number, for exit code 128 + N.
pub const SIGTERM: i32 = 15;

impl Signals {
    /// Installs the handlers. Must be called inside a Tokio runtime.
    pub fn install() -> io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its number.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => SIGTERM,
            _ = self.int.recv() => SIGINT,
        }
    }
}

/// A signal's name for logs.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}
