//! The dependency graph, with the semantics of `docs/protocol.md#answers`:
//! no I/O, no locks.
//!
//! Laid out for millions of packages, and for the cache: a lookup of a
//! name costs two cache misses, and a run of commands overlaps them.
//!
//! | file | what |
//! | --- | --- |
//! | `table.rs` | the name table: a name's hash to candidate ids, in 64-byte buckets of 1-byte tags and 4-byte ids |
//! | `node.rs` | a package's 24-byte node: its dependency run, its dependent count, its name (up to 11 bytes inline) |
//! | `arena.rs` | the arenas of dependency lists and of longer names, compacted once mostly dead |
//! | `cycle.rs` | the cycle search, its marks in a bitset beside the nodes |
//! | `dependents.rs` | who depends on a package: chunked scans and the ring of recent edge changes |
//! | `run.rs` | runs of commands with their lookups staged: hash, prefetch buckets, prefetch nodes, execute |
//!
//! Every indexed name is interned to a `u32` id, the index of its node.
//! Each package's dependency list is a sorted, de-duplicated run of ids in
//! one shared edge arena. A package keeps only the *count* of packages
//! that depend on it, which is all `REMOVE` needs; who they are is found by
//! scanning ([`Indexer::dependents_within`]). A cycle search runs only when
//! a re-index adds edges the package did not have before.
//!
//! At 1,000,000 packages of 3 dependencies and names of up to 11 bytes, a
//! package costs 24 bytes of node, 12 of edges and 8.4 of table (5.3 bytes
//! a slot, the table between seven sixteenths and seven eighths full).

mod arena;
mod cycle;
mod dependents;
mod node;
mod run;
mod table;

pub(crate) use dependents::Found;
pub(crate) use run::{RunItem, Step};

use crate::name::PackageName;
use crate::protocol::Response;
use arena::Arena;
use cycle::Marks;
use dependents::EdgeChanges;
use node::{Key, Node, DEPENDENCY_RUNS, NAME_RUNS};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use table::NameTable;

/// What a command did to the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new package was indexed.
    Added,
    /// An indexed package got a different dependency list.
    Replaced,
    /// An indexed package was indexed again with the same dependencies.
    Unchanged,
    /// A package was removed.
    Removed,
    /// `REMOVE` of a package that was not indexed.
    Absent,
    /// `QUERY` found the package.
    Found,
    /// `QUERY` did not find the package.
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

impl Outcome {
    /// The answer sent to the client.
    pub fn response(self) -> Response {
        Response::ok_if(!matches!(self, Outcome::Refused(_) | Outcome::NotFound))
    }

    /// True when the index state changed (what a durable log must record).
    pub fn changed(self) -> bool {
        matches!(self, Outcome::Added | Outcome::Replaced | Outcome::Removed)
    }
}

/// The one `Arc<RwLock<Indexer>>` that every connection, the compactor and
/// the admin thread share.
///
/// A poisoned lock is recovered rather than propagated: the index never
/// panics mid-change on client input, and refusing every later request
/// would turn one bug into an outage.
#[derive(Clone, Default)]
pub(crate) struct SharedIndex(Arc<Locked>);

#[derive(Default)]
struct Locked {
    index: RwLock<Indexer>,
    /// Held by a writer from before it asks for the write lock until it
    /// has it. A reader that takes the read lock again and again (a
    /// chunked scan) passes through it before each hold, so a waiting
    /// writer gets in between the holds: without it the reader, running
    /// on, took the lock back before the woken writer could, and the
    /// writer waited for the whole scan (2.6 to 5 ms at a million
    /// packages).
    writer_turn: Mutex<()>,
}

impl SharedIndex {
    pub(crate) fn new(indexer: Indexer) -> SharedIndex {
        SharedIndex(Arc::new(Locked {
            index: RwLock::new(indexer),
            writer_turn: Mutex::new(()),
        }))
    }

