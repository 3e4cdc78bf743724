//! Settings: flags with environment fallbacks (`Args`), validated once into a `Config`.
//!
//! Every invalid value becomes one line naming the setting, and `main` exits 2 with it, before
//! anything is bound or written. Only the variables listed in the README are read: never
//! `TESTPAGE_PORT` or `TESTPAGE_SERVICE_*`, which Kubernetes injects for a Service named
//! `testpage` (service links) and which would otherwise hijack the port.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, TypedValueParser};
use clap::{ArgAction, Parser};

use crate::duration::{self, Spread};
use crate::faults::{self, parse_rate, FailAfter};
use crate::page::{Template, DEFAULT_TEMPLATE};

/// Open connections served at once unless `MAX_CONNECTIONS` says otherwise. A connection, idle
/// keep-alive or silent, costs about 13 KiB of a container's memory (12 KiB of the process's, the
/// rest the kernel's; release build), so 512 of them take under 7 MiB of the tutorials'
/// `memory: 20Mi` (measured: about 1,400 fit before the limit kills the container).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The smallest `MAX_CONNECTIONS` accepted: an HTTP/2 connection (a gRPC probe) takes three
/// slots, and the accept loop holds one for the next connection, so fewer would never serve
/// HTTP/2.
pub const MIN_MAX_CONNECTIONS: u32 = 1 + crate::protocol::HTTP2_EXTRA_SLOTS + 1;

/// The largest `MAX_CONNECTIONS` accepted.
pub const MAX_MAX_CONNECTIONS: u32 = 1_000_000;

/// How long testpage keeps serving once readiness is withdrawn (by SIGTERM at the latest),
/// unless `DRAIN` says otherwise; also how long
/// `probe drain` waits by default, so that a preStop hook and testpage agree.
pub const DEFAULT_DRAIN: &str = "5s";

/// How long requests in flight may take once accepting stops, unless `SHUTDOWN_TIMEOUT` says
/// otherwise. With [`DEFAULT_DRAIN`], 15 s: inside the kubelet's default grace period of 30 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "10s";

/// The longest `DRAIN`, `SHUTDOWN_TIMEOUT` and `STARTUP_DELAY`: longer values are typos (a
/// kubelet's grace period is counted in seconds to minutes).
pub const MAX_PHASE: Duration = Duration::from_secs(3600);

