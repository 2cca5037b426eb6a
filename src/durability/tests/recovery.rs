//! What recovery makes of logs and snapshots, cut or damaged, and what the
//! log writes under load.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use super::{
    append, contents, dir_bytes, index, metric, open_wal as open, recover_changes, remove, rotate,
    rotated_once, sample_changes, wal_after, with_change, write_log, ScratchDir,
};
use super::{each_change, OwnedChange};
use crate::durability::files::Kind;
use crate::durability::survey::{survey, Finding, Problem};
use crate::durability::{examine, recover, Examined, Fsync, LoggedChange, RecoveryError, Wal};
use crate::index::Indexer;

/// The stand-in for the index: package -> dependencies.
type FakeIndex = BTreeMap<String, Vec<String>>;

fn apply(state: &mut FakeIndex, change: &OwnedChange) {
    match change {
        OwnedChange::Index {
            package,
            dependencies,
        } => {
            state.insert(package.clone(), dependencies.clone());
        }
        OwnedChange::Remove { package } => {
            state.remove(package);
        }
    }
}

/// Rotates and snapshots `state` the way the server's compaction does.
fn compact(log: &Wal, state: &FakeIndex) {
    let generation = rotate(log).unwrap();
    let packages = state
        .iter()
        .map(|(package, dependencies)| (package.as_str(), dependencies.iter().map(String::as_str)));
    log.write_snapshot(generation, packages).unwrap();
}

/// A file offset as an index into the file's bytes.
fn at(offset: u64) -> usize {
    usize::try_from(offset).unwrap()
}

#[test]
fn a_missing_directory_is_created_and_empty() {
    let scratch = ScratchDir::new("fresh");
    let dir = scratch.path().join("nested/data");
    let (changes, recovered) = recover_changes(&dir).unwrap();
    assert!(changes.is_empty());
    assert!(recovered.torn_tail.is_none());
    assert_eq!(
        recovered.stats.snapshot_records + recovered.stats.log_records,
        0
    );
    assert!(dir.is_dir());
}

#[test]
fn a_log_cut_at_any_byte_recovers_exactly_a_prefix_and_takes_new_appends() {
    let source = ScratchDir::new("cut-source");
    let changes = sample_changes();
    let boundaries = write_log(source.path(), &changes);
    let bytes = fs::read(source.path().join("log-1.pi")).unwrap();
    assert_eq!(Some(&(bytes.len() as u64)), boundaries.last());

    for cut in 0..=bytes.len() {
        let scratch = ScratchDir::new("cut");
        let dir = scratch.path();
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("log-1.pi"), &bytes[..cut]).unwrap();
        let cut = cut as u64;
        if cut < boundaries[0] {
            // Log files get their name only once their header is on disk,
            // so a short header is damage, not a torn write.
            let error = recover_changes(dir).unwrap_err();
            assert!(
                matches!(
                    error,
                    RecoveryError::Refused(Finding {
                        problem: Problem::Damaged,
                        offset: Some(0),
                        ..
                    })
                ),
                "cut {cut}: {error}"
            );
            continue;
        }
        let (recovered_changes, recovered) = recover_changes(dir).unwrap();
        let complete = boundaries.iter().filter(|&&end| end <= cut).count() - 1;
        assert_eq!(recovered_changes, changes[..complete], "cut {cut}");
        let on_boundary = boundaries.contains(&cut);
        assert_eq!(recovered.torn_tail.is_none(), on_boundary, "cut {cut}");
        if let Some(torn) = &recovered.torn_tail {
            assert_eq!(torn.offset, boundaries[complete]);
            assert_eq!(torn.offset + torn.dropped_bytes, cut);
        }

        // The torn record is gone for good: new appends follow the prefix.
        let log = wal_after(recovered, Fsync::Never);
        append(&log, &remove("z"));
        drop(log);
        let (after, recovered) = recover_changes(dir).unwrap();
        assert!(recovered.torn_tail.is_none());
        let mut expected = changes[..complete].to_vec();
        expected.push(remove("z"));
        assert_eq!(after, expected, "cut {cut}, after reopening");
    }
}

