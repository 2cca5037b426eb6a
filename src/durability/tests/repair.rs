//! What `repair` makes of damaged and incomplete directories, file by
//! file: what it cuts, what it saves, what it counts, and that the result
//! recovers to the history it kept.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{
    append, contents, index, open_wal, recover_changes, remove, rotate, sample_changes, wal_after,
    write_log, OwnedChange, ScratchDir,
};
use crate::durability::files::Kind;
use crate::durability::record::{self, HEADER_LEN};
use crate::durability::repair::{repair, Cut, RepairError, RepairStep};
use crate::durability::{file_name, Fsync};

/// Repairs `dir`, returning the cuts made; panics on anything else.
fn cuts(dir: &Path) -> Vec<Cut> {
    let mut steps = Vec::new();
    repair(dir, |step| steps.push(step.clone())).unwrap();
    steps
        .into_iter()
        .map(|step| match step {
            RepairStep::Cut(cut) => cut,
            other => panic!("expected only cuts, got {other:?}"),
        })
        .collect()
}

fn at(offset: u64) -> usize {
    usize::try_from(offset).unwrap()
}

#[test]
fn damage_in_a_sealed_log_cuts_it_and_every_later_log_to_its_header() {
    let scratch = ScratchDir::new("repair-sealed");
    let dir = scratch.path();
    let log = open_wal(dir, Fsync::Never);
    let first = log.log_bytes();
    append(&log, &index("a", &[]));
    let second = log.log_bytes();
    append(&log, &index("b", &["a"]));
    append(&log, &index("c", &[]));
    rotate(&log).unwrap();
    append(&log, &index("d", &["c"]));
    append(&log, &index("e", &[]));
    drop(log);
    assert_eq!(first, HEADER_LEN as u64);
    let (old, newer) = (dir.join("log-1.pi"), dir.join("log-2.pi"));
    let mut damaged = fs::read(&old).unwrap();
    damaged[at(second) + 10] ^= 0x01;
    fs::write(&old, &damaged).unwrap();
    let newer_bytes = fs::read(&newer).unwrap();
    // The server's files may belong to another user than the one running
    // the repair (root, say): they keep their owner and mode.
    fs::set_permissions(&old, fs::Permissions::from_mode(0o640)).unwrap();
    let owner = fs::metadata(dir).unwrap();
    let owner = if owner.uid() == 0 {
        (1000, 1000)
    } else {
        (owner.uid(), owner.gid())
    };
    std::os::unix::fs::chown(&old, Some(owner.0), Some(owner.1)).unwrap();

    let cuts = cuts(dir);
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    assert_eq!((&cuts[0].file, cuts[0].offset), (&old, second));
    // `b` is damaged, `c` intact; the seal is no change.
    assert_eq!((cuts[0].intact, cuts[0].damaged), (1, 1));
    assert_eq!((&cuts[1].file, cuts[1].offset), (&newer, first));
    assert_eq!((cuts[1].intact, cuts[1].damaged), (2, 0));
    for cut in &cuts {
        let saved = fs::read(cut.saved_to.as_ref().unwrap()).unwrap();
        let original = if cut.file == old {
            &damaged
        } else {
            &newer_bytes
        };
        assert_eq!(saved, original[at(cut.offset)..]);
        assert_eq!(fs::read(&cut.file).unwrap(), original[..at(cut.offset)]);
    }
    let metadata = fs::metadata(&old).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o640);
    assert_eq!((metadata.uid(), metadata.gid()), owner);
    let (changes, recovered) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[])]);
    // The start seals the cut log, as it finishes an interrupted rotation.
    let log = wal_after(recovered, Fsync::Never);
    append(&log, &index("f", &["a"]));
    drop(log);
    let (changes, _) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[]), index("f", &["a"])]);
}

