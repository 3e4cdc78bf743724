//! Settings: flags with environment fallbacks (`Args`), validated once into a `Config`.
//!
//! Every invalid value becomes one line naming the setting, and `main` exits 2 with it, before
//! anything is bound or written. Only the variables listed in the README are read: never
//! `TESTPAGE_PORT` or `TESTPAGE_SERVICE_*`, which Kubernetes injects for a Service named
//! `testpage` (service links) and which would otherwise hijack the port.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::duration::{self, Spread};
use crate::page::{Template, DEFAULT_TEMPLATE};

/// Open connections served at once unless `MAX_CONNECTIONS` says otherwise. An idle HTTP/1
/// keep-alive connection costs about 22 KiB and a silent one about 6 KiB (release build), so 256
/// of them fit the tutorials' `memory: 20Mi` limit with room to spare (measured: 512 peak at 20 MiB).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The largest `MAX_CONNECTIONS` accepted.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// The longest `DRAIN`, `SHUTDOWN_TIMEOUT` and `STARTUP_DELAY`: longer values are typos (a
/// kubelet's grace period is counted in seconds to minutes).
pub const MAX_PHASE: Duration = Duration::from_secs(3600);

/// The raw command line and environment, as typed by the user.
#[derive(Debug, Parser)]
#[command(
    name = "testpage",
    version,
    about = "A demo workload for Kubernetes rollouts"
)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Version the page reports.
    #[arg(long, env = "VERSION", default_value = "unknown")]
    pub app_version: String,

    /// Listen port, on all addresses (dual stack where the host has IPv6).
    #[arg(long, env = "PORT", default_value = "8080")]
    pub port: String,

    /// Exact listen address, e.g. 127.0.0.1:0; overrides --port.
    #[arg(long)]
    pub listen: Option<String>,

    /// Page template; fields {ip} {version} {hostname} {pod} {namespace} {node} {color}.
    #[arg(long, env = "MESSAGE", default_value = DEFAULT_TEMPLATE)]
    pub message: String,

    /// Interface whose IPv4 address is reported (when POD_IP is not set).
    #[arg(long, env = "INTERFACE", default_value = "eth0")]
    pub interface: String,

    /// Readiness file, present while the pod should receive traffic; empty disables it.
    #[arg(long, env = "READY_FILE", default_value = "/tmp/ready")]
    pub ready_file: String,

    /// How long to keep serving after SIGTERM, with readiness withdrawn.
    #[arg(long, env = "DRAIN", default_value = "5s")]
    pub drain: String,

    /// How long in-flight requests may take after the drain.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: String,

    /// Log format on stderr: text or json (level from RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Colour shown by {color} and /info (blue/green images).
    #[arg(long, env = "COLOR")]
    pub color: Option<String>,

    /// Stay unready this long after binding: 2s, or 1s..5s for a random delay.
    #[arg(long, env = "STARTUP_DELAY", default_value = "0")]
    pub startup_delay: String,

    /// Fraction (0.0-1.0) of / answers that fail with ERROR_CODE.
    #[arg(long, env = "ERROR_RATE", default_value = "0")]
    pub error_rate: String,

    /// Status of the failing answers.
    #[arg(long, env = "ERROR_CODE", default_value = "500")]
    pub error_code: String,

    /// Latency added to / answers: 50ms, or 10ms..200ms uniform.
    #[arg(long, env = "LATENCY", default_value = "0")]
    pub latency: String,

    /// Exit 1 after this long (30s, 5m) or this many requests to / (100).
    #[arg(long, env = "FAIL_AFTER")]
    pub fail_after: Option<String>,

    /// Exit 1 at start (crash-loop demos).
    #[arg(long, env = "CRASH_ON_START", default_value = "false")]
    pub crash_on_start: String,

    /// Serve, but never become ready.
    #[arg(long, env = "HANG_ON_START", default_value = "false")]
    pub hang_on_start: String,

    /// Admin routes: POST /readyz/disable|enable, /healthz/disable|enable, /fault (same-origin
    /// only; false removes them).
    #[arg(long, env = "ADMIN", default_value = "true")]
    pub admin: String,

    /// How long a connection may stay open with no request in flight, after its first request;
    /// longer than the proxies' in front (60 s for ingress-nginx and AWS load balancers).
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "75s")]
    pub idle_timeout: String,

    /// Open connections at most; beyond it idle ones are closed and new ones wait.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS.to_string())]
    pub max_connections: String,

    /// Pod IP from the Downward API; wins over discovery.
    #[arg(long, env = "POD_IP", hide = true)]
    pub pod_ip: Option<String>,

    /// Pod name from the Downward API.
    #[arg(long, env = "POD_NAME", hide = true)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// When `FAIL_AFTER` strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAfter {
    /// After this long from start.
    Time(Duration),
    /// After this many requests to `/`.
    Requests(u64),
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
    /// Interface for IP discovery.
    pub interface: String,
    /// The readiness file, or `None` when disabled.
    pub ready_file: Option<PathBuf>,
    /// Serving time after SIGTERM with readiness withdrawn.
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
    /// `POD_IP`, when set.
    pub pod_ip: Option<IpAddr>,
    /// `POD_NAME`.
    pub pod_name: Option<String>,
    /// `POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `NODE_NAME`.
    pub node_name: Option<String>,
}