    /// Shared access: queries, gauges, copies for snapshots.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.0.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shared access after any writer already waiting: for a reader that
    /// holds the lock many times in a row.
    pub(crate) fn read_after_writers(&self) -> RwLockReadGuard<'_, Indexer> {
        drop(self.writer_turn());
        self.read()
    }

    /// Exclusive access: changes.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Indexer> {
        let _turn = self.writer_turn();
        self.0.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn writer_turn(&self) -> MutexGuard<'_, ()> {
        self.0
            .writer_turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the index at one moment, and what `under_lock` returns
    /// when run in the same hold of the read lock (the compactor switches
    /// logs there). The copy's memory is allocated and written before the
    /// lock is taken for the copy (a first, brief hold reads the sizes), so
    /// writers wait only while the bytes are copied, not while the kernel
    /// hands out pages: 7 ms rather than 35 ms for a million packages.
    pub(crate) fn copy_with<R>(&self, under_lock: impl FnOnce(&Indexer) -> R) -> (Indexer, R) {
        let sizes = self.read().sizes();
        let mut copy = Indexer::with_room_for(sizes);
        let index = self.read();
        let result = under_lock(&index);
        copy.copy_from(&index);
        drop(index);
        (copy, result)
    }
}

/// How long each of an index's arrays is.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    buckets: usize,
    nodes: usize,
    free_ids: usize,
    names: usize,
    edges: usize,
}

/// A name with its hash, computed once.
#[derive(Clone, Copy, Debug)]
struct Hashed<'a> {
    name: PackageName<'a>,
    hash: u64,
}

/// The package index.
#[derive(Clone, Debug)]
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
    marks: Marks,
    /// Reused buffers, so a command allocates nothing once warm.
    scratch_deps: Vec<u32>,
    scratch_stack: Vec<u32>,
    edge_changes: EdgeChanges,
}

impl Default for Indexer {
    fn default() -> Self {
        Indexer::new()
    }
}

