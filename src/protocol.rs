//! Wire protocol (`docs/protocol.md`): bytes -> [`Request`], [`Response`]
//! -> bytes. The parser is total (a request or a [`ParseError`], never a
//! panic) and zero-copy: names are validated in place into [`PackageName`]s.

use crate::name::{Dependencies, PackageName};
use std::fmt;

/// The three commands of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Index,
    Remove,
    Query,
}

impl Command {
    /// The command's spelling on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Index => "INDEX",
            Command::Remove => "REMOVE",
            Command::Query => "QUERY",
        }
    }

    fn from_bytes(bytes: &[u8]) -> Option<Command> {
        [Command::Index, Command::Remove, Command::Query]
            .into_iter()
            .find(|command| command.as_str().as_bytes() == bytes)
    }
}

/// The three answers of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    Ok,
    Fail,
    Error,
}

impl Response {
    /// The wire bytes, newline included.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Response::Ok => b"OK\n",
            Response::Fail => b"FAIL\n",
            Response::Error => b"ERROR\n",
        }
    }

    /// `Ok` when `ok` holds, `Fail` otherwise.
    pub fn ok_if(ok: bool) -> Response {
        if ok {
            Response::Ok
        } else {
            Response::Fail
        }
    }
}

/// One well-formed request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub command: Command,
    pub package: PackageName<'a>,
    pub dependencies: Dependencies<'a>,
}

/// Why a line is malformed; each kind is answered `ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    FieldCount,
    UnknownCommand,
    BadPackage,
    BadDependencies,
    UnexpectedDependencies,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::FieldCount => "expected three fields separated by '|'",
            Malformed::UnknownCommand => "unknown command",
            Malformed::BadPackage => "invalid package name",
            Malformed::BadDependencies => "invalid dependency list",
            Malformed::UnexpectedDependencies => "only INDEX takes dependencies",
        })
    }
}

/// A malformed line: what was wrong, and the command if it was recognised
/// (so metrics can tell `INDEX|a b|` from `LIZARD|a|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: Malformed,
    pub command: Option<Command>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

crate::log::as_text!(ParseError);

/// Parses one line, given without its `\n`; a single trailing `\r` is
/// stripped first.
pub fn parse_line(line: &[u8]) -> Result<Request<'_>, ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.splitn(4, |&b| b == b'|');
    let command_field = fields.next().unwrap_or_default();
    let (Some(package_field), Some(dependency_field), None) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(ParseError {
            kind: Malformed::FieldCount,
            command: Command::from_bytes(command_field),
        });
    };
    let command = Command::from_bytes(command_field).ok_or(ParseError {
        kind: Malformed::UnknownCommand,
        command: None,
    })?;
    let fail = |kind| ParseError {
        kind,
        command: Some(command),
    };
    let package = PackageName::new(package_field).ok_or(fail(Malformed::BadPackage))?;
    let dependencies =
        Dependencies::new(dependency_field).ok_or(fail(Malformed::BadDependencies))?;
    if command != Command::Index && !dependencies.is_empty() {
        return Err(fail(Malformed::UnexpectedDependencies));
    }
    Ok(Request {
        command,
        package,
        dependencies,
    })
}

