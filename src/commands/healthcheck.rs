//! `package-indexer healthcheck`: asks the admin listener's `/readyz`, so a
//! container needs no HTTP client of its own.

use super::{http, Subcommand};
use crate::flags::{CommandLine, Operands, Values};
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "healthcheck",
    usage: "",
    summary: "ask a server's /readyz; exit 0 when it is ready, 1 otherwise",
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
    match http::ask_admin(PROGRAM, values, "/readyz", &[200]) {
        Ok(_) => ExitCode::SUCCESS,
        Err(status) => status,
    }
}
