//! Runs of commands with their lookups staged so their cache misses
//! overlap, a window of up to `STAGED_NAMES` names at a time: 1. hash each
//! name once and prefetch its home bucket; 2. prefetch the nodes whose tags
//! match, then the ends of their edge runs (where a new dependent goes);
//! 3. run the commands in order with those hashes. Steps 1 and 2 only
//! read, and step 3 looks every name up again, so a command sees exactly
//! what it would see run alone.

use super::{Hashed, IndexOutcome, Indexer};
use crate::name::PackageName;
use crate::protocol::{Command, Request};
use crate::sys;
use std::hash::BuildHasher;

/// Names whose lookups are staged together: enough to keep the memory
/// system busy with a few dozen misses, few enough that the lines they
/// bring (up to three each) stay in the first-level cache until used.
const STAGED_NAMES: usize = 32;

pub(crate) enum IndexCommand<'p, D> {
    Index {
        package: PackageName<'p>,
        dependencies: D,
    },
    Remove(PackageName<'p>),
    Query(PackageName<'p>),
}

/// A command in a run: a protocol request, or a change recovery read back.
pub(crate) trait RunItem {
    /// The command; called once to stage its lookups and once to run it.
    fn command(&self) -> IndexCommand<'_, impl Iterator<Item = PackageName<'_>>>;
}

impl RunItem for Request<'_> {
    fn command(&self) -> IndexCommand<'_, impl Iterator<Item = PackageName<'_>>> {
        match self.command {
            Command::Index => IndexCommand::Index {
                package: self.package,
                dependencies: self.dependencies.iter(),
            },
            Command::Remove => IndexCommand::Remove(self.package),
            Command::Query => IndexCommand::Query(self.package),
        }
    }
}

impl Indexer {
    /// Runs the commands of `run` in order, each exactly as it would run
    /// alone, calling `done` right after each (the store logs the change
    /// there); stops at the first error `done` returns.
    pub(crate) fn execute_run<S: RunItem, E>(
        &mut self,
        run: &[S],
        mut done: impl FnMut(&S, IndexOutcome) -> Result<(), E>,
    ) -> Result<(), E> {
        let (mut hashes, mut ends) = ([0; STAGED_NAMES], [0; STAGED_NAMES]);
        let mut rest = run;
        while !rest.is_empty() {
            // A command naming more than a window holds runs alone,
            // hashing its names as it goes.
            let commands = self.stage(rest, &mut hashes, &mut ends).max(1);
            let (window, after) = rest.split_at(commands);
            let mut start = 0;
            for (command, &end) in window.iter().zip(&ends) {
                let outcome = self.execute(command.command(), &hashes[start..end]);
                start = end;
                done(command, outcome)?;
            }
            rest = after;
        }
        Ok(())
    }

