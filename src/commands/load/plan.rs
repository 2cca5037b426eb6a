//! A package list read into numbers, and the order to index it in: the
//! names get ids ([`Interner`]), Kahn's algorithm orders the packages, and
//! Tarjan's finds the cycles among those it could not order.

use crate::package_list::{parse_line_into, ListError};
use crate::sys::prefetch;

/// Problems of each kind named one by one; the rest are counted.
pub(super) const MAX_REPORTED: usize = 20;

/// An id that is none.
const NONE: u32 = u32::MAX;

/// `n` as an id or text offset: [`List::read`] takes at most 4 GiB of text,
/// and every count and offset here is below its length.
#[allow(clippy::cast_possible_truncation)]
fn to_u32(n: usize) -> u32 {
    n as u32
}

/// A name's hash: its 8-byte words, each folded in by a 128-bit
/// multiplication whose halves are xored, so that every input bit reaches
/// every output bit. The names come from a file the operator chose:
/// defending against crafted collisions would buy nothing.
#[allow(clippy::cast_possible_truncation)] // folding the halves is the point
fn hash(name: &[u8]) -> u64 {
    let mut state = name.len() as u64;
    for chunk in name.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let product = u128::from(state ^ u64::from_le_bytes(word)) * 0x9E37_79B9_7F4A_7C15;
        state = (product as u64) ^ ((product >> 64) as u64);
    }
    state
}

/// The top half of a hash, kept in a [`Slot`] (the bottom picks the slot).
#[allow(clippy::cast_possible_truncation)]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// One name in the [`Interner`]'s table: its tag, its id and where it is in
/// the text, so that a probe reads nothing else.
#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    id: u32,
    at: u32,
    len: u32,
}

const EMPTY: Slot = Slot {
    tag: 0,
    id: NONE,
    at: 0,
    len: 0,
};

/// How many names ahead of its lookup a name's slot is fetched.
const AHEAD: usize = 16;

/// Gives every distinct name an id, in the order first seen: open
/// addressing with linear probing, the table at most half full. With a
/// million names nearly every probe misses the cache, so each lookup runs
/// [`AHEAD`] names behind a fetch of its slot, and half as far behind one
/// of the text that slot names: the misses overlap instead of queueing
/// (three times faster than std's `HashMap` on the bench's list).
struct Interner<'a> {
    text: &'a [u8],
    slots: Vec<Slot>,
    /// By id: the name.
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    /// The id of each of `names`, every one a slice of the text.
    fn ids(&mut self, names: &[&'a str]) -> Vec<u32> {
        let hashes: Vec<u64> = names.iter().map(|name| hash(name.as_bytes())).collect();
        let mut ids = Vec::with_capacity(names.len());
        for (i, (&name, &hash)) in names.iter().zip(&hashes).enumerate() {
            if self.names.len() * 2 >= self.slots.len() {
                self.grow();
            }
            let mask = self.slots.len() - 1;
            if let Some(&ahead) = hashes.get(i + AHEAD) {
                prefetch(&self.slots[ahead as usize & mask]);
            }
            if let Some(&ahead) = hashes.get(i + AHEAD / 2) {
                let slot = self.slots[ahead as usize & mask];
                if slot.tag == tag(ahead) && slot.id != NONE {
                    prefetch(&self.text[slot.at as usize]);
                }
            }
            let mut at = hash as usize & mask;
            while self.slots[at].id != NONE {
                let slot = self.slots[at];
                if slot.tag == tag(hash)
                    && &self.text[slot.at as usize..][..slot.len as usize] == name.as_bytes()
                {
                    break;
                }
                at = (at + 1) & mask;
            }
            if self.slots[at].id == NONE {
                self.slots[at] = Slot {
                    tag: tag(hash),
                    id: to_u32(self.names.len()),
                    at: to_u32(name.as_ptr().addr() - self.text.as_ptr().addr()),
                    len: to_u32(name.len()),
                };
                self.names.push(name);
            }
            ids.push(self.slots[at].id);
        }
        ids
    }

    /// Doubles the table.
    fn grow(&mut self) {
        let mut slots = vec![EMPTY; (self.slots.len() * 2).max(1024)];
        let mask = slots.len() - 1;
        for slot in self.slots.iter().filter(|slot| slot.id != NONE) {
            let mut at = hash(&self.text[slot.at as usize..][..slot.len as usize]) as usize & mask;
            while slots[at].id != NONE {
                at = (at + 1) & mask;
            }
            slots[at] = *slot;
        }
        self.slots = slots;
    }
}