impl Indexer {
    pub fn new() -> Indexer {
        Indexer {
            hasher: RandomState::new(),
            table: NameTable::default(),
            nodes: Vec::new(),
            free_ids: Vec::new(),
            names: Arena::default(),
            edges: Arena::default(),
            packages: 0,
            dependencies: 0,
            marks: Marks::default(),
            scratch_deps: Vec::new(),
            scratch_stack: Vec::new(),
            edge_changes: EdgeChanges::default(),
        }
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            buckets: self.table.buckets(),
            nodes: self.nodes.len(),
            free_ids: self.free_ids.len(),
            names: self.names.len(),
            edges: self.edges.len(),
        }
    }

    /// An empty index whose arrays have room for an index of `sizes`, in
    /// memory already written; [`Indexer::copy_from`] fills it.
    fn with_room_for(sizes: Sizes) -> Indexer {
        let mut free_ids = Vec::with_capacity(sizes.free_ids);
        free_ids.resize(sizes.free_ids, 1);
        let mut nodes = Vec::with_capacity(sizes.nodes);
        nodes.resize(sizes.nodes, Node::default());
        Indexer {
            table: NameTable::touched(sizes.buckets),
            nodes,
            free_ids,
            names: Arena::touched(sizes.names, 1),
            edges: Arena::touched(sizes.edges, 1),
            ..Indexer::new()
        }
    }

    /// Makes this index a copy of `source`, reusing the room it has.
    fn copy_from(&mut self, source: &Indexer) {
        self.hasher = source.hasher.clone();
        self.table.clone_from(&source.table);
        self.nodes.clone_from(&source.nodes);
        self.free_ids.clone_from(&source.free_ids);
        self.names.clone_from(&source.names);
        self.edges.clone_from(&source.edges);
        self.packages = source.packages;
        self.dependencies = source.dependencies;
        self.edge_changes.clone_from(&source.edge_changes);
    }

    /// Makes room for `additional` more packages, so that adding them
    /// neither grows the name table (which hashes every name again) nor
    /// moves the nodes.
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
    pub fn query(&self, package: PackageName<'_>) -> Outcome {
        self.query_hashed(self.hashed(package))
    }

    fn query_hashed(&self, package: Hashed<'_>) -> Outcome {
        if self.find(package).is_some() {
            Outcome::Found
        } else {
            Outcome::NotFound
        }
    }

    /// True when `package` is indexed.
    pub fn contains(&self, package: PackageName<'_>) -> bool {
        self.query(package) == Outcome::Found
    }

    /// The dependencies of an indexed package, each once, in no set order.
    pub fn dependencies_of(
        &self,
        package: PackageName<'_>,
    ) -> Option<impl Iterator<Item = &str> + '_> {
        let id = self.find(self.hashed(package))?;
        Some(self.deps(id).iter().map(|&dep| self.name(dep)))
    }

    /// `INDEX`: adds `package` or replaces its dependency list.
    pub fn index<'a>(
        &mut self,
        package: PackageName<'_>,
        deps: impl Iterator<Item = PackageName<'a>>,
    ) -> Outcome {
        self.execute(
            Step::Index {
                package,
                dependencies: deps,
            },
            None,
        )
    }

    /// `REMOVE`: drops `package` unless another package depends on it.
    pub fn remove(&mut self, package: PackageName<'_>) -> Outcome {
        self.execute(Step::<std::iter::Empty<_>>::Remove(package), None)
    }

    fn index_hashed<'a>(
        &mut self,
        package: Hashed<'_>,
        deps: impl Iterator<Item = Hashed<'a>>,
    ) -> Outcome {
        let mut wanted = std::mem::take(&mut self.scratch_deps);
        let outcome = self.index_with(package, deps, &mut wanted);
        wanted.clear();
        self.scratch_deps = wanted;
        outcome
    }

    fn index_with<'a>(
        &mut self,
        package: Hashed<'_>,
        deps: impl Iterator<Item = Hashed<'a>>,
        wanted: &mut Vec<u32>,
    ) -> Outcome {
        for dep in deps {
            // Names that differ mostly differ in their hashes too.
            if dep.hash == package.hash && dep.name == package.name {
                return Outcome::Refused(Refusal::SelfDependency);
            }
            match self.find(dep) {
                Some(id) => wanted.push(id),
                None => return Outcome::Refused(Refusal::MissingDependency),
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        match self.find(package) {
            None => self.add(package, wanted),
            Some(id) => self.replace(id, wanted),
        }
    }

    fn add(&mut self, package: Hashed<'_>, deps: &[u32]) -> Outcome {
        if self.table.is_full() {
            self.rebuild_table(self.packages.saturating_mul(2));
        }
        let Some(id) = self.allocate_id() else {
            return Outcome::Refused(Refusal::CapacityExceeded);
        };
        let Some((deps_start, deps_len)) =
            self.edges.push(deps).zip(u32::try_from(deps.len()).ok())
        else {
            self.free_ids.push(id);
            return Outcome::Refused(Refusal::CapacityExceeded);
        };
        let Some(mut node) = Node::named(package.name, &mut self.names) else {
            self.edges.discard(deps.len());
            self.free_ids.push(id);
            return Outcome::Refused(Refusal::CapacityExceeded);
        };
        for &dep in deps {
            self.nodes[dep as usize].dependents += 1;
            self.edge_changes.note(dep, id);
        }
        node.deps_start = deps_start;
        node.deps_len = deps_len;
        self.nodes[id as usize] = node;
        self.table.insert(package.hash, id);
        self.packages += 1;
        self.dependencies += deps.len();
        Outcome::Added
    }

    fn replace(&mut self, id: u32, wanted: &[u32]) -> Outcome {
        if self.deps(id) == wanted {
            return Outcome::Unchanged;
        }
        let mut stack = std::mem::take(&mut self.scratch_stack);
        stack.extend(sorted_difference(wanted, self.deps(id)));
        let cycle = !stack.is_empty() && self.reaches(&mut stack, id);
        stack.clear();
        self.scratch_stack = stack;
        if cycle {
            return Outcome::Refused(Refusal::Cycle);
        }
        let Ok(wanted_len) = u32::try_from(wanted.len()) else {
            return Outcome::Refused(Refusal::CapacityExceeded);
        };
        let node = self.nodes[id as usize];
        let old_len = node.deps_len as usize;
        let deps_start = if wanted.len() <= old_len {
            // Shrinking or same size: reuse the run in place.
            self.edges.discard(old_len - wanted.len());
            node.deps_start
        } else {
            let Some(start) = self.edges.push(wanted) else {
                return Outcome::Refused(Refusal::CapacityExceeded);
            };
            self.edges.discard(old_len);
            start
        };
        let old = self.edges.run(node.deps_start, old_len);
        for dep in sorted_difference(old, wanted).chain(sorted_difference(wanted, old)) {
            self.edge_changes.note(dep, id);
        }
        for &dep in old {
            self.nodes[dep as usize].dependents -= 1;
        }
        for &dep in wanted {
            self.nodes[dep as usize].dependents += 1;
        }
        self.edges
            .run_mut(deps_start, wanted.len())
            .copy_from_slice(wanted);
        let node = &mut self.nodes[id as usize];
        node.deps_start = deps_start;
        node.deps_len = wanted_len;
        self.dependencies = self.dependencies + wanted.len() - old_len;
        self.compact_if_worthwhile();
        Outcome::Replaced
    }

    fn remove_hashed(&mut self, package: Hashed<'_>) -> Outcome {
        let Some(id) = self.find(package) else {
            return Outcome::Absent;
        };
        let node = self.nodes[id as usize];
        if node.dependents > 0 {
            return Outcome::Refused(Refusal::HasDependents);
        }
        let deps_len = node.deps_len as usize;
        for &dep in self.edges.run(node.deps_start, deps_len) {
            self.nodes[dep as usize].dependents -= 1;
            self.edge_changes.note(dep, id);
        }
        self.table.remove(package.hash, id);
        if let Some((_, len)) = node.name_run() {
            self.names.discard(len);
        }
        self.edges.discard(deps_len);
        self.nodes[id as usize] = Node::default();
        self.free_ids.push(id);
        self.packages -= 1;
        self.dependencies -= deps_len;
        self.compact_if_worthwhile();
        Outcome::Removed
    }

    /// Every indexed package with its dependencies, dependencies first, so
    /// that replaying the sequence as `INDEX` commands rebuilds the index.
    pub fn topological(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> + '_ {
        self.topological_ids().into_iter().map(move |id| {
            let deps = self.deps(id).iter().map(move |&dep| self.name(dep));
            (self.name(id), deps)
        })
    }

    /// Calls `each` with every indexed package and its dependencies, in an
    /// order that depends on nothing but what is indexed (not on the order
    /// it was indexed in): by the length of the longest chain of
    /// dependencies below the package, then by name; each package's
    /// dependencies sorted by name. So a package comes after all its
    /// dependencies, and two indexes holding the same packages list them
    /// alike. Names compare as bytes.
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
        // Comparing names in the arena costs cache misses (a second for a
        // million packages); keys holding the height and the first bytes of
        // the name sort in a tenth of that, and only runs of equal keys
        // need their whole names compared.
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
        let mut order = Vec::with_capacity(self.packages);
        let mut emitted = vec![false; self.nodes.len()];
        // Iterative depth-first post-order: (node, next dependency to visit).
        let mut stack: Vec<(u32, u32)> = Vec::new();
        for root in self.node_ids() {
            if !self.nodes[root as usize].is_live() || emitted[root as usize] {
                continue;
            }
            stack.push((root, 0));
            while let Some((id, next)) = stack.pop() {
                let deps = self.deps(id);
                match deps.get(next as usize) {
                    Some(&dep) => {
                        stack.push((id, next + 1));
                        if !emitted[dep as usize] {
                            stack.push((dep, 0));
                        }
                    }
                    None => {
                        if !emitted[id as usize] {
                            emitted[id as usize] = true;
                            order.push(id);
                        }
                    }
                }
            }
        }
        order
    }

    /// Checks every invariant of the structure; O(size). For tests and
    /// for verifying a recovered index.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut dependents = vec![0u32; self.nodes.len()];
        let (mut packages, mut edges, mut long_name_bytes) = (0, 0, 0);
        for id in self.node_ids() {
            let node = &self.nodes[id as usize];
            if !node.is_live() {
                continue;
            }
            packages += 1;
            node.check_name(&self.names)?;
            long_name_bytes += node.name_run().map_or(0, |(_, len)| len);
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
            for &dep in deps {
                if !self.nodes.get(dep as usize).is_some_and(Node::is_live) {
                    return Err(format!("{name} depends on a package that is not indexed"));
                }
                dependents[dep as usize] += 1;
                edges += 1;
            }
        }
        for id in self.node_ids() {
            let node = &self.nodes[id as usize];
            if node.is_live() && node.dependents != dependents[id as usize] {
                return Err(format!("{}: dependent count is wrong", self.name(id)));
            }
        }
        if (packages, edges, self.table.len()) != (self.packages, self.dependencies, packages) {
            return Err("package, edge or name-table counts are wrong".to_string());
        }
        self.table.check(|id| {
            let node = self.nodes.get(id as usize).filter(|node| node.is_live())?;
            Some(self.hasher.hash_one(node.name(&self.names)))
        })?;
        let free = self.free_ids.iter().filter(|&&id| {
            self.nodes
                .get(id as usize)
                .is_some_and(|node| !node.is_live())
        });
        if free.count() + packages != self.nodes.len() {
            return Err("free ids and live nodes do not add up to the ids".to_string());
        }
        if self.edges.len() != self.edges.dead() + edges
            || self.names.len() != self.names.dead() + long_name_bytes
        {
            return Err("an arena's live and dead entries do not add up".to_string());
        }
        if !self.marks.is_clear() {
            return Err("a cycle search left marks behind".to_string());
        }
        if self.topological().count() != packages {
            return Err("topological walk missed packages".to_string());
        }
        Ok(())
    }

    // ---- names and the name table ----

    fn hashed<'a>(&self, name: PackageName<'a>) -> Hashed<'a> {
        Hashed {
            name,
            hash: self.hasher.hash_one(name.as_bytes()),
        }
    }

    fn name(&self, id: u32) -> &str {
        // Names enter the index only as `PackageName`s, so they are valid
        // UTF-8.
        std::str::from_utf8(self.name_bytes(id)).unwrap_or_default()
    }

    /// The name of an indexed package, as the type the rest of the crate
    /// takes; always `Some` for a live id (names are validated on entry).
    fn package_name(&self, id: u32) -> Option<PackageName<'_>> {
        PackageName::new(self.name_bytes(id))
    }

    /// The name's bytes, for comparisons that need no `&str`.
    fn name_bytes(&self, id: u32) -> &[u8] {
        self.nodes[id as usize].name(&self.names)
    }

    fn deps(&self, id: u32) -> &[u32] {
        let node = &self.nodes[id as usize];
        self.edges.run(node.deps_start, node.deps_len as usize)
    }

    /// Every id ever allocated, live or free.
    fn node_ids(&self) -> std::ops::Range<u32> {
        // `allocate_id` never lets the count pass `u32::MAX`.
        0..u32::try_from(self.nodes.len()).unwrap_or(u32::MAX)
    }

    fn find(&self, name: Hashed<'_>) -> Option<u32> {
        let key = Key::new(name.name);
        self.table.find(name.hash, |id| {
            self.nodes
                .get(id as usize)
                .is_some_and(|node| node.bears(&key, &self.names))
        })
    }

    /// Replaces the name table by one with room for `packages`, hashing
    /// every name again: in id order, so the nodes are read front to back,
    /// a window of names at a time, so the misses of their scattered
    /// buckets overlap (a third of the time they took one by one).
    fn rebuild_table(&mut self, packages: usize) {
        const WINDOW: usize = 32;
        let mut table = NameTable::with_room_for(packages.max(self.packages));
        let live = (0u32..).zip(&self.nodes).filter(|(_, node)| node.is_live());
        let mut window = [(0, 0); WINDOW];
        let mut filled = 0;
        for (id, node) in live {
            let hash = self.hasher.hash_one(node.name(&self.names));
            table.prefetch(hash);
            window[filled] = (hash, id);
            filled += 1;
            if filled == WINDOW {
                window.iter().for_each(|&(hash, id)| table.insert(hash, id));
                filled = 0;
            }
        }
        window[..filled]
            .iter()
            .for_each(|&(hash, id)| table.insert(hash, id));
        self.table = table;
    }

    // ---- arenas ----

    fn allocate_id(&mut self) -> Option<u32> {
        if let Some(id) = self.free_ids.pop() {
            return Some(id);
        }
        let id = u32::try_from(self.nodes.len()).ok()?;
        self.nodes.push(Node::default());
        Some(id)
    }

    fn compact_if_worthwhile(&mut self) {
        self.names
            .compact_if_worthwhile(&mut self.nodes, &NAME_RUNS);
        self.edges
            .compact_if_worthwhile(&mut self.nodes, &DEPENDENCY_RUNS);
        // The free list and the name table are not shrunk: both are bounded
        // by the peak size, which is memory the index once needed anyway.
    }
}

