//! The operator's tools, each a subcommand of the one binary in a file of
//! its own: `package-indexer COMMAND [ARGS]`.
//!
//! Each parses its own command line with [`crate::flags`]; a flag it shares
//! with the server (`--addr`, `--admin-addr`, `--data-dir`) is also read
//! from the server's `PACKAGE_INDEXER_*` variable, so a tool run beside a
//! configured server finds it. Each returns the process's exit status: 0
//! when it did what was asked, 1 when it could not, 2 for bad usage.

mod check;
mod client;
pub(crate) mod connection;
mod export;
mod healthcheck;
pub(crate) mod http;
mod load;
mod repair;
mod show;

use crate::flags::{CommandLine, Values};
use std::process::ExitCode;

/// One subcommand.
pub(crate) struct Subcommand {
    pub(crate) name: &'static str,
    /// Its operands, as `--help` shows them after the name.
    usage: &'static str,
    /// One line for the server's `--help`.
    summary: &'static str,
    /// What its own `--help` says after the usage line; empty for nothing.
    details: &'static str,
    command_line: &'static CommandLine,
    /// Runs it with its flags and operands.
    run: fn(&Values) -> ExitCode,
}

/// Every subcommand, in the order `--help` lists them.
static SUBCOMMANDS: &[Subcommand] = &[
    healthcheck::SUBCOMMAND,
    client::SUBCOMMAND,
    show::SUBCOMMAND,
    export::SUBCOMMAND,
    load::SUBCOMMAND,
    check::SUBCOMMAND,
    repair::SUBCOMMAND,
];

/// The subcommand called `name`, if there is one.
pub(crate) fn find(name: &str) -> Option<&'static Subcommand> {
    SUBCOMMANDS
        .iter()
        .find(|subcommand| subcommand.name == name)
}

/// Every subcommand's name, comma-separated, for a usage error.
pub(crate) fn names() -> String {
    let names: Vec<&str> = SUBCOMMANDS.iter().map(|s| s.name).collect();
    names.join(", ")
}

/// One line a subcommand, for the server's `--help`.
pub(crate) fn summary() -> String {
    SUBCOMMANDS
        .iter()
        .map(|subcommand| format!("  {:<12} {}\n", subcommand.name, subcommand.summary))
        .collect()
}

impl Subcommand {
    /// Parses `args` (those after the subcommand's name) and runs it; help,
    /// version and bad usage are answered here.
    pub(crate) fn run(&self, args: Vec<String>) -> ExitCode {
        let parsed = self
            .command_line
            .parse(args, crate::flags::process_variable);
        let program = format!("package-indexer {}", self.name);
        crate::flags::answer(
            &program,
            parsed,
            || self.help(),
            |values| (self.run)(&values),
        )
    }

    fn help(&self) -> String {
        let details = if self.details.is_empty() {
            String::new()
        } else {
            format!("\n{}", self.details)
        };
        format!(
            "package-indexer {}: {}\n\nUsage:\n  package-indexer {} [FLAGS]{}\n{details}\nFlags:\n{}",
            self.name,
            self.summary,
            self.name,
            self.usage,
            self.command_line.help()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_help_and_a_unique_name() {
        for subcommand in SUBCOMMANDS {
            assert!(std::ptr::eq(find(subcommand.name).unwrap(), subcommand));
            let help = subcommand.help();
            assert!(help.contains(&format!("package-indexer {}", subcommand.name)));
            assert!(summary().contains(subcommand.summary));
        }
    }
}
