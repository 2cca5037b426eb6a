//! The dependency graph, with the semantics of `docs/protocol.md#answers`:
//! no I/O, no locks. What each piece of its layout buys is measured in
//! `BENCHMARKS.md` ("The index: reverse edges, and what each piece buys").
//!
//! | file | what |
//! | --- | --- |
//! | `table.rs` | the name table: a name's hash to candidate ids, in 64-byte buckets of 1-byte tags and 4-byte ids |
//! | `node.rs` | a package's 24-byte node: where its edges lie, how many of each kind, its name (up to 11 bytes inline) |
//! | `arena.rs` | the arenas of edges and of longer names: runs in size classes, with free lists |
//! | `run.rs` | runs of commands with their lookups staged: hash, prefetch buckets, prefetch nodes, execute |
//!
//! Every name is interned to a `u32` id, the index of its node. A package's
//! edges are one run of ids: its sorted dependencies, then its dependents,
//! so `REMOVE` and `/v1/packages` read that one run.

mod arena;
mod node;
mod run;
mod table;

pub(crate) use run::{IndexCommand, RunItem};

use crate::name::PackageName;
use crate::protocol::Response;
use arena::{room, Arena};
use node::Node;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use table::NameTable;

/// What a command did to the index, or found in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexOutcome {
    Added,
    /// An indexed package got a different dependency list.
    Replaced,
    /// An indexed package was indexed again with the same dependencies.
    Unchanged,
    Removed,
    /// `REMOVE` of a package that was not indexed.
    Absent,
    Found,
    NotFound,
    /// The command was refused and changed nothing.
    Refused(Refusal),
}

/// Why a command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingDependency,
    SelfDependency,
    Cycle,
    HasDependents,
    /// An internal 32-bit limit (ids, name bytes, edges) would overflow.
    CapacityExceeded,
}

impl IndexOutcome {
    /// The answer sent to the client.
    pub fn response(self) -> Response {
        Response::ok_if(!matches!(
            self,
            IndexOutcome::Refused(_) | IndexOutcome::NotFound
        ))
    }

    /// True when the index state changed (what a durable log must record).
    pub fn changed(self) -> bool {
        matches!(
            self,
            IndexOutcome::Added | IndexOutcome::Replaced | IndexOutcome::Removed
        )
    }
}

/// The one `Arc<RwLock<Indexer>>` every thread shares. A poisoned lock is
/// recovered: refusing every later request would turn one bug into an outage.
#[derive(Clone, Default)]
pub(crate) struct SharedIndex(Arc<RwLock<Indexer>>);

impl SharedIndex {
    pub(crate) fn new(indexer: Indexer) -> SharedIndex {
        SharedIndex(Arc::new(RwLock::new(indexer)))
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Indexer> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the index, and what `under_lock` returns in the same hold
    /// of the read lock. The copy's memory is written before that hold, so
    /// writers wait only while the bytes are copied.
    pub(crate) fn copy_with<R>(&self, under_lock: impl FnOnce(&Indexer) -> R) -> (Indexer, R) {
        let (buckets, nodes, free_ids, names, edges) = {
            let index = self.read();
            (
                index.table.buckets(),
                index.nodes.len(),
                index.free_ids.len(),
                index.names.len(),
                index.edges.len(),
            )
        };
        // Written, not zeroed: `vec![0; n]` may leave its pages untouched.
        let mut copy = Indexer {
            table: NameTable::touched(buckets),
            nodes: vec![Node::default(); nodes],
            free_ids: vec![1; free_ids],
            names: Arena::touched(names),
            edges: Arena::touched(edges),
            ..Indexer::default()
        };
        let index = self.read();
        let result = under_lock(&index);
        copy.copy_from(&index);
        drop(index);
        (copy, result)
    }
}

#[derive(Clone, Copy, Debug)]
struct Hashed<'a> {
    name: PackageName<'a>,
    hash: u64,
}

