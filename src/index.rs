//! The dependency graph, with the semantics of `docs/protocol.md#answers`:
//! no I/O, no locks.
//!
//! Laid out for millions of packages:
//! - every indexed name is interned to a `u32` id; the bytes of all names
//!   live in one arena, and a hand-written open-addressing table (linear
//!   probing, 8-byte slots holding a hash tag and the id) maps names to ids;
//! - each package's dependency list is a sorted, de-duplicated run of ids in
//!   one shared edge arena;
//! - a package keeps only the *count* of packages that depend on it, which is
//!   all `REMOVE` needs; who they are is found by scanning the edge lists
//!   ([`Indexer::dependents_within`]), in chunks that need not share one
//!   hold of the lock: a small ring of recent edge changes (which package
//!   gained or lost a dependency on which) tells which dependents changed
//!   meanwhile, to be looked at again at the end.
//!
//! Removing or re-indexing leaves dead bytes in the arenas; they are
//! compacted once they outweigh the live ones, so memory tracks the size of
//! the index, not its history. A cycle search runs only when a re-index adds
//! edges the package did not have before.

use crate::name::PackageName;
use crate::protocol::Response;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
pub(crate) struct SharedIndex(Arc<RwLock<Indexer>>);

impl SharedIndex {
    pub(crate) fn new(indexer: Indexer) -> SharedIndex {
        SharedIndex(Arc::new(RwLock::new(indexer)))
    }

    /// Shared access: queries, gauges, copies for snapshots.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Indexer> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access: changes.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Indexer> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
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
    table: usize,
    nodes: usize,
    free_ids: usize,
    names: usize,
    edges: usize,
}

/// A vector of `len` copies of `value`, each written, so its pages are
/// really there (a zeroed `vec!` may get untouched pages from the kernel).
fn touched<T: Copy>(len: usize, value: T) -> Vec<T> {
    let mut vector = Vec::with_capacity(len);
    vector.resize(len, value);
    vector
}

/// Marks an empty slot in the name table.
const EMPTY_SLOT: u64 = 0;
/// Smallest name table; always a power of two.
const MIN_TABLE_SLOTS: usize = 64;
/// Arenas are compacted only past this many dead entries, so small indexes
/// never bother.
const MIN_GARBAGE_TO_COMPACT: usize = 64 * 1024;
/// Edge changes remembered for scans that release the lock between chunks
/// (512 KiB). A scan over which more edges changed than this cannot tell
/// which of its package's dependents did, and is started again.
const RECENT_EDGE_CHANGES: usize = 1 << 16;

#[derive(Clone, Copy, Debug, Default)]
struct Node {
    name_start: u32,
    deps_start: u32,
    deps_len: u32,
    /// Number of indexed packages that list this one as a dependency.
    dependents: u32,
    /// Epoch of the last cycle search that reached this node.
    visited: u32,
    /// 0 marks a free id (names are at least one byte long).
    name_len: u8,
}

impl Node {
    fn is_live(&self) -> bool {
        self.name_len != 0
    }
}

/// The package index.
#[derive(Clone, Debug)]
pub struct Indexer {
    hasher: RandomState,
    /// Open addressing, linear probing. A slot holds `tag << 32 | (id + 1)`
    /// where `tag` is the high half of the name's hash; the low bits of the
    /// tag give the home slot, so the table can grow without rehashing names.
    table: Vec<u64>,
    nodes: Vec<Node>,
    free_ids: Vec<u32>,
    names: Vec<u8>,
    edges: Vec<u32>,
    dead_name_bytes: usize,
    dead_edges: usize,
    packages: usize,
    dependencies: usize,
    epoch: u32,
    /// Reused buffers, so a command allocates nothing once warm.
    scratch_deps: Vec<u32>,
    scratch_stack: Vec<u32>,
    /// The last [`RECENT_EDGE_CHANGES`] edges added or removed, a ring
    /// indexed by `edge_changes`.
    recent_edge_changes: Box<[EdgeChange]>,
    /// Edges added or removed since the index was made.
    edge_changes: u64,
}

