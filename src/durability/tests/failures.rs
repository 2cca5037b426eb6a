//! A log whose files fail, or vanish, stops acknowledging anything, for
//! good, and says so once.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{index, recover_changes, rotate, with_change, ScratchDir};
use crate::durability::compactor::CompactionSignal;
use crate::durability::{DurabilityEvent, DurableOptions, Fsync, Wal};

/// Opens the log of a fresh `dir`; returns it with the count of failures
/// it reported.
fn open_counting_failures(dir: &std::path::Path, fsync: Fsync) -> (Wal, Arc<AtomicUsize>) {
    let (_, recovered) = recover_changes(dir).unwrap();
    let failures = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&failures);
    let observe = move |event: DurabilityEvent<'_>| {
        if let DurabilityEvent::Failed(_) = event {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    };
    let wal = Wal::open(
        recovered,
        &DurableOptions::new(fsync),
        Arc::new(observe),
        Arc::new(CompactionSignal::default()),
    )
    .unwrap();
    (wal, failures)
}

#[test]
fn a_deleted_log_fails_the_next_wait_every_later_call_and_is_reported_once() {
    for fsync in [Fsync::Always, Fsync::Never] {
        let scratch = ScratchDir::new("deleted-log");
        let (wal, failures) = open_counting_failures(scratch.path(), fsync);
        let appended = with_change(&index("a", &[]), |change| wal.append(change)).unwrap();
        wal.wait_durable(appended).unwrap();
        fs::remove_file(scratch.path().join("log-1.pi")).unwrap();
        let lost = with_change(&index("b", &[]), |change| wal.append(change)).unwrap();
        let error = wal.wait_durable(lost).unwrap_err();
        assert!(error.to_string().contains("deleted"), "{fsync}: {error}");
        assert!(
            wal.wait_durable(lost).is_err(),
            "{fsync}: the error is sticky"
        );
        assert!(with_change(&index("c", &[]), |change| wal.append(change)).is_err());
        assert!(rotate(&wal).is_err());
        assert!(wal.close().is_err());
        drop(wal);
        assert_eq!(failures.load(Ordering::SeqCst), 1, "{fsync}");
    }
}

#[test]
fn a_directory_replaced_while_in_use_is_found_by_the_file_check() {
    let scratch = ScratchDir::new("replaced-dir");
    let (wal, failures) = open_counting_failures(scratch.path(), Fsync::Always);
    wal.check_files().unwrap();
    let moved = scratch.path().with_extension("moved");
    fs::rename(scratch.path(), &moved).unwrap();
    fs::create_dir(scratch.path()).unwrap();
    let error = wal.check_files().unwrap_err();
    assert!(error.to_string().contains("replaced"), "{error}");
    let appended = with_change(&index("a", &[]), |change| wal.append(change));
    assert!(appended.is_err(), "a failed log takes no more changes");
    drop(wal);
    assert_eq!(failures.load(Ordering::SeqCst), 1);
    fs::remove_dir_all(&moved).unwrap();
}
