//! Files that vanish under an open log: nothing is acknowledged until they
//! are written again, and a failure of the log is final and said once.

use std::fs;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{index, metric, recover_changes, with_change, ScratchDir};
use crate::durability::{DurableOptions, Fsync, Wal};
use crate::metrics::Metrics;

/// Opens the log of a fresh `dir`; returns it with the metrics that count
/// its failures.
fn open_counting_failures(dir: &std::path::Path, fsync: Fsync) -> (Wal, Arc<Metrics>) {
    let (_, recovered) = recover_changes(dir).unwrap();
    let metrics = Arc::new(Metrics::new());
    let options = DurableOptions::new(fsync);
    let wal = Wal::open(recovered, &options, Arc::clone(&metrics)).unwrap();
    (wal, metrics)
}

/// The failures counted in `metrics`.
fn failures(metrics: &Metrics) -> f64 {
    metric(metrics, "package_indexer_durability_errors_total")
}

/// Writes the files again as the compactor does, with `packages` for the
/// index.
fn restore(wal: &Wal, why: &str, packages: &[&str]) {
    let next = wal.prepare_restore(why).unwrap();
    let (generation, position) = wal.switch_to(next).unwrap();
    let contents = packages.iter().map(|&p| (p, [""; 0]));
    wal.write_snapshot(generation, contents).unwrap();
    wal.restored(position);
}

#[test]
fn a_deleted_log_holds_acknowledgements_with_fsync_always_until_the_files_are_written_again() {
    let scratch = ScratchDir::new("deleted-log");
    let (wal, metrics) = open_counting_failures(scratch.path(), Fsync::Always);
    let wal = Arc::new(wal);
    let appended = with_change(&index("a", &[]), |change| wal.append(change)).unwrap();
    wal.wait_durable(appended).unwrap();
    fs::remove_file(scratch.path().join("log-1.pi")).unwrap();
    let held = with_change(&index("b", &[]), |change| wal.append(change)).unwrap();
    let waiter = {
        let wal = Arc::clone(&wal);
        thread::spawn(move || wal.wait_durable(held))
    };
    let since = std::time::Instant::now();
    let why = loop {
        if let Some(why) = wal.missing_files() {
            break why;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "never noticed");
        thread::sleep(Duration::from_millis(1));
    };
    assert!(why.contains("log-1.pi"), "{why}");
    thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished(), "acknowledged while its log was gone");
    restore(&wal, &why, &["a", "b"]);
    waiter.join().unwrap().unwrap();
    assert_eq!(wal.missing_files(), None);
    assert!(scratch.path().join("snapshot-2.pi").exists());
    assert!(!scratch.path().join("snapshot-1.pi").exists());
    drop(wal);
    let (changes, _) = recover_changes(scratch.path()).unwrap();
    assert!(changes.len() >= 2, "{changes:?}");
    assert_eq!(failures(&metrics), 0.0);
}

#[test]
fn a_directory_replaced_while_in_use_is_found_and_made_again() {
    let scratch = ScratchDir::new("replaced-dir");
    let (wal, metrics) = open_counting_failures(scratch.path(), Fsync::Never);
    assert_eq!(wal.missing_files(), None);
    let moved = scratch.path().with_extension("moved");
    fs::rename(scratch.path(), &moved).unwrap();
    fs::create_dir(scratch.path()).unwrap();
    let why = wal.missing_files().unwrap();
    assert!(why.contains("replaced"), "{why}");
    restore(&wal, &why, &["a"]);
    assert_eq!(wal.missing_files(), None);
    let appended = with_change(&index("b", &[]), |change| wal.append(change)).unwrap();
    wal.wait_durable(appended).unwrap();
    drop(wal);
    let (changes, _) = recover_changes(scratch.path()).unwrap();
    assert!(changes.len() >= 2, "{changes:?}");
    assert_eq!(failures(&metrics), 0.0);
    fs::remove_dir_all(&moved).unwrap();
}
