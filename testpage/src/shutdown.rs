//! The shutdown's phases, told to everything that serves, and the one wait for all of it to
//! end. This module imports nothing of the crate: a service that copies the template copies it
//! whole.
//!
//! ```text
//! Serving ──depart()──▶ Draining ──close()──▶ Closing ──cut()──▶ Cut
//!                       goodbyes drawn in     no new connections;  everything still
//!                       their span            finish what is in    open ends now
//!                                             flight, then close
//! ```
//!
//! One channel carries the phase ([`Phases::watch`]): a connection, a stream or a socket
//! looks at one value when it wakes, and a listener that subscribes late still sees where the
//! shutdown is. Every task that serves is spawned through [`Phases::spawn`], so that
//! [`Phases::all_done`] waits for exactly them, without polling and without counting by hand.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Where the shutdown is.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum Phase {
    /// Serving as usual.
    #[default]
    Serving,
    /// Readiness is withdrawn and serving goes on; long-lived answers and HTTP/2 connections
    /// say goodbye, each at its own moment of the departure's span.
    Draining(Departure),
    /// Accepting has stopped: each connection finishes what is in flight, then closes.
    Closing(Departure),
    /// Serving is over: whatever is still open ends now.
    Cut,
}

impl Phase {
    /// When long-lived answers were told to go, once they were.
    pub(crate) fn departure(self) -> Option<Departure> {
        match self {
            Phase::Draining(d) | Phase::Closing(d) => Some(d),
            Phase::Serving | Phase::Cut => None,
        }
    }

    /// Accepting has stopped.
    pub(crate) fn closing(self) -> bool {
        matches!(self, Phase::Closing(_) | Phase::Cut)
    }

    /// Serving is over.
    pub(crate) fn cut(self) -> bool {
        matches!(self, Phase::Cut)
    }

    /// The shutdown has begun.
    pub(crate) fn begun(self) -> bool {
        !matches!(self, Phase::Serving)
    }
}

/// Where in the shutdown long-lived answers say goodbye, counted from the drain decision: each
/// at its own moment drawn at random between `from` and `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Goodbyes {
    /// The earliest goodbye.
    pub from: Duration,
    /// The latest goodbye.
    pub until: Duration,
}

/// When the streams were told to go, and the span, from then, in which each says goodbye.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Departure {
    at: Instant,
    span: Goodbyes,
}

impl Departure {
    /// A moment for one goodbye, drawn at random in the span (now, if that is past).
    pub(crate) fn moment(self) -> Instant {
        let spread = self.span.until.saturating_sub(self.span.from);
        let jitter = Duration::from_micros(fastrand::u64(0..=spread.as_micros() as u64));
        (self.at + self.span.from + jitter).max(Instant::now())
    }
}

/// The phase, told to every listener, and the tasks that serve.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    phase: watch::Sender<Phase>,
    tasks: TaskTracker,
}

impl Phases {
    /// Serving, with no task yet.
    pub(crate) fn new() -> Self {
        Phases::default()
    }

    /// A listener: `borrow` for the phase now, `changed` to wake at the next.
    pub(crate) fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// The phase now.
    pub(crate) fn now(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Draining: every long-lived answer, open or yet to open, says goodbye within `span`
    /// from now.
    pub(crate) fn depart(&self, span: Goodbyes) -> Departure {
        let departure = Departure {
            at: Instant::now(),
            span,
        };
        self.phase.send_replace(Phase::Draining(departure));
        departure
    }

    /// Closing: accepting has stopped. Goodbyes not yet said are due at once.
    pub(crate) fn close(&self) {
        self.phase.send_modify(|phase| {
            let departure = phase.departure().unwrap_or(Departure {
                at: Instant::now(),
                span: Goodbyes {
                    from: Duration::ZERO,
                    until: Duration::ZERO,
                },
            });
            if !phase.cut() {
                *phase = Phase::Closing(departure);
            }
        });
    }

    /// Cut: everything still open ends now.
    pub(crate) fn cut(&self) {
        self.phase.send_replace(Phase::Cut);
    }

    /// Runs `task` as one of the tasks [`Self::all_done`] waits for.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Completes once every task spawned here has ended. No task may be spawned after it is
    /// called (call it once accepting has stopped).
    pub(crate) async fn all_done(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Tasks still running.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.tasks.len()
    }
}

/// When one long-lived answer says goodbye: at a moment drawn in the departure's span once the
/// drain has begun; at once for an answer opened after that span, or once serving is cut.
#[derive(Debug)]
pub(crate) struct Goodbye {
    phase: watch::Receiver<Phase>,
    at: Option<Instant>,
}

impl Goodbye {
    /// The goodbye of an answer opening now.
    pub(crate) fn new(phases: &Phases) -> Goodbye {
        let mut phase = phases.watch();
        let at = moment(*phase.borrow_and_update());
        Goodbye { phase, at }
    }

    /// Completes at the goodbye. Cancel-safe: a `select!` may drop it and call it again.
    pub(crate) async fn due(&mut self) {
        loop {
            if let Some(at) = self.at {
                return tokio::time::sleep_until(at).await;
            }
            if self.phase.changed().await.is_err() {
                // The phases are gone, and so is everything they served.
                return;
            }
            self.at = moment(*self.phase.borrow_and_update());
        }
    }
}

fn moment(phase: Phase) -> Option<Instant> {
    match phase {
        Phase::Serving => None,
        Phase::Draining(d) | Phase::Closing(d) => Some(d.moment()),
        Phase::Cut => Some(Instant::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: u64, until: u64) -> Goodbyes {
        Goodbyes {
            from: Duration::from_secs(from),
            until: Duration::from_secs(until),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn goodbyes_fall_in_the_departures_span() {
        let phases = Phases::new();
        let started = Instant::now();
        let mut before = Goodbye::new(&phases);
        phases.depart(span(2, 4));
        before.due().await;
        let at = started.elapsed();
        assert!(
            at >= Duration::from_secs(2) && at <= Duration::from_secs(4),
            "{at:?}"
        );
        // Opened after the span: at once.
        tokio::time::advance(Duration::from_secs(10)).await;
        let late = Instant::now();
        Goodbye::new(&phases).due().await;
        assert_eq!(late.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_keeps_the_departure_and_cut_says_goodbye_at_once() {
        let phases = Phases::new();
        let mut serving = Goodbye::new(&phases);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), serving.due())
                .await
                .is_err()
        );
        let started = Instant::now();
        phases.close();
        assert!(phases.now().closing() && phases.now().departure().is_some());
        serving.due().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        phases.cut();
        assert!(phases.now().cut() && phases.now().departure().is_none());
        // Closing after the cut changes nothing.
        phases.close();
        assert!(phases.now().cut());
        let cut = Instant::now();
        Goodbye::new(&phases).due().await;
        assert_eq!(cut.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn all_done_waits_for_every_task_without_polling() {
        let phases = Phases::new();
        for secs in [1, 5, 3] {
            phases.spawn(async move { tokio::time::sleep(Duration::from_secs(secs)).await });
        }
        assert_eq!(phases.running(), 3);
        let started = Instant::now();
        phases.all_done().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(phases.running(), 0);
    }
}