#[test]
fn damage_in_the_middle_refuses_naming_file_and_offset_and_changes_nothing() {
    let changes = sample_changes();
    // Which byte of the damaged record to flip, counted from its start.
    let flips = [("payload byte", 9), ("length's high byte", 3)];
    for (what, byte_in_record) in flips {
        let scratch = ScratchDir::new("corrupt");
        let dir = scratch.path();
        let boundaries = write_log(dir, &changes);
        let path = dir.join("log-1.pi");
        let mut bytes = fs::read(&path).unwrap();
        let damaged_record = boundaries[2];
        bytes[at(damaged_record + byte_in_record)] ^= 0x40;
        // A torn tail too: it must not be cut while the start is refused.
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        fs::write(&path, &bytes).unwrap();
        let before = contents(dir);

        let error = recover_changes(dir).unwrap_err();
        match &error {
            RecoveryError::Refused(Finding {
                problem: Problem::Damaged,
                file,
                offset,
                ..
            }) => {
                assert_eq!(file, &path, "{what}");
                assert_eq!(*offset, Some(damaged_record), "{what}");
            }
            other => panic!("{what}: expected damage, got {other}"),
        }
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("byte {damaged_record}")),
            "{message}"
        );
        assert_eq!(contents(dir), before, "{what}: files were changed");
    }
}

#[test]
fn a_change_the_index_refuses_stops_recovery_at_that_record() {
    let scratch = ScratchDir::new("refused");
    let dir = scratch.path();
    let boundaries = write_log(dir, &sample_changes());
    let path = dir.join("log-1.pi");
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[9, 0, 0]);
    fs::write(&path, &bytes).unwrap();
    let before = contents(dir);
    let mut seen = 0;
    let error = recover(
        dir,
        each_change(|_| {
            seen += 1;
            if seen == 3 {
                Err("dependency `b` is not indexed".to_owned())
            } else {
                Ok(())
            }
        }),
    )
    .unwrap_err();
    match &error {
        RecoveryError::Refused(Finding {
            problem: Problem::Damaged,
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, *offset), (&path, Some(boundaries[2])));
            assert!(reason.contains("not indexed"), "{reason}");
        }
        other => panic!("expected damage, got {other}"),
    }
    assert_eq!(contents(dir), before);
}

#[test]
fn an_unknown_format_version_is_refused() {
    for file in ["log-2.pi", "snapshot-2.pi"] {
        let scratch = ScratchDir::new("version");
        let dir = scratch.path();
        let log = open(dir, Fsync::Never);
        append(&log, &index("a", &[]));
        compact(&log, &FakeIndex::from([("a".to_owned(), Vec::new())]));
        drop(log);
        let path = dir.join(file);
        let mut bytes = fs::read(&path).unwrap();
        bytes[8] = 9;
        fs::write(&path, &bytes).unwrap();
        let before = contents(dir);
        let error = recover_changes(dir).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                RecoveryError::Refused(Finding {
                    problem: Problem::Damaged,
                    offset: Some(0),
                    ..
                })
            ),
            "{message}"
        );
        assert!(
            message.contains(file) && message.contains("version 9"),
            "{message}"
        );
        assert_eq!(contents(dir), before);
    }
}

/// Bytes of the seal a rotation writes at the end of the log it leaves.
const SEAL_RECORD_BYTES: u64 = 8 + 1 + 8;

/// Cuts `log-1.pi` inside its last record, the seal of a rotation, as a
/// crash during that write would leave it; returns the file and where the
/// torn seal starts.
fn tear_first_log(dir: &Path) -> (PathBuf, u64) {
    let old = dir.join("log-1.pi");
    let len = fs::metadata(&old).unwrap().len();
    let bytes = fs::read(&old).unwrap();
    fs::write(&old, &bytes[..at(len - 5)]).unwrap();
    (old, len - SEAL_RECORD_BYTES)
}

#[test]
fn a_torn_record_followed_by_records_in_a_newer_log_is_damage() {
    let scratch = ScratchDir::new("torn-old");
    let dir = scratch.path();
    let log = rotated_once(dir);
    append(&log, &index("b", &[]));
    drop(log);
    let (old, end) = tear_first_log(dir);
    match recover_changes(dir).unwrap_err() {
        RecoveryError::Refused(Finding {
            problem: Problem::Damaged,
            file,
            offset,
            ..
        }) => {
            assert_eq!((file, offset), (old, Some(end)))
        }
        other => panic!("expected damage, got {other}"),
    }
}

