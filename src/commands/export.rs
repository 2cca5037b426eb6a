//! `package-indexer export [-o FILE]`: a point-in-time copy of a running
//! server's index from its admin listener's `/v1/export` (`docs/command-line.md#export`).

use super::{http, Subcommand};
use crate::durability::write_atomically;
use crate::flags::{CommandLine, Flag, Operands, Values};
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "export",
    usage: "",
    summary: "copy a running server's index as a package list (a backup `load` restores)",
    command_line: &CommandLine {
        flags: &[
            http::ADMIN_ADDR,
            http::timeout_flag("60s"),
            Flag::value(
                "output",
                "",
                "write to FILE (through FILE.tmp, synced, then renamed); none: standard output",
            )
            .short('o')
            .without_variable(),
        ],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::None,
    },
    run,
};

const PROGRAM: &str = "package-indexer export";

/// Nothing is written before the whole answer is in, and only if it is a
/// 200; the error names the address or the file at fault.
fn run(values: &Values) -> ExitCode {
    let answer = match http::ask_admin(PROGRAM, values, "/v1/export", &[200]) {
        Ok(answer) => answer,
        Err(status) => return status,
    };
    let written = match values.optional("output") {
        None => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(&answer.body)
                .and_then(|()| stdout.flush())
                .map_err(|error| format!("writing standard output: {error}"))
        }
        Some(file) => write_atomically(Path::new(file), |out| out.write_all(&answer.body))
            .map(drop)
            .map_err(|error| format!("{file}: {error}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => super::fail(PROGRAM, reason),
    }
}
