//! The shared state every connection works on: one `Arc<RwLock<Indexer>>`.
//!
//! `QUERY` takes the read lock, `INDEX` and `REMOVE` the write lock; each
//! command is one critical section, so all clients see one order of commands.
//! A poisoned lock is recovered rather than propagated: the index never
//! panics mid-change on client input, and refusing every later request
//! would turn one bug into an outage.

use crate::index::{Indexer, Outcome};
use crate::protocol::{Command, Request};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The index shared by all connection threads.
#[derive(Clone, Default)]
pub struct Store {
    index: Arc<RwLock<Indexer>>,
}

impl Store {
    pub fn new(indexer: Indexer) -> Store {
        Store {
            index: Arc::new(RwLock::new(indexer)),
        }
    }

    /// Runs one request as one atomic step.
    pub fn execute(&self, request: &Request<'_>) -> Outcome {
        match request.command {
            Command::Query => self.read().query(request.package),
            Command::Index => self
                .write()
                .index(request.package, request.dependencies.iter()),
            Command::Remove => self.write().remove(request.package),
        }
    }

    /// Shared access, for queries, gauges and snapshots.
    pub fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Indexer> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}
