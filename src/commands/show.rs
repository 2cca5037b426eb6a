//! `package-indexer show NAME`: what the index holds about one package, for
//! a person, as the admin listener's `/v1/text/packages/NAME` says it.

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
    let Some(name) = PackageName::new(operand.as_bytes()) else {
        return UsageError(format!("invalid package name '{operand}'")).report(PROGRAM);
    };
    // Every name byte may stand in a path as it is.
    match http::ask_admin(PROGRAM, values, &format!("/v1/text/packages/{name}")) {
        Ok((_, answer)) if answer.status == 200 => {
            print!("{}", answer.text());
            ExitCode::SUCCESS
        }
        Ok((_, answer)) if answer.status == 404 => {
            println!("{name}: not indexed");
            ExitCode::FAILURE
        }
        Ok((addr, answer)) => super::fail(
            PROGRAM,
            format!(
                "{addr} answered {}: {}",
                answer.status,
                answer.text().trim()
            ),
        ),
        Err(status) => status,
    }
}
