//! `package-indexer export [-o FILE]`: a point-in-time copy of a running
//! server's index from its admin listener's `/v1/export`; see `details`.

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
    details: "Asks a running server's admin listener (GET /v1/export) for a point-in-time
copy of its index: one package a line (`name: dep dep`), every package
after all its dependencies, ordered by the length of its dependency chain
and then by name, so the same index always gives the same bytes. The
server holds its lock only to copy the index (about 7 ms per million
packages). `package-indexer load FILE` restores it into a fresh server.

With -o FILE the copy is written to FILE.tmp beside FILE, synced, renamed
to FILE and the directory synced: FILE is whole or untouched.

Exit status: 0 when the whole copy was written; 1 when not (the server
cannot be asked or is busy, the transfer was cut short of its
Content-Length, the file cannot be written); 2 for bad usage.
",
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
    let (addr, answer) = match http::ask_admin(PROGRAM, values, "/v1/export") {
        Ok(asked) => asked,
        Err(status) => return status,
    };
    if answer.status != 200 {
        let hint = match answer.status {
            503 => " (busy or still loading: try again)",
            _ => "",
        };
        let (line, body) = (&answer.status_line, answer.text());
        return super::fail(
            PROGRAM,
            format!("{addr} answered '{line}': {}{hint}", body.trim()),
        );
    }
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