/// An invalid setting: its name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {problem}")]
pub struct ConfigError {
    /// The setting as users know it, e.g. `PORT (--port)`.
    pub setting: &'static str,
    /// What is wrong, with the offending value.
    pub problem: String,
}

fn invalid(setting: &'static str) -> impl Fn(String) -> ConfigError {
    move |problem| ConfigError { setting, problem }
}

/// Parses a fraction 0.0-1.0 (`ERROR_RATE`, `POST /fault?error_rate=`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("{text:?} is not a fraction from 0.0 to 1.0"))
}

fn parse_bool(setting: &'static str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError {
            setting,
            problem: format!("{text:?} is neither true nor false"),
        }),
    }
}

/// A bare whole number is a request count; anything with a unit is a duration.
fn parse_fail_after(text: &str) -> Result<FailAfter, String> {
    let text = text.trim();
    let count = text
        .strip_suffix("requests")
        .or_else(|| text.strip_suffix("req"))
        .unwrap_or(text)
        .trim();
    if let Ok(n) = count.parse::<u64>() {
        return if n == 0 {
            Err("a request count must be at least 1".into())
        } else {
            Ok(FailAfter::Requests(n))
        };
    }
    duration::parse(text).map(FailAfter::Time)
}

/// Checks that every environment variable testpage reads holds UTF-8, and names the first one
/// that does not in a one-line message (clap's own error spans several lines and names none).
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

