//! The long-lived answers open now, how the others ended, and the memory their messages share.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::metrics::StreamMeters;
use crate::websocket::MESSAGE_MEMORY;

/// The streams open now and how the others ended (the metrics' meters), and the bytes every
/// WebSocket's messages share ([`MESSAGE_MEMORY`]).
#[derive(Debug)]
pub(crate) struct Streams {
    meters: StreamMeters,
    message_memory: Arc<Semaphore>,
}

/// How many streams ended each way, for the shutdown summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamCounts {
    /// Open now.
    pub open: u64,
    /// Ended with a last event, when told to go.
    pub clean: u64,
    /// Closed by their client.
    pub by_client: u64,
    /// Cut when serving ended.
    pub cut: u64,
}

impl Streams {
    /// No stream yet, counted on `meters`.
    pub(crate) fn new(meters: StreamMeters) -> Self {
        Streams {
            meters,
            message_memory: Arc::new(Semaphore::new(MESSAGE_MEMORY)),
        }
    }

    /// The meters each stream counts itself on.
    pub(crate) fn meters(&self) -> &StreamMeters {
        &self.meters
    }

    /// The budget of every WebSocket's messages, in bytes.
    pub(crate) fn message_memory(&self) -> Arc<Semaphore> {
        Arc::clone(&self.message_memory)
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> StreamCounts {
        let m = &self.meters;
        StreamCounts {
            open: u64::try_from(m.open.get()).unwrap_or(0),
            clean: m.clean.get(),
            by_client: m.by_client.get(),
            cut: m.cut.get(),
        }
    }
}
