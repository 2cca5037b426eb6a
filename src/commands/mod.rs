//! The operator's tools, `package-indexer COMMAND [ARGS]`, one a file
//! (`docs/command-line.md#subcommands`).

mod check;
mod client;
pub(crate) mod connection;
mod export;
mod healthcheck;
pub(crate) mod http;
mod load;
mod repair;
mod show;

use crate::flags::{self, CommandLine, Values};
use std::fmt::Display;
use std::process::ExitCode;

pub(crate) struct Subcommand {
    pub(crate) name: &'static str,
    /// Its operands, as `--help` shows them after the name.
    usage: &'static str,
    /// One line for the server's `--help`, and the first of its own.
    summary: &'static str,
    command_line: &'static CommandLine,
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

/// Prints `program: reason` on stderr; the exit status 1.
fn fail(program: &str, reason: impl Display) -> ExitCode {
    eprintln!("{program}: {reason}");
    ExitCode::FAILURE
}

impl Subcommand {
    /// Parses `args` (those after the subcommand's name) and runs it; help,
    /// version and bad usage are answered here.
    pub(crate) fn run(&self, args: Vec<String>) -> ExitCode {
        let parsed = self.command_line.parse(args, flags::process_variable);
        let program = format!("package-indexer {}", self.name);
        flags::answer(
            &program,
            parsed,
            || self.help(),
            |values| (self.run)(&values),
        )
    }

    /// The summary, the usage and the flags; the rest is in the docs.
    fn help(&self) -> String {
        let name = self.name;
        format!(
            "package-indexer {name}: {}\n\nUsage:\n  package-indexer {name} [FLAGS]{}\n\n\
             Flags:\n{}\nDetails and exit statuses: docs/command-line.md#{name}\n",
            self.summary,
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
