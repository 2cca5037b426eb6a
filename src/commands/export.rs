//! `package-indexer export [-o FILE]`: a point-in-time copy of a running
//! server's index from its admin listener's `/v1/export`; see `details`.

use super::http::{self, HttpError};
use super::Subcommand;
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

fn run(values: &Values) -> ExitCode {
    let parsed = values
        .address("admin-addr")
        .and_then(|addr| Ok((addr, values.duration("timeout")?)));
    let (admin_addr, timeout) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return error.report(PROGRAM),
    };
    match export(&admin_addr, timeout, values.optional("output")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{PROGRAM}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Copies the export to `output` (through a temporary, renamed when
/// whole) or to stdout; the error is one line, naming the address or
/// the file at fault. Nothing is written before the server answers 200.
fn export(admin_addr: &str, timeout: Duration, output: Option<&str>) -> Result<(), String> {
    let answer = http::http_get(admin_addr, "/v1/export", timeout).map_err(|e| e.to_string())?;
    if answer.status != 200 {
        let (status, line) = (answer.status, answer.status_line.clone());
        let body = answer.text().unwrap_or_default();
        let hint = if status == 503 {
            " (busy or still loading: try again)"
        } else {
            ""
        };
        return Err(format!(
            "{admin_addr} answered '{line}': {}{hint}",
            body.trim()
        ));
    }
    let copy = |out: &mut dyn Write| -> Result<(), HttpError> {
        let mut out = BufWriter::new(out);
        answer.copy_body(&mut out)?;
        out.flush().map_err(HttpError::Write)
    };
    match output {
        None => copy(&mut io::stdout().lock()).map_err(|error| match error {
            HttpError::Write(error) => format!("writing standard output: {error}"),
            error => error.to_string(),
        }),
        Some(file) => {
            let mut transfer = Ok(());
            let written = write_atomically(Path::new(file), |out| {
                transfer = copy(out);
                match &transfer {
                    Ok(()) => Ok(()),
                    Err(HttpError::Write(error)) => {
                        Err(io::Error::new(error.kind(), error.to_string()))
                    }
                    Err(_) => Err(io::Error::other("the transfer failed")),
                }
            });
            match (transfer, written) {
                (Err(HttpError::Write(_)) | Ok(()), Err(error)) => Err(format!("{file}: {error}")),
                (Err(error), _) => Err(error.to_string()),
                (Ok(()), Ok(_)) => Ok(()),
            }
        }
    }
}
