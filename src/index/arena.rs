//! Arenas: one array of runs (a package's edges, or a long name), each
//! named by its start and length. A run's room is its length rounded up to
//! a size class (a power of two or three quarters of one), so a growing run
//! moves only when it outgrows its class. Runs given up go on their class's
//! free list: nothing is compacted, so no change walks the nodes.

pub(super) fn room(len: usize) -> usize {
    if len <= 2 {
        return len;
    }
    let power = len.next_power_of_two();
    if len <= power / 4 * 3 {
        power / 4 * 3
    } else {
        power
    }
}

/// The free list of runs of room `room` (a size class).
fn class(room: usize) -> usize {
    if room <= 2 {
        return room;
    }
    let power = room.next_power_of_two();
    2 * power.trailing_zeros() as usize - usize::from(room != power)
}

/// Runs of `T`, and the starts of free ones by class.
#[derive(Debug, Default)]
pub(super) struct Arena<T> {
    items: Vec<T>,
    free: Vec<Vec<u32>>,
}

impl<T: Copy + Default> Arena<T> {
    /// An arena of `len` items, each written so its pages are really there
    /// (a zeroed `vec!` may get untouched pages from the kernel).
    pub(super) fn touched(len: usize) -> Arena<T> {
        let mut items = Vec::with_capacity(len);
        items.resize(len, T::default());
        Arena {
            items,
            ..Arena::default()
        }
    }

    /// Makes this arena a copy of `source`, reusing the room it has.
    pub(super) fn copy_from(&mut self, source: &Self) {
        self.items.clone_from(&source.items);
        self.free.clone_from(&source.free);
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// True when `items` more can be taken, whatever the free lists hold,
    /// without outgrowing the 32-bit starts nodes keep.
    pub(super) fn has_room_for(&self, items: usize) -> bool {
        self.items.len().saturating_add(items) <= u32::MAX as usize
    }

    /// The start of a run with room for `len` items, holding whatever it
    /// held. Callers check [`Arena::has_room_for`] first.
    fn take(&mut self, len: usize) -> u32 {
        let room = room(len);
        if let Some(start) = self.free.get_mut(class(room)).and_then(Vec::pop) {
            return start;
        }
        let start = self.items.len();
        self.items.resize(start + room, T::default());
        u32::try_from(start).unwrap_or(u32::MAX)
    }

    /// A new run holding `items`; its start.
    pub(super) fn push(&mut self, items: &[T]) -> u32 {
        let start = self.take(items.len());
        self.run_mut(start, items.len()).copy_from_slice(items);
        start
    }

    pub(super) fn give_up(&mut self, start: u32, room: usize) {
        if room == 0 {
            return;
        }
        let class = class(room);
        if self.free.len() <= class {
            self.free.resize_with(class + 1, Vec::new);
        }
        self.free[class].push(start);
    }

    /// Makes the run of `len` items at `start` hold `new_len`, keeping its
    /// first items; its start, which moves when it outgrows its room.
    /// Shrinking gives up the room no longer needed in place, in pieces
    /// that are powers of two.
    pub(super) fn resize(&mut self, start: u32, len: usize, new_len: usize) -> u32 {
        let (old_room, new_room) = (room(len), room(new_len));
        if new_room <= old_room {
            let mut at = start as usize + new_room;
            let end = start as usize + old_room;
            while at < end {
                let piece = 1 << (end - at).ilog2();
                // Below the run's own end, which fit in a u32.
                self.give_up(u32::try_from(at).unwrap_or(u32::MAX), piece);
                at += piece;
            }
            return start;
        }
        let moved = self.take(new_len);
        let kept = len.min(new_len);
        let from = start as usize;
        self.items.copy_within(from..from + kept, moved as usize);
        self.give_up(start, old_room);
        moved
    }

    pub(super) fn run(&self, start: u32, len: usize) -> &[T] {
        &self.items[start as usize..start as usize + len]
    }

    pub(super) fn run_mut(&mut self, start: u32, len: usize) -> &mut [T] {
        &mut self.items[start as usize..start as usize + len]
    }

    /// The item at `at`, for prefetching.
    pub(super) fn get(&self, at: u32) -> Option<&T> {
        self.items.get(at as usize)
    }
}

#[cfg(test)]
impl<T> Arena<T> {
    /// Items in free runs.
    pub(super) fn free(&self) -> usize {
        // The room of each class, the inverse of `class`.
        let room_of = |class: usize| match class {
            0..=2 => class,
            _ if class.is_multiple_of(2) => 1 << (class / 2),
            _ => 3 << ((class - 3) / 2),
        };
        let runs = self.free.iter().enumerate();
        runs.map(|(class, starts)| starts.len() * room_of(class))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_powers_of_two_or_three_quarters_of_one() {
        let rooms: Vec<usize> = (0..=17).map(room).collect();
        assert_eq!(
            rooms,
            [0, 1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]
        );
        for len in 1..5_000 {
            let room = room(len);
            assert!(room >= len && (room - len) * 3 <= room, "{len}");
        }
        let classes: Vec<usize> = [1, 2, 3, 4, 6, 8, 12, 16].map(class).to_vec();
        assert_eq!(classes, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn runs_given_up_are_taken_again_and_shrinking_frees_the_tail() {
        let mut arena: Arena<u32> = Arena::default();
        let a = arena.push(&[1, 2, 3, 4, 5]);
        assert_eq!(arena.len(), 6);
        let b = arena.push(&[9]);
        // Growing past its room moves a run; its old room is free.
        let a = arena.resize(a, 5, 7);
        assert_eq!(arena.run(a, 5), [1, 2, 3, 4, 5]);
        assert_eq!((arena.len(), arena.free()), (15, 6));
        // A run of that class takes the freed room.
        let c = arena.push(&[7; 6]);
        assert_eq!((c, arena.free()), (0, 0));
        // Shrinking from 8 to 3 gives up 4 and 1 in place.
        assert_eq!(arena.resize(a, 7, 3), a);
        assert_eq!(arena.free(), 5);
        assert_eq!(arena.push(&[8; 4]), a + 3);
        assert_eq!(arena.push(&[6]), a + 7);
        arena.give_up(b, 1);
        assert_eq!(arena.run(b, 1), [9]);
        assert_eq!(arena.free(), 1);
        assert_eq!(arena.len(), 15);
    }
}
