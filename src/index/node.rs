//! A package's 24-byte node. A name of up to 11 bytes lives inline, so a
//! lookup compares it without a third cache miss; a longer one lives in the
//! names arena. A free id's node has a name length of 0.

use super::arena::Arena;
use crate::name::PackageName;
use crate::sys;

pub(super) const INLINE_NAME: usize = 11;

/// A name of up to [`INLINE_NAME`] bytes as a node holds it, length and
/// zero-padded bytes: compared whole, inline, without a call to `memcmp`.
#[allow(clippy::cast_possible_truncation)] // at most 11
pub(super) fn inline(bytes: &[u8]) -> Option<(u8, [u8; INLINE_NAME])> {
    let mut name = [0; INLINE_NAME];
    name.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some((bytes.len() as u8, name))
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Node {
    /// Where the package's run lies in the edges arena: its dependencies,
    /// sorted, then the packages that depend on it, in no order.
    pub(super) edges: u32,
    pub(super) dependencies: u32,
    pub(super) dependents: u32,
    name_len: u8,
    /// The name when it fits, zero-padded ([`inline`]); otherwise its start
    /// in the names arena (little-endian).
    name: [u8; INLINE_NAME],
}

const _: () = assert!(std::mem::size_of::<Node>() == 24);

impl Node {
    /// A node named `name` with no edges yet, keeping the name in `names`
    /// when it is too long for the node (the caller checked its room).
    pub(super) fn named(name: PackageName<'_>, names: &mut Arena<u8>) -> Node {
        let bytes = name.as_bytes();
        let (name_len, name) = inline(bytes).unwrap_or_else(|| {
            let mut start = [0; INLINE_NAME];
            start[..4].copy_from_slice(&names.push(bytes).to_le_bytes());
            // 12 to 255 bytes.
            (u8::try_from(bytes.len()).unwrap_or(u8::MAX), start)
        });
        Node {
            name_len,
            name,
            ..Node::default()
        }
    }

    /// True when the node holds `inline`, a short name as [`inline`] gives it.
    pub(super) fn is_named(&self, inline: (u8, [u8; INLINE_NAME])) -> bool {
        (self.name_len, self.name) == inline
    }

    /// Items of its run: dependencies and dependents.
    pub(super) fn edge_count(&self) -> usize {
        self.dependencies as usize + self.dependents as usize
    }

    pub(super) fn is_live(&self) -> bool {
        self.name_len != 0
    }

    /// Where the name lies in the names arena, when it is too long for the node.
    pub(super) fn name_run(&self) -> Option<(u32, usize)> {
        let len = usize::from(self.name_len);
        let [a, b, c, d, ..] = self.name;
        (len > INLINE_NAME).then_some((u32::from_le_bytes([a, b, c, d]), len))
    }

    pub(super) fn name<'a>(&'a self, names: &'a Arena<u8>) -> &'a [u8] {
        match self.name_run() {
            Some((start, len)) => names.run(start, len),
            None => &self.name[..usize::from(self.name_len)],
        }
    }

    /// Starts loading the node into the cache: both lines, when it
    /// straddles two (a quarter of the nodes do).
    pub(super) fn prefetch(&self) {
        sys::prefetch(self);
        sys::prefetch(&self.name[INLINE_NAME - 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> PackageName<'_> {
        PackageName::new(text.as_bytes()).unwrap()
    }

    #[test]
    fn short_names_stay_in_the_node_long_ones_go_to_the_arena() {
        let mut names = Arena::default();
        for len in [1, 10, 11, 12, 100, 254, 255] {
            let text: String = (0..len)
                .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
                .collect();
            let node = Node::named(name(&text), &mut names);
            assert!(node.is_live());
            assert_eq!(node.name(&names), text.as_bytes());
            assert_eq!(node.name_run().is_some(), len > INLINE_NAME);
        }
        // Only the long names took arena bytes (rounded up to their rooms).
        assert_eq!(names.len(), 12 + 128 + 256 + 256);
        assert!(!Node::default().is_live());
    }

    #[test]
    fn a_short_name_matches_only_the_node_holding_it() {
        let mut names = Arena::default();
        let texts = ["a", "ab", "abcdefghij", "abcdefghijk", "abcdefghijkl"];
        let nodes: Vec<Node> = texts
            .iter()
            .map(|t| Node::named(name(t), &mut names))
            .collect();
        for (i, text) in texts.iter().enumerate() {
            let key = inline(text.as_bytes());
            assert_eq!(key.is_some(), text.len() <= INLINE_NAME);
            for (j, node) in nodes.iter().enumerate() {
                assert_eq!(
                    key.is_some_and(|key| node.is_named(key)),
                    i == j && key.is_some()
                );
            }
            assert!(key.is_none_or(|key| !Node::default().is_named(key)));
        }
    }
}