/// The command line and environment, each value parsed and range-checked by clap: an invalid
/// value ends the start with clap's message, made one line by [`one_line`].
///
/// Every flag's value name is the environment variable it falls back to, so that the message
/// names both (`invalid value 'abc' for '--port <PORT>'`).
#[derive(Debug, Parser)]
#[command(
    name = "testpage",
    version,
    about = "A demo workload for Kubernetes rollouts",
    long_about = None
)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Version the page reports.
    #[arg(long, env = "VERSION", value_name = "VERSION", default_value = "unknown",
          value_parser = header_text)]
    pub app_version: String,

    /// Listen port, on all addresses (dual stack where the host has IPv6).
    #[arg(long, env = "PORT", default_value = "8080")]
    pub port: u16,

    /// Exact listen address, e.g. 127.0.0.1:0; overrides --port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,

    /// Page template; fields {ip} {version} {hostname} {pod} {namespace} {node} {color}.
    #[arg(long, env = "MESSAGE", default_value = DEFAULT_TEMPLATE)]
    pub message: Template,

    /// Whether the page ends with a newline (the tutorials' Python testpage sends one, their Go
    /// hello server does not).
    #[arg(long, env = "NEWLINE", default_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub newline: bool,

    /// The page's Content-Type (the tutorials' Python testpage sends text/html).
    #[arg(long, env = "CONTENT_TYPE", default_value = crate::app::TEXT_PLAIN,
          value_parser = content_type)]
    pub content_type: String,

    /// Interface whose IPv4 address is reported (when POD_IP is not set).
    #[arg(long, env = "INTERFACE", default_value = "eth0",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub interface: String,

    /// Readiness file, present while the pod should receive traffic; empty disables it.
    #[arg(long, env = "READY_FILE", default_value = crate::readiness::DEFAULT_PATH,
          value_parser = ready_file_path)]
    pub ready_file: PathBuf,

    /// How long to keep serving once readiness is withdrawn (by SIGTERM, or earlier by a preStop
    /// hook), at most 1h.
    #[arg(long, env = "DRAIN", default_value = DEFAULT_DRAIN, value_parser = duration::at_most(MAX_PHASE))]
    pub drain: Duration,

    /// How long in-flight requests may take after the drain (at most 1h).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = DEFAULT_SHUTDOWN_TIMEOUT,
          value_parser = duration::at_most(MAX_PHASE))]
    pub shutdown_timeout: Duration,

    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Colour shown by {color} and /info (blue/green images).
    #[arg(long, env = "COLOR", value_parser = header_text)]
    pub color: Option<String>,

    /// Stay unready this long after binding: 2s, or 1s..5s for a random delay (at most 1h).
    #[arg(long, env = "STARTUP_DELAY", default_value = "0",
          value_parser = duration::spread_at_most(MAX_PHASE))]
    pub startup_delay: Spread,

    /// Fraction (0.0-1.0) of / answers that fail with ERROR_CODE.
    #[arg(long, env = "ERROR_RATE", default_value = "0", value_parser = parse_rate)]
    pub error_rate: f64,

    /// Status of the failing answers.
    #[arg(long, env = "ERROR_CODE", default_value = "500",
          value_parser = clap::value_parser!(u16).range(200..=599))]
    pub error_code: u16,

    /// Latency added to / answers: 50ms, or 10ms..200ms uniform (at most 60s).
    #[arg(long, env = "LATENCY", default_value = "0", value_parser = faults::parse_latency)]
    pub latency: Spread,

    /// Exit 1 after this long (30s, 5m) or this many requests to / (100).
    #[arg(long, env = "FAIL_AFTER", default_value = "", hide_default_value = true,
          value_parser = or_unset(faults::parse_fail_after))]
    pub fail_after: OrUnset<FailAfter>,

    /// Exit 1 at start (crash-loop demos).
    #[arg(long, env = "CRASH_ON_START", default_value = "false",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub crash_on_start: bool,

    /// Serve, but never become ready.
    #[arg(long, env = "HANG_ON_START", default_value = "false",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub hang_on_start: bool,

    /// Admin routes: POST /readyz/disable|enable, /healthz/disable|enable, /fault (same-origin
    /// only; false removes them).
    #[arg(long, env = "ADMIN", default_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub admin: bool,

    /// How long a connection may stay open with no request in flight, after its first request,
    /// 1s to 1h; longer than the proxies' in front (60 s for ingress-nginx and AWS load balancers).
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "75s",
          value_parser = duration::within(Duration::from_secs(1)..=MAX_PHASE))]
    pub idle_timeout: Duration,

    /// How long a new connection may take to send its first request (an HTTP/1 head, an HTTP/2
    /// preface and request), 100ms to 1h.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10s",
          value_parser = duration::within(Duration::from_millis(100)..=MAX_PHASE))]
    pub header_timeout: Duration,

    /// Open connections at most, 4 to 1000000; beyond it idle ones are closed and new ones wait.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32)
              .range(MIN_MAX_CONNECTIONS as i64..=MAX_MAX_CONNECTIONS as i64).map(count))]
    pub max_connections: usize,

    /// Pod IP from the Downward API; wins over discovery.
    #[arg(long, env = "POD_IP", hide = true, default_value = "",
          value_parser = or_unset(<IpAddr as std::str::FromStr>::from_str))]
    pub pod_ip: OrUnset<IpAddr>,

    /// Pod name from the Downward API.
    #[arg(long, env = "POD_NAME", hide = true, value_parser = header_text)]
    pub pod_name: Option<String>,

    /// Namespace from the Downward API.
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,

    /// Node name from the Downward API.
    #[arg(long, env = "NODE_NAME", hide = true)]
    pub node_name: Option<String>,
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `--listen`: exactly this address.
    Exact(SocketAddr),
    /// `PORT`: every address, IPv6 and IPv4 where the host has both.
    AllAddresses(u16),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Exact(addr) => write!(f, "{addr}"),
            Listen::AllAddresses(port) => write!(f, "port {port}"),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Version the page reports.
    pub version: String,
    /// Where to listen.
    pub listen: Listen,
    /// The page template.
    pub template: Template,
    /// `NEWLINE`: the page ends with a newline.
    pub newline: bool,
    /// `CONTENT_TYPE`: the page's Content-Type.
    pub content_type: String,
    /// Interface for IP discovery.
    pub interface: String,
    /// The readiness file, or `None` when disabled.
    pub ready_file: Option<PathBuf>,
    /// Serving time once readiness is withdrawn.
    pub drain: Duration,
    /// Time allowed for in-flight requests after the drain.
    pub shutdown_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// `COLOR`.
    pub color: Option<String>,
    /// `STARTUP_DELAY`.
    pub startup_delay: Spread,
    /// `ERROR_RATE`, 0.0-1.0.
    pub error_rate: f64,
    /// `ERROR_CODE`.
    pub error_code: u16,
    /// `LATENCY`.
    pub latency: Spread,
    /// `FAIL_AFTER`.
    pub fail_after: Option<FailAfter>,
    /// `CRASH_ON_START`.
    pub crash_on_start: bool,
    /// `HANG_ON_START`.
    pub hang_on_start: bool,
    /// `ADMIN`.
    pub admin: bool,
    /// `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `IDLE_TIMEOUT`.
    pub idle_timeout: Duration,
    /// `HEADER_TIMEOUT`.
    pub header_timeout: Duration,
    /// `POD_IP`, when set.
    pub pod_ip: Option<IpAddr>,
    /// `POD_NAME`.
    pub pod_name: Option<String>,
    /// `POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `NODE_NAME`.
    pub node_name: Option<String>,
}

