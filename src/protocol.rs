//! Wire protocol: bytes -> [`Request`], [`Response`] -> bytes (SPEC §2).
//!
//! The parser is pure and total: every byte string maps to a request or a
//! [`ParseError`], never a panic. Names in a request borrow from the input
//! line; nothing is copied.

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
        match bytes {
            b"INDEX" => Some(Command::Index),
            b"REMOVE" => Some(Command::Remove),
            b"QUERY" => Some(Command::Query),
            _ => None,
        }
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
    /// The bytes sent on the wire, newline included.
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

/// Longest package name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// One well-formed request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub command: Command,
    pub package: &'a str,
    pub dependencies: Dependencies<'a>,
}

/// A validated, comma-separated dependency list (possibly empty), borrowed
/// from the request line. Iterating yields each entry, repeats included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dependencies<'a>(&'a str);

impl<'a> Dependencies<'a> {
    /// Validates a raw dependency field.
    pub fn parse(field: &'a [u8]) -> Result<Dependencies<'a>, ErrorKind> {
        if field.is_empty() {
            return Ok(Dependencies(""));
        }
        if !field.split(|&b| b == b',').all(is_valid_name) {
            return Err(ErrorKind::BadDependencies);
        }
        // Every byte is ASCII once the names are valid.
        std::str::from_utf8(field)
            .map(Dependencies)
            .map_err(|_| ErrorKind::BadDependencies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The field as it appeared on the wire.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Each listed name, in order, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + Clone + 'a {
        let field = self.0;
        field.split(',').filter(move |_| !field.is_empty())
    }
}

/// Why a line is malformed. Each kind is answered `ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The line is longer than the configured limit.
    TooLong,
    /// Not exactly three `|`-separated fields.
    FieldCount,
    /// The first field is not `INDEX`, `REMOVE` or `QUERY`.
    UnknownCommand,
    /// The package field is empty, too long or holds a forbidden byte.
    BadPackage,
    /// The dependency field has an empty entry or a forbidden byte.
    BadDependencies,
    /// `REMOVE` or `QUERY` carried dependencies.
    UnexpectedDependencies,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::TooLong => "line too long",
            ErrorKind::FieldCount => "expected three fields separated by '|'",
            ErrorKind::UnknownCommand => "unknown command",
            ErrorKind::BadPackage => "invalid package name",
            ErrorKind::BadDependencies => "invalid dependency list",
            ErrorKind::UnexpectedDependencies => "only INDEX takes dependencies",
        })
    }
}

/// A malformed line: what was wrong, and the command if it was recognised
/// (so metrics can tell `INDEX|a b|` from `LIZARD|a|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub command: Option<Command>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for ParseError {}

/// True for bytes allowed in a package name: `A-Z a-z 0-9 . _ + - @ /`.
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b'@' | b'/')
}

/// True for a valid package name: 1 to 255 name bytes.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES && name.iter().all(|&b| is_name_byte(b))
}

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
            kind: ErrorKind::FieldCount,
            command: Command::from_bytes(command_field),
        });
    };
    let command = Command::from_bytes(command_field).ok_or(ParseError {
        kind: ErrorKind::UnknownCommand,
        command: None,
    })?;
    let fail = |kind| ParseError {
        kind,
        command: Some(command),
    };
    if !is_valid_name(package_field) {
        return Err(fail(ErrorKind::BadPackage));
    }
    let package = std::str::from_utf8(package_field).map_err(|_| fail(ErrorKind::BadPackage))?;
    let dependencies = Dependencies::parse(dependency_field).map_err(fail)?;
    if command != Command::Index && !dependencies.is_empty() {
        return Err(fail(ErrorKind::UnexpectedDependencies));
    }
    Ok(Request {
        command,
        package,
        dependencies,
    })
}

impl Request<'_> {
    /// Appends the request's wire form, newline included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.command.as_str().as_bytes());
        out.push(b'|');
        out.extend_from_slice(self.package.as_bytes());
        out.push(b'|');
        out.extend_from_slice(self.dependencies.as_str().as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> ErrorKind {
        parse_line(line.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn parses_each_command() {
        let r = parse_line(b"INDEX|cloog|gmp,isl,pkg-config").unwrap();
        assert_eq!(r.command, Command::Index);
        assert_eq!(r.package, "cloog");
        assert_eq!(
            r.dependencies.iter().collect::<Vec<_>>(),
            ["gmp", "isl", "pkg-config"]
        );
        let r = parse_line(b"REMOVE|cloog|").unwrap();
        assert_eq!((r.command, r.package), (Command::Remove, "cloog"));
        assert!(r.dependencies.is_empty());
        assert_eq!(r.dependencies.iter().count(), 0);
        let r = parse_line(b"QUERY|cloog|").unwrap();
        assert_eq!(r.command, Command::Query);
    }

    #[test]
    fn strips_one_carriage_return() {
        assert_eq!(parse_line(b"QUERY|a|\r").unwrap().package, "a");
        assert_eq!(kind("QUERY|a|\r\r"), ErrorKind::BadDependencies);
        assert_eq!(kind("QUERY|a\r|"), ErrorKind::BadPackage);
    }

    #[test]
    fn wrong_field_counts() {
        for line in ["", "QUERY", "QUERY|a", "QUERY|a||", "QUERY|a|b|", "|||"] {
            assert_eq!(kind(line), ErrorKind::FieldCount, "{line:?}");
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
                (ErrorKind::UnknownCommand, None),
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
            assert_eq!(kind(line), ErrorKind::BadPackage, "{line:?}");
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
            assert_eq!(kind(line), ErrorKind::BadDependencies, "{line:?}");
        }
    }

    #[test]
    fn only_index_carries_dependencies() {
        assert_eq!(kind("REMOVE|a|b"), ErrorKind::UnexpectedDependencies);
        assert_eq!(kind("QUERY|a|b"), ErrorKind::UnexpectedDependencies);
    }

    #[test]
    fn repeated_dependencies_are_well_formed() {
        let r = parse_line(b"INDEX|a|b,b").unwrap();
        assert_eq!(r.dependencies.iter().collect::<Vec<_>>(), ["b", "b"]);
    }

    #[test]
    fn encodes_responses() {
        assert_eq!(Response::Ok.as_bytes(), b"OK\n");
        assert_eq!(Response::Fail.as_bytes(), b"FAIL\n");
        assert_eq!(Response::Error.as_bytes(), b"ERROR\n");
    }
}
