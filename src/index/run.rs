//! Runs of commands with their lookups staged, so that their cache misses
//! overlap instead of each waiting for the one before.
//!
//! A lookup is two dependent misses (the table's bucket, then the node it
//! names) and a third for a name too long for its node. Taken one after
//! another at ~170 ns each, they are most of what an `INDEX` costs once
//! the index outgrows the caches. A run takes its commands a window of up
//! to `STAGED_NAMES` names at a time:
//!
//! 1. hash every name of the window once (the hashes are kept) and start
//!    loading each one's home bucket;
//! 2. read the buckets, now arriving, and start loading the nodes of the
//!    ids whose tags match;
//! 3. start loading the arena bytes of those nodes' long names;
//! 4. run the window's commands in order, with the hashes of step 1.
//!
//! Steps 1 to 3 only read and prefetch; step 4 looks every name up again
//! as it runs, so a command sees exactly what it would see run alone,
//! whatever the commands before it in the run changed: a package indexed
//! by one line and named as a dependency by the next, or removed by it, is
//! found or not found as it would be one line at a time. The prefetches
//! of a name that an earlier command added were simply wasted.

use super::{Hashed, Indexer, Outcome};
use crate::name::PackageName;
use crate::protocol::{Command, Request};
use crate::sys;
use std::hash::BuildHasher;

/// Names whose lookups are staged together: enough to keep the memory
/// system busy with a few dozen misses, few enough that the lines they
/// bring (up to three each) stay in the first-level cache until used.
const STAGED_NAMES: usize = 32;

/// One command as the index runs it.
#[derive(Clone, Debug)]
pub(crate) enum Step<'p, D> {
    /// `INDEX` of `package` with the names `dependencies` yields.
    Index {
        package: PackageName<'p>,
        dependencies: D,
    },
    Remove(PackageName<'p>),
    Query(PackageName<'p>),
}

/// A command in a run: the request path hands the index protocol
/// requests, recovery the changes it reads back from its files.
pub(crate) trait RunItem {
    /// The command; called once to stage its lookups and once to run it.
    fn step(&self) -> Step<'_, impl Iterator<Item = PackageName<'_>>>;
}

impl RunItem for Request<'_> {
    fn step(&self) -> Step<'_, impl Iterator<Item = PackageName<'_>>> {
        match self.command {
            Command::Index => Step::Index {
                package: self.package,
                dependencies: self.dependencies.iter(),
            },
            Command::Remove => Step::Remove(self.package),
            Command::Query => Step::Query(self.package),
        }
    }
}

/// The hashes of a window's names, in the order its commands name them
/// (each command's package, then its dependencies), and where each
/// command's end.
struct Window {
    hashes: [u64; STAGED_NAMES],
    ends: [usize; STAGED_NAMES],
    commands: usize,
}

impl Indexer {
    /// Runs the commands of `run` in order, each exactly as it would run
    /// alone, with their lookups staged (see the module's documentation),
    /// and calls `done` with each command and its outcome right after it
    /// ran (the store logs the change there, before the next command
    /// runs). Stops at the first error `done` returns, and returns it.
    pub(crate) fn execute_run<S: RunItem, E>(
        &mut self,
        run: &[S],
        mut done: impl FnMut(&S, Outcome) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut window = Window {
            hashes: [0; STAGED_NAMES],
            ends: [0; STAGED_NAMES],
            commands: 0,
        };
        let mut rest = run;
        while let Some(first) = rest.first() {
            self.stage(rest, &mut window);
            if window.commands == 0 {
                // More names than a window holds: hashed as it runs.
                let outcome = self.execute(first.step(), None);
                done(first, outcome)?;
                rest = &rest[1..];
                continue;
            }
            let (staged, after) = rest.split_at(window.commands);
            let mut start = 0;
            for (command, &end) in staged.iter().zip(&window.ends) {
                let outcome = self.execute(command.step(), Some(&window.hashes[start..end]));
                start = end;
                done(command, outcome)?;
            }
            rest = after;
        }
        Ok(())
    }