/// A dependency added or removed: `source` gained or lost `target`.
#[derive(Clone, Copy, Debug, Default)]
struct EdgeChange {
    target: u32,
    source: u32,
}

/// A scan for the packages that depend on one package, which may release
/// the lock between its chunks ([`Indexer::dependents_within`]); taken by
/// [`Indexer::start_dependents_scan`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct DependentsScan {
    target: u32,
    /// [`Indexer::edge_changes`] when the scan started.
    edge_changes: u64,
}

/// The packages a dependents scan found: their ids and names, copied out
/// of the index into one buffer (no allocation per name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    ids: Vec<u32>,
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<usize>,
}

impl Found {
    fn push(&mut self, id: u32, name: &str) {
        self.ids.push(id);
        self.text.push_str(name);
        self.ends.push(self.text.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The names found, in the order found.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.text[start..end])
    }

    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.text.clear();
        self.ends.clear();
    }

    /// Brings a scan's findings up to the moment `changed` was taken: the
    /// packages whose dependency changed while the scan ran are dropped
    /// from what the chunks saw, and those of them that depend on the
    /// package at that moment are added back as they are then. Done with
    /// the lock released.
    pub(crate) fn apply(&mut self, changed: &Changed) {
        if changed.sources.is_empty() {
            return;
        }
        let mut kept = Found::default();
        for (&id, name) in self.ids.iter().zip(self.names()) {
            if changed.sources.binary_search(&id).is_err() {
                kept.push(id, name);
            }
        }
        for (&id, name) in changed.now.ids.iter().zip(changed.now.names()) {
            kept.push(id, name);
        }
        *self = kept;
    }
}

