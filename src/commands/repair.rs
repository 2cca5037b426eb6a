//! `package-indexer repair --data-dir D` (`docs/command-line.md#repair`):
//! prints each change made, then checks the directory again.

use super::check::{data_dir, print_report, COMMAND_LINE};
use super::Subcommand;
use crate::durability::{self, file_name, RepairStep};
use crate::flags::Values;
use std::io::{self, Write};
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "repair",
    usage: "",
    summary: "cut a stopped server's damaged --data-dir to what still replays; keeps the cut bytes",
    command_line: &COMMAND_LINE,
    run,
};

const PROGRAM: &str = "package-indexer repair";

fn run(values: &Values) -> ExitCode {
    let dir = match data_dir(values) {
        Ok(dir) => dir,
        Err(error) => return error.report(PROGRAM),
    };
    let mut out = io::stdout().lock();
    let mut dropped: u64 = 0;
    let mut steps = 0;
    let repaired = durability::repair(&dir, |step| {
        steps += 1;
        if let RepairStep::Cut(cut) = step {
            dropped += cut.dropped();
        }
        // A report that cannot be printed must not stop a repair half-way.
        let _ = print_step(&mut out, step);
    });
    let printed = match &repaired {
        Ok(examined) => {
            let summary = if steps == 0 {
                "nothing to repair".to_owned()
            } else {
                format!("dropped {dropped} records in all")
            };
            writeln!(out, "{summary}; checked again:")
                .and_then(|()| print_report(&mut out, &dir, examined))
        }
        Err(_) if steps > 0 => writeln!(out, "dropped {dropped} records before stopping"),
        Err(_) => Ok(()),
    };
    match repaired {
        Ok(_) if printed.is_ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => super::fail(PROGRAM, error),
    }
}

fn print_step(out: &mut impl Write, step: &RepairStep) -> io::Result<()> {
    match step {
        RepairStep::Cut(cut) => {
            write!(
                out,
                "cut {} at byte {}: dropped {} records ({} intact, {} damaged)",
                file_name(&cut.file),
                cut.offset,
                cut.dropped(),
                cut.intact,
                cut.damaged
            )?;
            if let Some(packages) = cut.closed_with {
                write!(
                    out,
                    ", closed it with an end marker for {packages} packages"
                )?;
            }
            match &cut.saved_to {
                Some(saved) => writeln!(out, "; the cut bytes are in {}", saved.display())?,
                None => writeln!(out, "; no bytes were cut")?,
            }
            writeln!(out, "  because {}", cut.why)
        }
        RepairStep::Created { file, why } => {
            writeln!(out, "created {}, empty", file_name(file))?;
            writeln!(out, "  because {why}")
        }
    }
}
