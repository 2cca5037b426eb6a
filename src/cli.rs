//! The binary's command line: the server, or a subcommand
//! ([`crate::commands`]) named by the first argument.

use crate::config;
use crate::flags;
use crate::metrics::Metrics;
use crate::{app, commands, log, sys};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the `package-indexer` binary with the process's arguments and
/// environment; returns its exit status.
pub fn main() -> ExitCode {
    let mut args = match flags::utf8_args() {
        Ok(args) => args,
        Err(error) => return error.report("package-indexer"),
    };
    if let Some(first) = args.first() {
        if let Some(subcommand) = commands::find(first) {
            args.remove(0);
            return subcommand.run(args);
        }
        // The server takes flags only: a first word is a command's name.
        if !first.starts_with('-') {
            let unknown = format!(
                "unknown command '{first}'; the commands are {}",
                commands::names()
            );
            return flags::UsageError(unknown).report("package-indexer");
        }
    }
    serve(args)
}

fn serve(args: Vec<String>) -> ExitCode {
    // Before any other thread exists, so every thread inherits the mask and
    // only the main thread's `sigtimedwait` sees the handled signals.
    let signals = sys::block_signals();
    // Taken at once: it is the process start time reported in metrics.
    let metrics = Arc::new(Metrics::new());
    let parsed = config::parse(args, flags::process_variable);
    flags::answer("package-indexer", parsed, config::help, |config| {
        log::init(config.log_format, config.log_level);
        let variables = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
        for variable in config::unknown_variables(variables) {
            log::warn("unknown variable ignored", &[("variable", &variable)]);
        }
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
    })
}