#[test]
fn a_torn_record_before_a_rotation_that_got_no_records_is_dropped() {
    let scratch = ScratchDir::new("torn-rotation");
    let dir = scratch.path();
    drop(rotated_once(dir));
    // A crash mid-rotation: the older log's last write cut short, the new
    // log created but still empty.
    let (old, end) = tear_first_log(dir);
    let (changes, recovered) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[])]);
    let torn = recovered.torn_tail.clone().unwrap();
    assert_eq!((torn.file, torn.offset), (old.clone(), end));
    assert_eq!(fs::metadata(&old).unwrap().len(), end);
    let log = wal_after(recovered, Fsync::Never);
    append(&log, &index("b", &["a"]));
    drop(log);
    let (changes, _) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[]), index("b", &["a"])]);
}

#[test]
fn a_missing_log_is_damage() {
    let scratch = ScratchDir::new("missing");
    let dir = scratch.path();
    drop(rotated_once(dir));
    fs::remove_file(dir.join("log-1.pi")).unwrap();
    let message = recover_changes(dir).unwrap_err().to_string();
    assert!(
        message.contains("log-1.pi") && message.contains("missing"),
        "{message}"
    );
}

#[test]
fn a_snapshot_without_its_end_marker_is_damage() {
    let scratch = ScratchDir::new("short-snapshot");
    let dir = scratch.path();
    let log = open(dir, Fsync::Never);
    let state = FakeIndex::from([
        ("a".to_owned(), Vec::new()),
        ("b".to_owned(), vec!["a".to_owned()]),
    ]);
    compact(&log, &state);
    drop(log);
    let path = dir.join("snapshot-2.pi");
    let bytes = fs::read(&path).unwrap();
    // The end marker is 8 + 9 bytes; cut it off whole, then in half.
    for cut in [bytes.len() - 17, bytes.len() - 5] {
        fs::write(&path, &bytes[..cut]).unwrap();
        match recover_changes(dir).unwrap_err() {
            RecoveryError::Refused(Finding {
                problem: Problem::Damaged,
                file,
                ..
            }) => assert_eq!(file, path),
            other => panic!("expected damage, got {other}"),
        }
    }
}

#[test]
fn a_directory_serves_one_process_at_a_time() {
    let scratch = ScratchDir::new("locked");
    let log = open(scratch.path(), Fsync::Never);
    assert!(matches!(
        recover_changes(scratch.path()),
        Err(RecoveryError::Locked { .. })
    ));
    drop(log);
    assert!(recover_changes(scratch.path()).is_ok());
}

#[test]
fn snapshot_and_log_round_trip_through_compaction() {
    let scratch = ScratchDir::new("compaction");
    let dir = scratch.path();
    let mut state = FakeIndex::new();
    let log = open(dir, Fsync::Always);
    let before_snapshot = [
        index("a", &[]),
        index("b", &["a"]),
        index("c", &["a", "b"]),
        remove("b"),
    ];
    for change in &before_snapshot {
        append(&log, change);
        apply(&mut state, change);
    }
    compact(&log, &state);
    let after_snapshot = [index("b", &["c"]), remove("a"), index("e", &[])];
    for change in &after_snapshot {
        append(&log, change);
        apply(&mut state, change);
    }
    drop(log);
    let names: Vec<String> = contents(dir).into_keys().collect();
    assert_eq!(names, ["log-2.pi", "snapshot-2.pi"]);

    let (changes, recovered) = recover_changes(dir).unwrap();
    assert_eq!(recovered.stats.snapshot_records, 2);
    assert_eq!(recovered.stats.log_records, 3);
    assert_eq!(changes[2..], after_snapshot);
    let mut replayed = FakeIndex::new();
    changes
        .iter()
        .for_each(|change| apply(&mut replayed, change));
    assert_eq!(replayed, state);
}

