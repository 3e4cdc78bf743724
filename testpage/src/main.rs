//! The `testpage` binary: parse settings, start logging, run, map the outcome to an exit code.
//!
//! Exit codes: 0 graceful, 1 runtime failure, 2 invalid setting, 3 shutdown timeout expired,
//! 128+N after a second signal N. The shutdown itself is told in `testpage::server`.

use std::process::ExitCode;

use clap::Parser;
use testpage::config::{Args, Config};
use testpage::server::Outcome;
use testpage::signals::{Shutdown, Signals};

/// dlmalloc instead of the C library's allocator: musl's maps and unmaps memory for each
/// connection and leaves more of it resident (about 25 KiB per idle keep-alive connection
/// against 18 KiB; see bench/NOTES.md). Written in Rust, it builds for every target the
/// binaries ship for without a C compiler for musl.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    let runtime = match testpage::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("testpage: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };

    // Signal handlers first: as PID 1 a process has no default SIGTERM action.
    let signals = match runtime.block_on(async { Signals::install() }) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("testpage: cannot install signal handlers: {error}");
            return ExitCode::from(1);
        }
    };

    if let Err(line) = testpage::config::check_environment() {
        eprintln!("testpage: {line}");
        return ExitCode::from(2);
    }
    let config = match Args::try_parse() {
        Ok(args) => Config::from(args),
        // --help and --version.
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("testpage: {}", testpage::config::one_line(&error));
            return ExitCode::from(2);
        }
    };
    if let Err(error) = testpage::telemetry::init(config.log_format) {
        eprintln!("testpage: {error}");
        return ExitCode::from(2);
    }
    // A panic (a bug) is a log line in the configured format, like any other; the request it
    // happened in is answered 500 and serving goes on (see `connections::Router`).
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        tracing::error!(%location, panic = message, "panic");
    }));

    let code = match runtime.block_on(testpage::run(config, Shutdown::on(signals))) {
        Ok(Outcome::Graceful) => 0,
        Ok(Outcome::TimedOut { in_flight }) => {
            tracing::warn!(
                in_flight,
                "shutdown timeout expired with requests still running"
            );
            3
        }
        Ok(Outcome::Interrupted(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        Ok(Outcome::FailAfter(after)) => {
            tracing::warn!(?after, "FAIL_AFTER reached; exiting");
            1
        }
        Err(error) => {
            tracing::error!(%error, "failed");
            1
        }
    };
    tracing::info!(code, "exited");
    ExitCode::from(code)
}
