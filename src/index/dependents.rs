//! Who depends on a package: found by scanning every package's dependency
//! list, since the index keeps only each package's dependent *count*
//! (which is all `REMOVE` needs), in chunks that need not share one hold
//! of the lock: a ring of recent edge changes (which package gained or
//! lost a dependency on which) tells which dependents changed meanwhile,
//! to be looked at again at the end.

use super::Indexer;
use crate::name::PackageName;

/// Edge changes remembered for scans that release the lock between chunks
/// (512 KiB). A scan over which more edges changed than this cannot tell
/// which of its package's dependents did, and is started again.
pub(super) const RECENT_EDGE_CHANGES: usize = 1 << 16;

/// The last [`RECENT_EDGE_CHANGES`] edges added or removed.
#[derive(Debug)]
pub(super) struct EdgeChanges {
    /// A ring indexed by `count`.
    ring: Box<[EdgeChange]>,
    /// Edges added or removed since the index was made.
    count: u64,
}

impl Default for EdgeChanges {
    fn default() -> Self {
        EdgeChanges {
            ring: vec![EdgeChange::default(); RECENT_EDGE_CHANGES].into_boxed_slice(),
            count: 0,
        }
    }
}

impl Clone for EdgeChanges {
    fn clone(&self) -> Self {
        EdgeChanges {
            ring: self.ring.clone(),
            count: self.count,
        }
    }

    /// Reuses the ring this one has.
    fn clone_from(&mut self, source: &Self) {
        self.ring.clone_from_slice(&source.ring);
        self.count = source.count;
    }
}

impl EdgeChanges {
    /// Remembers that `source` gained or lost a dependency on `target`.
    pub(super) fn note(&mut self, target: u32, source: u32) {
        self.ring[ring_slot(self.count)] = EdgeChange { target, source };
        self.count += 1;
    }

    /// The changes since there had been `count`, oldest first; `None` when
    /// more happened than the ring remembers.
    fn since(&self, count: u64) -> Option<impl Iterator<Item = EdgeChange> + '_> {
        if self.count - count > RECENT_EDGE_CHANGES as u64 {
            return None;
        }
        Some((count..self.count).map(|change| self.ring[ring_slot(change)]))
    }
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
    /// How many edges had changed when the scan started.
    edge_changes: u64,
    /// The package's dependent count when the scan started: what the scan
    /// expects to find.
    dependents: u32,
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

    /// Makes room for every dependent `scan` still expects to find, with
    /// the memory written once so that it is really there: call it with
    /// the lock released, before each chunk. Buffers growing (and the
    /// kernel faulting their new pages in) while a chunk held the lock
    /// stalled writers for up to 2 ms. Does nothing once there is room.
    pub(crate) fn make_room(&mut self, scan: &DependentsScan) {
        /// Bytes per name assumed before any is found.
        const FIRST_GUESS: usize = 16;
        let expected = (scan.dependents as usize).saturating_sub(self.ids.len());
        let name_bytes = match self.ids.len() {
            0 => FIRST_GUESS,
            found => self.text.len().div_ceil(found),
        };
        make_room(&mut self.ids, expected, 0);
        make_room(&mut self.ends, expected, 0);
        let text_room = expected * name_bytes;
        if self.text.capacity() - self.text.len() < text_room {
            let len = self.text.len();
            self.text.extend(std::iter::repeat_n('\0', text_room));
            self.text.truncate(len);
        }
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

/// Grows `items` to hold `more` items beyond its length unless it can
/// already, writing the new room once with `fill` so that its pages are
/// really there.
fn make_room<T: Copy>(items: &mut Vec<T>, more: usize, fill: T) {
    if items.capacity() - items.len() < more {
        let len = items.len();
        items.resize(len + more, fill);
        items.truncate(len);
    }
}

impl Indexer {
    /// Starts a scan for the packages that depend on `package`; `None`
    /// when it is not indexed.
    pub(crate) fn start_dependents_scan(&self, package: PackageName<'_>) -> Option<DependentsScan> {
        let target = self.find(self.hashed(package))?;
        Some(DependentsScan {
            target,
            edge_changes: self.edge_changes.count,
            dependents: self.nodes[target as usize].dependents,
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
        if self.find(self.hashed(package)) != Some(scan.target) {
            return None;
        }
        let mut changed = Changed::default();
        for EdgeChange { target, source } in self.edge_changes.since(scan.edge_changes)? {
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
}

/// Where edge change number `change` is kept in the ring.
#[allow(clippy::cast_possible_truncation)] // the low bits, on purpose
fn ring_slot(change: u64) -> usize {
    change as usize % RECENT_EDGE_CHANGES
}
