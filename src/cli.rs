//! The command line of the one binary: the server, or one of its
//! subcommands, chosen by the first argument.

use crate::config::{self, Invocation};
use crate::metrics::Metrics;
use crate::{app, healthcheck, log, sys};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the `package-indexer` binary with the process's arguments and
/// environment; returns its exit status.
pub fn main() -> ExitCode {
    // Before any other thread exists, so every thread inherits the mask and
    // only the main thread's `sigtimedwait` ever sees the signals the
    // server handles.
    let signals = sys::block_signals();
    // Taken at once: it is the process start time reported in metrics.
    let metrics = Arc::new(Metrics::new());
    let invocation = config::parse(std::env::args().skip(1), |name| std::env::var(name).ok());
    let config = match invocation {
        Ok(Invocation::Serve(config)) => config,
        Ok(Invocation::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("package-indexer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Healthcheck { admin_addr }) => return check_health(&admin_addr),
        Err(err) => return err.report("package-indexer"),
    };
    log::init(config.log_format, config.log_level);
    let result = signals
        .map_err(|err| app::RuntimeError(format!("cannot block signals: {err}")))
        .and_then(|signals| app::run(&config, signals, metrics));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error(&err.0, &[]);
            ExitCode::FAILURE
        }
    }
}

fn check_health(admin_addr: &str) -> ExitCode {
    match healthcheck::probe_ready(admin_addr) {
        Ok(status) if healthcheck::is_ready(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("package-indexer healthcheck: {admin_addr} answered '{status}'");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("package-indexer healthcheck: {admin_addr}: {err}");
            ExitCode::FAILURE
        }
    }
}