/// Appends `COMMAND|package|dep,dep\n`, unchecked, so clients can send
/// names the server refuses.
pub fn write_request<D: AsRef<str>>(
    out: &mut Vec<u8>,
    command: Command,
    package: &str,
    dependencies: &[D],
) {
    out.extend_from_slice(command.as_str().as_bytes());
    out.push(b'|');
    out.extend_from_slice(package.as_bytes());
    out.push(b'|');
    for (i, dependency) in dependencies.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(dependency.as_ref().as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Malformed {
        parse_line(line.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn requests_are_written_as_the_wire_wants() {
        let mut out = Vec::new();
        write_request(&mut out, Command::Index, "a", &["b", "c"]);
        write_request::<&str>(&mut out, Command::Query, "a", &[]);
        write_request::<&str>(&mut out, Command::Remove, "x", &[]);
        assert_eq!(out, b"INDEX|a|b,c\nQUERY|a|\nREMOVE|x|\n");
    }

    #[test]
    fn parses_each_command() {
        let r = parse_line(b"INDEX|cloog|gmp,isl,pkg-config").unwrap();
        assert_eq!(r.command, Command::Index);
        assert_eq!(r.package.as_str(), "cloog");
        assert_eq!(r.dependencies.as_str(), "gmp,isl,pkg-config");
        assert_eq!(r.dependencies.iter().count(), 3);
        let r = parse_line(b"REMOVE|cloog|").unwrap();
        assert_eq!((r.command, r.package.as_str()), (Command::Remove, "cloog"));
        assert!(r.dependencies.is_empty());
        assert_eq!(r.dependencies.iter().count(), 0);
        let r = parse_line(b"QUERY|cloog|").unwrap();
        assert_eq!(r.command, Command::Query);
    }

    #[test]
    fn strips_one_carriage_return() {
        assert_eq!(parse_line(b"QUERY|a|\r").unwrap().package.as_str(), "a");
        assert_eq!(kind("QUERY|a|\r\r"), Malformed::BadDependencies);
        assert_eq!(kind("QUERY|a\r|"), Malformed::BadPackage);
    }

    #[test]
    fn wrong_field_counts() {
        for line in ["", "QUERY", "QUERY|a", "QUERY|a||", "QUERY|a|b|", "|||"] {
            assert_eq!(kind(line), Malformed::FieldCount, "{line:?}");
        }
        let e = parse_line(b"QUERY|a").unwrap_err();
        assert_eq!(e.command, Some(Command::Query));
    }

    #[test]
    fn unknown_commands() {
        for line in [
            "BLINDEX|a|b",
            "REMOVES|a|",
            "QUER|a|",
            "LIZARD|a|",
            "I|a|",
            "index|a|",
            "|a|",
            " INDEX|a|",
        ] {
            let e = parse_line(line.as_bytes()).unwrap_err();
            assert_eq!(
                (e.kind, e.command),
                (Malformed::UnknownCommand, None),
                "{line:?}"
            );
        }
    }

    #[test]
    fn bad_package_names() {
        let long = format!("QUERY|{}|", "a".repeat(256));
        for line in [
            "QUERY||",
            "INDEX|emacs=elisp|",
            "INDEX|emacs elisp|",
            "INDEX|emacs☃elisp|",
            "QUERY|a,b|",
            long.as_str(),
        ] {
            assert_eq!(kind(line), Malformed::BadPackage, "{line:?}");
        }
        let longest = format!("QUERY|{}|", "a".repeat(255));
        assert!(parse_line(longest.as_bytes()).is_ok());
        assert!(parse_line(b"INDEX|A-Za-z0-9._+-@/|").is_ok());
    }

    #[test]
    fn bad_dependency_lists() {
        for line in [
            "INDEX|a|b,,c",
            "INDEX|a|b,",
            "INDEX|a|,b",
            "INDEX|a|,",
            "INDEX|a|b c",
            "INDEX|a|b=c",
            "INDEX|a|☃",
        ] {
            assert_eq!(kind(line), Malformed::BadDependencies, "{line:?}");
        }
    }

    #[test]
    fn only_index_carries_dependencies() {
        assert_eq!(kind("REMOVE|a|b"), Malformed::UnexpectedDependencies);
        assert_eq!(kind("QUERY|a|b"), Malformed::UnexpectedDependencies);
    }

    #[test]
    fn repeated_dependencies_are_well_formed() {
        let r = parse_line(b"INDEX|a|b,b").unwrap();
        let names: Vec<&str> = r.dependencies.iter().map(|d| d.as_str()).collect();
        assert_eq!(names, ["b", "b"]);
    }

    #[test]
    fn encodes_responses() {
        assert_eq!(Response::Ok.as_bytes(), b"OK\n");
        assert_eq!(Response::Fail.as_bytes(), b"FAIL\n");
        assert_eq!(Response::Error.as_bytes(), b"ERROR\n");
    }
}