/// A list that parsed: each package once, every name numbered (its id).
#[derive(Debug)]
pub(super) struct List<'a> {
    /// By id: the name. The packages come first, in the list's order; then
    /// the dependencies without a line of their own, in the order named.
    names: Vec<&'a str>,
    /// By package: where its dependencies start in `dependencies`; one
    /// more entry ends the last package's.
    starts: Vec<usize>,
    /// The ids of each package's dependencies, package after package.
    dependencies: Vec<u32>,
}

impl<'a> List<'a> {
    /// Reads a whole list, a line at a time through [`parse_line_into`]. A
    /// line that is not UTF-8 or does not parse, and a package listed a
    /// second time, are errors naming their lines, in the list's order.
    pub(super) fn read(text: &'a [u8]) -> Result<List<'a>, Vec<ListError>> {
        if u32::try_from(text.len()).is_err() {
            let reason = "a list may be at most 4 GiB".into();
            return Err(vec![ListError { line: 0, reason }]);
        }
        let (mut errors, mut packages, mut lines, mut starts) = (vec![], vec![], vec![], vec![]);
        // Every dependency as written, package after package.
        let (mut named, mut dependencies): (Vec<&str>, _) = (vec![], vec![]);
        for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
            let parsed = std::str::from_utf8(line)
                .map_err(|_| ListError {
                    line: index + 1,
                    reason: "not valid UTF-8".into(),
                })
                .and_then(|line| parse_line_into(index + 1, line, &mut dependencies));
            match parsed {
                Ok(Some(name)) => {
                    packages.push(name.as_str());
                    lines.push(index + 1);
                    starts.push(named.len());
                    named.extend(dependencies.iter().map(|name| name.as_str()));
                }
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        starts.push(named.len());
        let mut interner = Interner {
            text,
            slots: vec![EMPTY; (packages.len() * 2 + 2).next_power_of_two()],
            names: Vec::with_capacity(packages.len()),
        };
        // Named first, the packages get the ids 0, 1, ... in the list's
        // order, but for a name listed again, which gets its first line's.
        let mut first_lines = Vec::with_capacity(packages.len());
        for (package, id) in interner.ids(&packages).into_iter().enumerate() {
            let (line, name) = (lines[package], packages[package]);
            match first_lines.get(id as usize) {
                None => first_lines.push(line),
                Some(first) => errors.push(ListError {
                    line,
                    reason: format!(
                        "package {name} is listed twice, on line {first} and on line {line}"
                    ),
                }),
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|error| error.line);
            return Err(errors);
        }
        let dependencies = interner.ids(&named);
        Ok(List {
            names: interner.names,
            starts,
            dependencies,
        })
    }

    /// How many packages the list holds.
    pub(super) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The name with id `id`.
    pub(super) fn name(&self, id: u32) -> &'a str {
        self.names[id as usize]
    }

    /// The ids of `id`'s dependencies (none for a name without a line).
    fn dependencies(&self, id: u32) -> &[u32] {
        let id = id as usize;
        match self.starts.get(id..=id + 1) {
            Some(&[start, end]) => &self.dependencies[start..end],
            _ => &[],
        }
    }

    /// The ids of the dependencies without a line of their own.
    pub(super) fn unlisted(&self) -> std::ops::Range<u32> {
        to_u32(self.len())..to_u32(self.names.len())
    }

    /// Appends `INDEX|name|dep,dep\n` for `id`.
    pub(super) fn push_index_line(&self, out: &mut Vec<u8>, id: u32) {
        out.extend_from_slice(b"INDEX|");
        out.extend_from_slice(self.name(id).as_bytes());
        out.push(b'|');
        for (i, &dependency) in self.dependencies(id).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.name(dependency).as_bytes());
        }
        out.push(b'\n');
    }
}