/// Empty Downward API values (an unset `fieldRef`) count as unset.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        let listen = match &args.listen {
            Some(addr) => Listen::Exact(addr.parse().map_err(|_| ConfigError {
                setting: "--listen",
                problem: format!("{addr:?} is not an address like 127.0.0.1:8080 or [::]:0"),
            })?),
            None => Listen::AllAddresses(args.port.trim().parse().map_err(|_| ConfigError {
                setting: "PORT (--port)",
                problem: format!("{:?} is not a port number 0-65535", args.port),
            })?),
        };
        let template = args.message.parse().map_err(|e| ConfigError {
            setting: "MESSAGE (--message)",
            problem: format!("{e}"),
        })?;
        let drain =
            duration::parse_at_most(&args.drain, MAX_PHASE).map_err(invalid("DRAIN (--drain)"))?;
        let shutdown_timeout = duration::parse_at_most(&args.shutdown_timeout, MAX_PHASE)
            .map_err(invalid("SHUTDOWN_TIMEOUT (--shutdown-timeout)"))?;
        let idle_timeout = duration::parse_at_most(&args.idle_timeout, MAX_PHASE)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1))
            .ok_or_else(|| ConfigError {
                setting: "IDLE_TIMEOUT (--idle-timeout)",
                problem: format!("{:?} is not a duration from 1s to 1h", args.idle_timeout),
            })?;
        let max_connections = args
            .max_connections
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n))
            .ok_or_else(|| ConfigError {
                setting: "MAX_CONNECTIONS (--max-connections)",
                problem: format!(
                    "{:?} is not a count from 1 to {MAX_MAX_CONNECTIONS}",
                    args.max_connections
                ),
            })?;
        let log_format = match args.log_format.trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError {
                    setting: "LOG_FORMAT (--log-format)",
                    problem: format!("{other:?} is neither text nor json"),
                })
            }
        };
        let pod_ip = match non_empty(args.pod_ip) {
            Some(ip) => Some(ip.trim().parse().map_err(|_| ConfigError {
                setting: "POD_IP",
                problem: format!("{ip:?} is not an IP address"),
            })?),
            None => None,
        };
        let ready_file = Some(args.ready_file.trim())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if ready_file.as_ref().is_some_and(|p| p.file_name().is_none()) {
            return Err(ConfigError {
                setting: "READY_FILE (--ready-file)",
                problem: format!("{:?} names a directory, not a file", args.ready_file),
            });
        }
        for (setting, value) in [
            ("VERSION (--app-version)", Some(&args.app_version)),
            ("POD_NAME", args.pod_name.as_ref()),
            ("COLOR (--color)", args.color.as_ref()),
        ] {
            if value.is_some_and(|v| v.chars().any(char::is_control)) {
                return Err(ConfigError {
                    setting,
                    problem: format!("{value:?} contains control characters"),
                });
            }
        }
        let error_code = args
            .error_code
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=599).contains(c))
            .ok_or_else(|| ConfigError {
                setting: "ERROR_CODE (--error-code)",
                problem: format!("{:?} is not a status code 200-599", args.error_code),
            })?;
        Ok(Config {
            startup_delay: duration::parse_spread_at_most(&args.startup_delay, MAX_PHASE)
                .map_err(invalid("STARTUP_DELAY (--startup-delay)"))?,
            error_rate: parse_rate(&args.error_rate)
                .map_err(invalid("ERROR_RATE (--error-rate)"))?,
            error_code,
            latency: crate::faults::parse_latency(&args.latency)
                .map_err(invalid("LATENCY (--latency)"))?,
            fail_after: args
                .fail_after
                .as_deref()
                .filter(|f| !f.trim().is_empty())
                .map(parse_fail_after)
                .transpose()
                .map_err(invalid("FAIL_AFTER (--fail-after)"))?,
            crash_on_start: parse_bool("CRASH_ON_START (--crash-on-start)", &args.crash_on_start)?,
            hang_on_start: parse_bool("HANG_ON_START (--hang-on-start)", &args.hang_on_start)?,
            admin: parse_bool("ADMIN (--admin)", &args.admin)?,
            max_connections,
            idle_timeout,
            version: args.app_version,
            listen,
            template,
            interface: args.interface,
            ready_file,
            drain,
            shutdown_timeout,
            log_format,
            color: non_empty(args.color),
            pod_ip,
            pod_name: non_empty(args.pod_name),
            pod_namespace: non_empty(args.pod_namespace),
            node_name: non_empty(args.node_name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("testpage").chain(args.iter().copied());
        Config::try_from(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn flags_validate_into_config() {
        let c = config(&["--port", "9090", "--drain", "1s", "--ready-file", ""]).unwrap();
        assert_eq!(c.listen, Listen::AllAddresses(9090));
        assert_eq!(c.drain, Duration::from_secs(1));
        assert_eq!(c.ready_file, None);
        let c = config(&["--listen", "127.0.0.1:0", "--port", "x"]).unwrap();
        assert_eq!(c.listen, Listen::Exact("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn fail_after_is_a_count_or_a_duration() {
        assert_eq!(parse_fail_after("100"), Ok(FailAfter::Requests(100)));
        assert_eq!(parse_fail_after("5 requests"), Ok(FailAfter::Requests(5)));
        assert_eq!(
            parse_fail_after("30s"),
            Ok(FailAfter::Time(Duration::from_secs(30)))
        );
        assert!(parse_fail_after("0").is_err());
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: [(&[&str], &str); 24] = [
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
            let err = config(args).unwrap_err();
            assert!(err.setting.starts_with(setting), "{args:?} gave {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }
}