#[test]
fn a_sealed_newest_log_whose_successor_is_gone_loses_only_its_seal() {
    let scratch = ScratchDir::new("repair-seal");
    let dir = scratch.path();
    let log = open_wal(dir, Fsync::Never);
    append(&log, &index("a", &[]));
    let seal_at = log.log_bytes();
    rotate(&log).unwrap();
    append(&log, &index("b", &[]));
    drop(log);
    fs::remove_file(dir.join("log-2.pi")).unwrap();
    let cuts = cuts(dir);
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0].offset, seal_at);
    assert_eq!(cuts[0].dropped(), 0);
    let (changes, _) = recover_changes(dir).unwrap();
    assert_eq!(changes, [index("a", &[])]);
}

#[test]
fn a_damaged_header_is_replaced_and_the_whole_file_saved() {
    let scratch = ScratchDir::new("repair-header");
    let dir = scratch.path();
    write_log(dir, &sample_changes());
    let path = dir.join("log-1.pi");
    let mut damaged = fs::read(&path).unwrap();
    damaged[0] ^= 0x01;
    fs::write(&path, &damaged).unwrap();
    let cuts = cuts(dir);
    assert_eq!(cuts.len(), 1);
    assert_eq!((cuts[0].offset, cuts[0].damaged), (0, 1));
    assert_eq!(
        fs::read(cuts[0].saved_to.as_ref().unwrap()).unwrap(),
        damaged
    );
    assert_eq!(fs::read(&path).unwrap(), record::header(Kind::Log));
    assert!(recover_changes(dir).unwrap().0.is_empty());
}

#[test]
fn a_snapshot_without_its_end_marker_gets_one_and_loses_nothing() {
    let scratch = ScratchDir::new("repair-end-marker");
    let dir = scratch.path();
    let log = open_wal(dir, Fsync::Never);
    append(&log, &index("a", &[]));
    append(&log, &index("b", &["a"]));
    let generation = rotate(&log).unwrap();
    let packages: [(&str, Vec<&str>); 2] = [("a", vec![]), ("b", vec!["a"])];
    log.write_snapshot(generation, packages).unwrap();
    append(&log, &index("c", &["b"]));
    drop(log);
    let path = dir.join("snapshot-2.pi");
    let bytes = fs::read(&path).unwrap();
    let end_marker = bytes.len() - 17;
    fs::write(&path, &bytes[..end_marker]).unwrap();

    let cuts = cuts(dir);
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(cuts[0].file, path);
    assert_eq!(cuts[0].offset, end_marker as u64);
    assert_eq!((cuts[0].saved_to.as_ref(), cuts[0].dropped()), (None, 0));
    assert_eq!(cuts[0].closed_with, Some(2));
    assert_eq!(fs::read(&path).unwrap(), bytes);
    let (changes, _) = recover_changes(dir).unwrap();
    assert_eq!(
        changes,
        [index("a", &[]), index("b", &["a"]), index("c", &["b"])]
    );
}

#[test]
fn a_missing_log_between_two_others_is_left_to_the_operator_even_after_damage() {
    let scratch = ScratchDir::new("repair-gap");
    let dir = scratch.path();
    let log = open_wal(dir, Fsync::Never);
    append(&log, &index("a", &[]));
    let damaged = log.log_bytes();
    append(&log, &index("b", &[]));
    rotate(&log).unwrap();
    append(&log, &index("c", &[]));
    rotate(&log).unwrap();
    append(&log, &index("d", &[]));
    drop(log);
    fs::remove_file(dir.join("log-2.pi")).unwrap();
    // Damage before the gap comes first in replay order; it is not cut.
    let first = dir.join("log-1.pi");
    let mut bytes = fs::read(&first).unwrap();
    bytes[at(damaged) + 10] ^= 0x01;
    fs::write(&first, &bytes).unwrap();
    let before = contents(dir);
    let mut steps = 0;
    match repair(dir, |_| steps += 1) {
        Err(RepairError::Missing(finding)) => assert_eq!(finding.file, dir.join("log-2.pi")),
        other => panic!("expected a missing file, got {:?}", other.map(|_| ())),
    }
    assert_eq!(steps, 0);
    assert_eq!(contents(dir), before);
}

