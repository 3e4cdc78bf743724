//! Logging: `tracing` events to stderr, as text or JSON lines, filtered by `RUST_LOG`.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. `RUST_LOG` takes `info` or `testpage=debug,hyper=warn`
/// (levels per target, no regular expressions); unset means `info`.
pub fn init(format: LogFormat) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => parse_filter(&spec)?,
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

/// Parses `RUST_LOG`. `Targets` reads anything it does not understand as a target name, so
/// `RUST_LOG='['` or `warning` would silently turn logging off: each directive must be a level,
/// or `target=level` with a target written as Rust writes module paths (`testpage::server`).
fn parse_filter(spec: &str) -> Result<Targets, ConfigError> {
    let invalid = |problem: String| ConfigError {
        setting: "RUST_LOG",
        problem,
    };
    let is_level = |word: &str| {
        ["trace", "debug", "info", "warn", "error", "off"]
            .iter()
            .any(|level| word.eq_ignore_ascii_case(level))
    };
    let is_target = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | ':'))
    };
    let directives: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    for directive in &directives {
        let valid = match directive.split_once('=') {
            Some((target, level)) => is_target(target.trim()) && is_level(level.trim()),
            None => is_level(directive),
        };
        if !valid {
            return Err(invalid(format!(
                "{directive:?} is not a level (trace, debug, info, warn, error, off) or target=level"
            )));
        }
    }
    let cleaned: Vec<String> = directives.iter().map(|d| d.replace(' ', "")).collect();
    Targets::from_str(&cleaned.join(",")).map_err(|e| invalid(format!("{spec:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_would_silence_logging_are_refused() {
        for bad in [
            "[",
            "info,[",
            "testpage=loud",
            "=info",
            "a b",
            "warning",
            "TESTPAGE=info",
        ] {
            let err = parse_filter(bad).unwrap_err();
            assert_eq!(err.setting, "RUST_LOG", "{bad}");
            assert!(!err.to_string().contains('\n'));
        }
        for good in [
            "info",
            "WARN",
            "testpage=debug,hyper=warn",
            " debug ",
            "info,",
            "off",
        ] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        // What is accepted is what is applied: a level, not a target named " debug ".
        let filter = parse_filter(" debug ").unwrap();
        assert!(filter.would_enable("testpage", &tracing::Level::DEBUG));
    }
}
