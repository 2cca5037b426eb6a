//! `package-indexer check` and `repair` through the real binary, on data
//! directories written by the real server and then damaged.
//!
//! The rules: `docs/command-line.md#check` and `docs/durability.md#repair`.

mod common;

use common::{
    data_files, log_of_packages, record_starts, run_binary, Client, ServerProcess, TempDir,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::Duration;

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

/// The one file of `dir` whose name starts with `prefix` and ends `.pi`.
fn only_file(dir: &Path, prefix: &str) -> PathBuf {
    let found: Vec<PathBuf> = data_files(dir)
        .into_keys()
        .filter(|name| name.starts_with(prefix) && name.ends_with(".pi"))
        .map(|name| dir.join(name))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// Asks `QUERY` for `p{i}` for each `i` in `indexes`: indexed when below
/// `kept`, not otherwise.
fn assert_kept(client: &mut Client, indexes: impl IntoIterator<Item = usize>, kept: usize) {
    for i in indexes {
        let expected = if i < kept { "OK" } else { "FAIL" };
        assert_eq!(client.ask(&format!("QUERY|p{i}|")), expected, "p{i}");
    }
}

#[test]
fn check_reports_a_clean_directory_and_a_torn_tail_and_changes_nothing() {
    let dir = TempDir::new("check-clean").unwrap();
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
fn a_byte_flipped_mid_log_is_named_by_check_and_cut_by_repair() {
    let dir = TempDir::new("mid-log").unwrap();
    let log = log_of_packages(dir.path(), 100);
    let starts = record_starts(&std::fs::read(&log).unwrap());
    let damaged = starts[40];
    let pristine = flip_payload_byte(&log, damaged);
    let before = data_files(dir.path());

    let (status, out, err) = tool("check", dir.path());
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        out.contains(&format!("log-1.pi: damaged at byte {damaged}")),
        "{out}"
    );
    assert!(out.contains("40 packages and 0 dependencies"), "{out}");
    assert_eq!(data_files(dir.path()), before, "check changed the files");

    let (status, out, err) = tool("repair", dir.path());
    assert_eq!(status, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "cut log-1.pi at byte {damaged}: dropped 60 records (59 intact, 1 damaged)"
        )),
        "{out}"
    );
    assert!(out.contains("dropped 60 records in all"), "{out}");
    let mut damaged_bytes = pristine.clone();
    damaged_bytes[damaged + 9] ^= 0x40;
    let saved = dir.path().join(format!("log-1.pi.cut-{damaged}"));
    assert_eq!(std::fs::read(saved).unwrap(), damaged_bytes[damaged..]);
    assert_eq!(std::fs::read(&log).unwrap(), pristine[..damaged]);

    let (status, out, _) = tool("check", dir.path());
    assert_eq!(status, 0, "{out}");
    let server = start(dir.path());
    assert!(
        server.logs()[0].contains("packages=40"),
        "{:?}",
        server.logs()
    );
    assert_kept(&mut server.connect(), 0..100, 40);
}

#[test]
fn damage_in_a_snapshot_shortens_it_and_cuts_the_log_changes_it_refuses() {
    const PACKAGES: usize = 50_000;
    const DAMAGED_RECORD: usize = 1_000;
    let dir = TempDir::new("snapshot-damage").unwrap();
    let server = ServerProcess::start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--fsync",
        "never",
    ]);
    // A chain, each package depending on the one before: the snapshot lists
    // them in that order, and its first records are the oldest. Past 1 MiB
    // of log the server compacts; what follows goes to the new log.
    let mut client = server.connect();
    let mut writer = client.writer.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let lines: String = (0..PACKAGES)
            .map(|i| match i {
                0 => "INDEX|p0|\n".to_owned(),
                i => format!("INDEX|p{i}|p{}\n", i - 1),
            })
            .collect();
        writer.write_all(lines.as_bytes()).unwrap();
    });
    for _ in 0..PACKAGES {
        assert_eq!(client.line(), "OK\n");
    }
    sender.join().unwrap();
    assert!(
        server.wait_for_log("msg=\"compacted\"", Duration::from_secs(30)),
        "{:?}",
        server.logs()
    );
    server.stop();

    let snapshot = only_file(dir.path(), "snapshot-");
    let name = snapshot.file_name().unwrap().to_str().unwrap().to_owned();
    assert_ne!(name, "snapshot-1.pi", "no compaction");
    let starts = record_starts(&std::fs::read(&snapshot).unwrap());
    let damaged = starts[DAMAGED_RECORD];
    let pristine = flip_payload_byte(&snapshot, damaged);

    let (status, out, err) = tool("check", dir.path());
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        out.contains(&format!("{name}: damaged at byte {damaged}")),
        "{out}"
    );

    let (status, out, err) = tool("repair", dir.path());
    assert_eq!(status, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "cut {name} at byte {damaged}: dropped {} records",
            starts.len() - 1 - DAMAGED_RECORD
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "closed it with an end marker for {DAMAGED_RECORD} packages"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "dropped {} records in all",
            PACKAGES - DAMAGED_RECORD
        )),
        "{out}"
    );
    // Still there under its name, shortened; what was cut is beside it.
    let shortened = std::fs::read(&snapshot).unwrap();
    assert_eq!(shortened[..damaged], pristine[..damaged]);
    assert_eq!(record_starts(&shortened).len(), DAMAGED_RECORD + 1);
    let saved = std::fs::read(dir.path().join(format!("{name}.cut-{damaged}"))).unwrap();
    assert_eq!(saved.len(), pristine.len() - damaged);

    let (status, out, _) = tool("check", dir.path());
    assert_eq!(status, 0, "{out}");
    let server = start(dir.path());
    assert!(
        server.logs()[0].contains(&format!("packages={DAMAGED_RECORD}")),
        "{:?}",
        server.logs()
    );
    let sample =
        (0..PACKAGES)
            .step_by(997)
            .chain([DAMAGED_RECORD - 1, DAMAGED_RECORD, PACKAGES - 1]);
    assert_kept(&mut server.connect(), sample, DAMAGED_RECORD);
}

