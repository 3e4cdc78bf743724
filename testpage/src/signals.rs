//! The signals that end testpage, and [`Shutdown`], what [`crate::run`] waits on.
//!
//! As PID 1 in a container a process gets no default handler for SIGTERM or SIGINT, so without
//! these `docker stop` and the kubelet would wait for SIGKILL. The handlers are installed first
//! thing in `main`. What each signal does is decided in [`crate::server`]: the first starts the
//! drain, a second ends serving at once.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// SIGINT's number, for exit code 128 + N.
pub const SIGINT: i32 = 2;
/// SIGTERM's number, for exit code 128 + N.
pub const SIGTERM: i32 = 15;

/// SIGTERM and SIGINT, listened for from the moment they are installed.
///
/// A task of their own waits for them and passes each on through a channel: the accept loop
/// waits on the signals beside every `accept`, and a channel is much cheaper to look at than
/// the two signal streams.
#[derive(Debug)]
pub struct Signals {
    received: mpsc::UnboundedReceiver<i32>,
}

impl Signals {
    /// Installs the handlers. Must be called inside a Tokio runtime.
    pub fn install() -> io::Result<Self> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let number = tokio::select! {
                    _ = term.recv() => SIGTERM,
                    _ = int.recv() => SIGINT,
                };
                if tx.send(number).is_err() {
                    break;
                }
            }
        });
        Ok(Signals { received })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its number.
    pub async fn recv(&mut self) -> i32 {
        match self.received.recv().await {
            Some(number) => number,
            // The listening task is gone only with the runtime: nothing more will come.
            None => std::future::pending().await,
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
    Channel(tokio::sync::mpsc::Receiver<i32>),
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

    /// Stops on the first signal number sent on `signals`, and takes the next as the second
    /// signal: a program's (or a test's) own signals. A closed channel sends no more.
    pub fn from_channel(signals: tokio::sync::mpsc::Receiver<i32>) -> Self {
        Shutdown(Source::Channel(signals))
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
            Source::Channel(signals) => Some(next(signals).await),
        }
    }

    /// Completes on the next signal after the first; never for a future.
    pub(crate) async fn second(&mut self) -> i32 {
        match &mut self.0 {
            Source::Signals(signals) => signals.recv().await,
            Source::Future(_) => std::future::pending().await,
            Source::Channel(signals) => next(signals).await,
        }
    }
}

/// The next number sent on `signals`; never, once the channel is closed.
async fn next(signals: &mut tokio::sync::mpsc::Receiver<i32>) -> i32 {
    match signals.recv().await {
        Some(signal) => signal,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Signals(_) => f.write_str("Shutdown(signals)"),
            Source::Future(_) => f.write_str("Shutdown(future)"),
            Source::Channel(_) => f.write_str("Shutdown(channel)"),
        }
    }
}
