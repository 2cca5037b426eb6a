//! Model test: random command sequences run against the real index and a
//! deliberately naive reference; answers and invariants must agree after
//! every step.
//!
//! The rules: `docs/protocol.md#answers`.

use super::{IndexOutcome, Indexer};
use crate::name::PackageName;
use crate::protocol::Response;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
enum Op {
    Index(String, Vec<String>),
    Remove(String),
    Query(String),
}

/// The obvious implementation: a map from name to its dependency set.
#[derive(Default)]
struct Model {
    packages: BTreeMap<String, BTreeSet<String>>,
}

impl Model {
    fn reaches(&self, from: &str, target: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(name) = todo.pop() {
            if name == target {
                return true;
            }
            if seen.insert(name.clone()) {
                todo.extend(self.packages[&name].iter().cloned());
            }
        }
        false
    }

    fn apply(&mut self, op: &Op) -> Response {
        let ok = match op {
            Op::Index(name, deps) => {
                let acceptable = deps.iter().all(|d| self.packages.contains_key(d))
                    && !deps.contains(name)
                    && !deps.iter().any(|d| self.reaches(d, name));
                if acceptable {
                    self.packages
                        .insert(name.clone(), deps.iter().cloned().collect());
                }
                acceptable
            }
            Op::Remove(name) => {
                let needed = self.packages.values().any(|deps| deps.contains(name));
                if !needed {
                    self.packages.remove(name);
                }
                !needed
            }
            Op::Query(name) => self.packages.contains_key(name),
        };
        Response::ok_if(ok)
    }
}

/// The generated names are all valid.
fn valid(name: &str) -> PackageName<'_> {
    PackageName::new(name.as_bytes()).unwrap()
}

fn run(index: &mut Indexer, op: &Op) -> IndexOutcome {
    match op {
        Op::Index(name, deps) => index.index(valid(name), deps.iter().map(|d| valid(d))),
        Op::Remove(name) => index.remove(valid(name)),
        Op::Query(name) => index.query(valid(name)),
    }
}

fn op() -> impl Strategy<Value = Op> {
    // A small name pool makes dependencies, cycles and refusals common.
    let name = || (0..10u8).prop_map(|i| format!("p{i}"));
    prop_oneof![
        5 => (name(), proptest::collection::vec(name(), 0..4)).prop_map(|(n, d)| Op::Index(n, d)),
        3 => name().prop_map(Op::Remove),
        1 => name().prop_map(Op::Query),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn index_matches_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut index = Indexer::new();
        let mut model = Model::default();
        for op in &ops {
            let outcome = run(&mut index, op);
            prop_assert_eq!(outcome.response(), model.apply(op), "{:?}", op);
            prop_assert_eq!(index.check_invariants(), Ok(()));
            prop_assert_eq!(index.packages(), model.packages.len());
            for (name, deps) in &model.packages {
                let [dependencies, dependents] = index.edges_of(valid(name)).unwrap();
                let mut got: Vec<&str> = dependencies.collect();
                got.sort_unstable();
                prop_assert_eq!(got, deps.iter().map(String::as_str).collect::<Vec<_>>());
                let mut got: Vec<&str> = dependents.collect();
                got.sort_unstable();
                let needed_by = model.packages.iter().filter(|(_, deps)| deps.contains(name));
                prop_assert_eq!(got, needed_by.map(|(n, _)| n.as_str()).collect::<Vec<_>>());
            }
        }
        // Rejecting cycles keeps the index removable: reverse topological
        // order empties it.
        let order: Vec<String> = index.topological().map(|(n, _)| n.to_string()).collect();
        for name in order.iter().rev() {
            prop_assert_eq!(index.remove(valid(name)), IndexOutcome::Removed);
        }
        prop_assert_eq!(index.packages(), 0);
        prop_assert_eq!(index.dependencies(), 0);
    }
}

/// An empty or 256-byte name would be stored with a length byte of 0, the
/// mark of a free slot (`index` answering `Added`, `query` then `NotFound`):
/// such a name cannot be made, so it cannot be handed over.
#[test]
fn names_the_index_cannot_keep_cannot_be_made() {
    assert_eq!(PackageName::new(b""), None);
    assert_eq!(PackageName::new(&[b'a'; 256]), None);
    let longest = [b'z'; 255];
    let mut index = Indexer::new();
    let name = PackageName::new(&longest).unwrap();
    assert_eq!(index.index(name, std::iter::empty()), IndexOutcome::Added);
    assert_eq!(index.query(name), IndexOutcome::Found);
    assert_eq!(index.check_invariants(), Ok(()));
}