/// The package index.
#[derive(Debug, Default)]
pub struct Indexer {
    hasher: RandomState,
    table: NameTable,
    /// Indexed by id; a free id's node is not live.
    nodes: Vec<Node>,
    free_ids: Vec<u32>,
    /// Names too long for their node.
    names: Arena<u8>,
    edges: Arena<u32>,
    packages: usize,
    dependencies: usize,
    /// Reused buffers, so a command allocates nothing once warm.
    scratch_ids: Vec<u32>,
    scratch_stack: Vec<u32>,
}

impl Indexer {
    pub fn new() -> Indexer {
        Indexer::default()
    }

    /// Makes this index a copy of `source` in the room it has; scratch excluded.
    fn copy_from(&mut self, source: &Self) {
        self.hasher = source.hasher.clone();
        self.table.copy_from(&source.table);
        self.nodes.clone_from(&source.nodes);
        self.free_ids.clone_from(&source.free_ids);
        self.names.copy_from(&source.names);
        self.edges.copy_from(&source.edges);
        self.packages = source.packages;
        self.dependencies = source.dependencies;
    }

    /// Makes room for `additional` more packages, so adding them neither
    /// rehashes the name table nor moves the nodes.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let packages = self.packages.saturating_add(additional);
        if packages > self.table.room() {
            self.rebuild_table(packages);
        }
        self.nodes
            .reserve(additional.saturating_sub(self.free_ids.len()));
    }

    /// Number of indexed packages.
    pub fn packages(&self) -> usize {
        self.packages
    }

    /// Number of dependency edges between indexed packages.
    pub fn dependencies(&self) -> usize {
        self.dependencies
    }

    /// `QUERY`: whether `package` is indexed.
    pub fn query(&self, package: PackageName<'_>) -> IndexOutcome {
        match self.find(self.hashed(package)) {
            Some(_) => IndexOutcome::Found,
            None => IndexOutcome::NotFound,
        }
    }

    /// The dependencies and the dependents of an indexed package, each
    /// once, in no set order: O(their number).
    pub fn edges_of(&self, package: PackageName<'_>) -> Option<[impl Iterator<Item = &str>; 2]> {
        let id = self.find(self.hashed(package))?;
        let ids = [self.deps(id), self.dependents(id)];
        Some(ids.map(|ids| ids.iter().map(|&id| self.name(id))))
    }

    fn index_hashed<'a>(
        &mut self,
        package: Hashed<'_>,
        deps: impl Iterator<Item = Hashed<'a>>,
    ) -> IndexOutcome {
        let mut wanted = std::mem::take(&mut self.scratch_ids);
        let mut stack = std::mem::take(&mut self.scratch_stack);
        let outcome = 'outcome: {
            for dep in deps {
                // Names that differ mostly differ in their hashes too.
                if dep.hash == package.hash && dep.name == package.name {
                    break 'outcome IndexOutcome::Refused(Refusal::SelfDependency);
                }
                match self.find(dep) {
                    Some(id) => wanted.push(id),
                    None => break 'outcome IndexOutcome::Refused(Refusal::MissingDependency),
                }
            }
            wanted.sort_unstable();
            wanted.dedup();
            match self.find(package) {
                None => self.add(package, &wanted, &mut stack),
                Some(id) => self.replace(id, &wanted, &mut stack),
            }
        };
        wanted.clear();
        stack.clear();
        self.scratch_ids = wanted;
        self.scratch_stack = stack;
        outcome
    }

    fn add(&mut self, package: Hashed<'_>, deps: &[u32], stack: &mut Vec<u32>) -> IndexOutcome {
        if !self.has_room_for(deps, room(deps.len()))
            || !self.names.has_room_for(usize::from(u8::MAX))
            || self.nodes.len() >= u32::MAX as usize
        {
            return IndexOutcome::Refused(Refusal::CapacityExceeded);
        }
        if self.table.is_full() {
            self.rebuild_table(self.packages.saturating_mul(2));
        }
        let id = self.free_ids.pop().unwrap_or_else(|| {
            self.nodes.push(Node::default());
            // Below u32::MAX, checked above.
            u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX)
        });
        self.nodes[id as usize] = Node::named(package.name, &mut self.names);
        self.table.insert(package.hash, id);
        self.packages += 1;
        // Nothing depends on a new package, so it cannot close a cycle, and
        // the room was checked above.
        self.replace(id, deps, stack);
        IndexOutcome::Added
    }

    /// Re-indexes `id` with `wanted`, using `stack` for the cycle search
    /// and then for the new run.
    fn replace(&mut self, id: u32, wanted: &[u32], stack: &mut Vec<u32>) -> IndexOutcome {
        let old = self.deps(id);
        if old == wanted {
            return IndexOutcome::Unchanged;
        }
        let node = self.nodes[id as usize];
        // A cycle needs a path back to `id`, so a package that nothing
        // depends on cannot close one.
        if node.dependents > 0 {
            stack.extend(wanted.iter().filter(|dep| old.binary_search(dep).is_err()));
            if self.reaches(stack, id) {
                return IndexOutcome::Refused(Refusal::Cycle);
            }
        }
        let own_room = room(wanted.len() + node.dependents as usize);
        if !self.has_room_for(wanted, own_room) {
            return IndexOutcome::Refused(Refusal::CapacityExceeded);
        }
        // The package's own run stays where it is until it is rewritten
        // below: only the runs of its old and new dependencies change.
        let old_len = node.dependencies as usize;
        for at in 0..old_len {
            let dep = self.edges.run(node.edges, old_len)[at];
            if wanted.binary_search(&dep).is_err() {
                self.remove_dependent(dep, id);
            }
        }
        for &dep in wanted {
            if self.deps(id).binary_search(&dep).is_err() {
                self.add_dependent(dep, id);
            }
        }
        stack.clear();
        stack.extend_from_slice(wanted);
        stack.extend_from_slice(self.dependents(id));
        let (start, len) = (node.edges, node.edge_count());
        let start = self.edges.resize(start, len, stack.len());
        self.edges
            .run_mut(start, stack.len())
            .copy_from_slice(stack);
        let node = &mut self.nodes[id as usize];
        node.edges = start;
        node.dependencies = u32::try_from(wanted.len()).unwrap_or_default();
        self.dependencies = self.dependencies + wanted.len() - old_len;
        IndexOutcome::Replaced
    }

    fn remove_hashed(&mut self, package: Hashed<'_>) -> IndexOutcome {
        let Some(id) = self.find(package) else {
            return IndexOutcome::Absent;
        };
        let node = self.nodes[id as usize];
        if node.dependents > 0 {
            return IndexOutcome::Refused(Refusal::HasDependents);
        }
        let deps = node.dependencies as usize;
        for at in 0..deps {
            let dep = self.edges.run(node.edges, deps)[at];
            self.remove_dependent(dep, id);
        }
        self.table.remove(package.hash, id);
        if let Some((start, len)) = node.name_run() {
            self.names.give_up(start, room(len));
        }
        self.edges.give_up(node.edges, room(deps));
        self.nodes[id as usize] = Node::default();
        self.free_ids.push(id);
        self.packages -= 1;
        self.dependencies -= deps;
        IndexOutcome::Removed
    }

    /// True when the edges arena can take `own_room` for the package and
    /// one more dependent for each of `deps`, had every run to move.
    fn has_room_for(&self, deps: &[u32], own_room: usize) -> bool {
        let grown = deps.iter().map(|&dep| {
            let node = &self.nodes[dep as usize];
            room(node.edge_count() + 1)
        });
        self.edges.has_room_for(grown.sum::<usize>() + own_room)
    }

    /// Records that `source` depends on `target`; the caller checked room.
    fn add_dependent(&mut self, target: u32, source: u32) {
        let node = &mut self.nodes[target as usize];
        let len = node.edge_count();
        node.edges = self.edges.resize(node.edges, len, len + 1);
        node.dependents += 1;
        self.edges.run_mut(node.edges, len + 1)[len] = source;
    }

    fn remove_dependent(&mut self, target: u32, source: u32) {
        let node = &mut self.nodes[target as usize];
        let len = node.edge_count();
        let run = self.edges.run_mut(node.edges, len);
        let dependents = &mut run[node.dependencies as usize..];
        // From the end: the newest dependents are the likeliest to go.
        if let Some(at) = dependents.iter().rposition(|&id| id == source) {
            dependents.swap(at, dependents.len() - 1);
        }
        // Shrinking never moves a run.
        self.edges.resize(node.edges, len, len - 1);
        node.dependents -= 1;
    }

    /// True when `target` is reachable along dependency edges from any id
    /// on `stack` (which is used up as the search's work list).
    fn reaches(&self, stack: &mut Vec<u32>, target: u32) -> bool {
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if id == target {
                return true;
            }
            if seen.insert(id) {
                stack.extend_from_slice(self.deps(id));
            }
        }
        false
    }

    /// Every indexed package with its dependencies, dependencies first, so
    /// that replaying them as `INDEX` commands rebuilds the index.
    pub fn topological(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> + '_ {
        self.topological_ids().into_iter().map(move |id| {
            let deps = self.deps(id).iter().map(move |&dep| self.name(dep));
            (self.name(id), deps)
        })
    }

    /// Calls `each` with every package and its sorted dependencies, ordered
    /// by height in the graph, then name: dependencies first, and two
    /// indexes holding the same packages list them alike.
    pub fn for_each_listed<'a>(
        &'a self,
        mut each: impl FnMut(PackageName<'a>, &[PackageName<'a>]),
    ) {
        let order = self.topological_ids();
        let mut height = vec![0u32; self.nodes.len()];
        for &id in &order {
            let below = self.deps(id).iter().map(|&dep| height[dep as usize] + 1);
            height[id as usize] = below.max().unwrap_or(0);
        }
        // Keys holding the height and the first bytes of the name sort
        // without reading names (a tenth of the time for a million
        // packages); only runs of equal keys compare whole names.
        let mut keys: Vec<(u32, u64, u32)> = order
            .into_iter()
            .map(|id| (height[id as usize], name_prefix(self.name_bytes(id)), id))
            .collect();
        keys.sort_unstable();
        for run in keys.chunk_by_mut(|a, b| (a.0, a.1) == (b.0, b.1)) {
            run.sort_unstable_by(|a, b| self.name_bytes(a.2).cmp(self.name_bytes(b.2)));
        }
        let mut deps = Vec::new();
        for (_, _, id) in keys {
            deps.clear();
            deps.extend(
                self.deps(id)
                    .iter()
                    .filter_map(|&dep| self.package_name(dep)),
            );
            deps.sort_unstable();
            if let Some(name) = self.package_name(id) {
                each(name, &deps);
            }
        }
    }

    /// Ids of every indexed package, dependencies first.
    fn topological_ids(&self) -> Vec<u32> {
        let mut waiting: Vec<u32> = self.nodes.iter().map(|node| node.dependencies).collect();
        let live = (0u32..).zip(&self.nodes).filter(|(_, node)| node.is_live());
        let roots = live.filter(|&(id, _)| waiting[id as usize] == 0);
        let mut order: Vec<u32> = roots.map(|(id, _)| id).collect();
        let mut next = 0;
        while let Some(&id) = order.get(next) {
            next += 1;
            for &dependent in self.dependents(id) {
                waiting[dependent as usize] -= 1;
                if waiting[dependent as usize] == 0 {
                    order.push(dependent);
                }
            }
        }
        order
    }

    fn hashed<'a>(&self, name: PackageName<'a>) -> Hashed<'a> {
        Hashed {
            name,
            hash: self.hasher.hash_one(name.as_bytes()),
        }
    }

    fn name(&self, id: u32) -> &str {
        self.package_name(id).map_or("", PackageName::as_str)
    }

    /// Always `Some` for a live id (names are validated on entry).
    fn package_name(&self, id: u32) -> Option<PackageName<'_>> {
        PackageName::new(self.name_bytes(id))
    }

    fn name_bytes(&self, id: u32) -> &[u8] {
        self.nodes[id as usize].name(&self.names)
    }

    fn run(&self, id: u32) -> &[u32] {
        let node = &self.nodes[id as usize];
        self.edges.run(node.edges, node.edge_count())
    }

    fn deps(&self, id: u32) -> &[u32] {
        &self.run(id)[..self.nodes[id as usize].dependencies as usize]
    }

    fn dependents(&self, id: u32) -> &[u32] {
        &self.run(id)[self.nodes[id as usize].dependencies as usize..]
    }

    fn find(&self, name: Hashed<'_>) -> Option<u32> {
        let (bytes, inline) = (name.name.as_bytes(), node::inline(name.name.as_bytes()));
        self.table.find(name.hash, |id| {
            let node = self.nodes.get(id as usize);
            node.is_some_and(|node| match inline {
                Some(inline) => node.is_named(inline),
                None => node.name(&self.names) == bytes,
            })
        })
    }

    /// Rehashes every name into a table with room for `packages` (in id
    /// order, so the nodes are read front to back).
    fn rebuild_table(&mut self, packages: usize) {
        let mut table = NameTable::with_room_for(packages.max(self.packages));
        let live = (0u32..).zip(&self.nodes).filter(|(_, node)| node.is_live());
        for (id, node) in live {
            table.insert(self.hasher.hash_one(node.name(&self.names)), id);
        }
        self.table = table;
    }
}

