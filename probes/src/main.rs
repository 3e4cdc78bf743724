//! `probe`: exec probes and preStop hooks for FROM scratch images, and a rollout watcher and load
//! client for laptops. Exit codes are the kubelet's interface: 0 ok, 1 failed, 2 usage.

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use probes::{grpc, load, pod, watch};
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
    Http(pod::HttpCheck),
    /// Open a TCP connection to HOST:PORT.
    Tcp {
        /// HOST:PORT.
        addr: String,
        /// Give up after this long (more than 0).
        #[arg(long, default_value = "1s", value_parser = duration::positive)]
        timeout: Duration,
    },
    /// Ask a gRPC health service (grpc.health.v1, h2c); ok when the service is SERVING.
    Grpc(grpc::GrpcCheck),
    /// Succeed when the file exists.
    File {
        /// The file.
        path: PathBuf,
    },
    /// preStop hook: remove the ready file, then sleep while traffic moves away.
    Drain {
        /// The ready file (removed only if testpage wrote it); empty: none, only the sleep.
        #[arg(long, env = "READY_FILE", default_value = testpage::readiness::DEFAULT_PATH)]
        ready_file: OsString,
        /// How long to wait after removing it (testpage's default DRAIN).
        #[arg(long, default_value = testpage::config::DEFAULT_DRAIN, value_parser = duration::parse)]
        sleep: Duration,
    },
    /// Sleep (a preStop hook for clusters without the native sleep action).
    Sleep {
        /// How long.
        #[arg(value_parser = duration::parse)]
        duration: Duration,
    },
    /// Request a URL every interval, or follow a WebSocket or event stream, and show which
    /// version and pod answered.
    Watch(watch::Settings),
    /// Load a URL like `fortio load`: per-code counts (-1 = connection error), latency, versions.
    Load(LoadCommand),
}

#[derive(Debug, clap::Args)]
#[command(allow_negative_numbers = true)]
struct LoadCommand {
    #[command(flatten)]
    settings: load::Settings,
    /// JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to probe-load-HOST-PORT-TIME.json (fortio's -a).
    #[arg(short = 'a', long = "save")]
    save: bool,
    /// Exit 1 when more requests than this fail.
    #[arg(long)]
    max_errors: Option<u64>,
}

/// Why a command failed (exit 1).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Check(#[from] pod::CheckError),
    #[error("cannot start: {0}")]
    Start(std::io::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot write the report: {0}")]
    Report(std::io::Error),
    #[error("cannot save the report to {path}: {source}")]
    Save {
        path: String,
        source: std::io::Error,
    },
    #[error("{errors} errors, more than --max-errors {max}")]
    TooManyErrors { errors: u64, max: u64 },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(fortio_spelling(std::env::args_os())) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let result = match cli.command {
        Command::Http(check) => pod::http(&check).map_err(Failure::from),
        Command::Tcp { addr, timeout } => pod::tcp(&addr, timeout).map_err(Failure::from),
        Command::Grpc(check) => grpc::grpc(&check).map_err(Failure::from),
        Command::File { path } => pod::file(&path).map_err(Failure::from),
        Command::Drain { ready_file, sleep } => {
            let ready_file = (!ready_file.is_empty()).then(|| PathBuf::from(ready_file));
            pod::drain(ready_file.as_deref(), sleep).map_err(Failure::from)
        }
        Command::Sleep { duration } => {
            std::thread::sleep(duration);
            Ok(())
        }
        Command::Watch(settings) => run_watch(settings),
        Command::Load(command) => run_load(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Not eprintln!, which panics when stderr is closed: the exit code still tells.
            let _ = writeln!(std::io::stderr(), "probe: {failure}");
            ExitCode::from(1)
        }
    }
}

fn run_watch(settings: watch::Settings) -> Result<(), Failure> {
    // One request at a time: a single thread is plenty.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Start)?;
    let interrupt = runtime.block_on(async { interrupt() })?;
    runtime.block_on(watch::run(settings, interrupt));
    // Name lookups still running must not delay the exit.
    runtime.shutdown_background();
    Ok(())
}

fn run_load(command: LoadCommand) -> Result<(), Failure> {
    // A thread per CPU the process may use, a single thread on one CPU (`taskset`, a CPU limit).
    let runtime = testpage::runtime().map_err(Failure::Start)?;
    let interrupt = runtime.block_on(async { interrupt() })?;
    let report = runtime.block_on(load::run(command.settings, interrupt));
    // Name lookups still running must not delay the report.
    runtime.shutdown_background();
    // Not println!, which panics when stdout is closed (`probe load ... | head -3`).
    let mut out = std::io::stdout().lock();
    let written = if command.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        out.write_all(report.to_text().as_bytes())
    };
    written
        .and_then(|()| out.flush())
        .map_err(Failure::Report)?;
    if command.save {
        let path = report.file_name();
        std::fs::write(&path, report.to_json()).map_err(|source| Failure::Save {
            path: path.clone(),
            source,
        })?;
        let _ = writeln!(std::io::stderr(), "probe: JSON report saved to {path}");
    }
    match command.max_errors {
        Some(max) if report.errors > max => Err(Failure::TooManyErrors {
            errors: report.errors,
            max,
        }),
        _ => Ok(()),
    }
}

/// fortio's flags are Go flags: one dash for long names. `probe load -qps 500` (the tutorial's
/// spelling) is read as `--qps 500`; `-a`, `-c`, `-t` and `-n` are probe's own short flags.
fn fortio_spelling(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut in_load = false;
    args.map(|arg| {
        if arg == "load" {
            in_load = true;
        }
        match arg.to_str() {
            Some(flag) if in_load && (flag == "-qps" || flag.starts_with("-qps=")) => {
                OsString::from(format!("-{flag}"))
            }
            _ => arg,
        }
    })
    .collect()
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

/// Ctrl-C (SIGINT) or SIGTERM (a script or `timeout` ending the run), listened for from now on:
/// either before this would end the process without a summary. Call within the runtime.
fn interrupt() -> Result<impl Future<Output = ()>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind| signal(kind).map_err(Failure::Signals);
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
