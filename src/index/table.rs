//! The name table: a name's hash to the ids that may bear it, one 64-byte
//! bucket per lookup. The hash's low bits pick the home bucket, its top
//! byte the tag; a lookup compares only ids whose tag matches, and goes on
//! to the next bucket only while some entry passed this one when it was
//! full. Deleting counts those passes down: no tombstones, no moves. Slots
//! keep no hashes (five bytes each), so growing rehashes every name.

use crate::sys;

/// Slots per bucket: 12 tags, 4 bytes of count and 12 ids fill 64 bytes.
const SLOTS: usize = 12;
/// The smallest table, in buckets; always a power of two.
const MIN_BUCKETS: usize = 2;
/// The tag of a free slot; a name's tag is never 0.
const FREE: u8 = 0;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u8; SLOTS],
    /// Entries placed past this bucket, it being full, whose home is here
    /// or before: a lookup goes on past a bucket only while this is nonzero.
    passed: u32,
    ids: [u32; SLOTS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [FREE; SLOTS],
    passed: 0,
    ids: [0; SLOTS],
};

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

impl Bucket {
    /// Slots whose tag is `tag`, found without a loop: the twelve tags
    /// (and the count after them) read as one number, a byte equal to
    /// `tag` detected by the carry-free zero-byte test on their difference.
    fn matching(&self, tag: u8) -> impl Iterator<Item = usize> {
        const LOW_SEVEN: u128 = u128::from_le_bytes([0x7F; 16]);
        const TAG_BYTES: u128 = (1 << (SLOTS * 8)) - 1;
        let mut bytes = [0; 16];
        bytes[..SLOTS].copy_from_slice(&self.tags);
        let differ = u128::from_le_bytes(bytes) ^ (u128::from_le_bytes([1; 16]) * u128::from(tag));
        // A byte's high bit ends set unless the byte is zero.
        let nonzero = ((differ & LOW_SEVEN) + LOW_SEVEN) | differ;
        // One high bit per matching byte, taken lowest first.
        let mut found = !(nonzero | LOW_SEVEN) & TAG_BYTES;
        std::iter::from_fn(move || {
            let slot = (found != 0).then(|| found.trailing_zeros() as usize / 8);
            found &= found.wrapping_sub(1);
            slot
        })
    }
}

/// Open addressing over buckets, probing linearly bucket by bucket.
#[derive(Debug)]
pub(super) struct NameTable {
    buckets: Vec<Bucket>,
    len: usize,
}

/// A name's tag: its hash's top byte, never [`FREE`].
#[allow(clippy::cast_possible_truncation)] // the top byte, on purpose
fn tag(hash: u64) -> u8 {
    ((hash >> 56) as u8).max(1)
}

impl Default for NameTable {
    fn default() -> Self {
        NameTable::with_room_for(0)
    }
}

impl NameTable {
    /// An empty table that holds `entries` entries without growing.
    pub(super) fn with_room_for(entries: usize) -> NameTable {
        let needed = entries.saturating_mul(8).div_ceil(SLOTS * 7);
        NameTable::touched(needed.max(MIN_BUCKETS).next_power_of_two())
    }

    /// Makes this table a copy of `source`, reusing the room it has.
    pub(super) fn copy_from(&mut self, source: &Self) {
        self.buckets.clone_from(&source.buckets);
        self.len = source.len;
    }

    /// Buckets, for sizing a copy.
    pub(super) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// An empty table of `buckets` buckets, each written so its pages are there.
    pub(super) fn touched(buckets: usize) -> NameTable {
        let buckets = vec![EMPTY_BUCKET; buckets];
        NameTable { buckets, len: 0 }
    }

    /// Entries held before growing: seven eighths of the slots keeps probe runs short.
    pub(super) fn room(&self) -> usize {
        self.buckets.len() * SLOTS / 8 * 7
    }

    pub(super) fn is_full(&self) -> bool {
        self.len >= self.room()
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    #[allow(clippy::cast_possible_truncation)] // the low bits, on purpose
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask()
    }

    /// The id of the entry with `hash` for which `bears` holds, if any.
    pub(super) fn find(&self, hash: u64, bears: impl FnMut(u32) -> bool) -> Option<u32> {
        let (at, slot) = self.locate(hash, bears)?;
        Some(self.buckets[at].ids[slot])
    }

