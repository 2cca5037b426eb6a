//! White-box tests of the durability engine: what recovery makes of logs
//! and snapshots written, rotated, cut and damaged file by file, and what
//! the log does under concurrent writers and `kill -9`. (The black-box
//! tests, through the store and the real binary, are in `tests/`.)

mod crash;
mod failures;
mod recovery;
mod repair;
mod survey;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::record::LoggedChange;
use super::recovery::Recovered;
use super::{recover, Change, DurableOptions, Fsync, Generation, RecoveryError, Replay, Wal};
use crate::metrics::{Metrics, StoreGauges};
use crate::name::{Dependencies, PackageName};
use std::io;

/// A fresh directory under the system temp dir, removed on drop (so also
/// when a test panics).
pub(super) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(super) fn new(label: &str) -> ScratchDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "package-indexer-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        ScratchDir(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn index(package: &str, dependencies: &[&str]) -> OwnedChange {
    OwnedChange::Index {
        package: package.to_owned(),
        dependencies: dependencies.iter().map(|&d| d.to_owned()).collect(),
    }
}

pub(super) fn remove(package: &str) -> OwnedChange {
    OwnedChange::Remove {
        package: package.to_owned(),
    }
}

/// Lends `change` as a borrowed [`Change`].
pub(super) fn with_change<R>(change: &OwnedChange, f: impl FnOnce(&Change<'_>) -> R) -> R {
    match change {
        OwnedChange::Index {
            package,
            dependencies,
        } => {
            let field = dependencies.join(",");
            f(&index_change(package, &field))
        }
        OwnedChange::Remove { package } => f(&Change::Remove {
            package: name(package),
        }),
    }
}

/// A change that owns its names, as the tests write and read them back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum OwnedChange {
    Index {
        package: String,
        dependencies: Vec<String>,
    },
    Remove {
        package: String,
    },
}

impl From<LoggedChange<'_>> for OwnedChange {
    fn from(change: LoggedChange<'_>) -> Self {
        match change {
            LoggedChange::Index {
                package,
                dependencies,
            } => OwnedChange::Index {
                package: package.to_string(),
                dependencies: dependencies.iter().map(|d| d.to_string()).collect(),
            },
            LoggedChange::Remove { package } => OwnedChange::Remove {
                package: package.to_string(),
            },
        }
    }
}

/// Switches `wal` to its next log file, as a compaction's first half does.
pub(super) fn rotate(wal: &Wal) -> io::Result<Generation> {
    Ok(wal.switch_to(wal.prepare_rotation()?)?.0)
}

/// A log of `a` rotated once in `dir`: log-1 holds `a` and its seal,
/// log-2 (still open) nothing yet.
pub(super) fn rotated_once(dir: &Path) -> CheckedWal {
    let log = open_wal(dir, Fsync::Never);
    append(&log, &index("a", &[]));
    rotate(&log).unwrap();
    log
}

/// Test names are valid: `text` as a name.
pub(super) fn name(text: &str) -> PackageName<'_> {
    PackageName::new(text.as_bytes()).unwrap()
}

/// `INDEX` of `package` with a comma-separated dependency field.
pub(super) fn index_change<'a>(package: &'a str, dependencies: &'a str) -> Change<'a> {
    Change::Index {
        package: name(package),
        dependencies: Dependencies::new(dependencies.as_bytes()).unwrap(),
    }
}

/// Opens the log of `dir` on its own, without a compactor: the tests rotate
/// and snapshot by hand. Any failure of the log fails the test.
pub(super) fn open_wal(dir: &Path, fsync: Fsync) -> CheckedWal {
    let (_, recovered) = recover_changes(dir).unwrap();
    wal_after(recovered, fsync)
}

/// Opens the log that `recovered` was found in, like [`open_wal`].
pub(super) fn wal_after(recovered: Recovered, fsync: Fsync) -> CheckedWal {
    let metrics = Arc::new(Metrics::new());
    let wal = Wal::open(recovered, &DurableOptions::new(fsync), Arc::clone(&metrics));
    CheckedWal {
        wal: wal.unwrap(),
        metrics,
    }
}

