//! `package-indexer export [-o FILE]`: a point-in-time copy of a running
//! server's index from its admin listener's `/v1/export`, as a package
//! list (`name: dep dep`, every package after its dependencies), to
//! standard output or, atomically, to FILE. Exit 0 when the whole copy was
//! written, 1 when not (a transfer cut short is detected by its
//! `Content-Length`), 2 for bad usage.

use super::{http, Subcommand};
use crate::durability::write_atomically;
use crate::flags::{CommandLine, Flag, Operands, Values};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

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

/// How long connecting, and each read and write, may take. The server
/// copies and renders the whole index before it sends a byte: about a
/// second per million packages.
const TIMEOUT: Duration = Duration::from_secs(60);

const PROGRAM: &str = "package-indexer export";

fn run(values: &Values) -> ExitCode {
    let admin_addr = match values.address("admin-addr") {
        Ok(addr) => addr,
        Err(error) => return error.report(PROGRAM),
    };
    let written = match values.optional("output") {
        Some(file) => write_atomically(Path::new(file), |out| {
            let mut out = BufWriter::new(out);
            fetch(&admin_addr, &mut out)?;
            out.flush()
        })
        .map(|(_, bytes)| bytes)
        .map_err(|error| format!("{file}: {error}")),
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            fetch(&admin_addr, &mut out)
                .and_then(|bytes| out.flush().map(|()| bytes))
                .map_err(|error| format!("{admin_addr}: {error}"))
        }
    };
    match written {
        Ok(_) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{PROGRAM}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Copies the export into `out`; its length, or why not all of it came.
fn fetch(admin_addr: &str, out: &mut impl Write) -> io::Result<u64> {
    let answer = http::get(admin_addr, "/v1/export", TIMEOUT)?;
    match answer.status {
        200 => answer.copy_body(out),
        status => {
            let line = answer.status_line.clone();
            let body = answer.text().unwrap_or_default();
            let hint = if status == 503 {
                " (busy or still loading: try again)"
            } else {
                ""
            };
            Err(io::Error::other(format!(
                "answered '{line}': {}{hint}",
                body.trim()
            )))
        }
    }
}
