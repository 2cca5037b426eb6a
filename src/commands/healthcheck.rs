//! `package-indexer healthcheck`: asks the admin listener's `/readyz`, so a
//! container needs no HTTP client of its own. Exit 0 when ready, 1 when not
//! (or unreachable), 2 for bad usage.

use super::{http, Subcommand};
use crate::flags::{CommandLine, Operands, Values};
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "healthcheck",
    usage: "",
    summary: "ask a server's /readyz; exit 0 when it is ready, 1 otherwise",
    details: "",
    command_line: &CommandLine {
        flags: &[http::ADMIN_ADDR, http::timeout_flag("3s")],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::None,
    },
    run,
};

const PROGRAM: &str = "package-indexer healthcheck";

fn run(values: &Values) -> ExitCode {
    let parsed = values
        .address("admin-addr")
        .and_then(|addr| Ok((addr, values.duration("timeout")?)));
    let (admin_addr, timeout) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return error.report(PROGRAM),
    };
    match http::http_get(&admin_addr, "/readyz", timeout) {
        Ok(answer) if answer.status == 200 => ExitCode::SUCCESS,
        Ok(answer) => {
            let status = answer.status_line;
            eprintln!("{PROGRAM}: {admin_addr} answered '{status}'");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{PROGRAM}: {error}");
            ExitCode::FAILURE
        }
    }
}