/// The value of the unlabelled series `name` in `metrics`' exposition.
pub(super) fn metric(metrics: &Metrics, name: &str) -> f64 {
    let mut text = String::new();
    metrics.render(StoreGauges::default(), &mut text);
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '));
    value.and_then(|value| value.parse().ok()).expect(name)
}

/// A log that fails the test if it failed, checked when it is closed on
/// drop (its failures are counted in its metrics).
pub(super) struct CheckedWal {
    wal: Wal,
    pub(super) metrics: Arc<Metrics>,
}

impl std::ops::Deref for CheckedWal {
    type Target = Wal;

    fn deref(&self) -> &Wal {
        &self.wal
    }
}

impl Drop for CheckedWal {
    fn drop(&mut self) {
        let _ = self.wal.close();
        let failures = metric(&self.metrics, "package_indexer_durability_errors_total");
        if failures > 0.0 && !std::thread::panicking() {
            panic!("the log failed");
        }
    }
}

/// Recovers `dir`, collecting the replayed changes.
pub(super) fn recover_changes(dir: &Path) -> Result<(Vec<OwnedChange>, Recovered), RecoveryError> {
    let mut changes = Vec::new();
    let recovered = recover(
        dir,
        each_change(|change| {
            changes.push(OwnedChange::from(change));
            Ok(())
        }),
    )?;
    Ok((changes, recovered))
}

/// Replays one change at a time through a function: see [`each_change`].
pub(super) struct EachChange<F>(F);

/// A [`Replay`] that passes each change to `apply`, for callers that only
/// look at the changes.
pub(super) fn each_change<F>(apply: F) -> EachChange<F>
where
    F: FnMut(LoggedChange<'_>) -> Result<(), String>,
{
    EachChange(apply)
}

impl<F> Replay for EachChange<F>
where
    F: FnMut(LoggedChange<'_>) -> Result<(), String>,
{
    fn reserve(&mut self, _packages: usize) {}

    fn apply(&mut self, changes: &[LoggedChange<'_>]) -> Result<(), (usize, String)> {
        for (at, &change) in changes.iter().enumerate() {
            (self.0)(change).map_err(|reason| (at, reason))?;
        }
        Ok(())
    }
}

/// Every file of `dir` but the lock file, with its contents.
pub(super) fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name() != "LOCK")
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// Total bytes of the files in `dir`.
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Appends `change` and waits until it is durable.
pub(super) fn append(log: &Wal, change: &OwnedChange) {
    let seq = with_change(change, |change| log.append(change)).unwrap();
    log.wait_durable(seq).unwrap();
}

/// Changes of every shape: no dependencies, several, longest names.
pub(super) fn sample_changes() -> Vec<OwnedChange> {
    let long = "L".repeat(255);
    vec![
        index("a", &[]),
        index("b", &["a"]),
        index(&long, &["a", "b"]),
        index("c", &["a", "b", &long]),
        remove("c"),
        remove(&long),
        index("b", &[]),
        index("d@1.0/x_y+z-", &["b", "a"]),
    ]
}

/// Writes `changes` to a fresh log in `dir`; returns the log length after
/// its header and after each record.
pub(super) fn write_log(dir: &Path, changes: &[OwnedChange]) -> Vec<u64> {
    let log = open_wal(dir, Fsync::Never);
    let mut boundaries = vec![log.log_bytes()];
    for change in changes {
        append(&log, change);
        boundaries.push(log.log_bytes());
    }
    log.close().unwrap();
    boundaries
}

#[test]
fn fsync_parses_and_prints() {
    for mode in [Fsync::Always, Fsync::Never] {
        assert_eq!(mode.to_string().parse(), Ok(mode));
    }
    assert!("Always".parse::<Fsync>().is_err());
    assert!("".parse::<Fsync>().is_err());
}