    /// Steps 1 and 2 for as many of `run`'s first commands as fit in a
    /// window (maybe none): fills `hashes` and `ends`, returns how many.
    fn stage<S: RunItem>(
        &self,
        run: &[S],
        hashes: &mut [u64; STAGED_NAMES],
        ends: &mut [usize; STAGED_NAMES],
    ) -> usize {
        let (mut commands, mut staged) = (0, 0);
        ends[0] = 0;
        'commands: for command in run {
            let start = staged;
            let (package, dependencies) = match command.command() {
                IndexCommand::Index {
                    package,
                    dependencies,
                } => (package, Some(dependencies)),
                IndexCommand::Remove(package) | IndexCommand::Query(package) => (package, None),
            };
            for name in std::iter::once(package).chain(dependencies.into_iter().flatten()) {
                let Some(slot) = hashes.get_mut(staged) else {
                    // The command does not fit: the next window starts
                    // with it (its buckets are on their way already).
                    staged = start;
                    break 'commands;
                };
                *slot = self.hasher.hash_one(name.as_bytes());
                self.table.prefetch(*slot);
                staged += 1;
            }
            ends[commands] = staged;
            commands += 1;
        }
        self.prefetch_candidates(&hashes[..staged]);
        commands
    }

    /// Step 2: the candidates' nodes, then the ends of their edge runs.
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
                let Some(node) = self.nodes.get(id as usize) else {
                    return;
                };
                let end = node.edges as usize + node.edge_count();
                if let Some(edge) = self.edges.get(u32::try_from(end).unwrap_or(u32::MAX)) {
                    sys::prefetch(edge);
                }
            });
        }
    }

    /// Runs one command with its names' hashes from `staged`, hashing any past them.
    // The closure over `hashed` gives each name the package's lifetime.
    #[allow(clippy::redundant_closure)]
    pub(super) fn execute<'d>(
        &mut self,
        command: IndexCommand<'_, impl Iterator<Item = PackageName<'d>>>,
        staged: &[u64],
    ) -> IndexOutcome {
        let hasher = self.hasher.clone();
        let mut staged = staged.iter();
        let mut hashed = move |name| {
            let hash = staged.next().copied();
            let hash = hash.unwrap_or_else(|| hasher.hash_one(PackageName::as_bytes(name)));
            Hashed { name, hash }
        };
        match command {
            IndexCommand::Index {
                package,
                dependencies,
            } => self.index_hashed(hashed(package), dependencies.map(|name| hashed(name))),
            IndexCommand::Remove(package) => self.remove_hashed(hashed(package)),
            // Queries run under the read lock, not in runs: not staged.
            IndexCommand::Query(package) => self.query(package),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::listed;
    use crate::name::Dependencies;
    use proptest::prelude::*;

    /// A command as generated: what it does and to which names.
    #[derive(Clone, Debug)]
    enum Op {
        Index(usize, Vec<usize>),
        Remove(usize),
        Query(usize),
    }

    /// Few names, so that runs name the same ones again and again: short
    /// ones held in the node, long ones in the arena, two of them alike
    /// in length and first bytes.
    fn pool() -> Vec<String> {
        let long = "x".repeat(40);
        let mut names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        names.push(format!("{long}-a"));
        names.push(format!("{long}-b"));
        names.push("z".repeat(255));
        names
    }

    fn op(names: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..names, proptest::collection::vec(0..names, 0..4))
                .prop_map(|(package, deps)| Op::Index(package, deps)),
            3 => (0..names).prop_map(Op::Remove),
            2 => (0..names).prop_map(Op::Query),
        ]
    }

    /// The request lines of `ops`, as text the requests borrow.
    fn lines(ops: &[Op], names: &[String]) -> Vec<(Command, String, String)> {
        ops.iter()
            .map(|op| match op {
                Op::Index(package, deps) => {
                    let deps: Vec<&str> = deps.iter().map(|&d| names[d].as_str()).collect();
                    (Command::Index, names[*package].clone(), deps.join(","))
                }
                Op::Remove(package) => (Command::Remove, names[*package].clone(), String::new()),
                Op::Query(package) => (Command::Query, names[*package].clone(), String::new()),
            })
            .collect()
    }

    fn requests(lines: &[(Command, String, String)]) -> Vec<Request<'_>> {
        lines
            .iter()
            .map(|(command, package, deps)| Request {
                command: *command,
                package: PackageName::new(package.as_bytes()).unwrap(),
                dependencies: Dependencies::new(deps.as_bytes()).unwrap(),
            })
            .collect()
    }

    /// One command at a time, through the public API.
    fn one_by_one(index: &mut Indexer, request: &Request<'_>) -> IndexOutcome {
        match request.command {
            Command::Index => index.index(request.package, request.dependencies.iter()),
            Command::Remove => index.remove(request.package),
            Command::Query => index.query(request.package),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_run_answers_as_its_commands_one_by_one(
            preload in proptest::collection::vec(op(11), 0..30),
            ops in proptest::collection::vec(op(11), 1..120),
            cuts in proptest::collection::vec(1..40usize, 1..10),
        ) {
            let names = pool();
            let (preload, lines) = (lines(&preload, &names), lines(&ops, &names));
            let (preload, requests) = (requests(&preload), requests(&lines));
            let mut single = Indexer::new();
            let mut staged = Indexer::new();
            for request in &preload {
                one_by_one(&mut single, request);
                one_by_one(&mut staged, request);
            }
            let expected: Vec<IndexOutcome> =
                requests.iter().map(|request| one_by_one(&mut single, request)).collect();
            // Runs of the lengths `cuts` gives, in turn.
            let mut got = Vec::new();
            let mut rest = &requests[..];
            for &cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (run, after) = rest.split_at(cut.min(rest.len()));
                staged
                    .execute_run(run, |_, outcome| {
                        got.push(outcome);
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                prop_assert_eq!(staged.check_invariants(), Ok(()));
                rest = after;
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(listed(&staged), listed(&single));
        }
    }

    #[test]
    fn a_run_stops_at_the_first_error_of_done() {
        let lines: Vec<(Command, String, String)> = ["a", "b", "c"]
            .iter()
            .map(|name| (Command::Index, name.to_string(), String::new()))
            .collect();
        let requests = requests(&lines);
        let mut index = Indexer::new();
        let mut ran = Vec::new();
        let stopped = index.execute_run(&requests, |request, outcome| {
            ran.push(request.package.to_string());
            assert_eq!(outcome, IndexOutcome::Added);
            if request.package == "b" {
                Err("log failed")
            } else {
                Ok(())
            }
        });
        assert_eq!(stopped, Err("log failed"));
        assert_eq!(ran, ["a", "b"]);
        assert_eq!(
            index.query(PackageName::new(b"b").unwrap()),
            IndexOutcome::Found
        );
        assert_eq!(
            index.query(PackageName::new(b"c").unwrap()),
            IndexOutcome::NotFound
        );
    }

    #[test]
    fn a_command_naming_more_than_a_window_runs_too() {
        let deps: Vec<String> = (0..3 * STAGED_NAMES).map(|i| format!("d{i}")).collect();
        let mut lines: Vec<(Command, String, String)> = deps
            .iter()
            .map(|dep| (Command::Index, dep.clone(), String::new()))
            .collect();
        lines.push((Command::Index, "big".to_string(), deps.join(",")));
        lines.push((Command::Remove, "d7".to_string(), String::new()));
        lines.push((Command::Query, "big".to_string(), String::new()));
        let requests = requests(&lines);
        let mut index = Indexer::new();
        let mut outcomes = Vec::new();
        index
            .execute_run(&requests, |_, outcome| {
                outcomes.push(outcome);
                Ok::<_, ()>(())
            })
            .unwrap();
        let tail = &outcomes[deps.len()..];
        assert_eq!(
            tail,
            [
                IndexOutcome::Added,
                IndexOutcome::Refused(super::super::Refusal::HasDependents),
                IndexOutcome::Found
            ]
        );
        assert_eq!(index.dependencies(), deps.len());
        index.check_invariants().unwrap();
    }
}