/// A setting found invalid outside clap (`RUST_LOG`, whose grammar is the logger's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {problem}")]
pub struct ConfigError {
    /// The setting as users know it, e.g. `RUST_LOG`.
    pub setting: &'static str,
    /// What is wrong, with the offending value.
    pub problem: String,
}

/// clap's message for an invalid value, as one line: the first line, then any list of
/// possible values, without the pointer to `--help`.
pub fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    parts.join(" ").trim_start_matches("error: ").to_owned()
}

/// A value that a response header cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} contains control characters")]
pub struct ControlCharacters(String);

/// `VERSION`, `COLOR` and `POD_NAME` are sent in response headers: no control characters (UTF-8
/// is sent as is).
fn header_text(text: &str) -> Result<String, ControlCharacters> {
    if text.chars().any(char::is_control) {
        return Err(ControlCharacters(text.to_owned()));
    }
    Ok(text.to_owned())
}

/// A `CONTENT_TYPE` that is empty or has control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a content type (non-empty, no control characters)")]
pub struct NotAContentType(String);

/// `CONTENT_TYPE`: non-empty, and a header can carry it.
fn content_type(text: &str) -> Result<String, NotAContentType> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(NotAContentType(text.to_owned()));
    }
    Ok(text.to_owned())
}

/// A `READY_FILE` that names a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} names a directory, not a file")]
pub struct NotAFile(String);

/// `READY_FILE`: a file path, or empty for none.
fn ready_file_path(text: &str) -> Result<PathBuf, NotAFile> {
    let path = PathBuf::from(text.trim());
    if !path.as_os_str().is_empty() && path.file_name().is_none() {
        return Err(NotAFile(text.to_owned()));
    }
    Ok(path)
}

