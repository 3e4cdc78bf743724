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

use crate::duration;
use crate::page::{Template, DEFAULT_TEMPLATE};

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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let drain = duration::parse(&args.drain).map_err(invalid("DRAIN (--drain)"))?;
        let shutdown_timeout = duration::parse(&args.shutdown_timeout)
            .map_err(invalid("SHUTDOWN_TIMEOUT (--shutdown-timeout)"))?;
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
        Ok(Config {
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
    fn each_bad_value_names_its_setting() {
        let cases: [(&[&str], &str); 8] = [
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
