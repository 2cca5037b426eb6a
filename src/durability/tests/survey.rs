//! What a survey reports: every problem of every file, with a replay that
//! stops at the first one, and recovery failing on that first one.

use std::fs;

use super::{contents, each_change, recover_changes, sample_changes, write_log, ScratchDir};
use crate::durability::survey::{survey, Damage, Finding, Problem};
use crate::durability::RecoveryError;

#[test]
fn every_damaged_stretch_is_reported_and_the_replay_stops_at_the_first() {
    let scratch = ScratchDir::new("survey-stretches");
    let dir = scratch.path();
    let changes = sample_changes();
    let boundaries = write_log(dir, &changes);
    let path = dir.join("log-1.pi");
    let mut bytes = fs::read(&path).unwrap();
    for record in [2, 5] {
        bytes[usize::try_from(boundaries[record]).unwrap() + 9] ^= 0x40;
    }
    fs::write(&path, &bytes).unwrap();
    let before = contents(dir);

    let mut applied = 0;
    let surveyed = survey(
        dir,
        each_change(|_| {
            applied += 1;
            Ok(())
        }),
    )
    .unwrap();
    assert_eq!(applied, 2, "changes after the first damage were replayed");
    let damaged: Vec<_> = surveyed
        .findings
        .iter()
        .map(|finding| (finding.problem, finding.offset))
        .collect();
    assert_eq!(
        damaged,
        [
            (Problem::Damaged, Some(boundaries[2])),
            (Problem::Damaged, Some(boundaries[5]))
        ]
    );
    let file = &surveyed.files[1];
    assert_eq!(file.path, path);
    assert_eq!(
        file.damage,
        Some(Damage {
            offset: boundaries[2],
            changes_before: 2,
            stretches: 2
        })
    );
    assert_eq!(file.changes, changes.len() as u64 - 2);

    match recover_changes(dir).unwrap_err() {
        RecoveryError::Refused(Finding {
            problem: Problem::Damaged,
            file,
            offset,
            ..
        }) => {
            assert_eq!((file, offset), (path, Some(boundaries[2])))
        }
        other => panic!("expected damage, got {other}"),
    }
    assert_eq!(contents(dir), before);
}