/// The dependents of a scan's package that changed while the scan ran, as
/// they are at its end: [`Indexer::dependents_changed_since`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Changed {
    /// Ids that gained or lost the dependency, sorted.
    sources: Vec<u32>,
    /// Those of them that depend on the package now.
    now: Found,
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
            table: vec![EMPTY_SLOT; MIN_TABLE_SLOTS],
            nodes: Vec::new(),
            free_ids: Vec::new(),
            names: Vec::new(),
            edges: Vec::new(),
            dead_name_bytes: 0,
            dead_edges: 0,
            packages: 0,
            dependencies: 0,
            epoch: 0,
            scratch_deps: Vec::new(),
            scratch_stack: Vec::new(),
            recent_edge_changes: vec![EdgeChange::default(); RECENT_EDGE_CHANGES]
                .into_boxed_slice(),
            edge_changes: 0,
        }
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            table: self.table.len(),
            nodes: self.nodes.len(),
            free_ids: self.free_ids.len(),
            names: self.names.len(),
            edges: self.edges.len(),
        }
    }

    /// An empty index whose arrays have room for an index of `sizes`, in
    /// memory already written; [`Indexer::copy_from`] fills it.
    fn with_room_for(sizes: Sizes) -> Indexer {
        Indexer {
            table: touched(sizes.table, 1),
            nodes: touched(sizes.nodes, Node::default()),
            free_ids: touched(sizes.free_ids, 1),
            names: touched(sizes.names, 1),
            edges: touched(sizes.edges, 1),
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
        self.dead_name_bytes = source.dead_name_bytes;
        self.dead_edges = source.dead_edges;
        self.packages = source.packages;
        self.dependencies = source.dependencies;
        self.epoch = source.epoch;
        self.recent_edge_changes
            .clone_from_slice(&source.recent_edge_changes);
        self.edge_changes = source.edge_changes;
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
        if self.find(package, self.tag(package)).is_some() {
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
        let id = self.find(package, self.tag(package))?;
        Some(self.deps(id).iter().map(|&dep| self.name(dep)))
    }

    /// `INDEX`: adds `package` or replaces its dependency list.
    pub fn index<'a>(
        &mut self,
        package: PackageName<'_>,
        deps: impl Iterator<Item = PackageName<'a>>,
    ) -> Outcome {
        let mut wanted = std::mem::take(&mut self.scratch_deps);
        let outcome = self.index_with(package, deps, &mut wanted);
        wanted.clear();
        self.scratch_deps = wanted;
        outcome
    }

    fn index_with<'a>(
        &mut self,
        package: PackageName<'_>,
        deps: impl Iterator<Item = PackageName<'a>>,
        wanted: &mut Vec<u32>,
    ) -> Outcome {
        for dep in deps {
            if dep == package {
                return Outcome::Refused(Refusal::SelfDependency);
            }
            match self.find(dep, self.tag(dep)) {
                Some(id) => wanted.push(id),
                None => return Outcome::Refused(Refusal::MissingDependency),
            }
        }
        wanted.sort_unstable();
        wanted.dedup();

        let tag = self.tag(package);
        match self.find(package, tag) {
            None => self.add(package, tag, wanted),
            Some(id) => self.replace(id, wanted),
        }
    }

    fn add(&mut self, package: PackageName<'_>, tag: u32, deps: &[u32]) -> Outcome {
        let Some(id) = self.allocate_id() else {
            return Outcome::Refused(Refusal::CapacityExceeded);
        };
        let (Some(name_start), Some(deps_start), Ok(deps_len)) = (
            self.store_name(package),
            self.store_edges(deps),
            u32::try_from(deps.len()),
        ) else {
            self.free_ids.push(id);
            return Outcome::Refused(Refusal::CapacityExceeded);
        };
        for &dep in deps {
            self.nodes[dep as usize].dependents += 1;
            self.note_edge_change(dep, id);
        }
        self.nodes[id as usize] = Node {
            name_start,
            deps_start,
            deps_len,
            dependents: 0,
            visited: 0,
            name_len: package.len_u8(),
        };
        self.insert_slot(tag, id);
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
            self.dead_edges += old_len - wanted.len();
            node.deps_start
        } else {
            let Some(start) = self.store_edges(wanted) else {
                return Outcome::Refused(Refusal::CapacityExceeded);
            };
            self.dead_edges += old_len;
            start
        };
        let old_range = node.deps_start as usize..node.deps_start as usize + old_len;
        let mut changed = std::mem::take(&mut self.scratch_stack);
        changed.extend(sorted_difference(&self.edges[old_range.clone()], wanted));
        changed.extend(sorted_difference(wanted, &self.edges[old_range.clone()]));
        for &dep in &changed {
            self.note_edge_change(dep, id);
        }
        changed.clear();
        self.scratch_stack = changed;
        for i in old_range {
            let dep = self.edges[i];
            self.nodes[dep as usize].dependents -= 1;
        }
        for &dep in wanted {
            self.nodes[dep as usize].dependents += 1;
        }
        let start = deps_start as usize;
        self.edges[start..start + wanted.len()].copy_from_slice(wanted);
        let node = &mut self.nodes[id as usize];
        node.deps_start = deps_start;
        node.deps_len = wanted_len;
        self.dependencies = self.dependencies + wanted.len() - old_len;
        self.compact_if_worthwhile();
        Outcome::Replaced
    }

    /// `REMOVE`: drops `package` unless another package depends on it.
    pub fn remove(&mut self, package: PackageName<'_>) -> Outcome {
        let tag = self.tag(package);
        let Some(id) = self.find(package, tag) else {
            return Outcome::Absent;
        };
        let node = self.nodes[id as usize];
        if node.dependents > 0 {
            return Outcome::Refused(Refusal::HasDependents);
        }
        let start = node.deps_start as usize;
        for i in start..start + node.deps_len as usize {
            let dep = self.edges[i];
            self.nodes[dep as usize].dependents -= 1;
            self.note_edge_change(dep, id);
        }
        self.remove_slot(tag, id);
        self.nodes[id as usize] = Node::default();
        self.free_ids.push(id);
        self.dead_edges += node.deps_len as usize;
        self.dead_name_bytes += node.name_len as usize;
        self.packages -= 1;
        self.dependencies -= node.deps_len as usize;
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

    /// Starts a scan for the packages that depend on `package`; `None`
    /// when it is not indexed.
    pub(crate) fn start_dependents_scan(&self, package: PackageName<'_>) -> Option<DependentsScan> {
        let target = self.find(package, self.tag(package))?;
        Some(DependentsScan {
            target,
            edge_changes: self.edge_changes,
        })
    }

    /// The end of the id space: a scan is complete once it has covered
    /// `0..id_end()` (which may have grown since it started).
    pub(crate) fn id_end(&self) -> u32 {
        self.node_ids().end
    }

    /// Copies into `found` every package with an id in `ids` that depends
    /// on the scan's package. O(`ids.len()`), so a caller bounds how long
    /// it holds the lock by the size of the range.
    pub(crate) fn dependents_within(
        &self,
        scan: &DependentsScan,
        ids: std::ops::Range<u32>,
        found: &mut Found,
    ) {
        let ids = ids.start.min(self.id_end())..ids.end.min(self.id_end());
        for id in ids {
            // Dependency lists are sorted; free ids have empty ones.
            if self.deps(id).binary_search(&scan.target).is_ok() {
                found.push(id, self.name(id));
            }
        }
    }

    /// Ends a scan that covered all of `0..id_end()` in chunks that may
    /// each have held the lock apart: the packages that gained or lost a
    /// dependency on `package` since the scan started, and which of them
    /// depend on it now. With them, [`Found::apply`] makes what the scan
    /// found exactly `package`'s dependents at this moment: any other
    /// package kept its dependency, or its lack of one, throughout, and
    /// kept its id and name (a removal takes its dependencies with it), so
    /// its chunk saw it right.
    ///
    /// `None` when the scan cannot be ended so: `package` is no longer
    /// indexed under the id the scan looked for, or more edges changed than
    /// the index remembers. O(edges changed since the scan started).
    pub(crate) fn dependents_changed_since(
        &self,
        scan: &DependentsScan,
        package: PackageName<'_>,
    ) -> Option<Changed> {
        let changes = self.edge_changes - scan.edge_changes;
        if self.find(package, self.tag(package)) != Some(scan.target)
            || changes > RECENT_EDGE_CHANGES as u64
        {
            return None;
        }
        let mut changed = Changed::default();
        for change in scan.edge_changes..self.edge_changes {
            let EdgeChange { target, source } = self.recent_edge_changes[ring_slot(change)];
            if target == scan.target {
                changed.sources.push(source);
            }
        }
        changed.sources.sort_unstable();
        changed.sources.dedup();
        for &source in &changed.sources {
            if self.deps(source).binary_search(&scan.target).is_ok() {
                changed.now.push(source, self.name(source));
            }
        }
        Some(changed)
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
        let (mut packages, mut edges) = (0, 0);
        for id in self.node_ids() {
            if !self.nodes[id as usize].is_live() {
                continue;
            }
            packages += 1;
            let Some(name) = PackageName::new(self.name_bytes(id)) else {
                return Err(format!("node {id} holds an invalid name"));
            };
            if self.find(name, self.tag(name)) != Some(id) {
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
        let occupied = self.table.iter().filter(|&&s| s != EMPTY_SLOT).count();
        if (packages, edges, occupied) != (self.packages, self.dependencies, packages) {
            return Err("package, edge or slot counts are wrong".to_string());
        }
        if self.topological().count() != packages {
            return Err("topological walk missed packages".to_string());
        }
        Ok(())
    }

    // ---- names and the name table ----

    fn tag(&self, name: PackageName<'_>) -> u32 {
        (self.hasher.hash_one(name.as_bytes()) >> 32) as u32
    }

    fn name(&self, id: u32) -> &str {
        // Names enter the arena only from `&str`, so they are valid UTF-8.
        std::str::from_utf8(self.name_bytes(id)).unwrap_or_default()
    }

    /// The name of an indexed package, as the type the rest of the crate
    /// takes; always `Some` for a live id (names are validated on entry).
    fn package_name(&self, id: u32) -> Option<PackageName<'_>> {
        PackageName::new(self.name_bytes(id))
    }

    /// The name's bytes, for comparisons that need no `&str`.
    fn name_bytes(&self, id: u32) -> &[u8] {
        let node = &self.nodes[id as usize];
        let start = node.name_start as usize;
        &self.names[start..start + node.name_len as usize]
    }

    fn deps(&self, id: u32) -> &[u32] {
        let node = &self.nodes[id as usize];
        let start = node.deps_start as usize;
        &self.edges[start..start + node.deps_len as usize]
    }

    /// Every id ever allocated, live or free.
    fn node_ids(&self) -> std::ops::Range<u32> {
        // `allocate_id` never lets the count pass `u32::MAX`.
        0..u32::try_from(self.nodes.len()).unwrap_or(u32::MAX)
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    fn find(&self, name: PackageName<'_>, tag: u32) -> Option<u32> {
        let mask = self.mask();
        let mut slot = tag as usize & mask;
        loop {
            let entry = self.table[slot];
            if entry == EMPTY_SLOT {
                return None;
            }
            if (entry >> 32) as u32 == tag {
                let id = slot_id(entry);
                if self.name_bytes(id) == name.as_bytes() {
                    return Some(id);
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    fn insert_slot(&mut self, tag: u32, id: u32) {
        // Keep the load at or under one half: short probe runs.
        if (self.packages + 1) * 2 > self.table.len() {
            self.grow_table();
        }
        let mask = self.mask();
        let mut slot = tag as usize & mask;
        while self.table[slot] != EMPTY_SLOT {
            slot = (slot + 1) & mask;
        }
        self.table[slot] = (u64::from(tag) << 32) | u64::from(id + 1);
    }

    fn grow_table(&mut self) {
        let doubled = vec![EMPTY_SLOT; self.table.len() * 2];
        let old = std::mem::replace(&mut self.table, doubled);
        let mask = self.mask();
        for entry in old.into_iter().filter(|&e| e != EMPTY_SLOT) {
            let mut slot = (entry >> 32) as usize & mask;
            while self.table[slot] != EMPTY_SLOT {
                slot = (slot + 1) & mask;
            }
            self.table[slot] = entry;
        }
    }

    /// Deletes the slot of `id` and shifts later entries of its probe run
    /// back, so no tombstones are needed.
    fn remove_slot(&mut self, tag: u32, id: u32) {
        let mask = self.mask();
        let target = (u64::from(tag) << 32) | u64::from(id + 1);
        let mut hole = tag as usize & mask;
        while self.table[hole] != target {
            hole = (hole + 1) & mask;
        }
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let entry = self.table[next];
            if entry == EMPTY_SLOT {
                break;
            }
            let home = (entry >> 32) as usize & mask;
            // Move the entry into the hole unless its home lies cyclically
            // in (hole, next]: then it is already as close as it can be.
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.table[hole] = entry;
                hole = next;
            }
        }
        self.table[hole] = EMPTY_SLOT;
    }

    /// Remembers that `source` gained or lost a dependency on `target`.
    fn note_edge_change(&mut self, target: u32, source: u32) {
        self.recent_edge_changes[ring_slot(self.edge_changes)] = EdgeChange { target, source };
        self.edge_changes += 1;
    }

    // ---- arenas ----

    fn allocate_id(&mut self) -> Option<u32> {
        if let Some(id) = self.free_ids.pop() {
            return Some(id);
        }
        // `u32::MAX` is reserved: a slot stores `id + 1`.
        let id = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&id| id < u32::MAX)?;
        self.nodes.push(Node::default());
        Some(id)
    }

    fn store_name(&mut self, name: PackageName<'_>) -> Option<u32> {
        let start = u32::try_from(self.names.len()).ok()?;
        u32::try_from(self.names.len() + name.as_bytes().len()).ok()?;
        self.names.extend_from_slice(name.as_bytes());
        Some(start)
    }

    fn store_edges(&mut self, deps: &[u32]) -> Option<u32> {
        let start = u32::try_from(self.edges.len()).ok()?;
        u32::try_from(self.edges.len() + deps.len()).ok()?;
        self.edges.extend_from_slice(deps);
        Some(start)
    }

    fn compact_if_worthwhile(&mut self) {
        compact_arena(
            &mut self.names,
            &mut self.dead_name_bytes,
            &mut self.nodes,
            |n| (&mut n.name_start, n.name_len as usize),
        );
        compact_arena(
            &mut self.edges,
            &mut self.dead_edges,
            &mut self.nodes,
            |n| (&mut n.deps_start, n.deps_len as usize),
        );
        // The free list and the name table are not shrunk: both are bounded
        // by the peak size, which is memory the index once needed anyway.
    }

    // ---- cycle search ----

    /// True when `target` is reachable along dependency edges from any id
    /// on `stack` (which is used up as the search's work list).
    fn reaches(&mut self, stack: &mut Vec<u32>, target: u32) -> bool {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: old marks could collide with the new epoch.
            self.nodes.iter_mut().for_each(|n| n.visited = 0);
            self.epoch = 1;
        }
        while let Some(id) = stack.pop() {
            if id == target {
                return true;
            }
            let node = &mut self.nodes[id as usize];
            if node.visited == self.epoch {
                continue;
            }
            node.visited = self.epoch;
            let start = node.deps_start as usize;
            stack.extend_from_slice(&self.edges[start..start + node.deps_len as usize]);
        }
        false
    }
}

/// Once dead entries outweigh live ones, copies each live node's run (as
/// `run_of` names it: start and length) into a packed arena.
fn compact_arena<T: Copy>(
    arena: &mut Vec<T>,
    dead: &mut usize,
    nodes: &mut [Node],
    run_of: fn(&mut Node) -> (&mut u32, usize),
) {
    if *dead <= MIN_GARBAGE_TO_COMPACT || *dead * 2 <= arena.len() {
        return;
    }
    let mut packed = Vec::with_capacity(arena.len() - *dead);
    for node in nodes.iter_mut().filter(|n| n.is_live()) {
        let (start, len) = run_of(node);
        let from = *start as usize;
        // Packing only moves runs down: every new start is below the old
        // one, which fit in a u32.
        *start = u32::try_from(packed.len()).unwrap_or(*start);
        packed.extend_from_slice(&arena[from..from + len]);
    }
    *arena = packed;
    *dead = 0;
}

/// The first eight bytes of a name as a number that orders as the names
/// do (name bytes are never zero, so a shorter name orders first).
fn name_prefix(name: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let len = name.len().min(8);
    bytes[..len].copy_from_slice(&name[..len]);
    u64::from_be_bytes(bytes)
}

/// Where edge change number `change` is kept in the ring.
#[allow(clippy::cast_possible_truncation)] // the low bits, on purpose
fn ring_slot(change: u64) -> usize {
    change as usize % RECENT_EDGE_CHANGES
}

/// The id in a name-table slot (its low half holds `id + 1`).
#[allow(clippy::cast_possible_truncation)] // the low half, on purpose
fn slot_id(entry: u64) -> u32 {
    (entry as u32).wrapping_sub(1)
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

    fn listed(ix: &Indexer) -> Vec<String> {
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
    fn difference_of_sorted_lists() {
        let d: Vec<u32> = sorted_difference(&[1, 3, 5, 7], &[2, 3, 7, 9]).collect();
        assert_eq!(d, [1, 5]);
        assert_eq!(sorted_difference(&[], &[1]).count(), 0);
        assert_eq!(sorted_difference(&[4], &[]).collect::<Vec<_>>(), [4]);
    }
}