    /// The bucket and slot of the entry with `hash` for which `bears` holds.
    fn locate(&self, hash: u64, mut bears: impl FnMut(u32) -> bool) -> Option<(usize, usize)> {
        let tag = tag(hash);
        let mut at = self.home(hash);
        // Churn can leave every bucket passed by some entry: one lap at most.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[at];
            if let Some(slot) = bucket.matching(tag).find(|&slot| bears(bucket.ids[slot])) {
                return Some((at, slot));
            }
            if bucket.passed == 0 {
                return None;
            }
            at = (at + 1) & self.mask();
        }
        None
    }

    /// Starts loading the home bucket of `hash` into the cache.
    pub(super) fn prefetch(&self, hash: u64) {
        sys::prefetch(&self.buckets[self.home(hash)]);
    }

    /// Calls `each` with the ids a lookup of `hash` compares first, and
    /// starts loading the next bucket when a lookup may go on to it.
    pub(super) fn candidates(&self, hash: u64, mut each: impl FnMut(u32)) {
        let at = self.home(hash);
        let bucket = &self.buckets[at];
        for slot in bucket.matching(tag(hash)) {
            each(bucket.ids[slot]);
        }
        if bucket.passed != 0 {
            sys::prefetch(&self.buckets[(at + 1) & self.mask()]);
        }
    }

    /// Adds `id` under `hash`; the caller makes room first, and adds no id twice.
    pub(super) fn insert(&mut self, hash: u64, id: u32) {
        let tag = tag(hash);
        let mask = self.mask();
        let mut at = self.home(hash);
        loop {
            let bucket = &mut self.buckets[at];
            let free = bucket.matching(FREE).next();
            if let Some(slot) = free {
                bucket.tags[slot] = tag;
                bucket.ids[slot] = id;
                self.len += 1;
                return;
            }
            bucket.passed += 1;
            at = (at + 1) & mask;
        }
    }

    /// Deletes the entry of `id` under `hash`; false when there is none.
    pub(super) fn remove(&mut self, hash: u64, id: u32) -> bool {
        let Some((at, slot)) = self.locate(hash, |candidate| candidate == id) else {
            return false;
        };
        self.buckets[at].tags[slot] = FREE;
        self.len -= 1;
        // The entry no longer passes the buckets between its home and slot.
        let mut passed = self.home(hash);
        while passed != at {
            self.buckets[passed].passed -= 1;
            passed = (passed + 1) & self.mask();
        }
        true
    }
}

#[cfg(test)]
impl NameTable {
    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    impl NameTable {
        /// Checks that every entry is where its hash puts it, under its tag,
        /// once, and that the counts of passed entries are right; `hash_of`
        /// gives the hash of an id's name, `None` for an id that bears none.
        fn check(&self, hash_of: impl Fn(u32) -> Option<u64>) -> Result<(), String> {
            let mut passed = vec![0u32; self.buckets.len()];
            let mut held = std::collections::HashSet::new();
            for (at, bucket) in self.buckets.iter().enumerate() {
                for slot in (0..SLOTS).filter(|&slot| bucket.tags[slot] != FREE) {
                    let id = bucket.ids[slot];
                    if !held.insert(id) {
                        return Err(format!("the name table holds {id} twice"));
                    }
                    let Some(hash) = hash_of(id) else {
                        return Err(format!("the name table holds {id}, which is not indexed"));
                    };
                    if bucket.tags[slot] != tag(hash) {
                        return Err(format!("the name table holds {id} under another tag"));
                    }
                    let mut before = self.home(hash);
                    while before != at {
                        passed[before] += 1;
                        before = (before + 1) & self.mask();
                    }
                }
            }
            if held.len() != self.len {
                return Err(format!(
                    "the name table counts {} entries and holds {}",
                    self.len,
                    held.len()
                ));
            }
            let counted = self.buckets.iter().map(|bucket| bucket.passed);
            if !counted.eq(passed.iter().copied()) {
                return Err("the name table's counts of passed entries are wrong".to_string());
            }
            Ok(())
        }
    }

    /// A hash whose home is bucket `home` (of any table this small) and
    /// whose tag is `tag`.
    fn hash(home: u64, tag: u8) -> u64 {
        (u64::from(tag) << 56) | home
    }

    /// The table's answer for `hash`, comparing ids by `names`.
    fn lookup(table: &NameTable, names: &HashMap<u32, u64>, hash: u64) -> Option<u32> {
        table.find(hash, |id| names[&id] == hash)
    }

    #[test]
    fn a_full_bucket_passes_entries_on_and_deleting_counts_them_back() {
        let mut table = NameTable::with_room_for(40);
        assert_eq!(table.buckets(), 4);
        let mut names = HashMap::new();
        // Twenty entries with home 1: twelve fill it, eight go on to 2.
        for id in 0..20 {
            let hash = hash(1, 1 + u8::try_from(id).unwrap());
            table.insert(hash, id);
            names.insert(id, hash);
        }
        table.check(|id| names.get(&id).copied()).unwrap();
        assert_eq!(table.buckets[1].passed, 8);
        for (&id, &hash) in &names {
            assert_eq!(lookup(&table, &names, hash), Some(id));
        }
        // A name with home 1 that is absent reads bucket 2 too; one with
        // home 3 stops at once.
        assert_eq!(lookup(&table, &names, hash(1, 200)), None);
        assert_eq!(lookup(&table, &names, hash(3, 5)), None);
        // Deleting one of the first twelve frees a slot but the entries
        // placed past it stay reachable.
        assert!(table.remove(names[&3], 3));
        names.remove(&3);
        table.check(|id| names.get(&id).copied()).unwrap();
        assert_eq!(table.buckets[1].passed, 8);
        // Deleting one that went on to bucket 2 counts it back.
        assert!(table.remove(names[&15], 15));
        names.remove(&15);
        table.check(|id| names.get(&id).copied()).unwrap();
        assert_eq!(table.buckets[1].passed, 7);
        assert!(!table.remove(hash(1, 16), 15));
        for (&id, &hash) in &names {
            assert_eq!(lookup(&table, &names, hash), Some(id));
        }
    }