/// The first eight bytes of a name as a number that orders as the names
/// do (name bytes are never zero, so a shorter name orders first).
pub(crate) fn name_prefix(name: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let len = name.len().min(8);
    bytes[..len].copy_from_slice(&name[..len]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
impl Indexer {
    /// `INDEX`: adds `package` or replaces its dependency list.
    pub fn index<'a>(
        &mut self,
        package: PackageName<'_>,
        dependencies: impl Iterator<Item = PackageName<'a>>,
    ) -> IndexOutcome {
        self.execute(
            IndexCommand::Index {
                package,
                dependencies,
            },
            &[],
        )
    }

    /// `REMOVE`: drops `package` unless another package depends on it.
    pub fn remove(&mut self, package: PackageName<'_>) -> IndexOutcome {
        self.execute(IndexCommand::<std::iter::Empty<_>>::Remove(package), &[])
    }

    /// Checks every invariant of the structure; O(size).
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        // Every edge as (target, source), from the dependency lists and
        // from the lists of dependents (of live packages only): the same set.
        let (mut forward, mut backward) = (Vec::new(), Vec::new());
        let (mut packages, mut name_room, mut edge_room) = (0, 0, 0);
        for (id, node) in (0u32..).zip(&self.nodes).filter(|(_, node)| node.is_live()) {
            packages += 1;
            name_room += node.name_run().map_or(0, |(_, len)| room(len));
            edge_room += room(node.edge_count());
            let Some(name) = PackageName::new(self.name_bytes(id)) else {
                return Err(format!("node {id} holds an invalid name"));
            };
            if self.find(self.hashed(name)) != Some(id) {
                return Err(format!("{name} is not reachable through the name table"));
            }
            let deps = self.deps(id);
            if deps.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("{name}: dependency list not sorted and unique"));
            }
            forward.extend(deps.iter().map(|&dep| (dep, id)));
            backward.extend(self.dependents(id).iter().map(|&source| (id, source)));
        }
        forward.sort_unstable();
        backward.sort_unstable();
        if forward != backward {
            return Err("the lists of dependents and of dependencies differ".to_string());
        }
        let edges = forward.len();
        if (packages, edges, self.table.len()) != (self.packages, self.dependencies, packages) {
            return Err("package, edge or name-table counts are wrong".to_string());
        }
        let free = self
            .free_ids
            .iter()
            .filter_map(|&id| self.nodes.get(id as usize));
        if free.filter(|node| !node.is_live()).count() + packages != self.nodes.len() {
            return Err("free ids and live nodes do not add up to the ids".to_string());
        }
        if self.edges.len() != self.edges.free() + edge_room
            || self.names.len() != self.names.free() + name_room
        {
            return Err("an arena's runs and free runs do not add up".to_string());
        }
        if self.topological().count() != packages {
            return Err("topological walk missed packages".to_string());
        }
        Ok(())
    }
}