#[test]
fn a_crash_between_rotation_and_snapshot_loses_nothing() {
    let scratch = ScratchDir::new("rotate-crash");
    let dir = scratch.path();
    let log = open(dir, Fsync::Always);
    append(&log, &index("a", &[]));
    let generation = rotate(&log).unwrap();
    assert_eq!(generation.value(), 2);
    append(&log, &index("b", &["a"]));
    drop(log); // "crash" before the snapshot is written
    let (changes, _) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[]), index("b", &["a"])]);
}

#[test]
fn group_commit_makes_every_concurrent_append_durable_in_order() {
    const THREADS: usize = 32;
    const APPENDS: usize = 40;
    let scratch = ScratchDir::new("group-commit");
    let log = Arc::new(open(scratch.path(), Fsync::Always));
    // Stands in for the index write lock: appends happen under it, so its
    // order is the order the log must keep.
    let order = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            let order = Arc::clone(&order);
            thread::spawn(move || {
                for n in 0..APPENDS {
                    let change = if n % 3 == 2 {
                        remove(&format!("t{thread}-{}", n - 1))
                    } else {
                        index(&format!("t{thread}-{n}"), &["base", "other"])
                    };
                    let seq = {
                        let mut order = order.lock().unwrap();
                        let seq = with_change(&change, |change| log.append(change)).unwrap();
                        order.push(change);
                        seq
                    };
                    log.wait_durable(seq).unwrap();
                    assert!(log.last_appended() >= seq);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    log.close().unwrap();
    let stats = log.gauges();
    assert_eq!(stats.log_appends, (THREADS * APPENDS) as u64);
    // Every batch was synced, plus the final sync on close.
    let syncs = metric(&log.metrics, "package_indexer_fsync_duration_seconds_count");
    assert_eq!(syncs, (stats.log_writes + 1) as f64);
    assert!(stats.log_writes <= stats.log_appends);
    drop(log);
    let (changes, _) = recover_changes(scratch.path()).unwrap();
    assert_eq!(changes.len(), THREADS * APPENDS);
    assert_eq!(changes, *order.lock().unwrap());
}

#[test]
fn waiting_after_close_fails_instead_of_hanging() {
    let scratch = ScratchDir::new("closed");
    let log = open(scratch.path(), Fsync::Never);
    let seq = with_change(&index("a", &[]), |change| log.append(change)).unwrap();
    log.close().unwrap();
    log.wait_durable(seq).unwrap();
    assert!(with_change(&index("b", &[]), |change| log.append(change)).is_err());
    assert!(rotate(&log).is_err());
}

#[test]
fn churn_on_one_package_keeps_the_directory_small() {
    const CHANGES: usize = 400_000;
    const LIMIT: u64 = 8 << 20;
    let scratch = ScratchDir::new("churn");
    let dir = scratch.path();
    let log = open(dir, Fsync::Never);
    let mut state = FakeIndex::new();
    let base = index("base", &[]);
    append(&log, &base);
    apply(&mut state, &base);
    let mut largest = 0;
    let mut compactions = 0;
    for n in 0..CHANGES {
        let change = if n % 2 == 0 {
            index("churning-package", &["base"])
        } else {
            remove("churning-package")
        };
        let seq = with_change(&change, |change| log.append(change)).unwrap();
        apply(&mut state, &change);
        if n % 1000 == 999 {
            log.wait_durable(seq).unwrap();
        }
        if log.needs_compaction() {
            log.wait_durable(seq).unwrap();
            compact(&log, &state);
            compactions += 1;
            largest = largest.max(dir_bytes(dir));
        }
    }
    drop(log);
    largest = largest.max(dir_bytes(dir));
    assert!(compactions > 0);
    assert!(largest < LIMIT, "directory reached {largest} bytes");
    let (changes, _) = recover_changes(dir).unwrap();
    let mut replayed = FakeIndex::new();
    changes
        .iter()
        .for_each(|change| apply(&mut replayed, change));
    assert_eq!(replayed, state);
}

#[test]
fn a_bit_flipped_in_the_length_of_any_record_but_the_last_refuses() {
    let scratch = ScratchDir::new("length-flips");
    let changes: Vec<OwnedChange> = (0..100).map(|i| index(&format!("p{i}"), &[])).collect();
    let boundaries = write_log(scratch.path(), &changes);
    let pristine = fs::read(scratch.path().join("log-1.pi")).unwrap();
    for (record, &start) in boundaries[..boundaries.len() - 2].iter().enumerate() {
        for bit in 0..32 {
            let mut bytes = pristine.clone();
            bytes[at(start) + bit / 8] ^= 1 << (bit % 8);
            let dir = ScratchDir::new("length-flip");
            fs::create_dir_all(dir.path()).unwrap();
            fs::write(dir.path().join("log-1.pi"), &bytes).unwrap();
            let before = contents(dir.path());
            match recover_changes(dir.path()) {
                Err(RecoveryError::Refused(Finding {
                    problem: Problem::Damaged,
                    offset,
                    ..
                })) => {
                    assert_eq!(offset, Some(start), "record {record}, bit {bit}")
                }
                other => panic!("record {record}, bit {bit}: {other:?}"),
            }
            assert_eq!(contents(dir.path()), before, "record {record}, bit {bit}");
        }
    }
}

#[test]
fn a_sealed_newest_log_means_the_next_one_is_missing() {
    let scratch = ScratchDir::new("sealed-newest");
    let dir = scratch.path();
    let log = rotated_once(dir);
    append(&log, &index("b", &[]));
    drop(log);
    fs::remove_file(dir.join("log-2.pi")).unwrap();
    let before = contents(dir);
    match recover_changes(dir).unwrap_err() {
        RecoveryError::Refused(Finding {
            problem: Problem::Missing { .. },
            file,
            reason,
            ..
        }) => {
            assert_eq!(file, dir.join("log-2.pi"));
            assert!(reason.contains("log-1.pi was sealed"), "{reason}");
        }
        other => panic!("expected a missing file, got {other}"),
    }
    assert_eq!(contents(dir), before);
}

#[test]
fn a_snapshot_without_the_log_that_continues_it_is_refused() {
    let scratch = ScratchDir::new("snapshot-alone");
    let dir = scratch.path();
    drop(open(dir, Fsync::Never));
    // Even a fresh directory holds an empty snapshot once opened, so a lost
    // log is never taken for a new directory.
    let names: Vec<String> = contents(dir).into_keys().collect();
    assert_eq!(names, ["log-1.pi", "snapshot-1.pi"]);
    fs::remove_file(dir.join("log-1.pi")).unwrap();
    match recover_changes(dir).unwrap_err() {
        RecoveryError::Refused(Finding {
            problem: Problem::Missing { .. },
            file,
            ..
        }) => {
            assert_eq!(file, dir.join("log-1.pi"))
        }
        other => panic!("expected a missing file, got {other}"),
    }
}

#[test]
fn a_rotation_cut_short_before_its_seal_is_finished_at_the_next_open() {
    let scratch = ScratchDir::new("unsealed");
    let dir = scratch.path();
    drop(rotated_once(dir));
    // The crash came after log-2 was created and before log-1 was sealed.
    let (old, end) = tear_first_log(dir);
    fs::write(&old, &fs::read(&old).unwrap()[..at(end)]).unwrap();
    let log = open(dir, Fsync::Never);
    append(&log, &index("b", &["a"]));
    drop(log);
    let (changes, recovered) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[]), index("b", &["a"])]);
    assert!(recovered.torn_tail.is_none());
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_process_in() {
    let scratch = ScratchDir::new("lock-file-deleted");
    let log = open(scratch.path(), Fsync::Never);
    fs::remove_file(scratch.path().join("LOCK")).unwrap();
    assert!(matches!(
        recover_changes(scratch.path()),
        Err(RecoveryError::Locked { .. })
    ));
    drop(log);
}

/// Replays `change` into `index` alone, as a start did before changes
/// were replayed in runs.
fn replay_alone(index: &mut Indexer, change: LoggedChange<'_>) -> Result<(), String> {
    let outcome = match change {
        LoggedChange::Index {
            package,
            dependencies,
        } => index.index(package, dependencies.iter()),
        LoggedChange::Remove { package } => index.remove(package),
    };
    if outcome.changed() {
        Ok(())
    } else {
        Err(format!("the index answers {outcome:?} to a logged change"))
    }
}

/// The changes of the files of `kind` replayed up to the first problem.
fn replayed(examined: &Examined, kind: Kind) -> u64 {
    let files = examined
        .survey
        .files
        .iter()
        .filter(|file| file.kind == kind);
    let mut replayed = 0;
    for file in files {
        match file.damage {
            Some(damage) => return replayed + damage.changes_before,
            None => replayed += file.changes,
        }
    }
    replayed
}

/// Surveys `dir` into a real index twice: in runs, as a start does, and
/// one change at a time. Both must find and replay exactly the same.
fn assert_runs_replay_as_one_by_one(dir: &Path, what: &str) -> Examined {
    let runs = examine(dir).unwrap();
    let mut alone = Indexer::new();
    let single = survey(dir, each_change(|change| replay_alone(&mut alone, change))).unwrap();
    assert_eq!(runs.survey.findings, single.findings, "{what}");
    assert_eq!(runs.survey.files, single.files, "{what}");
    runs.index.check_invariants().unwrap();
    let listing = |index: &Indexer| {
        index
            .topological()
            .map(|(name, _)| name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(listing(&runs.index), listing(&alone), "{what}");
    runs
}

#[test]
fn replaying_in_runs_finds_what_replaying_one_by_one_finds() {
    // 700 changes (every fifth a REMOVE of the package before), so that
    // runs of 256 records cross; one change refused by the index, or one
    // record's bytes damaged, at either side of a window's edge.
    let changes = |refused: usize| -> Vec<OwnedChange> {
        (0..700)
            .map(|i| match i {
                _ if i == refused => index("late", &["never-indexed"]),
                0 => index("p0", &[]),
                _ if i % 5 == 4 && i - 1 != refused => remove(&format!("p{}", i - 1)),
                _ => index(&format!("p{i}"), &["p0"]),
            })
            .collect()
    };
    for refused in [1, 255, 256, 257, 600, 700] {
        let scratch = ScratchDir::new("runs-refused");
        let boundaries = write_log(scratch.path(), &changes(refused));
        let examined =
            assert_runs_replay_as_one_by_one(scratch.path(), &format!("refused {refused}"));
        match examined.survey.refusal() {
            Some(finding) if refused < 700 => {
                assert_eq!(
                    finding.offset,
                    Some(boundaries[refused]),
                    "refused {refused}"
                );
                assert_eq!(replayed(&examined, Kind::Log), refused as u64);
            }
            None if refused == 700 => assert_eq!(replayed(&examined, Kind::Log), 700),
            other => panic!("refused {refused}: {other:?}"),
        }
    }
    for damaged in [3, 255, 256, 257, 600] {
        let scratch = ScratchDir::new("runs-damaged");
        let boundaries = write_log(scratch.path(), &changes(700));
        let path = scratch.path().join("log-1.pi");
        let mut bytes = fs::read(&path).unwrap();
        bytes[at(boundaries[damaged]) + 10] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let examined =
            assert_runs_replay_as_one_by_one(scratch.path(), &format!("damaged {damaged}"));
        let finding = examined.survey.refusal().unwrap();
        assert_eq!(finding.offset, Some(boundaries[damaged]));
        assert_eq!(replayed(&examined, Kind::Log), damaged as u64);
    }
}

#[test]
fn a_snapshot_replays_in_runs_as_one_by_one() {
    // A snapshot of 600 packages, dependencies first (the names sort so),
    // with one that names a package the snapshot does not hold.
    for refused in [None, Some(255), Some(256), Some(513)] {
        let scratch = ScratchDir::new("runs-snapshot");
        let log = open(scratch.path(), Fsync::Never);
        let state: FakeIndex = (0..600)
            .map(|i| {
                let dependencies = match i {
                    _ if Some(i) == refused => vec!["p9999".to_owned()],
                    0 => Vec::new(),
                    _ => vec![format!("p{:04}", i - 1)],
                };
                (format!("p{i:04}"), dependencies)
            })
            .collect();
        compact(&log, &state);
        drop(log);
        let examined = assert_runs_replay_as_one_by_one(scratch.path(), &format!("{refused:?}"));
        let replayed = replayed(&examined, Kind::Snapshot);
        assert_eq!(replayed, refused.map_or(600, |at| at as u64), "{refused:?}");
        assert_eq!(examined.survey.refusal().is_some(), refused.is_some());
    }
}