    #[test]
    fn the_last_bucket_passes_entries_to_the_first() {
        let mut table = NameTable::with_room_for(40);
        let mut names = HashMap::new();
        for id in 0..14 {
            let hash = hash(3, 9);
            table.insert(hash, id);
            names.insert(id, hash);
        }
        assert_eq!(table.buckets[3].passed, 2);
        assert_eq!(table.buckets[0].tags.iter().filter(|&&t| t == 9).count(), 2);
        table.check(|id| names.get(&id).copied()).unwrap();
        for id in 0..14 {
            // Every one bears the same tag: the test tells them apart.
            assert_eq!(
                table.find(hash(3, 9), |candidate| candidate == id),
                Some(id)
            );
        }
        for id in 0..14 {
            assert!(table.remove(hash(3, 9), id));
            names.remove(&id);
            table.check(|id| names.get(&id).copied()).unwrap();
        }
        assert_eq!(table.len(), 0);
        assert!(table.buckets.iter().all(|bucket| bucket.passed == 0));
    }

    #[test]
    fn a_lookup_ends_when_every_bucket_is_passed() {
        let mut table = NameTable::with_room_for(40);
        let mut names = HashMap::new();
        // Each home fills its bucket and passes one entry on to the next;
        // deleting its first entry then frees a slot, and the pass stays.
        let mut id = 0u32;
        for home in 0..4u64 {
            let first = id;
            for tag in 0..if home == 0 { 13 } else { 12 } {
                table.insert(hash(home, 1 + tag), id);
                names.insert(id, hash(home, 1 + tag));
                id += 1;
            }
            assert!(table.remove(names[&first], first));
            names.remove(&first);
        }
        assert!(table.buckets.iter().all(|bucket| bucket.passed > 0));
        table.check(|id| names.get(&id).copied()).unwrap();
        assert_eq!(lookup(&table, &names, hash(2, 200)), None);
        assert!(!table.remove(hash(2, 200), 99));
    }

    #[test]
    fn matching_finds_exactly_the_slots_with_the_tag() {
        let mut bucket = EMPTY_BUCKET;
        bucket.passed = u32::MAX;
        let mut seed = 1u64;
        for round in 0..2_000 {
            for tag in &mut bucket.tags {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Few values, so that equal tags are common.
                *tag = [0, 1, 0x7F, 0x80, 0xFF, seed.to_le_bytes()[7]]
                    [usize::from(seed.to_le_bytes()[4]) % 6];
            }
            for tag in [
                0,
                1,
                0x7F,
                0x80,
                0xFE,
                0xFF,
                u8::try_from(round % 256).unwrap(),
            ] {
                let expected: Vec<usize> = (0..SLOTS).filter(|&s| bucket.tags[s] == tag).collect();
                assert_eq!(bucket.matching(tag).collect::<Vec<_>>(), expected, "{tag}");
            }
        }
    }

    #[test]
    fn equal_tags_are_told_apart_by_the_test() {
        let mut table = NameTable::with_room_for(10);
        // Same home, same tag: only the test can tell them apart.
        table.insert(hash(0, 7), 1);
        table.insert(hash(0, 7), 2);
        assert_eq!(table.find(hash(0, 7), |id| id == 2), Some(2));
        assert_eq!(table.find(hash(0, 7), |id| id == 1), Some(1));
        assert_eq!(table.find(hash(0, 7), |_| false), None);
        let mut seen = Vec::new();
        table.candidates(hash(0, 7), |id| seen.push(id));
        assert_eq!(seen, [1, 2]);
        seen.clear();
        table.candidates(hash(0, 8), |id| seen.push(id));
        assert!(seen.is_empty());
    }

    #[test]
    fn room_is_seven_eighths_of_the_slots() {
        assert_eq!(NameTable::default().buckets(), MIN_BUCKETS);
        let table = NameTable::with_room_for(1_000_000);
        assert_eq!(table.buckets(), 1 << 17);
        assert!(table.room() >= 1_000_000);
        assert!(NameTable::with_room_for(table.room()).buckets() == table.buckets());
        assert!(NameTable::with_room_for(table.room() + 1).buckets() > table.buckets());
        let mut small = NameTable::with_room_for(0);
        for id in 0..u32::try_from(small.room()).unwrap() {
            assert!(!small.is_full());
            small.insert(u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15), id);
        }
        assert!(small.is_full());
    }
}
