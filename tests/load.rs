//! `package-indexer load`, through the real binary: the Homebrew list into
//! a fresh server and again, what can never be indexed, stdin, refusals
//! and dropped connections, the summary and the progress line.
//!
//! The rules: `docs/command-line.md#load`.

mod common;

use common::{
    closing_server, in_terminal, run_binary_with, Client, ServerProcess, TempDir, BREW_LIST,
};
use package_indexer::package_list::parse_line;
use std::process::Output;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `load` with `args` against `server`.
fn load(server: &ServerProcess, args: &[&str], stdin: &[u8]) -> Output {
    let addr = server.addr.to_string();
    let mut all = vec!["load", "--addr", &addr];
    all.extend_from_slice(args);
    run_binary_with(&all, stdin, &[])
}

/// The lines `load` wrote that start with its name, without it.
fn said(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter_map(|line| line.strip_prefix("package-indexer load: "))
        .map(str::to_string)
        .collect()
}

/// Every name in a Homebrew-style list, dependencies without a line
/// included.
fn every_name(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(entry) = parse_line(index + 1, line).unwrap() {
            for name in std::iter::once(entry.name).chain(entry.dependencies) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Asks `QUERY` for each name; the names answered `answer`.
fn answering(client: &mut Client, names: &[String], answer: &str) -> Vec<String> {
    names
        .iter()
        .filter(|name| client.ask(&format!("QUERY|{name}|")) == answer)
        .cloned()
        .collect()
}

#[test]
fn the_homebrew_list_loads_whole_into_a_fresh_server_and_again() {
    let text = std::fs::read_to_string(BREW_LIST).unwrap();
    let names = every_name(&text);
    assert_eq!(names.len(), 3370);
    let server = ServerProcess::start(&[]);

    // Two of its dependencies have no line (`gpg`, `docbook2X`): as the
    // official harness reads the list, they are packages without
    // dependencies, indexed first and named.
    let first = load(&server, &[BREW_LIST], b"");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let lines = said(&first);
    assert_eq!(
        lines[0],
        "2 dependencies have no line of their own; \
         indexed as packages without dependencies: gpg, docbook2X"
    );
    assert!(
        lines[1].starts_with("indexed 3,370 of 3,370 packages in "),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        !stderr(&first).contains('\x1b'),
        "no progress line off a terminal"
    );
    let mut client = server.connect();
    assert_eq!(answering(&mut client, &names, "OK").len(), 3370);
    assert_eq!(client.ask("INDEX|gpg|"), "OK", "gpg has no dependencies");

    // Again, strict or not: every INDEX is answered OK, and the server
    // holds `gpg` and `docbook2X` now, so nothing is indexed for them.
    for args in [&[BREW_LIST][..], &["--strict", BREW_LIST]] {
        let again = load(&server, args, b"");
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        let lines = said(&again);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("indexed 3,368 of 3,368 packages in "),
            "{lines:?}"
        );
    }
    assert_eq!(answering(&mut client, &names, "OK").len(), 3370);
}

#[test]
fn a_name_without_a_line_that_the_server_holds_keeps_its_dependencies() {
    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    assert_eq!(client.ask("INDEX|base|"), "OK");
    assert_eq!(client.ask("INDEX|held|base"), "OK");
    let output = load(&server, &["-"], b"top: held fresh\n");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = said(&output);
    assert_eq!(
        lines[0],
        "1 dependency has no line of their own; \
         indexed as packages without dependencies: fresh"
    );
    assert!(lines[1].starts_with("indexed 2 of 2 packages"), "{lines:?}");
    // `held` still depends on `base`: removing `base` is refused.
    assert_eq!(client.ask("REMOVE|base|"), "FAIL");
    assert_eq!(client.ask("QUERY|top|"), "OK");
}

#[test]
fn strict_refuses_what_the_list_does_not_hold_on_a_fresh_server() {
    let server = ServerProcess::start(&[]);
    let strict = load(&server, &["--strict", BREW_LIST], b"");
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    let lines = said(&strict);
    assert!(
        lines[0].starts_with(
            "missing dependency gpg (not in the list, not on the server), needed by duplicity"
        ),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("missing dependency docbook2X"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("9 packages depending on those cannot be indexed either: "),
        "{lines:?}"
    );
    assert_eq!(
        lines[3].split(" in ").next(),
        Some("indexed 3,359 of 3,368 packages")
    );
    assert!(
        lines[3].ends_with("; 9 skipped (can never be indexed)"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 4, "{lines:?}");
    let mut client = server.connect();
    assert_eq!(client.ask("QUERY|duplicity|"), "FAIL");
    assert_eq!(client.ask("QUERY|gpg|"), "FAIL");
    assert_eq!(client.ask("QUERY|ffmpeg|"), "OK");
}

#[test]
fn what_can_never_be_indexed_is_named_and_the_rest_is_indexed() {
    let list = "\
top: mid cycle-a
mid: base
base:
cycle-a: cycle-b
cycle-b: cycle-c
cycle-c: cycle-a
lost: nowhere base
after-lost: lost
solo:
";
    let dir = TempDir::new("load-troubles").unwrap();
    let file = dir.path().join("list.txt");
    std::fs::write(&file, list).unwrap();
    let server = ServerProcess::start(&[]);
    let output = load(&server, &["--strict", file.to_str().unwrap()], b"");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        said(&output)[..3],
        [
            "missing dependency nowhere (not in the list, not on the server), needed by lost",
            "dependency cycle: cycle-a -> cycle-b -> cycle-c -> cycle-a",
            "3 packages depending on those cannot be indexed either: top, lost, after-lost",
        ]
    );
    assert!(
        said(&output)[3].starts_with("indexed 3 of 9 packages in ",),
        "{:?}",
        said(&output)
    );
    assert!(said(&output)[3].ends_with("; 6 skipped (can never be indexed)"));
    let mut client = server.connect();
    let names = every_name(list);
    assert_eq!(
        answering(&mut client, &names, "OK"),
        ["base", "mid", "solo"]
    );
}

#[test]
fn reads_stdin_and_refuses_a_list_that_does_not_parse() {
    let server = ServerProcess::start(&[]);
    let good = load(&server, &["-"], b"b: a\na:\n");
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    let mut client = server.connect();
    assert_eq!(client.ask("QUERY|b|"), "OK");

    // One bad line: nothing is sent, not even the good lines.
    let bad = load(&server, &["-"], b"c:\nd: c\nno colon\ne: c=d\nd:\n");
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert_eq!(
        said(&bad),
        [
            "-: line 3: expected `name: dep dep ...` (no `:` found)",
            "-: line 4: invalid dependency name \"c=d\"",
            "-: line 5: package d is listed twice, on line 2 and on line 5",
            "-: 3 lines at fault; nothing was sent",
        ]
    );
    assert_eq!(client.ask("QUERY|c|"), "FAIL");
}

#[test]
fn refusals_and_malformed_lines_are_named() {
    let server = ServerProcess::start(&["--max-line-bytes", "64"]);
    let mut client = server.connect();
    assert_eq!(client.ask("INDEX|q|"), "OK");
    assert_eq!(client.ask("INDEX|p|q"), "OK");
    // `q: p` closes a cycle with what the server holds; `wide` makes a
    // line longer than the server takes.
    let deps: Vec<String> = (0..8).map(|i| format!("dependency{i}")).collect();
    let mut list = format!("q: p\nwide: {}\n", deps.join(" "));
    for dep in &deps {
        list.push_str(&format!("{dep}:\n"));
    }
    let output = load(&server, &["-"], list.as_bytes());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = said(&output);
    assert!(lines[0].starts_with("refused (FAIL: "), "{lines:?}");
    assert!(lines[0].ends_with("): q"), "{lines:?}");
    assert!(lines[1].starts_with("malformed (ERROR: "), "{lines:?}");
    assert!(lines[1].ends_with("): wide"), "{lines:?}");
    assert!(
        lines[2].ends_with("; 1 refused (FAIL); 1 malformed (ERROR)"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("indexed 8 of 10 packages"),
        "{lines:?}"
    );
}

#[test]
fn a_connection_lost_midway_is_said_and_fails() {
    let (addr, fake) = closing_server(3);
    let addr = addr.to_string();
    let output = run_binary_with(&["load", "--addr", &addr, "-"], b"a:\nb:\nc:\n", &[]);
    fake.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let lines = said(&output);
    assert_eq!(
        lines[0],
        "the server closed the connection after answering 1 of 3 lines"
    );
    assert!(lines[1].starts_with("indexed 1 of 3 packages"), "{lines:?}");
    assert!(
        lines[1].ends_with("; 2 unanswered (connection lost)"),
        "{lines:?}"
    );
}

#[test]
fn usage_and_unreadable_files() {
    let missing = run_binary_with(&["load"], b"", &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("missing FILE"),
        "{}",
        stderr(&missing)
    );
    let two = run_binary_with(&["load", "a", "b"], b"", &[]);
    assert_eq!(two.status.code(), Some(2));
    let nowhere = run_binary_with(&["load", "/nonexistent/list.txt"], b"", &[]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(
        stderr(&nowhere).starts_with("package-indexer load: cannot read /nonexistent/list.txt: "),
        "{}",
        stderr(&nowhere)
    );
}

#[test]
fn on_a_terminal_a_progress_line_is_drawn_then_erased() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let args = ["load", "--addr", &addr, BREW_LIST];
    let Some(output) = in_terminal(&args, b"") else {
        return;
    };
    assert_eq!(output.status.code(), Some(0));
    let screen = String::from_utf8_lossy(&output.stdout).into_owned();
    // Drawn in place (carriage return, erase line), then erased for what
    // follows: the names indexed without a line, then the summary.
    let drawn = screen.find("\r\x1b[Kindexed ").expect(&screen);
    let progress = &screen[drawn..];
    assert!(progress.contains(" of 3,370 ("), "{screen:?}");
    assert!(progress.contains("/s, "), "{screen:?}");
    assert!(
        progress.contains("\r\x1b[Kpackage-indexer load: 2 dependencies have no line"),
        "{screen:?}"
    );
    assert!(
        progress.contains("package-indexer load: indexed 3,370 of 3,370 packages in "),
        "{screen:?}"
    );
}