/// The naive model every random sequence of commands is checked against.
#[cfg(test)]
#[path = "tests/model.rs"]
mod model;

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> PackageName<'_> {
        PackageName::new(text.as_bytes()).unwrap()
    }

    fn index(ix: &mut Indexer, package: &str, deps: &[&str]) -> IndexOutcome {
        let outcome = ix.index(name(package), deps.iter().map(|d| name(d)));
        ix.check_invariants().unwrap();
        outcome
    }

    #[test]
    fn add_query_remove() {
        let mut ix = Indexer::new();
        assert_eq!(ix.query(name("a")), IndexOutcome::NotFound);
        assert_eq!(index(&mut ix, "a", &[]), IndexOutcome::Added);
        assert_eq!(ix.query(name("a")), IndexOutcome::Found);
        assert_eq!(ix.remove(name("a")), IndexOutcome::Removed);
        assert_eq!(ix.remove(name("a")), IndexOutcome::Absent);
        assert_eq!(ix.packages(), 0);
    }

    #[test]
    fn dependencies_must_be_indexed() {
        let mut ix = Indexer::new();
        assert_eq!(
            index(&mut ix, "b", &["a"]),
            IndexOutcome::Refused(Refusal::MissingDependency)
        );
        assert_eq!(ix.query(name("b")), IndexOutcome::NotFound);
        index(&mut ix, "a", &[]);
        assert_eq!(index(&mut ix, "b", &["a"]), IndexOutcome::Added);
        assert_eq!(
            ix.remove(name("a")),
            IndexOutcome::Refused(Refusal::HasDependents)
        );
        assert_eq!(ix.remove(name("b")), IndexOutcome::Removed);
        assert_eq!(ix.remove(name("a")), IndexOutcome::Removed);
    }

    #[test]
    fn repeated_dependencies_count_once() {
        let mut ix = Indexer::new();
        index(&mut ix, "a", &[]);
        index(&mut ix, "b", &["a", "a", "a"]);
        assert_eq!(ix.dependencies(), 1);
        assert_eq!(ix.remove(name("b")), IndexOutcome::Removed);
        assert_eq!(ix.remove(name("a")), IndexOutcome::Removed);
    }

    #[test]
    fn self_dependency_refused() {
        let mut ix = Indexer::new();
        assert_eq!(
            index(&mut ix, "a", &["a"]),
            IndexOutcome::Refused(Refusal::SelfDependency)
        );
        index(&mut ix, "a", &[]);
        assert_eq!(
            index(&mut ix, "a", &["a"]),
            IndexOutcome::Refused(Refusal::SelfDependency)
        );
    }

    #[test]
    fn reindex_replaces_dependencies() {
        let mut ix = Indexer::new();
        index(&mut ix, "a", &[]);
        index(&mut ix, "b", &[]);
        index(&mut ix, "c", &["a"]);
        assert_eq!(index(&mut ix, "c", &["a"]), IndexOutcome::Unchanged);
        assert_eq!(index(&mut ix, "c", &["b"]), IndexOutcome::Replaced);
        assert_eq!(ix.remove(name("a")), IndexOutcome::Removed);
        assert_eq!(
            ix.remove(name("b")),
            IndexOutcome::Refused(Refusal::HasDependents)
        );
        assert_eq!(index(&mut ix, "c", &[]), IndexOutcome::Replaced);
        assert_eq!(ix.remove(name("b")), IndexOutcome::Removed);
    }

    #[test]
    fn cycles_refused() {
        let mut ix = Indexer::new();
        index(&mut ix, "a", &[]);
        index(&mut ix, "b", &["a"]);
        index(&mut ix, "c", &["b"]);
        assert_eq!(
            index(&mut ix, "a", &["c"]),
            IndexOutcome::Refused(Refusal::Cycle)
        );
        assert_eq!(
            index(&mut ix, "a", &["b"]),
            IndexOutcome::Refused(Refusal::Cycle)
        );
        index(&mut ix, "d", &[]);
        assert_eq!(index(&mut ix, "a", &["d"]), IndexOutcome::Replaced);
        assert_eq!(
            ix.edges_of(name("a")).unwrap()[0]
                .by_ref()
                .collect::<Vec<_>>(),
            ["d"]
        );
    }

    #[test]
    fn topological_order_puts_dependencies_first() {
        let mut ix = Indexer::new();
        index(&mut ix, "z", &[]);
        index(&mut ix, "y", &["z"]);
        index(&mut ix, "x", &["y", "z"]);
        index(&mut ix, "z2", &[]);
        index(&mut ix, "z", &["z2"]);
        let mut rebuilt = Indexer::new();
        for (package, deps) in ix.topological() {
            assert_eq!(
                rebuilt.index(name(package), deps.map(name)),
                IndexOutcome::Added
            );
        }
        rebuilt.check_invariants().unwrap();
        assert_eq!(rebuilt.packages(), 4);
        assert_eq!(rebuilt.dependencies(), ix.dependencies());
    }

    /// The dependents of `package`, sorted.
    fn dependents(ix: &Indexer, package: &str) -> Vec<String> {
        let [_, dependents] = ix.edges_of(name(package)).unwrap();
        let mut names: Vec<String> = dependents.map(str::to_string).collect();
        names.sort();
        names
    }

    #[test]
    fn dependents_follow_every_change() {
        let mut ix = Indexer::new();
        index(&mut ix, "base", &[]);
        index(&mut ix, "other", &[]);
        for i in 0..50 {
            let deps: &[&str] = if i % 3 == 0 {
                &["other"]
            } else {
                &["base", "other"]
            };
            index(&mut ix, &format!("p{i:02}"), deps);
        }
        let expected: Vec<String> = (0..50)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("p{i:02}"))
            .collect();
        assert_eq!(dependents(&ix, "base"), expected);
        assert_eq!(dependents(&ix, "other").len(), 50);
        assert_eq!(dependents(&ix, "p01"), Vec::<String>::new());
        assert!(ix.edges_of(name("missing")).is_none());
        // Re-indexed without `base`, removed, indexed again onto it.
        index(&mut ix, "p01", &["other"]);
        assert_eq!(ix.remove(name("p02")), IndexOutcome::Removed);
        index(&mut ix, "p03", &["base", "p04"]);
        let mut expected: Vec<String> = expected
            .into_iter()
            .filter(|p| p != "p01" && p != "p02")
            .collect();
        expected.insert(0, "p03".to_string());
        assert_eq!(dependents(&ix, "base"), expected);
        assert_eq!(dependents(&ix, "p04"), ["p03"]);
    }

    /// The index's packages and their dependencies, as text (for the
    /// tests of this module and its children).
    pub(super) fn listed(ix: &Indexer) -> Vec<String> {
        let mut lines = Vec::new();
        ix.for_each_listed(|package, deps| {
            let deps: Vec<&str> = deps.iter().map(|d| d.as_str()).collect();
            lines.push(format!("{package}: {}", deps.join(" ")));
        });
        lines
    }

    #[test]
    fn the_listing_depends_only_on_what_is_indexed() {
        let mut forward = Indexer::new();
        for (package, deps) in [
            ("z", &[][..]),
            ("b", &[]),
            ("y", &["z"]),
            ("a", &["y", "b"]),
            ("c", &["z"]),
        ] {
            index(&mut forward, package, deps);
        }
        let mut other = Indexer::new();
        for (package, deps) in [
            ("b", &[][..]),
            ("junk", &[]),
            ("z", &[]),
            ("c", &["z"]),
            ("y", &["z", "b"]),
            ("a", &["b", "y"]),
            ("y", &["z"]),
        ] {
            index(&mut other, package, deps);
        }
        other.remove(name("junk"));
        let expected = ["b: ", "z: ", "c: z", "y: z", "a: b y"];
        assert_eq!(listed(&forward), expected);
        assert_eq!(listed(&other), expected);
    }

    #[test]
    fn arenas_stay_small_under_churn() {
        let mut ix = Indexer::new();
        index(&mut ix, "base", &[]);
        let long = "a-name-too-long-for-its-node";
        for round in 0..5_000 {
            let package = format!("{long}-{round}");
            assert_eq!(index(&mut ix, &package, &["base"]), IndexOutcome::Added);
            assert_eq!(ix.remove(name(&package)), IndexOutcome::Removed);
        }
        ix.check_invariants().unwrap();
        // One run of each of the two rooms the names need (32 and 48).
        assert_eq!(ix.names.len(), 80);
        assert!(ix.edges.len() <= 8, "{}", ix.edges.len());
        assert_eq!(ix.nodes.len(), 2);
    }

    #[test]
    fn table_survives_growth_and_deletes() {
        let mut ix = Indexer::new();
        for i in 0..5_000 {
            ix.index(name(&format!("p{i}")), std::iter::empty());
        }
        for i in (0..5_000).step_by(3) {
            assert_eq!(ix.remove(name(&format!("p{i}"))), IndexOutcome::Removed);
        }
        ix.check_invariants().unwrap();
        for i in 0..5_000 {
            let found = ix.query(name(&format!("p{i}"))) == IndexOutcome::Found;
            assert_eq!(found, i % 3 != 0, "p{i}");
        }
    }

    #[test]
    fn long_names_alike_in_their_first_bytes_survive_growth_removal_and_reuse() {
        // 1,000 names of 200 to 255 bytes, all starting alike, so that only
        // the arena tells them apart; removing two of three frees their
        // runs, which indexing them again takes back.
        let long = |i: usize| format!("{}-{i}", "n".repeat(200 + i % 50));
        let mut ix = Indexer::new();
        index(&mut ix, "short", &[]);
        for i in 0..1_000 {
            // The kept ones (every third) depend on the one kept before.
            let mut deps = vec!["short".to_string()];
            if i % 3 == 0 && i >= 3 {
                deps.push(long(i - 3));
            }
            let outcome = ix.index(name(&long(i)), deps.iter().map(|d| name(d)));
            assert_eq!(outcome, IndexOutcome::Added);
        }
        ix.check_invariants().unwrap();
        let before = ix.names.len();
        for i in (0..1_000).filter(|i| i % 3 != 0) {
            assert_eq!(ix.remove(name(&long(i))), IndexOutcome::Removed, "{i}");
        }
        ix.check_invariants().unwrap();
        for i in 0..1_000 {
            let found = ix.query(name(&long(i))) == IndexOutcome::Found;
            assert_eq!(found, i % 3 == 0, "{i}");
        }
        assert_eq!(ix.query(name("short")), IndexOutcome::Found);
        for i in (0..1_000).filter(|i| i % 3 != 0) {
            assert_eq!(index(&mut ix, &long(i), &["short"]), IndexOutcome::Added);
        }
        assert_eq!(ix.names.len(), before, "the free runs were taken again");
    }
}
