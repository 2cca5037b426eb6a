//! `package-indexer show NAME`: what the index holds about one package, for
//! a person, from the admin listener's `/v1/packages/NAME`. Exit 0 when it
//! is indexed, 1 when it is not (or the server cannot be asked), 2 for bad
//! usage.

use super::{http, Subcommand};
use crate::flags::{CommandLine, Operands, UsageError, Values};
use crate::json;
use crate::name::PackageName;
use std::process::ExitCode;
use std::time::Duration;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "show",
    usage: " NAME",
    summary: "show a package's dependencies and the packages that depend on it",
    details: "Asks a running server's admin listener (GET /v1/packages/NAME) and prints
the package, `depends on (N): a, b` and `needed by (N): c, d`, both lists
sorted: the index at one moment. `needed by` lists what makes a REMOVE of
the package answer FAIL.

Exit status: 0 when the package is indexed; 1 when it is not (`NAME: not
indexed`) or the server cannot be asked; 2 for bad usage, a NAME that is
not a package name included.
",
    command_line: &CommandLine {
        flags: &[http::ADMIN_ADDR],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::One("NAME"),
    },
    run,
};

/// How long connecting, and each read and write, may take.
const TIMEOUT: Duration = Duration::from_secs(10);

const PROGRAM: &str = "package-indexer show";

fn run(values: &Values) -> ExitCode {
    let operand = values.operands().first().map_or("", String::as_str);
    let (admin_addr, name) = match (
        values.address("admin-addr"),
        PackageName::new(operand.as_bytes()),
    ) {
        (Ok(addr), Some(name)) => (addr, name),
        (Err(error), _) => return error.report(PROGRAM),
        (_, None) => {
            return UsageError(format!("invalid package name '{operand}'")).report(PROGRAM)
        }
    };
    // Every name byte may stand in a path as it is.
    let answer = http::get(&admin_addr, &format!("/v1/packages/{name}"), TIMEOUT)
        .and_then(|answer| Ok((answer.status, answer.text()?)));
    let shown = match answer {
        Ok((200, body)) => describe(&body).map(|text| (text, ExitCode::SUCCESS)),
        Ok((404, _)) => Ok((format!("{name}: not indexed\n"), ExitCode::FAILURE)),
        Ok((status, body)) => Err(format!("{admin_addr} answered {status}: {}", body.trim())),
        Err(error) => Err(format!("{admin_addr}: {error}")),
    };
    match shown {
        Ok((text, status)) => {
            print!("{text}");
            status
        }
        Err(reason) => {
            eprintln!("{PROGRAM}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// The text shown for a `/v1/packages` answer:
///
/// ```text
/// openssl@3
/// depends on (1): ca-certificates
/// needed by (2): curl, python@3.12
/// ```
///
/// An empty list shows as `depends on (0)`.
fn describe(body: &str) -> Result<String, String> {
    let unexpected = |what: &str| format!("unexpected answer ({what}): {}", body.trim());
    let value = json::parse(body).map_err(|error| unexpected(&error))?;
    let name = value.get("name").and_then(json::Value::as_str);
    let list = |field| value.get(field).and_then(json::Value::as_strings);
    let (Some(name), Some(dependencies), Some(dependents)) =
        (name, list("dependencies"), list("dependents"))
    else {
        return Err(unexpected("fields missing"));
    };
    Ok(format!(
        "{name}\n{}\n{}\n",
        counted("depends on", &dependencies),
        counted("needed by", &dependents)
    ))
}

/// `label (2): a, b`, or `label (0)`.
fn counted(label: &str, names: &[&str]) -> String {
    match names {
        [] => format!("{label} (0)"),
        names => format!("{label} ({}): {}", names.len(), names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_an_answer_for_a_person() {
        let body = "{\"name\":\"y\",\"dependencies\":[\"b\",\"z\"],\"dependents\":[]}\n";
        assert_eq!(
            describe(body).unwrap(),
            "y\ndepends on (2): b, z\nneeded by (0)\n"
        );
        for bad in [
            "{}",
            "[]",
            "{\"name\":\"y\",\"dependencies\":[1],\"dependents\":[]}",
            "nope",
        ] {
            assert!(
                describe(bad).unwrap_err().starts_with("unexpected answer"),
                "{bad}"
            );
        }
    }
}
