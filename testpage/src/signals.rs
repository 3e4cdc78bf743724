//! The signals that end testpage, and [`Shutdown`], what [`crate::run`] waits on.
//!
//! As PID 1 in a container a process gets no default handler for SIGTERM or SIGINT, so without
//! these `docker stop` and the kubelet would wait for SIGKILL. The handlers are installed first
//! thing in `main`. What each signal does is decided in [`crate::server`]: the first starts the
//! drain, a second ends serving at once.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT's number, for exit code 128 + N.
pub const SIGINT: i32 = 2;
/// SIGTERM's number, for exit code 128 + N.
pub const SIGTERM: i32 = 15;

/// SIGTERM and SIGINT, listened for from the moment they are installed.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

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
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// What asks testpage to stop: signals in the binary, or any future (in tests, or for a
/// program that embeds testpage), which then has no second signal.
pub struct Shutdown(Source);

enum Source {
    Signals(Signals),
    Future(Option<Pin<Box<dyn Future<Output = ()> + Send>>>),
}

impl Shutdown {
    /// Stops on SIGTERM or SIGINT.
    pub fn on(signals: Signals) -> Self {
        Shutdown(Source::Signals(signals))
    }

    /// Stops when `future` completes.
    pub fn when(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Shutdown(Source::Future(Some(Box::pin(future))))
    }

    /// Completes on the first request to stop: the signal's number, or `None` for a future.
    pub(crate) async fn first(&mut self) -> Option<i32> {
        match &mut self.0 {
            Source::Signals(signals) => Some(signals.recv().await),
            Source::Future(future) => {
                if let Some(f) = future.as_mut() {
                    f.await;
                    *future = None;
                }
                None
            }
        }
    }

    /// Completes on the next signal after the first; never for a future.
    pub(crate) async fn second(&mut self) -> i32 {
        match &mut self.0 {
            Source::Signals(signals) => signals.recv().await,
            Source::Future(_) => std::future::pending().await,
        }
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Signals(_) => f.write_str("Shutdown(signals)"),
            Source::Future(_) => f.write_str("Shutdown(future)"),
        }
    }
}
