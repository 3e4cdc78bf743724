//! `probe`: exec probes and preStop hooks for FROM scratch images, and a rollout watcher and load
//! client for laptops. Exit codes are the kubelet's interface: 0 ok, 1 failed, 2 usage.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use probes::client::Target;
use probes::{load, pod, watch};
use testpage::duration;

#[derive(Debug, Parser)]
#[command(
    name = "probe",
    version,
    about = "Probes, preStop hooks, a rollout watcher and a load client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET a URL (a bare path means http://127.0.0.1:$PORT); ok when the status is in range.
    Http {
        /// URL, or a path such as /readyz.
        #[arg(value_parser = parse_target)]
        url: Target,
        /// Give up after this long (more than 0).
        #[arg(long, default_value = "1s", value_parser = positive_duration)]
        timeout: Duration,
        /// Accepted statuses: 200-399, or one code.
        #[arg(long, default_value = "200-399", value_parser = pod::parse_statuses)]
        status: std::ops::RangeInclusive<u16>,
        /// Extra request header, Name:value (repeatable).
        #[arg(long = "header", value_parser = pod::parse_header)]
        headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    },
    /// Open a TCP connection to HOST:PORT.
    Tcp {
        /// HOST:PORT.
        addr: String,
        /// Give up after this long (more than 0).
        #[arg(long, default_value = "1s", value_parser = positive_duration)]
        timeout: Duration,
    },
    /// Succeed when the file exists.
    File {
        /// The file.
        path: PathBuf,
    },
    /// preStop hook: remove the ready file, then sleep while traffic moves away.
    Drain {
        /// The ready file (removed only if testpage wrote it); empty: none, only the sleep.
        #[arg(long, env = "READY_FILE", default_value = "/tmp/ready")]
        ready_file: std::ffi::OsString,
        /// How long to wait after removing it.
        #[arg(long, default_value = "5s", value_parser = duration::parse)]
        sleep: Duration,
    },
    /// Sleep (a preStop hook for clusters without the native sleep action).
    Sleep {
        /// How long.
        #[arg(value_parser = duration::parse)]
        duration: Duration,
    },
    /// Request a URL every interval and show which version and pod answered.
    Watch {
        /// URL of the Service, NodePort or Ingress.
        #[arg(value_parser = parse_target)]
        url: Target,
        /// Time between requests, 1ms to 1h.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// Stop after this many requests (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
        /// Per-request timeout (more than 0).
        #[arg(long, default_value = "2s", value_parser = positive_duration)]
        timeout: Duration,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load a URL like `fortio load`: per-code counts (-1 = connection error), latency, versions.
    Load {
        /// URL to load.
        #[arg(value_parser = parse_target)]
        url: Target,
        /// Concurrent connections.
        #[arg(short = 'c', long = "connections", default_value_t = 8,
              value_parser = clap::value_parser!(u16).range(1..))]
        connections: u16,
        /// Target requests per second over all connections, 0.01 to 1000000; 0 = as fast as
        /// possible.
        #[arg(long, default_value_t = 500.0, value_parser = parse_qps)]
        qps: f64,
        /// Duration, more than 0 (default 60s unless -n is given); ends the run on time, cutting
        /// off the requests still unanswered.
        #[arg(short = 't', long = "duration", value_parser = positive_duration)]
        duration: Option<Duration>,
        /// Total requests.
        #[arg(short = 'n', long = "requests")]
        requests: Option<u64>,
        /// Reuse connections.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        keepalive: bool,
        /// Per-request timeout (more than 0).
        #[arg(long, default_value = "10s", value_parser = positive_duration)]
        timeout: Duration,
        /// JSON report.
        #[arg(long)]
        json: bool,
        /// Exit 1 when more requests than this fail.
        #[arg(long)]
        max_errors: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            // Not eprintln!, which panics when stderr is closed: the exit code still tells.
            let _ = writeln!(std::io::stderr(), "probe: {line}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> pod::Check {
    match command {
        Command::Http {
            url,
            timeout,
            status,
            headers,
        } => pod::http(&url, timeout, status, &headers),
        Command::Tcp { addr, timeout } => pod::tcp(&addr, timeout),
        Command::File { path } => pod::file(&path),
        Command::Drain { ready_file, sleep } => {
            let ready_file = (!ready_file.is_empty()).then(|| PathBuf::from(ready_file));
            pod::drain(ready_file.as_deref(), sleep)
        }
        Command::Sleep { duration } => {
            std::thread::sleep(duration);
            Ok(())
        }
        Command::Watch {
            url,
            interval,
            count,
            timeout,
            json,
        } => {
            let output = if json {
                watch::Output::Json
            } else if std::io::stdout().is_terminal() {
                watch::Output::Terminal
            } else {
                watch::Output::Plain
            };
            let settings = watch::Settings {
                target: url,
                interval,
                count,
                timeout,
                output,
                clock: watch::Clock::local(),
            };
            // One request at a time: a single thread is plenty.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start: {e}"))?;
            let interrupt = runtime.block_on(async { interrupt() })?;
            runtime.block_on(watch::run(settings, interrupt));
            // Name lookups still running must not delay the exit.
            runtime.shutdown_background();
            Ok(())
        }
        Command::Load {
            url,
            connections,
            qps,
            duration,
            requests,
            keepalive,
            timeout,
            json,
            max_errors,
        } => {
            let settings = load::Settings {
                target: url,
                connections: usize::from(connections),
                qps,
                duration: duration.or(requests.is_none().then_some(Duration::from_secs(60))),
                requests,
                keep_alive: keepalive,
                timeout,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start: {e}"))?;
            let interrupt = runtime.block_on(async { interrupt() })?;
            let report = runtime.block_on(load::run(settings, interrupt));
            // Name lookups still running must not delay the report.
            runtime.shutdown_background();
            // Not println!, which panics when stdout is closed (`probe load ... | head -3`).
            let mut out = std::io::stdout().lock();
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &report)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                out.write_all(report.to_text().as_bytes())
            };
            written
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write the report: {e}"))?;
            match max_errors {
                Some(max) if report.errors > max => Err(format!(
                    "{} errors, more than --max-errors {max}",
                    report.errors
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Prints clap's message, with the usage line it leaves out for invalid values, and exits 2
/// (0 for --help and --version).
fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    let message = error.to_string();
    if error.use_stderr() && !message.contains("Usage:") {
        let mut command = <Cli as clap::CommandFactory>::command();
        let usage = match std::env::args().nth(1) {
            Some(name) => command
                .find_subcommand_mut(&name)
                .map(|sub| sub.render_usage().to_string()),
            None => None,
        };
        let usage = usage.unwrap_or_else(|| command.render_usage().to_string());
        let usage = usage.replacen("Usage: ", "Usage: probe ", 1);
        let _ = writeln!(std::io::stderr(), "{usage}");
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

fn parse_target(url: &str) -> Result<Target, String> {
    Target::parse(url).map_err(|e| e.to_string())
}

/// Ctrl-C (SIGINT) or SIGTERM (a script or `timeout` ending the run), listened for from now on:
/// either before this would end the process without a summary. Call within the runtime.
fn interrupt() -> Result<impl Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
    let (mut sigint, mut sigterm) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
    );
    Ok(async move {
        tokio::select! {
            Some(()) = sigint.recv() => {}
            Some(()) = sigterm.recv() => {}
            // Both listeners gone (never happens while the runtime lives): nothing to wait on.
            else => std::future::pending::<()>().await,
        }
    })
}

fn parse_qps(text: &str) -> Result<f64, String> {
    let range = load::QPS_RANGE;
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|q| *q == 0.0 || range.contains(q))
        .ok_or_else(|| {
            format!(
                "{text:?} is not 0 (as fast as possible) or a rate from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// A timeout or duration, where zero makes no sense.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = duration::parse(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than 0"));
    }
    Ok(d)
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let range = watch::INTERVAL_RANGE;
    let d = duration::parse(text)?;
    if !range.contains(&d) {
        return Err(format!(
            "{text:?} is not from {} to {}",
            duration::format(*range.start()),
            duration::format(*range.end())
        ));
    }
    Ok(d)
}