/// Builds `snapshot-2.pi` (three packages), `log-2.pi` (two changes,
/// sealed by a rotation whose snapshot never came) and `log-3.pi` (three
/// changes); returns what a start replays from the snapshot and from the
/// logs.
fn directory_mid_life(dir: &Path) -> (Vec<OwnedChange>, Vec<OwnedChange>) {
    let log = open_wal(dir, Fsync::Never);
    append(&log, &index("a", &[]));
    append(&log, &index("b", &["a"]));
    append(&log, &index("c", &["a", "b"]));
    let generation = rotate(&log).unwrap();
    let packages: [(&str, Vec<&str>); 3] = [("a", vec![]), ("b", vec!["a"]), ("c", vec!["a", "b"])];
    log.write_snapshot(generation, packages).unwrap();
    let logged = [
        remove("c"),
        index("d", &["b"]),
        index("e", &["a", "d"]),
        remove("e"),
        index("f", &[]),
    ];
    for (n, change) in logged.iter().enumerate() {
        if n == 2 {
            rotate(&log).unwrap();
        }
        append(&log, change);
    }
    drop(log);
    let names: Vec<String> = contents(dir).into_keys().collect();
    assert_eq!(names, ["log-2.pi", "log-3.pi", "snapshot-2.pi"]);
    let (replayed, _) = recover_changes(dir).unwrap();
    assert_eq!(replayed[3..], logged);
    (replayed[..3].to_vec(), logged.to_vec())
}

#[test]
fn every_flipped_or_cut_byte_is_repaired_to_a_directory_that_starts() {
    let source = ScratchDir::new("repair-every-byte-source");
    let (from_snapshot, from_logs) = directory_mid_life(source.path());
    let pristine = contents(source.path());
    let mut repaired = 0;
    for (name, bytes) in &pristine {
        let mut copies = Vec::new();
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x80] {
                let mut flipped = bytes.clone();
                flipped[at] ^= mask;
                copies.push((format!("{name}: byte {at} ^ {mask:#04x}"), flipped));
            }
            copies.push((format!("{name}: cut at {at}"), bytes[..at].to_vec()));
        }
        for (what, damaged) in copies {
            let scratch = ScratchDir::new("repair-every-byte");
            let dir = scratch.path();
            fs::create_dir_all(dir).unwrap();
            for (other, other_bytes) in &pristine {
                fs::write(dir.join(other), other_bytes).unwrap();
            }
            fs::write(dir.join(name), &damaged).unwrap();
            let before = contents(dir);
            let mut steps = Vec::new();
            if let Err(error) = repair(dir, |step| steps.push(step.clone())) {
                panic!("{what}: {error}");
            }
            repaired += usize::from(!steps.is_empty());
            let mut cut_files = Vec::new();
            for step in &steps {
                let RepairStep::Cut(cut) = step else {
                    panic!("{what}: {step:?}");
                };
                let file = file_name(&cut.file);
                // Each file is cut once, and what is cut is saved whole.
                assert!(!cut_files.contains(&file), "{what}: {file} cut twice");
                let original = &before[&file];
                if let Some(saved) = &cut.saved_to {
                    assert_eq!(
                        fs::read(saved).unwrap(),
                        original[at(cut.offset)..],
                        "{what}"
                    );
                }
                cut_files.push(file);
            }
            let (replayed, _) = recover_changes(dir)
                .unwrap_or_else(|error| panic!("{what}: does not start after repair: {error}"));
            // A prefix of the snapshot, then a prefix of the logs; all of
            // the snapshot unless the snapshot was the damaged file.
            let kept = replayed
                .iter()
                .zip(&from_snapshot)
                .take_while(|(a, b)| a == b)
                .count();
            assert!(
                kept == from_snapshot.len() || name.starts_with("snapshot-"),
                "{what}: lost snapshot records"
            );
            assert!(
                from_logs.starts_with(&replayed[kept..]),
                "{what}: not a prefix: {replayed:?}"
            );
        }
    }
    assert!(repaired > 0);
}