#[test]
fn check_and_repair_refuse_while_a_server_runs_and_change_nothing() {
    let dir = TempDir::new("offline-locked").unwrap();
    let log = log_of_packages(dir.path(), 10);
    let server = start(dir.path());
    // Damage a running server never reads again: a repair that ignored the
    // lock would cut it.
    flip_payload_byte(&log, record_starts(&std::fs::read(&log).unwrap())[4]);
    let before = data_files(dir.path());
    for name in ["check", "repair"] {
        let (status, out, err) = tool(name, dir.path());
        assert_eq!(status, 1, "{name}: {out}{err}");
        assert!(
            err.contains("in use by another process") && err.contains("stop the server"),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert_eq!(data_files(dir.path()), before, "{name} changed the files");
    }
    server.stop();
}

#[test]
fn check_says_when_a_directory_holds_no_data_files_or_is_a_file() {
    let dir = TempDir::new("check-empty").unwrap();
    let (status, out, err) = tool("check", dir.path());
    assert_eq!(status, 0, "{out}{err}");
    assert_eq!(
        out.lines().last(),
        Some("ok: no data files (no server has written here); a start begins with an empty index"),
        "{out}"
    );
    assert!(!out.contains("a start loads"), "{out}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    for name in ["check", "repair"] {
        let (status, out, err) = tool(name, &file);
        assert_eq!(status, 1, "{name}: {out}{err}");
        assert_eq!(
            err,
            format!(
                "package-indexer {name}: {}: not a directory\n",
                file.display()
            )
        );
    }
}

#[test]
fn a_directory_that_does_not_exist_is_not_created_and_bad_usage_exits_2() {
    let parent = TempDir::new("offline-missing").unwrap();
    let missing = parent.path().join("no-such-dir");
    for name in ["check", "repair"] {
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

#[test]
fn a_lost_newest_log_is_closed_and_a_file_other_files_need_is_left_to_the_operator() {
    // The newest log deleted: nothing after it needs it, so repair ends the
    // history at the snapshot with an empty log.
    let dir = TempDir::new("lost-newest").unwrap();
    let log = log_of_packages(dir.path(), 10);
    std::fs::remove_file(&log).unwrap();
    assert_eq!(tool("check", dir.path()).0, 1);
    let (status, out, err) = tool("repair", dir.path());
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("created log-1.pi, empty"), "{out}");
    let server = start(dir.path());
    assert!(
        server.logs()[0].contains("packages=0"),
        "{:?}",
        server.logs()
    );
    server.stop();

    // A log that the snapshot names, with a later log after it: repair
    // changes nothing and says what to do.
    let dir = TempDir::new("lost-needed").unwrap();
    let log = log_of_packages(dir.path(), 10);
    std::fs::rename(&log, dir.path().join("log-2.pi")).unwrap();
    let before = data_files(dir.path());
    let (status, out, err) = tool("repair", dir.path());
    assert_eq!(status, 1, "{out}{err}");
    assert!(
        err.contains("log-1.pi: file is missing") && err.contains("restore it"),
        "{err}"
    );
    assert_eq!(data_files(dir.path()), before);
}
