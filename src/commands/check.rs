//! `package-indexer check --data-dir D` (`docs/command-line.md#check`):
//! what a start would make of a stopped server's data directory. It changes
//! nothing but may create the empty `LOCK`, since it takes the servers' lock.

use super::Subcommand;
use crate::durability::{self, file_name, Examined};
use crate::flags::{CommandLine, Flag, Operands, UsageError, Values};
use std::fmt::Display;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "check",
    usage: "",
    summary: "report every problem in a stopped server's --data-dir; exit 0 when a start loads it",
    command_line: &COMMAND_LINE,
    run,
};

/// The command line of the offline tools: only the directory.
pub(super) const COMMAND_LINE: CommandLine = CommandLine {
    flags: &[Flag::value(
        "data-dir",
        "",
        "the data directory; it must exist, and no server may be running on it",
    )],
    env_prefix: Some("PACKAGE_INDEXER_"),
    single_dash: false,
    operands: Operands::None,
};

/// An offline tool's `--data-dir`, which has no default.
pub(super) fn data_dir(values: &Values) -> Result<PathBuf, UsageError> {
    values
        .optional("data-dir")
        .map(PathBuf::from)
        .ok_or_else(|| UsageError("missing --data-dir".to_owned()))
}

fn run(values: &Values) -> ExitCode {
    const PROGRAM: &str = "package-indexer check";
    let dir = match data_dir(values) {
        Ok(dir) => dir,
        Err(error) => return error.report(PROGRAM),
    };
    let examined = match durability::examine(&dir) {
        Ok(examined) => examined,
        Err(error) => return super::fail(PROGRAM, error),
    };
    if let Err(error) = print_report(&mut io::stdout().lock(), &dir, &examined) {
        return super::fail(PROGRAM, format_args!("cannot print the report: {error}"));
    }
    if examined.survey.refusal().is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints `examined`: its files, its problems and the state a start loads
/// (or, when refused, the state before the first problem).
pub(super) fn print_report(
    out: &mut impl Write,
    dir: &Path,
    examined: &Examined,
) -> io::Result<()> {
    let survey = &examined.survey;
    writeln!(out, "data directory {}", dir.display())?;
    for file in &survey.files {
        writeln!(out, "  {file}")?;
    }
    let (problems, torn): (Vec<_>, Vec<_>) = survey
        .findings
        .iter()
        .partition(|finding| finding.refuses());
    print_section(out, "problems", &problems)?;
    print_section(out, "warnings", &torn)?;
    let leftovers: Vec<_> = (survey.leftovers.iter())
        .map(|(file, what)| format!("{}: {what}", file_name(file)))
        .collect();
    print_section(out, "other files", &leftovers)?;
    let (packages, edges) = (examined.index.packages(), examined.index.dependencies());
    let state = format!("{packages} packages and {edges} dependencies");
    let verdict = match problems.len() {
        0 if survey.files.is_empty() => {
            "ok: no data files (no server has written here); a start begins with an empty index"
                .to_owned()
        }
        0 if !torn.is_empty() => {
            format!("ok: a start cuts the torn last record off and loads {state}")
        }
        0 => format!("ok: a start loads {state}"),
        count => format!(
            "refused: a start refuses this directory ({count} problem{}); \
             the records before the first one hold {state} \
             (see `package-indexer repair --help`)",
            if count == 1 { "" } else { "s" }
        ),
    };
    writeln!(out, "{verdict}")
}

/// A titled list, left out when empty.
fn print_section(out: &mut impl Write, title: &str, lines: &[impl Display]) -> io::Result<()> {
    if !lines.is_empty() {
        writeln!(out, "{title}:")?;
        for line in lines {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}
