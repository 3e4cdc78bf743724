//! The process's lifecycle state, the readiness it reports, and what is in flight: shared by
//! the request handlers and the shutdown sequence ([`crate::server`], which drives the states).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::readiness::{ReadyFile, ReadyFileError};

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
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
    pub(crate) fn as_str(self) -> &'static str {
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

/// How readiness stood when the drain began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Withdrawn {
    /// The pod was serving (it had been ready): endpoints may still route to it.
    pub was_serving: bool,
    /// How long ago readiness was withdrawn (zero when the signal withdrew it), to the
    /// millisecond.
    pub ago: Duration,
}

/// Why `POST /readyz/enable` could not make the pod ready again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnableError {
    /// Only a serving pod can be made ready; a draining one stays out of the endpoints.
    #[error("not while {}", .0.as_str())]
    NotServing(State),
    /// The ready file could not be written.
    #[error(transparent)]
    File(#[from] ReadyFileError),
}

/// When readiness was withdrawn while serving, and by whom.
#[derive(Debug, Default)]
struct Withdrawal {
    /// `POST /readyz/disable` (the only way to withdraw readiness when `READY_FILE` is off).
    by_admin: bool,
    /// When readiness was first seen withdrawn, by whoever did it.
    since: Option<Instant>,
}

/// State shared between the accept loop, the request handlers and the shutdown sequence.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    state: AtomicU8,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    live: AtomicBool,
    /// Readiness has been withdrawn (by anyone): a copy of `withdrawal.since.is_some()` that the
    /// request path can read without the lock.
    withdrawn: AtomicBool,
    addr: OnceLock<SocketAddr>,
    ready_file: ReadyFile,
    /// Readiness changes (ready, withdrawn, re-enabled, draining) happen under this lock, so
    /// that `/readyz/enable` cannot write the file again after SIGTERM has removed it.
    withdrawal: Mutex<Withdrawal>,
    /// Readiness as last published, for those who watch it change (gRPC `Watch`).
    readiness: watch::Sender<bool>,
}

impl Lifecycle {
    /// A lifecycle in the `starting` state.
    pub(crate) fn new(ready_file: ReadyFile) -> Self {
        Lifecycle {
            state: AtomicU8::new(State::Starting as u8),
            in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            live: AtomicBool::new(true),
            withdrawn: AtomicBool::new(false),
            addr: OnceLock::new(),
            ready_file,
            withdrawal: Mutex::new(Withdrawal::default()),
            readiness: watch::Sender::new(false),
        }
    }

    /// Readiness now, and each time it changes. A ready file removed from outside is noticed
    /// within the shutdown's look at it (a quarter of a second).
    pub(crate) fn readiness(&self) -> watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    /// Publishes readiness as it stands; called with the withdrawal lock held, after a change.
    fn publish(&self, withdrawal: &Withdrawal) {
        let ready = self.ready(withdrawal);
        self.readiness
            .send_if_modified(|was| std::mem::replace(was, ready) != ready);
    }

    fn ready(&self, withdrawal: &Withdrawal) -> bool {
        self.state() == State::Serving && !withdrawal.by_admin && self.ready_file.exists()
    }

    fn withdrawal(&self) -> std::sync::MutexGuard<'_, Withdrawal> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.withdrawal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves to `state`.
    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The readiness file.
    pub(crate) fn ready_file(&self) -> &ReadyFile {
        &self.ready_file
    }

    /// Writes the ready file for `addr` and moves to `serving`.
    pub(crate) fn become_ready(&self, addr: SocketAddr) -> Result<(), ReadyFileError> {
        let _ = self.addr.set(addr);
        let mut withdrawal = self.withdrawal();
        self.ready_file.create(addr)?;
        self.set_state(State::Serving);
        *withdrawal = Withdrawal::default();
        self.withdrawn.store(false, Ordering::Relaxed);
        self.publish(&withdrawal);
        Ok(())
    }

    /// `POST /readyz/disable`: removes the ready file (or, with `READY_FILE` off, marks the pod
    /// unready) and remembers when, for the drain.
    pub(crate) fn withdraw_readiness(&self) -> Result<(), ReadyFileError> {
        let mut withdrawal = self.withdrawal();
        withdrawal.by_admin = true;
        withdrawal.since.get_or_insert_with(Instant::now);
        self.withdrawn.store(true, Ordering::Relaxed);
        let removed = self.ready_file.remove().map(drop);
        self.publish(&withdrawal);
        removed
    }

    /// `POST /readyz/enable`: writes the ready file again, while serving.
    pub(crate) fn restore_readiness(&self) -> Result<(), EnableError> {
        let mut withdrawal = self.withdrawal();
        match (self.state(), self.addr.get()) {
            (State::Serving, Some(addr)) => {
                self.ready_file.create(*addr)?;
                withdrawal.by_admin = false;
                withdrawal.since = None;
                self.withdrawn.store(false, Ordering::Relaxed);
                self.publish(&withdrawal);
                Ok(())
            }
            (state, _) => Err(EnableError::NotServing(state)),
        }
    }

    /// Notes the moment the ready file disappeared (a preStop hook or `kubectl exec rm`), so
    /// that the drain can be counted from it. Called a few times a second while serving; the
    /// moment noted is at most that late, which only lengthens the drain.
    pub(crate) fn observe_ready_file(&self) {
        if self.state() != State::Serving {
            return;
        }
        let mut withdrawal = self.withdrawal();
        if !self.ready_file.exists() {
            withdrawal.since.get_or_insert_with(Instant::now);
            self.withdrawn.store(true, Ordering::Relaxed);
        }
        self.publish(&withdrawal);
    }

    /// The pod is on its way out: readiness withdrawn (a preStop hook, the admin route) or the
    /// shutdown under way. Its answers then ask HTTP/1 clients to reconnect: a Service keeps a
    /// kept-alive connection on its pod after the endpoint is gone, so without that the
    /// connection would stay here until the pod closes it, racing the client's next request.
    pub(crate) fn leaving(&self) -> bool {
        self.withdrawn.load(Ordering::Relaxed) || self.is_draining()
    }

    /// The shutdown is under way: draining or closing.
    pub(crate) fn is_draining(&self) -> bool {
        matches!(self.state(), State::Draining | State::Closing)
    }

    /// Liveness: false after `POST /healthz/disable`.
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Sets liveness.
    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }

    /// Open client connections.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Counts a connection as open...
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::AcqRel);
    }

    /// ...until it closes.
    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Ready means serving, not withdrawn by the admin route, and the ready file this process
    /// wrote still exists: deleting the file from outside (a preStop hook, `kubectl exec`)
    /// takes the pod out of the endpoints.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready(&self.withdrawal())
    }

    /// Withdraws readiness at once (step 2 of the shutdown) and says how it stood: whether
    /// endpoints may still route here, and since when readiness has been withdrawn.
    pub(crate) fn begin_draining(&self) -> Withdrawn {
        let withdrawal = self.withdrawal();
        let was_serving = self.state() == State::Serving;
        self.set_state(State::Draining);
        if let Err(error) = self.ready_file.remove() {
            tracing::warn!(%error, "could not remove the ready file; draining anyway");
        }
        self.publish(&withdrawal);
        // No withdrawal noted before the signal: the signal withdraws readiness now.
        let ago = withdrawal.since.map_or(Duration::ZERO, |at| at.elapsed());
        Withdrawn {
            was_serving,
            ago: Duration::from_millis(ago.as_millis() as u64),
        }
    }

    /// Requests being handled right now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub(crate) fn track_request(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(&self.in_flight)
    }
}

/// Counts one request in flight while alive.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
