//! Arenas: one array holding the runs of every package (its dependency
//! list, or a name too long for its node), each run named by its start
//! and length in the package's node.
//!
//! Removing a package or replacing a run leaves its old run dead in
//! place; the arena is compacted once the dead entries outweigh the live
//! ones, so memory tracks the size of the index, not its history. A
//! compaction visits every node, so it also waits for at least one dead
//! entry per node: otherwise an arena with few live runs (long names, in
//! an index of short ones) was compacted every few thousand removals, each
//! time walking a million nodes under the write lock (about 1 ms).

use super::node::Node;

/// An arena is compacted only past this many dead entries, so small
/// indexes never bother.
pub(super) const MIN_GARBAGE_TO_COMPACT: usize = 64 * 1024;

/// Runs of `T` owned by nodes, and how many entries are dead.
#[derive(Debug, Default)]
pub(super) struct Arena<T> {
    items: Vec<T>,
    dead: usize,
}

impl<T: Clone> Clone for Arena<T> {
    fn clone(&self) -> Self {
        Arena {
            items: self.items.clone(),
            dead: self.dead,
        }
    }

    /// Reuses the room this arena has (see [`Arena::touched`]).
    fn clone_from(&mut self, source: &Self) {
        self.items.clone_from(&source.items);
        self.dead = source.dead;
    }
}

/// Where a node's run lies in an arena, and how the node is told it moved:
/// one for dependency lists, one for long names.
pub(super) struct Runs {
    pub(super) of: fn(&Node) -> Option<(u32, usize)>,
    pub(super) moved: fn(&mut Node, u32),
}

impl<T: Copy> Arena<T> {
    /// An arena of `len` copies of `value`, each written so its pages are
    /// really there (a zeroed `vec!` may get untouched pages from the
    /// kernel), for `clone_from` to fill.
    pub(super) fn touched(len: usize, value: T) -> Arena<T> {
        let mut items = Vec::with_capacity(len);
        items.resize(len, value);
        Arena { items, dead: 0 }
    }

    /// Entries, live and dead.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Dead entries.
    pub(super) fn dead(&self) -> usize {
        self.dead
    }

    /// Appends `run`; its start, or `None` when the arena would outgrow
    /// the 32-bit offsets nodes keep.
    pub(super) fn push(&mut self, run: &[T]) -> Option<u32> {
        let start = u32::try_from(self.items.len()).ok()?;
        u32::try_from(self.items.len() + run.len()).ok()?;
        self.items.extend_from_slice(run);
        Some(start)
    }

    pub(super) fn run(&self, start: u32, len: usize) -> &[T] {
        let start = start as usize;
        &self.items[start..start + len]
    }

    pub(super) fn run_mut(&mut self, start: u32, len: usize) -> &mut [T] {
        let start = start as usize;
        &mut self.items[start..start + len]
    }

    /// The entry at `at`, for prefetching.
    pub(super) fn get(&self, at: u32) -> Option<&T> {
        self.items.get(at as usize)
    }

    /// Counts `len` entries of a run no node owns any more.
    pub(super) fn discard(&mut self, len: usize) {
        self.dead += len;
    }

    /// Once dead entries outweigh live ones, copies each live node's run
    /// into a packed arena and tells the node where it went.
    pub(super) fn compact_if_worthwhile(&mut self, nodes: &mut [Node], runs: &Runs) {
        let enough = MIN_GARBAGE_TO_COMPACT.max(nodes.len());
        if self.dead <= enough || self.dead * 2 <= self.items.len() {
            return;
        }
        let mut packed = Vec::with_capacity(self.items.len() - self.dead);
        for node in nodes.iter_mut() {
            let Some((start, len)) = (runs.of)(node) else {
                continue;
            };
            // Packing only moves runs down: every new start is below the
            // old one, which fit in a u32.
            let moved = u32::try_from(packed.len()).unwrap_or(start);
            packed.extend_from_slice(self.run(start, len));
            (runs.moved)(node, moved);
        }
        self.items = packed;
        self.dead = 0;
    }
}
