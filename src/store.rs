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

use crate::durability::{self, Change, Durable, Loaded, LogStats, Observer, RecoveryError};
pub(crate) use crate::durability::{Completion, Delivery};
use crate::index::{Indexer, Outcome, SharedIndex};
use crate::protocol::{Command, Request};
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLockReadGuard};

/// The most requests one hold of the index lock runs (see
/// [`Store::execute_all`]): long enough that taking the lock is a small part
/// of a run, short enough that another connection waits at most a fraction
/// of a millisecond for it.
pub(crate) const MAX_RUN: usize = 256;

/// The index shared by all connection threads, and its durable side.
#[derive(Clone, Default)]
pub struct Store {
    index: SharedIndex,
    durable: Option<Arc<Durable>>,
}

/// A position in the durable log: what an answer must wait for before it
/// is sent. Later positions compare greater; the default is "nothing".
pub use crate::durability::Seq as LogPosition;

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
        let mut executed = Vec::with_capacity(1);
        self.execute_all(std::slice::from_ref(request), &mut executed)?;
        executed
            .pop()
            .ok_or_else(|| io::Error::other("a request ran without a result"))
    }

    /// Runs `requests` in order, each as one atomic step, and appends what
    /// each did to `executed`. Consecutive requests that take the same lock
    /// run under one hold of it, at most `MAX_RUN` (256) of them, so a batch of
    /// input costs a lock per run rather than per request while no other
    /// connection waits longer than one run. Fails only when the log has
    /// failed: then none of the answers may be sent.
    ///
    /// This is the seam for batched index work: a run hands the index a
    /// slice of requests of one kind.
    pub fn execute_all(
        &self,
        requests: &[Request<'_>],
        executed: &mut Vec<Executed>,
    ) -> io::Result<()> {
        // Room for every result before any lock is taken.
        executed.reserve(requests.len());
        let mut rest = requests;
        while let Some(first) = rest.first() {
            let changes = changes_index(first.command);
            let len = rest
                .iter()
                .take(MAX_RUN)
                .position(|request| changes_index(request.command) != changes)
                .unwrap_or(rest.len().min(MAX_RUN));
            let (run, after) = rest.split_at(len);
            if changes {
                self.run_changes(run, executed)?;
            } else {
                self.run_queries(run, executed);
            }
            rest = after;
        }
        Ok(())
    }

    /// A run of queries under one read lock. Each answer waits for the
    /// newest change the lock let through.
    fn run_queries(&self, run: &[Request<'_>], executed: &mut Vec<Executed>) {
        let index = self.index.read();
        let wait_for = self
            .durable
            .as_deref()
            .map(Durable::last_appended)
            .unwrap_or_default();
        executed.extend(run.iter().map(|request| Executed {
            outcome: index.query(request.package),
            wait_for,
        }));
    }

    /// A run of changes under one write lock, each logged right after it is
    /// made (the log's buffer is taken once, at the run's first change).
    fn run_changes(&self, run: &[Request<'_>], executed: &mut Vec<Executed>) -> io::Result<()> {
        let mut index = self.index.write();
        let durable = self.durable.as_deref();
        let mut log = None;
        for request in run {
            let package = request.package;
            let (outcome, change) = match request.command {
                Command::Index => {
                    let dependencies = request.dependencies;
                    let outcome = index.index(package, dependencies.iter());
                    let change = Change::Index {
                        package,
                        dependencies,
                    };
                    (outcome, Some(change))
                }
                Command::Remove => (index.remove(package), Some(Change::Remove { package })),
                // Not sent here by `execute_all`; right under any lock.
                Command::Query => (index.query(package), None),
            };
            let wait_for = match (durable, change) {
                (None, _) => LogPosition::default(),
                (Some(durable), Some(change)) if outcome.changed() => {
                    let log = match &mut log {
                        Some(log) => log,
                        None => log.insert(durable.appender()?),
                    };
                    log.append(&change)?
                }
                (Some(durable), _) => durable.last_appended(),
            };
            executed.push(Executed { outcome, wait_for });
        }
        Ok(())
    }

    /// Blocks until the log covers `position` (see [`Executed::wait_for`]).
    pub fn wait_durable(&self, position: LogPosition) -> io::Result<()> {
        match &self.durable {
            Some(durable) if position > LogPosition::default() => durable.wait_durable(position),
            _ => Ok(()),
        }
    }

    /// Where the log is durable up to: an answer waiting for no later
    /// position may be sent now. Everything, in memory.
    pub(crate) fn durable_position(&self) -> LogPosition {
        self.durable
            .as_deref()
            .map_or(LogPosition::MAX, Durable::durable)
    }

    /// For answers waiting for the log to cover `wait_for`, held by
    /// `completion`: either writes the log on the calling thread (when that
    /// is cheap and nobody else is writing) and returns true, the caller
    /// then sending them itself, or hands them to the log's completer
    /// thread, which delivers them once the log covers them (see
    /// [`Completion`]), and returns false. Fails once the log has failed or
    /// closed: then they must never be sent. Everything is durable in
    /// memory.
    pub(crate) fn write_or_hand_over(
        &self,
        wait_for: LogPosition,
        completion: &Arc<dyn Completion>,
    ) -> io::Result<bool> {
        match &self.durable {
            Some(durable) => durable.write_or_hand_over(wait_for, completion),
            None => Ok(true),
        }
    }

    /// Answers handed over earlier now wait for `wait_for`: makes sure the
    /// log comes to cover it.
    pub(crate) fn expect_durable(&self, wait_for: LogPosition) {
        if let Some(durable) = &self.durable {
            durable.expect_durable(wait_for);
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

/// Whether `command` takes the write lock.
fn changes_index(command: Command) -> bool {
    command != Command::Query
}
