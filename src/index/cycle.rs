//! The cycle search: before a re-index adds dependencies a package did not
//! have, whether the package can be reached from any of them.
//!
//! The packages a search reached are marked in a bitset over ids (an
//! eighth of a byte per package, allocated by the first search) and
//! listed, so that the search ends by clearing just the bits it set: the
//! next one starts clean without touching the whole set, and the nodes
//! carry no marks of their own.

use super::Indexer;

/// The packages one cycle search has reached.
#[derive(Clone, Debug, Default)]
pub(super) struct Marks {
    bits: Vec<u64>,
    set: Vec<u32>,
}

impl Marks {
    /// Marks `id`; false when it already was.
    fn mark(&mut self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        self.set.push(id);
        true
    }

    /// Unmarks everything.
    fn clear(&mut self) {
        for id in self.set.drain(..) {
            self.bits[id as usize / 64] = 0;
        }
    }

    /// True when nothing is marked, as between searches.
    pub(super) fn is_clear(&self) -> bool {
        self.set.is_empty() && self.bits.iter().all(|&word| word == 0)
    }
}

impl Indexer {
    /// True when `target` is reachable along dependency edges from any id
    /// on `stack` (which is used up as the search's work list).
    pub(super) fn reaches(&mut self, stack: &mut Vec<u32>, target: u32) -> bool {
        let mut marks = std::mem::take(&mut self.marks);
        let mut found = false;
        while let Some(id) = stack.pop() {
            if id == target {
                found = true;
                break;
            }
            if marks.mark(id) {
                stack.extend_from_slice(self.deps(id));
            }
        }
        marks.clear();
        self.marks = marks;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_cleared_after_each_use() {
        let mut marks = Marks::default();
        assert!(marks.is_clear());
        for id in [0, 63, 64, 1_000, 5] {
            assert!(marks.mark(id));
            assert!(!marks.mark(id));
        }
        assert!(!marks.is_clear());
        marks.clear();
        assert!(marks.is_clear());
        assert!(marks.mark(1_000));
    }
}
