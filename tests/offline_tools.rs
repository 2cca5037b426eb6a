//! `package-indexer check` through the real binary, on data
//! directories written by the real server and then damaged.

mod common;

use common::{data_files, log_of_packages, record_starts, run_binary, ServerProcess, TempDir};
use std::path::Path;
use std::process::Output;

/// `package-indexer TOOL --data-dir DIR`: (exit status, stdout, stderr).
fn tool(tool: &str, dir: &Path) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = run_binary(&[tool, "--data-dir", dir.to_str().unwrap()]);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (status.code().unwrap(), text(stdout), text(stderr))
}

fn start(dir: &Path) -> ServerProcess {
    ServerProcess::start(&["--data-dir", dir.to_str().unwrap()])
}

/// Flips one payload byte of the record at `at` in `file`; returns the
/// file's bytes as they were.
fn flip_payload_byte(file: &Path, at: usize) -> Vec<u8> {
    let pristine = std::fs::read(file).unwrap();
    let mut bytes = pristine.clone();
    bytes[at + 9] ^= 0x40;
    std::fs::write(file, &bytes).unwrap();
    pristine
}

#[test]
fn check_reports_a_clean_directory_and_a_torn_tail_and_changes_nothing() {
    let dir = TempDir::new("check-clean");
    let server = start(dir.path());
    let mut client = server.connect();
    assert_eq!(client.ask("INDEX|p0|"), "OK");
    for i in 1..10 {
        assert_eq!(client.ask(&format!("INDEX|p{i}|p{}", i - 1)), "OK");
    }
    server.stop();
    let before = data_files(dir.path());
    let (status, out, err) = tool("check", dir.path());
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("log-1.pi: "), "{out}");
    assert!(out.contains("10 changes"), "{out}");
    assert!(out.contains("snapshot-1.pi: "), "{out}");
    assert!(
        out.contains("a start loads 10 packages and 9 dependencies"),
        "{out}"
    );
    assert_eq!(data_files(dir.path()), before);

    // A torn last record: a start cuts it off by itself, so it is a warning.
    let log = dir.path().join("log-1.pi");
    let bytes = std::fs::read(&log).unwrap();
    let last = *record_starts(&bytes).last().unwrap();
    std::fs::write(&log, &bytes[..bytes.len() - 3]).unwrap();
    let before = data_files(dir.path());
    let (status, out, err) = tool("check", dir.path());
    assert_eq!(status, 0, "{out}{err}");
    assert!(
        out.contains(&format!("torn last record at byte {last}")),
        "{out}"
    );
    assert!(out.contains("9 packages and 8 dependencies"), "{out}");
    assert_eq!(data_files(dir.path()), before, "check changed the files");
}

#[test]
fn a_byte_flipped_mid_log_is_named_by_check() {
    let dir = TempDir::new("mid-log");
    let log = log_of_packages(dir.path(), 100);
    let starts = record_starts(&std::fs::read(&log).unwrap());
    let damaged = starts[40];
    flip_payload_byte(&log, damaged);
    let before = data_files(dir.path());

    let (status, out, err) = tool("check", dir.path());
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        out.contains(&format!("log-1.pi: damaged at byte {damaged}")),
        "{out}"
    );
    assert!(out.contains("40 packages and 0 dependencies"), "{out}");
    assert_eq!(data_files(dir.path()), before, "check changed the files");
}

#[test]
fn check_refuses_while_a_server_runs_and_changes_nothing() {
    let dir = TempDir::new("offline-locked");
    let log = log_of_packages(dir.path(), 10);
    let server = start(dir.path());
    // Damage a running server never reads again.
    flip_payload_byte(&log, record_starts(&std::fs::read(&log).unwrap())[4]);
    let before = data_files(dir.path());
    let name = "check";
    let (status, out, err) = tool(name, dir.path());
    assert_eq!(status, 1, "{name}: {out}{err}");
    assert!(
        err.contains("in use by another process") && err.contains("stop the server"),
        "{name}: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{name}: {err}");
    assert_eq!(data_files(dir.path()), before, "{name} changed the files");
    server.stop();
}

#[test]
fn a_directory_that_does_not_exist_is_not_created_and_bad_usage_exits_2() {
    let parent = TempDir::new("offline-missing");
    let missing = parent.path().join("no-such-dir");
    for name in ["check"] {
        let (status, out, err) = tool(name, &missing);
        assert_eq!(status, 1, "{name}: {out}{err}");
        assert!(err.contains("no such directory"), "{name}: {err}");
        assert!(!missing.exists(), "{name} created the directory");

        for args in [
            vec![name],
            vec![name, "--data-dir"],
            vec![name, "--data-dir", "d", "extra"],
            vec![name, "--no-such-flag"],
        ] {
            let output = run_binary(&args);
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            let err = String::from_utf8(output.stderr).unwrap();
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
        let help = run_binary(&[name, "--help"]);
        assert_eq!(help.status.code(), Some(0));
        assert!(String::from_utf8(help.stdout)
            .unwrap()
            .contains("--data-dir"));
    }
}
