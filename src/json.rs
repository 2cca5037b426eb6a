//! Just enough JSON (RFC 8259) to write the admin API's and the logs'
//! strings; the product never reads JSON.

use std::fmt::Write;

/// Appends `text` as a JSON string, quotes included.
pub(crate) fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character, not only those JSON requires, so a
            // value never carries an invisible one into a log line.
            c if c.is_control() => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `items` as a JSON array of strings.
pub(crate) fn write_strings<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, item);
    }
    out.push(']');
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// What `jq -j FILTER` writes for `input`: the JSON read by a parser
    /// that is not ours. `None` when `jq` is missing, after a SKIP line;
    /// a failure instead under `PACKAGE_INDEXER_REQUIRE_TOOLS=1`.
    pub(crate) fn jq(filter: &str, input: &str) -> Option<String> {
        let child = Command::new("jq")
            .args(["-j", filter])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                let required = std::env::var("PACKAGE_INDEXER_REQUIRE_TOOLS").as_deref() == Ok("1");
                assert!(!required, "PACKAGE_INDEXER_REQUIRE_TOOLS=1 and jq: {error}");
                println!("SKIP: jq cannot run ({error}; Debian's jq package installs it)");
                return None;
            }
        };
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "jq refused {input:?}");
        Some(String::from_utf8(output.stdout).unwrap())
    }

    /// Between the strings `jq` writes back: a character none of the
    /// tests' strings holds.
    pub(crate) const SEPARATOR: char = '\u{e000}';

    fn written(text: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, text);
        out
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(written("gcc@12/x+y"), "\"gcc@12/x+y\"");
        assert_eq!(
            written("a\"b\\c\nd\u{1}\u{7f}\u{85}é"),
            "\"a\\\"b\\\\c\\nd\\u0001\\u007f\\u0085é\""
        );
        let mut out = String::new();
        write_strings(&mut out, ["a", "b"]);
        write_strings(&mut out, []);
        assert_eq!(out, "[\"a\",\"b\"][]");
    }

    #[test]
    fn jq_reads_back_every_character_written() {
        // Every character below U+0800 one at a time, then runs of the
        // rest of the planes.
        let mut texts: Vec<String> = (0..0x800u32)
            .filter_map(char::from_u32)
            .map(String::from)
            .collect();
        let rest: Vec<char> = (0x800..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| c != SEPARATOR)
            .collect();
        texts.extend(
            rest.chunks(4096)
                .map(|chunk| chunk.iter().collect::<String>()),
        );
        let mut array = String::new();
        write_strings(&mut array, texts.iter().map(String::as_str));
        let Some(read) = jq(&format!(".[] | ., \"{SEPARATOR}\""), &array) else {
            return;
        };
        let expected: String = texts.iter().map(|t| format!("{t}{SEPARATOR}")).collect();
        assert!(
            read == expected,
            "jq read back other strings than were written"
        );
    }
}