    /// `QUERY` of each of `packages`, in order, with the lookups staged;
    /// `answer` gets each outcome. Only reads, so a read lock will do.
    pub(crate) fn query_run<'p>(
        &self,
        packages: impl Iterator<Item = PackageName<'p>> + Clone,
        mut answer: impl FnMut(Outcome),
    ) {
        let mut hashes = [0; STAGED_NAMES];
        let mut rest = packages;
        loop {
            let mut staged = 0;
            for (package, hash) in rest.clone().zip(&mut hashes) {
                *hash = self.hasher.hash_one(package.as_bytes());
                self.table.prefetch(*hash);
                staged += 1;
            }
            if staged == 0 {
                return;
            }
            self.prefetch_candidates(&hashes[..staged]);
            for (name, &hash) in rest.by_ref().take(staged).zip(&hashes) {
                answer(self.query_hashed(Hashed { name, hash }));
            }
        }
    }

    /// Steps 1 to 3 for as many of `run`'s first commands as fit in a
    /// window (none when the first alone names more than that).
    fn stage<S: RunItem>(&self, run: &[S], window: &mut Window) {
        let mut staged = 0;
        window.commands = 0;
        'commands: for command in run {
            let start = staged;
            let (package, dependencies) = match command.step() {
                Step::Index {
                    package,
                    dependencies,
                } => (package, Some(dependencies)),
                Step::Remove(package) | Step::Query(package) => (package, None),
            };
            for name in std::iter::once(package).chain(dependencies.into_iter().flatten()) {
                let Some(slot) = window.hashes.get_mut(staged) else {
                    // The command does not fit: the next window starts
                    // with it (its buckets are on their way already).
                    staged = start;
                    break 'commands;
                };
                *slot = self.hasher.hash_one(name.as_bytes());
                self.table.prefetch(*slot);
                staged += 1;
            }
            window.ends[window.commands] = staged;
            window.commands += 1;
        }
        self.prefetch_candidates(&window.hashes[..staged]);
    }

    /// Steps 2 and 3: the nodes of the ids each hash's bucket names, then
    /// the bytes of their names that live in the arena.
    fn prefetch_candidates(&self, hashes: &[u64]) {
        for &hash in hashes {
            self.table.candidates(hash, |id| {
                if let Some(node) = self.nodes.get(id as usize) {
                    node.prefetch();
                }
            });
        }
        for &hash in hashes {
            self.table.candidates(hash, |id| {
                let long_name = self.nodes.get(id as usize).and_then(|node| node.name_run());
                if let Some(byte) = long_name.and_then(|(start, _)| self.names.get(start)) {
                    sys::prefetch(byte);
                }
            });
        }
    }

    /// Runs one command, taking its names' hashes in order from `staged`
    /// (those of a window) or, without them, hashing each name as it goes.
    pub(super) fn execute<'d>(
        &mut self,
        step: Step<'_, impl Iterator<Item = PackageName<'d>>>,
        staged: Option<&[u64]>,
    ) -> Outcome {
        let hasher = self.hasher.clone();
        let mut staged = staged.unwrap_or_default().iter();
        let mut hashed = move |name: PackageName<'_>| {
            staged
                .next()
                .copied()
                .unwrap_or_else(|| hasher.hash_one(name.as_bytes()))
        };
        match step {
            Step::Index {
                package,
                dependencies,
            } => {
                let package = Hashed {
                    name: package,
                    hash: hashed(package),
                };
                let dependencies = dependencies.map(|name| Hashed {
                    name,
                    hash: hashed(name),
                });
                self.index_hashed(package, dependencies)
            }
            Step::Remove(package) => self.remove_hashed(Hashed {
                name: package,
                hash: hashed(package),
            }),
            Step::Query(package) => self.query_hashed(Hashed {
                name: package,
                hash: hashed(package),
            }),
        }
    }
}
