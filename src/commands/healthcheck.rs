//! `package-indexer healthcheck`: asks the admin listener's `/readyz`, so a
//! container needs no HTTP client of its own. Exit 0 when ready, 1 when not
//! (or unreachable), 2 for bad usage.

use super::{http, Subcommand};
use crate::flags::{CommandLine, Operands, Values};
use std::process::ExitCode;
use std::time::Duration;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "healthcheck",
    usage: "",
    summary: "ask a server's /readyz; exit 0 when it is ready, 1 otherwise",
    details: "",
    command_line: &CommandLine {
        flags: &[http::ADMIN_ADDR],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::None,
    },
    run,
};

const PROGRAM: &str = "package-indexer healthcheck";

fn run(values: &Values) -> ExitCode {
    let admin_addr = match values.address("admin-addr") {
        Ok(addr) => addr,
        Err(error) => return error.report(PROGRAM),
    };
    match http::get(&admin_addr, "/readyz", PROBE_TIMEOUT) {
        Ok(answer) if answer.status == 200 => ExitCode::SUCCESS,
        Ok(answer) => {
            let status = answer.status_line;
            eprintln!("{PROGRAM}: {admin_addr} answered '{status}'");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{PROGRAM}: {admin_addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// How long the probe may take to connect, and for each read and write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