/// The first eight bytes of a name as a number that orders as the names
/// do (name bytes are never zero, so a shorter name orders first).
fn name_prefix(name: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let len = name.len().min(8);
    bytes[..len].copy_from_slice(&name[..len]);
    u64::from_be_bytes(bytes)
}

/// Items of sorted `a` that are not in sorted `b`.
fn sorted_difference<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    let mut rest = b;
    a.iter().copied().filter(move |&x| {
        let skip = rest.partition_point(|&y| y < x);
        rest = &rest[skip..];
        rest.first() != Some(&x)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena::MIN_GARBAGE_TO_COMPACT;
    use dependents::RECENT_EDGE_CHANGES;

    #[test]
    fn a_waiting_writer_gets_in_between_the_holds_of_a_repeated_reader() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        const HOLDS: usize = 40;
        let shared = SharedIndex::default();
        let holds = AtomicUsize::new(0);
        let holds_when_written = std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..HOLDS {
                    let _index = shared.read_after_writers();
                    holds.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            while holds.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let _index = shared.write();
            holds.load(Ordering::SeqCst)
        });
        // The writer waits for the hold in progress (and perhaps the one
        // that began as it arrived), not for the reader to finish.
        assert!(
            holds_when_written <= 3,
            "the writer got in after {holds_when_written} of {HOLDS} holds"
        );
    }

    fn name(text: &str) -> PackageName<'_> {
        PackageName::new(text.as_bytes()).unwrap()
    }

    fn index(ix: &mut Indexer, package: &str, deps: &[&str]) -> Outcome {
        let outcome = ix.index(name(package), deps.iter().map(|d| name(d)));
        ix.check_invariants().unwrap();
        outcome
    }

    #[test]
    fn add_query_remove() {
        let mut ix = Indexer::new();
        assert_eq!(ix.query(name("a")), Outcome::NotFound);
        assert_eq!(index(&mut ix, "a", &[]), Outcome::Added);
        assert_eq!(ix.query(name("a")), Outcome::Found);
        assert_eq!(ix.remove(name("a")), Outcome::Removed);
        assert_eq!(ix.remove(name("a")), Outcome::Absent);
        assert_eq!(ix.packages(), 0);
    }

    #[test]
    fn dependencies_must_be_indexed() {
        let mut ix = Indexer::new();
        assert_eq!(
            index(&mut ix, "b", &["a"]),
            Outcome::Refused(Refusal::MissingDependency)
        );
        assert!(!ix.contains(name("b")));
        index(&mut ix, "a", &[]);
        assert_eq!(index(&mut ix, "b", &["a"]), Outcome::Added);
        assert_eq!(
            ix.remove(name("a")),
            Outcome::Refused(Refusal::HasDependents)
        );
        assert_eq!(ix.remove(name("b")), Outcome::Removed);
        assert_eq!(ix.remove(name("a")), Outcome::Removed);
    }

    #[test]
    fn repeated_dependencies_count_once() {
        let mut ix = Indexer::new();
        index(&mut ix, "a", &[]);
        index(&mut ix, "b", &["a", "a", "a"]);
        assert_eq!(ix.dependencies(), 1);
        assert_eq!(ix.remove(name("b")), Outcome::Removed);
        assert_eq!(ix.remove(name("a")), Outcome::Removed);
    }

    #[test]
    fn self_dependency_refused() {
        let mut ix = Indexer::new();
        assert_eq!(
            index(&mut ix, "a", &["a"]),
            Outcome::Refused(Refusal::SelfDependency)
        );
        index(&mut ix, "a", &[]);
        assert_eq!(
            index(&mut ix, "a", &["a"]),
            Outcome::Refused(Refusal::SelfDependency)
        );
    }

    #[test]
    fn reindex_replaces_dependencies() {
        let mut ix = Indexer::new();
        index(&mut ix, "a", &[]);
        index(&mut ix, "b", &[]);
        index(&mut ix, "c", &["a"]);
        assert_eq!(index(&mut ix, "c", &["a"]), Outcome::Unchanged);
        assert_eq!(index(&mut ix, "c", &["b"]), Outcome::Replaced);
        assert_eq!(ix.remove(name("a")), Outcome::Removed);
        assert_eq!(
            ix.remove(name("b")),
            Outcome::Refused(Refusal::HasDependents)
        );
        assert_eq!(index(&mut ix, "c", &[]), Outcome::Replaced);
        assert_eq!(ix.remove(name("b")), Outcome::Removed);
    }

    #[test]
    fn cycles_refused() {
        let mut ix = Indexer::new();
        index(&mut ix, "a", &[]);
        index(&mut ix, "b", &["a"]);
        index(&mut ix, "c", &["b"]);
        assert_eq!(
            index(&mut ix, "a", &["c"]),
            Outcome::Refused(Refusal::Cycle)
        );
        assert_eq!(
            index(&mut ix, "a", &["b"]),
            Outcome::Refused(Refusal::Cycle)
        );
        index(&mut ix, "d", &[]);
        assert_eq!(index(&mut ix, "a", &["d"]), Outcome::Replaced);
        assert_eq!(
            ix.dependencies_of(name("a")).unwrap().collect::<Vec<_>>(),
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
            assert_eq!(rebuilt.index(name(package), deps.map(name)), Outcome::Added);
        }
        rebuilt.check_invariants().unwrap();
        assert_eq!(rebuilt.packages(), 4);
        assert_eq!(rebuilt.dependencies(), ix.dependencies());
    }

    /// The dependents of `package` a scan finds in chunks of `chunk` ids,
    /// with `between(ix, chunk number)` changing the index after each
    /// chunk, brought up to its end; sorted. `None` when the scan cannot
    /// be ended.
    fn scan_dependents(
        ix: &mut Indexer,
        package: &str,
        chunk: u32,
        between: &mut dyn FnMut(&mut Indexer, u32),
    ) -> Option<Vec<String>> {
        let scan = ix.start_dependents_scan(name(package)).unwrap();
        let mut found = Found::default();
        let mut next = 0;
        let mut chunks = 0;
        while next < ix.id_end() {
            ix.dependents_within(&scan, next..next.saturating_add(chunk), &mut found);
            next = next.saturating_add(chunk);
            between(ix, chunks);
            chunks += 1;
        }
        let changed = ix.dependents_changed_since(&scan, name(package))?;
        found.apply(&changed);
        let mut names: Vec<String> = found.names().map(str::to_string).collect();
        names.sort();
        Some(names)
    }

    /// The dependents of `package` by a scan with nothing changing.
    fn dependents(ix: &mut Indexer, package: &str) -> Vec<String> {
        scan_dependents(ix, package, u32::MAX, &mut |_, _| {}).unwrap()
    }

    #[test]
    fn scans_find_dependents_in_any_chunks() {
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
        for chunk in [1, 7, 64, u32::MAX] {
            let found = scan_dependents(&mut ix, "base", chunk, &mut |_, _| {});
            assert_eq!(found.as_ref(), Some(&expected));
        }
        assert_eq!(dependents(&mut ix, "p01"), Vec::<String>::new());
        assert!(ix.start_dependents_scan(name("missing")).is_none());
    }

    #[test]
    fn a_scan_is_brought_up_to_its_end_whatever_changed_meanwhile() {
        // Between chunks of one id, packages q0..q11 are indexed with
        // dependencies drawn from {base, other, an earlier q}, re-indexed
        // and removed at random (so ids are freed and reused): whatever
        // the chunks saw, the corrected scan is exactly what a scan with
        // nothing changing finds at the end.
        let mut ix = Indexer::new();
        index(&mut ix, "base", &[]);
        index(&mut ix, "other", &[]);
        let mut seed = 7u64;
        let mut random = move |bound: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % bound
        };
        for _ in 0..300 {
            let mut change = |ix: &mut Indexer, _chunk: u32| {
                let q = random(12);
                let package = format!("q{q}");
                if random(3) == 0 {
                    ix.remove(name(&package));
                    return;
                }
                let mut deps = Vec::new();
                for (candidate, odds) in [("base".to_string(), 2), ("other".into(), 3)] {
                    if random(odds) == 0 {
                        deps.push(candidate);
                    }
                }
                if q > 0 && random(2) == 0 {
                    deps.push(format!("q{}", random(q)));
                }
                ix.index(name(&package), deps.iter().map(|d| name(d)));
            };
            let scanned = scan_dependents(&mut ix, "base", 1, &mut change).unwrap();
            ix.check_invariants().unwrap();
            assert_eq!(scanned, dependents(&mut ix, "base"));
        }
    }

    #[test]
    fn a_scan_cannot_end_when_the_package_moved_or_the_ring_was_outrun() {
        let mut ix = Indexer::new();
        index(&mut ix, "base", &[]);
        index(&mut ix, "other", &[]);
        index(&mut ix, "spacer", &[]);
        // Removed and indexed again under another id: the scan looked for
        // the old one.
        let moved = scan_dependents(&mut ix, "base", 1, &mut |ix, chunk| {
            if chunk == 0 {
                ix.remove(name("base"));
                ix.remove(name("spacer"));
                ix.index(name("base"), std::iter::empty());
            }
        });
        assert_eq!(moved, None);
        let outrun = scan_dependents(&mut ix, "base", 1, &mut |ix, chunk| {
            if chunk == 0 {
                for _ in 0..RECENT_EDGE_CHANGES / 2 {
                    ix.index(name("leaf"), [name("other")].into_iter());
                    ix.remove(name("leaf"));
                }
            }
        });
        assert_eq!(outrun, Some(vec![]));
        let outrun = scan_dependents(&mut ix, "base", 1, &mut |ix, chunk| {
            if chunk == 0 {
                for _ in 0..=RECENT_EDGE_CHANGES / 2 {
                    ix.index(name("leaf"), [name("other")].into_iter());
                    ix.remove(name("leaf"));
                }
            }
        });
        assert_eq!(outrun, None);
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
    fn arenas_compact_under_churn() {
        let mut ix = Indexer::new();
        index(&mut ix, "base", &[]);
        for round in 0..50_000 {
            let package = format!("package-{round}");
            assert_eq!(index(&mut ix, &package, &["base"]), Outcome::Added);
            assert_eq!(ix.remove(name(&package)), Outcome::Removed);
        }
        ix.check_invariants().unwrap();
        assert!(ix.names.len() < 2 * MIN_GARBAGE_TO_COMPACT);
        assert!(ix.edges.len() < 2 * MIN_GARBAGE_TO_COMPACT);
        assert_eq!(ix.nodes.len(), 2);
    }

    #[test]
    fn a_compaction_waits_for_a_dead_entry_per_node() {
        const SHORT: usize = 3 * MIN_GARBAGE_TO_COMPACT;
        let mut ix = Indexer::new();
        // Unchecked, one by one (the helper checks every invariant each time).
        for i in 0..SHORT {
            ix.index(name(&format!("s{i}")), std::iter::empty());
        }
        // Long names live in the arena; short ones in their nodes.
        let long = "a-name-too-long-for-its-node";
        let removals_for = |bytes: usize| bytes.div_ceil(long.len());
        for _ in 0..removals_for(SHORT) - 1 {
            ix.index(name(long), std::iter::empty());
            ix.remove(name(long));
        }
        assert!(
            ix.names.dead() > MIN_GARBAGE_TO_COMPACT,
            "past the old threshold"
        );
        assert!(ix.names.dead() <= SHORT, "not compacted yet");
        for _ in 0..2 {
            ix.index(name(long), std::iter::empty());
            ix.remove(name(long));
        }
        assert!(
            ix.names.len() < SHORT,
            "compacted once a dead byte per node"
        );
        ix.check_invariants().unwrap();
    }

    #[test]
    fn table_survives_growth_and_deletes() {
        let mut ix = Indexer::new();
        for i in 0..5_000 {
            ix.index(name(&format!("p{i}")), std::iter::empty());
        }
        for i in (0..5_000).step_by(3) {
            assert_eq!(ix.remove(name(&format!("p{i}"))), Outcome::Removed);
        }
        ix.check_invariants().unwrap();
        for i in 0..5_000 {
            assert_eq!(ix.contains(name(&format!("p{i}"))), i % 3 != 0, "p{i}");
        }
    }

    #[test]
    fn long_names_alike_in_their_first_bytes_survive_growth_removal_and_compaction() {
        // 1,000 names of 200 to 255 bytes, all starting alike, so that only
        // the arena tells them apart; removing two of three leaves over
        // 64 KiB of dead name bytes, which compacts the arena.
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
            assert_eq!(outcome, Outcome::Added);
        }
        ix.check_invariants().unwrap();
        let before = ix.names.len();
        for i in (0..1_000).filter(|i| i % 3 != 0) {
            assert_eq!(ix.remove(name(&long(i))), Outcome::Removed, "{i}");
        }
        ix.check_invariants().unwrap();
        assert!(ix.names.len() < before / 2, "the names arena was compacted");
        for i in 0..1_000 {
            assert_eq!(ix.contains(name(&long(i))), i % 3 == 0, "{i}");
        }
        assert!(ix.contains(name("short")));
    }

    #[test]
    fn difference_of_sorted_lists() {
        let d: Vec<u32> = sorted_difference(&[1, 3, 5, 7], &[2, 3, 7, 9]).collect();
        assert_eq!(d, [1, 5]);
        assert_eq!(sorted_difference(&[], &[1]).count(), 0);
        assert_eq!(sorted_difference(&[4], &[]).collect::<Vec<_>>(), [4]);
    }
}
