//! The Homebrew-style package list (`ffmpeg: lame x264`, one package a
//! line: `docs/command-line.md#load`), read and written one line at a time.
//! What a whole list must satisfy (each package once, no cycles, ...) is
//! for its user to say, with a [`ListError`] naming the line.

use crate::name::PackageName;
use std::fmt;

/// One package's line: its name, and its dependencies each once, in the
/// order written. `Display` writes the line back with single spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: PackageName<'a>,
    pub dependencies: Vec<PackageName<'a>>,
}

/// Why a list cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListError {
    /// 1-based line number in the list.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses line `number` (1-based) of a list; `Ok(None)` for a blank line.
/// Any whitespace separates names (the real dump has double spaces and
/// `\r\n` ends); invalid names and self-dependencies are refused, as by a server.
pub fn parse_line(number: usize, line: &str) -> Result<Option<Entry<'_>>, ListError> {
    let mut dependencies = Vec::new();
    let name = parse_line_into(number, line.as_bytes(), &mut dependencies)?;
    Ok(name.map(|name| Entry { name, dependencies }))
}

/// [`parse_line`] on bytes, the dependencies going into `dependencies`
/// (cleared first), so that no line allocates.
pub fn parse_line_into<'a>(
    number: usize,
    line: &'a [u8],
    dependencies: &mut Vec<PackageName<'a>>,
) -> Result<Option<PackageName<'a>>, ListError> {
    dependencies.clear();
    let refuse = |reason: String| ListError {
        line: number,
        reason,
    };
    let content = std::str::from_utf8(line)
        .map_err(|_| refuse("not valid UTF-8".into()))?
        .trim();
    if content.is_empty() {
        return Ok(None);
    }
    let (name, rest) = content
        .split_once(':')
        .ok_or_else(|| refuse("expected `name: dep dep ...` (no `:` found)".to_string()))?;
    let name = name.trim();
    let name = PackageName::from_text(name)
        .ok_or_else(|| refuse(format!("invalid package name {name:?}")))?;
    for word in rest.split_whitespace() {
        let dependency = PackageName::from_text(word)
            .ok_or_else(|| refuse(format!("invalid dependency name {word:?}")))?;
        if dependency == name {
            return Err(refuse(format!("package {name:?} depends on itself")));
        }
        if !dependencies.contains(&dependency) {
            dependencies.push(dependency);
        }
    }
    Ok(Some(name))
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        for dependency in &self.dependencies {
            write!(f, " {dependency}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(line: &str) -> Entry<'_> {
        parse_line(1, line).unwrap().unwrap()
    }

    #[test]
    fn reads_irregular_spacing_and_repeats() {
        let parsed = entry("  emacs: gnutls  libxml2 \tgnutls \r");
        assert_eq!(parsed.name, "emacs");
        assert_eq!(parsed.dependencies, ["gnutls", "libxml2"]);
        assert!(entry("a2ps:").dependencies.is_empty());
        assert_eq!(parse_line(3, " \r"), Ok(None));
    }

    #[test]
    fn unicode_spaces_separate_names_as_ascii_ones_do() {
        // A no-break space and an em space separate names too.
        let parsed = entry("emacs:\u{a0}gnutls\u{2003}libxml2\x0Bzlib\x0C");
        assert_eq!(parsed.dependencies, ["gnutls", "libxml2", "zlib"]);
        let mut reused = vec![PackageName::new(b"stale").unwrap()];
        let name = parse_line_into(1, b"a: b c b", &mut reused).unwrap();
        assert_eq!(name.unwrap(), "a");
        assert_eq!(reused, ["b", "c"]);
        assert_eq!(parse_line_into(2, b"  ", &mut reused), Ok(None));
        assert!(reused.is_empty());
        let error = parse_line_into(3, b"a: \xff", &mut reused).unwrap_err();
        assert_eq!(error.to_string(), "line 3: not valid UTF-8");
    }

    #[test]
    fn errors_name_the_line_and_reason() {
        let cases = [
            ("no colon here", "no `:`"),
            (": b", "invalid package name \"\""),
            ("a b: c", "invalid package name \"a b\""),
            ("a: b=c", "invalid dependency name \"b=c\""),
            ("a: b a", "\"a\" depends on itself"),
        ];
        for (line, reason) in cases {
            let error = parse_line(7, line).unwrap_err();
            assert_eq!(error.line, 7, "{line:?}");
            assert!(error.reason.contains(reason), "{line:?}: {error}");
            assert!(error.to_string().starts_with("line 7: "), "{error}");
        }
    }

    #[test]
    fn shows_the_line_it_reads() {
        assert_eq!(entry("emacs:  gnutls ").to_string(), "emacs: gnutls");
        assert_eq!(entry("a2ps:").to_string(), "a2ps:");
    }

    fn valid_name() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9._+@/-]{1,40}").unwrap()
    }

    proptest! {
        #[test]
        fn a_shown_entry_reads_back_the_same(
            name in valid_name(),
            dependencies in proptest::collection::btree_set(valid_name(), 0..10),
        ) {
            fn valid(text: &str) -> PackageName<'_> {
                PackageName::new(text.as_bytes()).unwrap()
            }
            let dependencies = dependencies
                .iter()
                .filter(|d| **d != name)
                .map(|d| valid(d))
                .collect();
            let original = Entry { name: valid(&name), dependencies };
            let written = original.to_string();
            prop_assert_eq!(parse_line(1, &written).unwrap(), Some(original));
        }
    }
}
