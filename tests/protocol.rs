//! Property tests of the wire protocol: the parser is total, and every
//! valid request survives encode -> parse unchanged.
//!
//! The rules: `docs/protocol.md#request-lines`.

use package_indexer::{parse_line, write_request, Command};
use proptest::prelude::*;

const NAME_BYTES: &[u8] = b"ABCXYZabcxyz0189._+-@/";

/// The oracle: the contract's rule for a name
/// (`docs/protocol.md#package-names`), written out independently.
fn is_name(text: &str) -> bool {
    (1..=255).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-@/".contains(&b))
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(NAME_BYTES), 1..12),
        1 => proptest::collection::vec(proptest::sample::select(NAME_BYTES), 250..=255),
    ]
    .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Index),
        Just(Command::Remove),
        Just(Command::Query)
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(request) = parse_line(&line) {
            // Whatever parses is canonical: encoding it gives the input back.
            let mut encoded = Vec::new();
            let dependencies: Vec<_> = request.dependencies.iter().collect();
            write_request(&mut encoded, request.command, request.package.as_str(), &dependencies);
            let input = line.strip_suffix(b"\r").unwrap_or(&line);
            prop_assert_eq!(&encoded[..encoded.len() - 1], input);
        }
    }

    #[test]
    fn near_valid_lines_never_panic(
        command in "(INDEX|REMOVE|QUERY|INDEXX|QUER|)",
        package in "[a-z,| ☃=.]{0,8}",
        deps in "[a-z,| ☃=.]{0,12}",
        cr in any::<bool>(),
    ) {
        let line = format!("{command}|{package}|{deps}{}", if cr { "\r" } else { "" });
        let parsed = parse_line(line.as_bytes());
        let fields_ok = !package.contains('|') && !deps.contains('|');
        let valid = fields_ok
            && ["INDEX", "REMOVE", "QUERY"].contains(&command.as_str())
            && is_name(&package)
            && (deps.is_empty() || (command == "INDEX" && deps.split(',').all(is_name)));
        prop_assert_eq!(parsed.is_ok(), valid, "{:?}", line);
    }

    #[test]
    fn valid_requests_round_trip(
        command in command(),
        package in name(),
        deps in proptest::collection::vec(name(), 0..6),
        cr in any::<bool>(),
    ) {
        let deps = if command == Command::Index { deps } else { Vec::new() };
        let mut line = format!("{}|{package}|{}", command.as_str(), deps.join(","));
        if cr {
            line.push('\r');
        }
        let request = parse_line(line.as_bytes()).unwrap();
        prop_assert_eq!(request.command, command);
        prop_assert_eq!(request.package.as_str(), package.as_str());
        let parsed: Vec<&str> = request.dependencies.iter().map(|d| d.as_str()).collect();
        prop_assert_eq!(parsed, deps);
    }
}
