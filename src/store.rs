//! The shared state every connection works on: the one index and, with
//! `--data-dir`, the durable side that owns its files.
//!
//! Each command is one critical section, so all clients see one order of
//! commands. `QUERY` takes the read lock, `INDEX` and `REMOVE` the write
//! lock; a change is appended to the log's buffer in the same critical
//! section, so the log's order is the index's order. Every answer, queries
//! included, waits (after the lock, once per batch) for the log to cover the
//! newest change it could have observed: an answer never reveals a change
//! that a crash could still take back.

pub use crate::durability::LogPosition;
use crate::durability::{self, Change, Durable, Loaded, RecoveryError};
use crate::index::{IndexOutcome, Indexer, SharedIndex};
use crate::metrics::{Metrics, StoreGauges};
use crate::name::PackageName;
use crate::package_list::Entry;
use crate::protocol::{Command, Request};
use std::fmt::Write;
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

/// What executing a request did, and what its answer must wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    pub outcome: IndexOutcome,
    pub wait_for: LogPosition,
}

/// One indexed package as the index held it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub name: String,
    /// What it depends on, sorted by name (as bytes).
    pub dependencies: Vec<String>,
    /// What depends on it, sorted by name (as bytes).
    pub dependents: Vec<String>,
}

impl Store {
    /// Opens the data directory `dir` (created if missing), rebuilding the
    /// index it keeps; syncs, failures and compactions count in `metrics`.
    pub fn open(
        dir: &Path,
        options: durability::DurableOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Store, Loaded), RecoveryError> {
        let (index, durable, loaded) = Durable::open(dir, options, metrics)?;
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

    /// Runs `requests` in order, each as one atomic step, appending what each
    /// did to `executed`. Consecutive requests that take the same lock run
    /// under one hold of it, at most `MAX_RUN` (256) of them: a lock per run,
    /// not per request. Fails only when the log has failed: then none of the
    /// answers may be sent.
    pub fn execute_all(
        &self,
        requests: &[Request<'_>],
        executed: &mut Vec<Executed>,
    ) -> io::Result<()> {
        // Room for every result before any lock is taken.
        executed.reserve(requests.len());
        let is_query = |request: &Request<'_>| request.command == Command::Query;
        let runs = requests.chunk_by(|a, b| is_query(a) == is_query(b));
        for run in runs.flat_map(|run| run.chunks(MAX_RUN)) {
            if is_query(&run[0]) {
                // Each answer waits for the newest change the lock let through.
                let index = self.index.read();
                let durable = self.durable.as_deref();
                let wait_for = durable.map(|d| d.wal.last_appended()).unwrap_or_default();
                executed.extend(run.iter().map(|request| Executed {
                    outcome: index.query(request.package),
                    wait_for,
                }));
            } else {
                self.run_changes(run, executed)?;
            }
        }
        Ok(())
    }

    /// A run of changes under one write lock, each logged as it is
    /// made (the log's buffer is taken once, at the run's first change).
    fn run_changes(&self, run: &[Request<'_>], executed: &mut Vec<Executed>) -> io::Result<()> {
        let mut index = self.index.write();
        let durable = self.durable.as_deref();
        let mut log = None;
        index.execute_run(run, |request, outcome| {
            let wait_for = match durable {
                None => LogPosition::default(),
                Some(durable) if outcome.changed() => {
                    let log = match &mut log {
                        Some(log) => log,
                        None => log.insert(durable.wal.appender()?),
                    };
                    log.append(&change(request))?
                }
                Some(durable) => durable.wal.last_appended(),
            };
            executed.push(Executed { outcome, wait_for });
            Ok::<_, io::Error>(())
        })
    }

    /// Blocks until the log covers `position` (see [`Executed::wait_for`]):
    /// the caller sends the answers that wait for it only then.
    pub fn wait_durable(&self, position: LogPosition) -> io::Result<()> {
        match &self.durable {
            Some(durable) => durable.wal.wait_durable(position),
            None => Ok(()),
        }
    }

    /// The error that failed the log for good, if it has: nothing more
    /// is acknowledged, and the process must end. Never fails in memory.
    pub fn check_alive(&self) -> io::Result<()> {
        self.durable
            .as_deref()
            .map_or(Ok(()), |durable| durable.wal.check_alive())
    }

    /// Shared access to the index (the start line counts its packages).
    pub fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.index.read()
    }

    /// The package's dependencies and dependents at one moment, or `None`
    /// when it is not indexed; the read lock is held only to copy the names.
    pub fn inspect(&self, package: PackageName<'_>) -> Option<Inspection> {
        let index = self.index.read();
        let [dependencies, dependents] = index.edges_of(package)?.map(lines);
        drop(index);
        Some(Inspection {
            name: package.to_string(),
            dependencies: sorted(&dependencies),
            dependents: sorted(&dependents),
        })
    }

    /// The whole index as a package list, in [`Indexer::for_each_listed`]'s
    /// order; the read lock is held only while the index is copied.
    pub fn export(&self) -> String {
        let (copy, ()) = self.index.copy_with(|_| ());
        let mut text = String::with_capacity(copy.packages() * 16 + copy.dependencies() * 10);
        copy.for_each_listed(|name, dependencies| {
            let dependencies = dependencies.to_vec();
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{}", Entry { name, dependencies });
        });
        text
    }

    /// The figures `/metrics` reports: the index's sizes and, with a data
    /// directory, the durable log's counters.
    pub fn gauges(&self) -> StoreGauges {
        let mut gauges = self
            .durable
            .as_deref()
            .map(|durable| durable.wal.gauges())
            .unwrap_or_default();
        let index = self.index.read();
        gauges.packages = index.packages() as u64;
        gauges.dependencies = index.dependencies() as u64;
        gauges
    }

    /// Compacts the data directory now, on the calling thread (after any
    /// compaction in progress); nothing to do in memory.
    pub fn compact(&self) -> io::Result<()> {
        self.durable
            .as_deref()
            .map_or(Ok(()), |durable| durable.compaction.compact(None))
    }

    /// Stops the compactor, then writes and syncs everything logged; later
    /// changes fail. The error that failed the log, if any.
    pub fn close(&self) -> io::Result<()> {
        self.durable.as_deref().map_or(Ok(()), Durable::close)
    }
}

/// `names` copied into one buffer, a line each (no name holds a newline):
/// one allocation under the lock rather than one per name.
fn lines<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    text
}

/// The lines of `text`, sorted as bytes.
fn sorted(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text.lines().map(str::to_owned).collect();
    names.sort_unstable();
    names
}

/// The change `request` makes to the index if it succeeds (never asked of a
/// `QUERY`).
fn change<'a>(request: &Request<'a>) -> Change<'a> {
    match request.command {
        Command::Remove => Change::Remove {
            package: request.package,
        },
        Command::Index | Command::Query => Change::Index {
            package: request.package,
            dependencies: request.dependencies,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    fn name(text: &str) -> PackageName<'_> {
        PackageName::new(text.as_bytes()).unwrap()
    }

    fn index(store: &Store, package: &str, deps: &str) -> IndexOutcome {
        let line = format!("INDEX|{package}|{deps}\n");
        let request = crate::protocol::parse_line(line.trim_end().as_bytes()).unwrap();
        store.execute(&request).unwrap().outcome
    }

    fn remove(store: &Store, package: &str) -> IndexOutcome {
        let line = format!("REMOVE|{package}|");
        let request = crate::protocol::parse_line(line.as_bytes()).unwrap();
        store.execute(&request).unwrap().outcome
    }

    #[test]
    fn inspect_lists_both_directions_sorted() {
        let store = Store::default();
        for (package, deps) in [("z", ""), ("b", ""), ("y", "z,b"), ("a", "y,z"), ("c", "y")] {
            assert_eq!(index(&store, package, deps), IndexOutcome::Added);
        }
        let inspected = store.inspect(name("y")).unwrap();
        assert_eq!(inspected.name, "y");
        assert_eq!(inspected.dependencies, ["b", "z"]);
        assert_eq!(inspected.dependents, ["a", "c"]);
        assert_eq!(store.inspect(name("z")).unwrap().dependents, ["a", "y"]);
        assert!(store.inspect(name("missing")).is_none());
        assert_eq!(store.export(), "b:\nz:\ny: b z\na: y z\nc: y\n");
    }

    #[test]
    fn inspect_answers_a_state_the_index_passed_through() {
        // A writer indexes dependents d00..d15 of `base` in order, then
        // removes them in order, over and over: every state has as
        // dependents a run d_i..d_j of consecutive numbers. Inspections
        // race it; what they answer must still be such a run.
        let store = Store::default();
        index(&store, "base", "");
        for filler in 0..40 {
            index(&store, &format!("filler{filler}"), "base");
            remove(&store, &format!("filler{filler}"));
        }
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..16 {
                        index(&store, &format!("d{i:02}"), "base");
                    }
                    for i in 0..16 {
                        remove(&store, &format!("d{i:02}"));
                    }
                }
            });
            let is_run = |dependents: &[String]| {
                let numbers: Vec<u32> = dependents
                    .iter()
                    .filter_map(|d| d.strip_prefix('d')?.parse().ok())
                    .collect();
                numbers.len() == dependents.len() && numbers.windows(2).all(|w| w[1] == w[0] + 1)
            };
            let wrong = (0..2_000)
                .filter_map(|_| store.inspect(name("base")))
                .find(|inspected| !is_run(&inspected.dependents));
            // Stopped before asserting, so a failure does not leave the
            // scope waiting for the writer forever.
            stop.store(true, Ordering::Relaxed);
            assert_eq!(wrong, None, "not a state the index was in");
        });
    }

    #[test]
    fn a_copy_is_the_index() {
        let store = Store::default();
        for i in 0..2_000 {
            let deps = if i > 2 {
                format!("p{},p{}", i / 2, i - 1)
            } else {
                String::new()
            };
            index(&store, &format!("p{i}"), &deps);
            if i % 7 == 0 && i > 0 {
                remove(&store, &format!("p{i}"));
            }
        }
        let (copy, ()) = store.index.copy_with(|_| ());
        copy.check_invariants().unwrap();
        let original: Vec<String> = store
            .read()
            .topological()
            .map(|(n, _)| n.to_string())
            .collect();
        let copied: Vec<String> = copy.topological().map(|(n, _)| n.to_string()).collect();
        assert_eq!(original, copied);
        let copied = Store {
            index: SharedIndex::new(copy),
            durable: None,
        };
        assert_eq!(copied.export(), store.export());
    }
}
