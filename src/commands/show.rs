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
    let path = format!("/v1/text/packages/{name}");
    match http::ask_admin(PROGRAM, values, &path, &[200, 404]) {
        Ok(answer) if answer.status == 200 => {
            print!("{}", String::from_utf8_lossy(&answer.body));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("{name}: not indexed");
            ExitCode::FAILURE
        }
        Err(status) => status,
    }
}