fn count(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Checks that every environment variable testpage reads holds UTF-8, and names the first one
/// that does not in a one-line message (clap's own error names none).
pub fn check_environment() -> Result<(), String> {
    let command = <Args as clap::CommandFactory>::command();
    let names = command
        .get_arguments()
        .filter_map(clap::Arg::get_env)
        .chain([std::ffi::OsStr::new("RUST_LOG")]);
    for name in names {
        if let Err(std::env::VarError::NotUnicode(value)) = std::env::var(name) {
            return Err(format!(
                "invalid {}: {value:?} is not UTF-8",
                name.to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// A setting whose empty value means unset: Kubernetes passes `value: ""`, and a Downward API
/// field that has no value, as an empty variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrUnset<T>(pub Option<T>);

/// Parses with `parse`, or to unset when the value is empty or blank.
fn or_unset<T: 'static, E: 'static>(
    parse: fn(&str) -> Result<T, E>,
) -> impl Fn(&str) -> Result<OrUnset<T>, E> + Clone + Send + Sync + 'static {
    move |text| match text.trim() {
        "" => Ok(OrUnset(None)),
        text => parse(text).map(|value| OrUnset(Some(value))),
    }
}

/// Empty Downward API values (an unset `fieldRef`) count as unset.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl From<Args> for Config {
    /// Every value is valid by now; what is left is how settings combine: `--listen` wins over
    /// `PORT`, an empty `READY_FILE` means none, empty Downward API values mean unset.
    fn from(args: Args) -> Self {
        Config {
            listen: match args.listen {
                Some(addr) => Listen::Exact(addr),
                None => Listen::AllAddresses(args.port),
            },
            ready_file: Some(args.ready_file).filter(|p| !p.as_os_str().is_empty()),
            version: args.app_version,
            template: args.message,
            newline: args.newline,
            content_type: args.content_type,
            interface: args.interface,
            drain: args.drain,
            shutdown_timeout: args.shutdown_timeout,
            log_format: args.log_format,
            color: non_empty(args.color),
            startup_delay: args.startup_delay,
            error_rate: args.error_rate,
            error_code: args.error_code,
            latency: args.latency,
            fail_after: args.fail_after.0,
            crash_on_start: args.crash_on_start,
            hang_on_start: args.hang_on_start,
            admin: args.admin,
            max_connections: args.max_connections,
            idle_timeout: args.idle_timeout,
            header_timeout: args.header_timeout,
            pod_ip: args.pod_ip.0,
            pod_name: non_empty(args.pod_name),
            pod_namespace: non_empty(args.pod_namespace),
            node_name: non_empty(args.node_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, clap::Error> {
        let argv = std::iter::once("testpage").chain(args.iter().copied());
        Args::try_parse_from(argv).map(Config::from)
    }

    #[test]
    fn flags_validate_into_config() {
        let c = config(&["--port", "9090", "--drain", "1s", "--ready-file", ""]).unwrap();
        assert_eq!(c.listen, Listen::AllAddresses(9090));
        assert_eq!(c.drain, Duration::from_secs(1));
        assert_eq!(c.ready_file, None);
        let c = config(&["--listen", "127.0.0.1:0", "--port", "1"]).unwrap();
        assert_eq!(c.listen, Listen::Exact("127.0.0.1:0".parse().unwrap()));
        let c = config(&["--admin", "no", "--crash-on-start", "on"]).unwrap();
        assert!(!c.admin && c.crash_on_start);
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: [(&[&str], &str); 25] = [
            (&["--idle-timeout", "0"], "IDLE_TIMEOUT"),
            (&["--idle-timeout", "1ms"], "IDLE_TIMEOUT"),
            (&["--idle-timeout=-5s"], "IDLE_TIMEOUT"),
            (&["--latency", "1e19"], "LATENCY"),
            (&["--latency", "61s"], "LATENCY"),
            (&["--drain", "2h"], "DRAIN"),
            (&["--startup-delay", "1s..1e12"], "STARTUP_DELAY"),
            (&["--max-connections", "0"], "MAX_CONNECTIONS"),
            (&["--max-connections", "-1"], "MAX_CONNECTIONS"),
            (&["--max-connections", "1e9"], "MAX_CONNECTIONS"),
            (&["--max-connections", "1000001"], "MAX_CONNECTIONS"),
            (&["--error-rate", "2"], "ERROR_RATE"),
            (&["--error-code", "99"], "ERROR_CODE"),
            (&["--latency", "fast"], "LATENCY"),
            (&["--startup-delay", "5s..1s"], "STARTUP_DELAY"),
            (&["--fail-after", "soon"], "FAIL_AFTER"),
            (&["--admin", "maybe"], "ADMIN"),
            (&["--app-version", "1\n2"], "VERSION"),
            (&["--port", "abc"], "PORT"),
            (&["--port", "70000"], "PORT"),
            (&["--drain", "-1"], "DRAIN"),
            (&["--shutdown-timeout", "soon"], "SHUTDOWN_TIMEOUT"),
            (&["--message", "{nope}"], "MESSAGE"),
            (&["--log-format", "xml"], "LOG_FORMAT"),
            (&["--listen", "localhost"], "--listen"),
        ];
        for (args, setting) in cases {
            let err = one_line(&config(args).unwrap_err());
            assert!(err.contains(setting), "{args:?} gave {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
