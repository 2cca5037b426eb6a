//! `package-indexer show NAME`: what the index holds about one package, for
//! a person, as the admin listener's `/v1/text/packages/NAME` says it. Exit 0 when it
//! is indexed, 1 when it is not (or the server cannot be asked), 2 for bad
//! usage.

use super::{http, Subcommand};
use crate::flags::{CommandLine, Operands, UsageError, Values};
use crate::name::PackageName;
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "show",
    usage: " NAME",
    summary: "show a package's dependencies and the packages that depend on it",
    details: "Asks a running server's admin listener (GET /v1/text/packages/NAME) and prints
the package, `depends on (N): a, b` and `needed by (N): c, d`, both lists
sorted: the index at one moment. `needed by` lists what makes a REMOVE of
the package answer FAIL.

Exit status: 0 when the package is indexed; 1 when it is not (`NAME: not
indexed`) or the server cannot be asked; 2 for bad usage, a NAME that is
not a package name included.
",
    command_line: &CommandLine {
        flags: &[http::ADMIN_ADDR, http::timeout_flag("10s")],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::One("NAME"),
    },
    run,
};

const PROGRAM: &str = "package-indexer show";

fn run(values: &Values) -> ExitCode {
    let operand = values.operands().first().map_or("", String::as_str);
    let parsed = values
        .address("admin-addr")
        .and_then(|addr| Ok((addr, values.duration("timeout")?)));
    let (admin_addr, timeout, name) = match (parsed, PackageName::new(operand.as_bytes())) {
        (Ok((addr, timeout)), Some(name)) => (addr, timeout, name),
        (Err(error), _) => return error.report(PROGRAM),
        (_, None) => {
            return UsageError(format!("invalid package name '{operand}'")).report(PROGRAM)
        }
    };
    // Every name byte may stand in a path as it is.
    let answer = http::http_get(&admin_addr, &format!("/v1/text/packages/{name}"), timeout)
        .and_then(|answer| Ok((answer.status, answer.text()?)));
    match answer {
        Ok((200, text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok((404, _)) => {
            println!("{name}: not indexed");
            ExitCode::FAILURE
        }
        Ok((status, body)) => {
            eprintln!("{PROGRAM}: {admin_addr} answered {status}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{PROGRAM}: {error}");
            ExitCode::FAILURE
        }
    }
}
