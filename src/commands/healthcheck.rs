//! `package-indexer healthcheck`: asks the admin listener's `/readyz`, so a
//! container needs no HTTP client of its own. Exit 0 when ready, 1 when not
//! (or unreachable).

use super::Subcommand;
use crate::config::DEFAULT_ADMIN_ADDR;
use crate::flags::{CommandLine, Flag, Operands, Values};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "healthcheck",
    usage: "",
    summary: "ask a server's /readyz; exit 0 when it is ready, 1 otherwise",
    details: "",
    command_line: &CommandLine {
        flags: &[Flag::value(
            "admin-addr",
            DEFAULT_ADMIN_ADDR,
            "the server's admin listener",
        )],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::None,
    },
    run,
};

fn run(values: &Values) -> ExitCode {
    let admin_addr = values.get("admin-addr");
    match probe_ready(admin_addr) {
        Ok(status) if is_ready(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("package-indexer healthcheck: {admin_addr} answered '{status}'");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("package-indexer healthcheck: {admin_addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// How long the probe may take in all: connect, send, receive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The status line `/readyz` answered with, or why there was none.
fn probe_ready(admin_addr: &str) -> io::Result<String> {
    let addr = admin_addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = Vec::new();
    stream.take(1024).read_to_end(&mut head)?;
    let head = String::from_utf8_lossy(&head);
    Ok(head.lines().next().unwrap_or_default().to_string())
}

/// True when a status line says 200.
fn is_ready(status_line: &str) -> bool {
    status_line.split(' ').nth(1) == Some("200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert!(is_ready("HTTP/1.1 200 OK"));
        assert!(!is_ready("HTTP/1.1 503 Service Unavailable"));
        assert!(!is_ready(""));
    }
}