/// What to send, in what order, and what can never be indexed.
#[derive(Debug, Default)]
pub(super) struct Order {
    /// Packages to index, each after its listed dependencies.
    pub(super) send: Vec<u32>,
    /// Each dependency (id) neither listed nor on the server, with the
    /// packages that name it.
    pub(super) missing: Vec<(u32, Vec<u32>)>,
    /// Each group of packages that depend on each other in a circle: one
    /// cycle through them (its first package again at the end), and the
    /// group's other members.
    pub(super) cycles: Vec<(Vec<u32>, Vec<u32>)>,
    /// The other packages that can never be indexed: they depend, directly
    /// or not, on a missing dependency or a cycle.
    pub(super) blocked: Vec<u32>,
}

/// Orders `list` by dependencies and finds what can never be indexed;
/// `missing` are the ids of names without a line that will never be met.
///
/// One depth-first walk from each package in the list's order, Tarjan's
/// algorithm: it closes each strongly connected group only after every
/// group it depends on, so the lone packages come out in an order to send
/// (a list already in dependency order, as `export` writes one, keeps its
/// order), and each larger group is a knot of cycles. A lone package is
/// blocked when a dependency is missing, in a knot, or blocked.
pub(super) fn order(list: &List, missing: &[u32]) -> Order {
    let packages = list.len();
    let mut blocked = vec![false; list.names.len()];
    for &id in missing {
        blocked[id as usize] = true;
    }
    // By package: when the walk reached it, the earliest package it leads
    // back to, and whether it is still in `stack` (its group not closed).
    let (mut reached, mut low, mut open) = (
        vec![NONE; packages],
        vec![0; packages],
        vec![false; packages],
    );
    let (mut stack, mut next, mut order, mut groups) = (vec![], 0, Order::default(), vec![]);
    for root in 0..to_u32(packages) {
        // (package, how many of its dependencies were followed)
        let mut walk = vec![(root, 0)];
        if reached[root as usize] != NONE {
            continue;
        }
        while let Some(&mut (package, ref mut followed)) = walk.last_mut() {
            let p = package as usize;
            if reached[p] == NONE {
                (reached[p], low[p], open[p]) = (next, next, true);
                next += 1;
                stack.push(package);
            }
            if let Some(&d) = list.dependencies(package).get(*followed) {
                *followed += 1;
                match reached.get(d as usize) {
                    Some(&NONE) => walk.push((d, 0)),
                    Some(&at) if open[d as usize] => low[p] = low[p].min(at),
                    _ => {}
                }
                continue;
            }
            walk.pop();
            if let Some(&(caller, _)) = walk.last() {
                low[caller as usize] = low[caller as usize].min(low[p]);
            }
            if low[p] == reached[p] {
                let at = stack.iter().rposition(|&member| member == package);
                let mut group = stack.split_off(at.unwrap_or(0));
                for &member in &group {
                    open[member as usize] = false;
                    blocked[member as usize] = group.len() > 1;
                }
                if group.len() > 1 {
                    group.sort_unstable();
                    groups.push(group);
                } else if list
                    .dependencies(package)
                    .iter()
                    .any(|&d| blocked[d as usize])
                {
                    blocked[p] = true;
                    order.blocked.push(package);
                } else {
                    order.send.push(package);
                }
            }
        }
    }
    let mut needed_by = vec![Vec::new(); list.names.len()];
    for package in (0..to_u32(packages)).filter(|&p| blocked[p as usize]) {
        for &d in list
            .dependencies(package)
            .iter()
            .filter(|&&d| d as usize >= packages)
        {
            needed_by[d as usize].push(package);
        }
    }
    let missing = missing
        .iter()
        .map(|&id| (id, std::mem::take(&mut needed_by[id as usize])));
    order.missing = missing.filter(|(_, by)| !by.is_empty()).collect();
    order.blocked.sort_unstable();
    groups.sort_unstable_by_key(|group| group[0]);
    // In a knot every member has a dependency in it: following those from
    // its first package must come back round, to one of them.
    let mut group_of = vec![NONE; packages];
    for (g, group) in groups.iter().enumerate() {
        for &member in group {
            group_of[member as usize] = to_u32(g);
        }
    }
    let mut step = vec![NONE; packages];
    for (g, group) in groups.into_iter().enumerate() {
        let mut path = vec![group[0]];
        step[group[0] as usize] = 0;
        while let Some(&next) = path.last().and_then(|&last| {
            let mut deps = list.dependencies(last).iter();
            deps.find(|&&d| group_of.get(d as usize) == Some(&to_u32(g)))
        }) {
            let at = step[next as usize];
            if at != NONE {
                let cycle = [&path[at as usize..], &[next]].concat();
                let before = |&p: &u32| step[p as usize] == NONE || step[p as usize] < at;
                order
                    .cycles
                    .push((cycle, group.iter().copied().filter(before).collect()));
                break;
            }
            step[next as usize] = to_u32(path.len());
            path.push(next);
        }
        for &member in &group {
            step[member as usize] = NONE;
        }
    }
    order
}

