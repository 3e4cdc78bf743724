//! Logging: `tracing` events to stderr, as text or JSON lines, filtered by `RUST_LOG`.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. `RUST_LOG` takes `info` or `testpage=debug,hyper=warn`
/// (levels per target, no regular expressions); unset means `info`.
pub fn init(format: LogFormat) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            Targets::from_str(&spec).map_err(|e| ConfigError {
                setting: "RUST_LOG",
                problem: format!("{spec:?}: {e}"),
            })?
        }
        _ => Targets::new().with_default(tracing::Level::INFO),
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(false))
            .init(),
    }
    Ok(())
}
