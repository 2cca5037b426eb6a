//! Durable state for `--data-dir`; the contract is `docs/durability.md`.
//!
//! [`Durable::open`] locks and replays a directory ([`recovery`]), continues
//! its newest log ([`wal`]: the whole write path, sync and who waits) and
//! starts the [`compactor`]. What is damage is decided once, in [`survey`]:
//! a start fails on the first problem it refuses, `check` ([`examine`])
//! prints them all, `repair` ([`repair()`]) cuts until a start would load.

mod compactor;
mod crc32c;
mod files;
mod record;
mod recovery;
mod repair;
mod snapshot;
mod survey;
mod wal;

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use crate::index::{self, Indexer, RunItem, SharedIndex};
use crate::metrics::Metrics;
use crate::name::PackageName;
use compactor::Compaction;

pub use self::wal::LogPosition;
pub(crate) use self::wal::Wal;
pub(crate) use files::write_atomically;
pub(crate) use record::{Change, LoggedChange};
pub(crate) use recovery::recover;
pub use recovery::{LoadStats, RecoveryError, TornTail};
pub(crate) use repair::{repair, RepairStep};
pub(crate) use snapshot::MIN_COMPACTION_LOG_BYTES;
pub(crate) use survey::{file_name, Replay, Survey};

/// How a data directory is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableOptions {
    pub fsync: Fsync,
    /// A smaller log is never compacted.
    pub compact_at_least: u64,
}

impl DurableOptions {
    /// The server's settings for `fsync`.
    pub fn new(fsync: Fsync) -> DurableOptions {
        DurableOptions {
            fsync,
            compact_at_least: MIN_COMPACTION_LOG_BYTES,
        }
    }
}

/// The durable side of a store: owns its log and the compactor thread.
pub(crate) struct Durable {
    pub(crate) wal: Arc<Wal>,
    pub(crate) compaction: Arc<Compaction>,
    compactor: Mutex<Option<JoinHandle<()>>>,
}

/// What opening a data directory found.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub stats: LoadStats,
    /// The torn last record that was cut off, if any: worth a warning.
    pub torn_tail: Option<TornTail>,
}

impl Durable {
    /// Rebuilds the index kept in `dir` (created if missing) and opens the
    /// directory for writing; the returned index is the one to serve.
    pub(crate) fn open(
        dir: &Path,
        options: DurableOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(SharedIndex, Durable, Loaded), RecoveryError> {
        let mut indexer = Indexer::new();
        let recovered = recover(dir, Replayer(&mut indexer))?;
        let loaded = Loaded {
            stats: recovered.stats.clone(),
            torn_tail: recovered.torn_tail.clone(),
        };
        let cannot = |source| RecoveryError::Io {
            path: dir.to_owned(),
            source,
        };
        let index = SharedIndex::new(indexer);
        let wal = Wal::open(recovered, &options, metrics)
            .map(Arc::new)
            .map_err(cannot)?;
        let compaction = Arc::new(Compaction {
            wal: Arc::clone(&wal),
            index: index.clone(),
            closed: Mutex::new(false),
        });
        let compactor = thread::Builder::new().name("compactor".into()).spawn({
            let compaction = Arc::clone(&compaction);
            move || compactor::run(&compaction)
        });
        let durable = Durable {
            wal,
            compaction,
            compactor: Mutex::new(Some(compactor.map_err(cannot)?)),
        };
        Ok((index, durable, loaded))
    }

    /// Stops and joins the compactor, then closes the log ([`Wal::close`]).
    pub(crate) fn close(&self) -> io::Result<()> {
        let compactor = self
            .compactor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(compactor) = compactor {
            self.wal.signal.stop();
            // A panic there was reported by the panic hook already.
            let _ = compactor.join();
        }
        self.compaction.close();
        self.wal.close()
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Errors were already counted in the metrics.
        let _ = self.close();
    }
}

/// A data directory as the offline tools see it: its survey, and the index
/// its files replay to, up to the first problem a start refuses.
pub(crate) struct Examined {
    pub(crate) survey: Survey,
    pub(crate) index: Indexer,
}

/// Judges every file of `dir` as a start would, without changing anything
/// (`check`). The directory must exist and no server may hold it.
pub(crate) fn examine(dir: &Path) -> Result<Examined, RecoveryError> {
    let _lock = recovery::lock(dir, false)?;
    examine_locked(dir)
}

/// [`examine`] for a caller that holds the lock.
fn examine_locked(dir: &Path) -> Result<Examined, RecoveryError> {
    let mut index = Indexer::new();
    let survey = survey::survey(dir, Replayer(&mut index))?;
    Ok(Examined { survey, index })
}

/// Replays changes into an index a run at a time; a change the index
/// refuses means the files describe no state this server could reach.
struct Replayer<'a>(&'a mut Indexer);

impl Replay for Replayer<'_> {
    fn reserve(&mut self, packages: usize) {
        self.0.reserve(packages);
    }

    fn apply(&mut self, changes: &[LoggedChange<'_>]) -> Result<(), (usize, String)> {
        let mut applied = 0;
        self.0.execute_run(changes, |_, outcome| {
            if outcome.changed() {
                applied += 1;
                Ok(())
            } else {
                let reason = format!("the index answers {outcome:?} to a logged change");
                Err((applied, reason))
            }
        })
    }
}

impl RunItem for LoggedChange<'_> {
    fn command(&self) -> index::IndexCommand<'_, impl Iterator<Item = PackageName<'_>>> {
        match *self {
            LoggedChange::Index {
                package,
                dependencies,
            } => index::IndexCommand::Index {
                package,
                dependencies: dependencies.iter(),
            },
            LoggedChange::Remove { package } => index::IndexCommand::Remove(package),
        }
    }
}

/// Numbers the log/snapshot files; a rotation starts the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Generation(u64);

impl Generation {
    pub(crate) const FIRST: Generation = Generation(1);

    pub(crate) fn value(self) -> u64 {
        self.0
    }

    fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// When an appended change counts as durable (`--fsync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// After an `fdatasync` covering it: survives a machine crash.
    #[default]
    Always,
    /// After `write(2)`: survives a crash of the process only.
    Never,
}

impl FromStr for Fsync {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            other => Err(format!("expected `always` or `never`, got `{other}`")),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Never => "never",
        })
    }
}

crate::log::as_text!(Fsync);

#[cfg(test)]
mod tests;