impl Order {
    /// How many listed packages can never be indexed.
    pub(super) fn skipped(&self) -> usize {
        let in_cycles: usize = self.cycles.iter().map(|(c, o)| c.len() - 1 + o.len()).sum();
        self.blocked.len() + in_cycles
    }

    /// One line per problem, names listed up to [`MAX_REPORTED`].
    pub(super) fn report(&self, list: &List) -> Vec<String> {
        let names = |ids: &[u32]| some_names(ids.len(), ids.iter().map(|&id| list.name(id)));
        let more = |lines: &mut Vec<String>, count: usize, what: &str| {
            if count > MAX_REPORTED {
                lines.push(format!("and {} more {what}", count - MAX_REPORTED));
            }
        };
        let mut lines = Vec::new();
        for (name, needed_by) in self.missing.iter().take(MAX_REPORTED) {
            lines.push(format!(
                "missing dependency {} (not in the list, not on the server), needed by {}",
                list.name(*name),
                names(needed_by)
            ));
        }
        more(&mut lines, self.missing.len(), "missing dependencies");
        for (cycle, others) in self.cycles.iter().take(MAX_REPORTED) {
            let path = |ids: &[u32]| ids.iter().map(|&id| list.name(id)).collect::<Vec<_>>();
            let mut line = match cycle.len() - 1 {
                n if n > MAX_REPORTED => format!(
                    "dependency cycle of {n} packages: {} -> ... -> {}",
                    path(&cycle[..MAX_REPORTED]).join(" -> "),
                    list.name(cycle[0])
                ),
                _ => format!("dependency cycle: {}", path(cycle).join(" -> ")),
            };
            if !others.is_empty() {
                line += &format!("; tangled with it in further cycles: {}", names(others));
            }
            lines.push(line);
        }
        more(&mut lines, self.cycles.len(), "dependency cycles");
        if !self.blocked.is_empty() {
            let count = self.blocked.len();
            let (noun, names) = (
                if count == 1 { "package" } else { "packages" },
                names(&self.blocked),
            );
            lines.push(format!(
                "{count} {noun} depending on those cannot be indexed either: {names}"
            ));
        }
        lines
    }
}

/// The first [`MAX_REPORTED`] of `count` names, comma-separated, and how
/// many more there are.
pub(super) fn some_names<'n>(count: usize, names: impl Iterator<Item = &'n str>) -> String {
    let shown: Vec<&str> = names.take(MAX_REPORTED).collect();
    match count - shown.len() {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests;
