//! The shared state every connection works on: one `Arc<RwLock<Indexer>>`,
//! and, with `--data-dir`, the write-ahead log beside it.
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
//!
//! A poisoned lock is recovered rather than propagated: the index never
//! panics mid-change on client input, and refusing every later request
//! would turn one bug into an outage.

use crate::durability::{Change, Seq, Wal};
use crate::index::{Indexer, Outcome};
use crate::protocol::{Command, Request};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The index shared by all connection threads.
#[derive(Clone, Default)]
pub struct Store {
    index: Arc<RwLock<Indexer>>,
    durable: Option<Arc<Durable>>,
}

struct Durable {
    log: Wal,
    /// Sequence number of the newest logged change; written under the
    /// write lock, read under either lock.
    newest: AtomicU64,
}

/// What executing a request did, and what its answer must wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    pub outcome: Outcome,
    /// The log position that must be durable before answering (`None`
    /// when memory only, or nothing was ever logged).
    pub wait_for: Option<Seq>,
}

impl Store {
    /// A memory-only store.
    pub fn new(indexer: Indexer) -> Store {
        Store {
            index: Arc::new(RwLock::new(indexer)),
            durable: None,
        }
    }

    /// A store whose changes go to `log`.
    pub fn with_log(indexer: Indexer, log: Wal) -> Store {
        Store {
            index: Arc::new(RwLock::new(indexer)),
            durable: Some(Arc::new(Durable {
                log,
                newest: AtomicU64::new(0),
            })),
        }
    }

    /// Runs one request as one atomic step. Fails only when the log has
    /// failed: then the request must not be answered.
    pub fn execute(&self, request: &Request<'_>) -> io::Result<Executed> {
        let Some(durable) = &self.durable else {
            let outcome = match request.command {
                Command::Query => self.read().query(request.package),
                Command::Index => self
                    .write()
                    .index(request.package, request.dependencies.iter()),
                Command::Remove => self.write().remove(request.package),
            };
            return Ok(Executed {
                outcome,
                wait_for: None,
            });
        };
        let (outcome, newest) = match request.command {
            Command::Query => {
                let index = self.read();
                (
                    index.query(request.package),
                    durable.newest.load(Ordering::Relaxed),
                )
            }
            Command::Index => {
                // Collected before taking the lock: the log record needs a
                // slice, and nothing is allocated under the write lock.
                let dependencies: Vec<&str> = request.dependencies.iter().collect();
                let change = Change::Index {
                    package: request.package,
                    dependencies: &dependencies,
                };
                let mut index = self.write();
                let outcome = index.index(request.package, dependencies.iter().copied());
                (outcome, durable.record(outcome, &change)?)
            }
            Command::Remove => {
                let change = Change::Remove {
                    package: request.package,
                };
                let mut index = self.write();
                let outcome = index.remove(request.package);
                (outcome, durable.record(outcome, &change)?)
            }
        };
        Ok(Executed {
            outcome,
            wait_for: (newest > 0).then(|| Seq::new(newest)),
        })
    }

    /// Blocks until the log covers `seq` (see [`Executed::wait_for`]).
    pub fn wait_durable(&self, seq: Seq) -> io::Result<()> {
        match &self.durable {
            Some(durable) => durable.log.wait_durable(seq),
            None => Ok(()),
        }
    }

    /// The write-ahead log, when there is one.
    pub fn log(&self) -> Option<&Wal> {
        self.durable.as_deref().map(|d| &d.log)
    }

    /// Shared access, for queries, gauges and snapshots.
    pub fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Indexer> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Durable {
    /// Logs `change` if `outcome` changed the index; returns the newest
    /// logged position. Called with the write lock held.
    fn record(&self, outcome: Outcome, change: &Change<'_>) -> io::Result<u64> {
        if outcome.changed() {
            let seq = self.log.append(change)?;
            self.newest.store(seq.value(), Ordering::Relaxed);
        }
        Ok(self.newest.load(Ordering::Relaxed))
    }
}
