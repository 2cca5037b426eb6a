//! The shared state every connection works on: the one index and, with
//! `--data-dir`, the durable side that owns its files.
//!
//! `QUERY` takes the read lock, `INDEX` and `REMOVE` the write lock; each
//! command is one critical section, so all clients see one order of
//! commands. A change is appended to the log's in-memory buffer inside the
//! same critical section (so the log's order is the index's order); waiting
//! for it to reach the disk happens after the lock is released, once per
//! batch of answers.
//!
//! Every answer waits for the log to cover the newest change it could have
//! observed, queries included: an answer never reveals a change that a
//! crash could still take back.

use crate::durability::{self, Change, Durable, Loaded, LogStats, Observer, RecoveryError, Seq};
use crate::index::{Indexer, Outcome, SharedIndex};
use crate::protocol::{Command, Request};
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLockReadGuard};

/// The index shared by all connection threads, and its durable side.
#[derive(Clone, Default)]
pub struct Store {
    index: SharedIndex,
    durable: Option<Arc<Durable>>,
}

/// A position in the durable log: what an answer must wait for before it
/// is sent. Later positions compare greater; the default is "nothing".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition(Seq);

/// What executing a request did, and what its answer must wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    pub outcome: Outcome,
    pub wait_for: LogPosition,
}

impl Store {
    /// A memory-only store holding `indexer`.
    pub fn new(indexer: Indexer) -> Store {
        Store {
            index: SharedIndex::new(indexer),
            durable: None,
        }
    }

    /// Opens the data directory `dir` (created if missing), rebuilding the
    /// index it keeps; `observe` hears every event of its durable side.
    pub fn open(
        dir: &Path,
        options: durability::DurableOptions,
        observe: Arc<Observer>,
    ) -> Result<(Store, Loaded), RecoveryError> {
        let (index, durable, loaded) = Durable::open(dir, options, observe)?;
        let store = Store {
            index,
            durable: Some(Arc::new(durable)),
        };
        Ok((store, loaded))
    }

    /// Runs one request as one atomic step. Fails only when the log has
    /// failed: then the request must not be answered.
    pub fn execute(&self, request: &Request<'_>) -> io::Result<Executed> {
        let durable = self.durable.as_deref();
        let package = request.package;
        let (outcome, wait_for) = match request.command {
            Command::Query => {
                let index = self.index.read();
                let outcome = index.query(package);
                (outcome, durable.map(Durable::last_appended))
            }
            Command::Index => {
                let dependencies = request.dependencies;
                let mut index = self.index.write();
                let outcome = index.index(package, dependencies.iter());
                let change = Change::Index {
                    package,
                    dependencies,
                };
                (outcome, log_if_changed(durable, outcome, &change)?)
            }
            Command::Remove => {
                let mut index = self.index.write();
                let outcome = index.remove(package);
                let change = Change::Remove { package };
                (outcome, log_if_changed(durable, outcome, &change)?)
            }
        };
        Ok(Executed {
            outcome,
            wait_for: LogPosition(wait_for.unwrap_or_default()),
        })
    }

    /// Blocks until the log covers `position` (see [`Executed::wait_for`]).
    pub fn wait_durable(&self, position: LogPosition) -> io::Result<()> {
        match &self.durable {
            Some(durable) if position > LogPosition::default() => durable.wait_durable(position.0),
            _ => Ok(()),
        }
    }

    /// Shared access, for gauges and inspection.
    pub fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.index.read()
    }

    /// The durable log's counters, with a data directory.
    pub fn log_stats(&self) -> Option<LogStats> {
        self.durable.as_deref().map(Durable::stats)
    }

    /// Compacts the data directory now, on the calling thread, as the
    /// compactor does when the log outgrows its snapshot (waiting for a
    /// compaction in progress first); nothing to do in memory.
    pub fn compact(&self) -> io::Result<()> {
        self.durable.as_deref().map_or(Ok(()), Durable::compact)
    }

    /// Stops the durable side: the compactor is stopped and joined, then
    /// everything logged is written and synced; later changes fail. Returns
    /// the error that failed the log, if any. Nothing to do in memory.
    pub fn close(&self) -> io::Result<()> {
        self.durable.as_deref().map_or(Ok(()), Durable::close)
    }
}

/// Logs `change` if `outcome` changed the index; returns the newest logged
/// position. Called with the write lock held.
fn log_if_changed(
    durable: Option<&Durable>,
    outcome: Outcome,
    change: &Change<'_>,
) -> io::Result<Option<Seq>> {
    let Some(durable) = durable else {
        return Ok(None);
    };
    if outcome.changed() {
        durable.append(change).map(Some)
    } else {
        Ok(Some(durable.last_appended()))
    }
}
