//! A package list read into numbers ([`List::read`]), and the order to
//! index it in ([`order`]).

// Every id is below the text's length, which [`List::read`] keeps under
// 4 GiB, and a hash is folded on purpose.
#![allow(clippy::cast_possible_truncation)]

use crate::package_list::{parse_line_into, ListError};
use crate::protocol::{write_request, Command};
use crate::sys;

/// Problems of each kind named one by one; the rest are counted.
pub(super) const MAX_REPORTED: usize = 20;

/// An id that is none.
const NONE: u32 = u32::MAX;

/// How many names ahead of its lookup a name's slot is fetched.
const AHEAD: usize = 16;

/// A name's hash: its 8-byte words folded in by 128-bit products. The
/// operator chose the file: defending against crafted collisions buys nothing.
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

/// Numbers names in the order first seen: open addressing over slots of
/// [hash's top half, id + 1, where the name starts in the text, its
/// length], all zero when free (so the table is the kernel's zeroed pages,
/// never written whole), with a slot more than the names it will be asked
/// for, so it is never full (a list of three dependencies a package fills
/// about a quarter). A million names miss the cache on nearly every probe,
/// so each runs [`AHEAD`] names behind a fetch of its slot and half as far
/// behind one of the name that slot holds: the misses overlap instead of
/// queueing (BENCHMARKS.md).
struct Interner<'a> {
    text: &'a [u8],
    slots: Vec<[u32; 4]>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn with_room_for(text: &'a [u8], names: usize) -> Interner<'a> {
        let slots = vec![[0; 4]; (names + 1).next_power_of_two()];
        let names = Vec::with_capacity(names);
        Interner { text, slots, names }
    }

    /// The name in a slot; empty in a free one.
    fn held(&self, [_, _, start, length]: [u32; 4]) -> &'a [u8] {
        let (start, length) = (start as usize, length as usize);
        self.text.get(start..start + length).unwrap_or_default()
    }

    /// The id of each of `tokens` (names within the text), in order.
    fn number(&mut self, tokens: &[&'a str]) -> Vec<u32> {
        let hashes: Vec<u64> = tokens.iter().map(|name| hash(name.as_bytes())).collect();
        let mask = self.slots.len() - 1;
        let mut ids = Vec::with_capacity(tokens.len());
        for (i, (&name, &hash)) in tokens.iter().zip(&hashes).enumerate() {
            if let Some(&ahead) = hashes.get(i + AHEAD) {
                sys::prefetch(&self.slots[ahead as usize & mask]);
            }
            if let Some(&ahead) = hashes.get(i + AHEAD / 2) {
                if let Some(first) = self.held(self.slots[ahead as usize & mask]).first() {
                    sys::prefetch(first);
                }
            }
            let (tag, mut at) = ((hash >> 32) as u32, hash as usize & mask);
            while self.slots[at][1] != 0
                && (self.slots[at][0] != tag || self.held(self.slots[at]) != name.as_bytes())
            {
                at = (at + 1) & mask;
            }
            if self.slots[at][1] == 0 {
                let start = name.as_ptr().addr() - self.text.as_ptr().addr();
                self.names.push(name);
                let id = self.names.len() as u32;
                self.slots[at] = [tag, id, start as u32, name.len() as u32];
            }
            ids.push(self.slots[at][1] - 1);
        }
        ids
    }
}

/// A list that parsed: each package once, every name numbered (its id).
#[derive(Debug)]
pub(super) struct List<'a> {
    /// By id: the packages in list order, then the names without a line.
    names: Vec<&'a str>,
    /// By package, where its dependencies start; one more ends the last.
    starts: Vec<usize>,
    /// The ids of each package's dependencies, package after package.
    dependencies: Vec<u32>,
    /// The packages' `INDEX` lines, one after another, each written while
    /// its line was in cache (writing them when sent costs a cache miss a
    /// name), and where each starts, as `starts`.
    requests: (Vec<u8>, Vec<usize>),
}

impl<'a> List<'a> {
    /// Reads a whole list; a line that does not parse and a package listed
    /// twice are errors naming their lines, in list order.
    pub(super) fn read(text: &'a [u8]) -> Result<List<'a>, Vec<ListError>> {
        if u32::try_from(text.len()).is_err() {
            let reason = "a list may be at most 4 GiB".into();
            return Err(vec![ListError { line: 0, reason }]);
        }
        let (mut errors, mut packages, mut lines, mut starts) = (vec![], vec![], vec![], vec![]);
        let mut requests = (Vec::with_capacity(text.len() + text.len() / 4), vec![]);
        // Every dependency as written, package after package.
        let (mut named, mut dependencies): (Vec<&str>, _) = (vec![], vec![]);
        for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
            match parse_line_into(index + 1, line, &mut dependencies) {
                Ok(Some(name)) => {
                    packages.push(name.as_str());
                    lines.push(index + 1);
                    starts.push(named.len());
                    named.extend(dependencies.iter().map(|name| name.as_str()));
                    requests.1.push(requests.0.len());
                    write_request(
                        &mut requests.0,
                        Command::Index,
                        name.as_str(),
                        &dependencies,
                    );
                }
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        starts.push(named.len());
        requests.1.push(requests.0.len());
        // Packages first, in list order; a name listed again gets its first
        // line's id. Then the names without a line, first named first.
        let mut interner = Interner::with_room_for(text, packages.len() + named.len());
        let ids = interner.number(&packages);
        let mut first_lines = Vec::with_capacity(packages.len());
        for (&id, (&name, &line)) in ids.iter().zip(packages.iter().zip(&lines)) {
            match first_lines.get(id as usize) {
                None => first_lines.push(line),
                Some(first) => {
                    let reason = format!(
                        "package {name} is listed twice, on line {first} and on line {line}"
                    );
                    errors.push(ListError { line, reason });
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|error| error.line);
            return Err(errors);
        }
        let dependencies = interner.number(&named);
        let names = interner.names;
        Ok(List {
            names,
            starts,
            dependencies,
            requests,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub(super) fn name(&self, id: u32) -> &'a str {
        self.names[id as usize]
    }

    /// The first [`MAX_REPORTED`] names of `ids`, and how many more.
    pub(super) fn some_names(&self, ids: &[u32]) -> String {
        let shown = ids.iter().take(MAX_REPORTED).map(|&id| self.name(id));
        let shown: Vec<&str> = shown.collect();
        match ids.len() - shown.len() {
            0 => shown.join(", "),
            more => format!("{} and {more} more", shown.join(", ")),
        }
    }

    /// The ids of `id`'s dependencies (none for a name without a line).
    fn dependencies(&self, id: u32) -> &[u32] {
        let span = self.starts.get(id as usize..id as usize + 2);
        span.map_or(&[], |span| &self.dependencies[span[0]..span[1]])
    }

    /// The ids of the dependencies without a line of their own.
    pub(super) fn unlisted(&self) -> std::ops::Range<u32> {
        self.len() as u32..self.names.len() as u32
    }

    /// Appends `INDEX|name|dep,dep\n` for `id`.
    pub(super) fn push_index_line(&self, out: &mut Vec<u8>, id: u32) {
        let (lines, line_starts) = &self.requests;
        match line_starts.get(id as usize..=id as usize + 1) {
            Some(&[start, end]) => out.extend_from_slice(&lines[start..end]),
            _ => write_request::<&str>(out, Command::Index, self.name(id), &[]),
        }
    }
}

/// The packages to send, in order, and a line per problem with the rest.
#[derive(Debug, Default)]
pub(super) struct Order {
    pub(super) send: Vec<u32>,
    pub(super) report: Vec<String>,
}

/// Orders `list` by dependencies and finds what can never be indexed;
/// `missing` are names without a line that will never be met. Tarjan's
/// algorithm, from each package in list order: each strongly connected
/// group closes after those it depends on, so lone packages come out in an
/// order to send (an exported list keeps its order) and larger groups are
/// knots of cycles. A lone package is blocked when a dependency is missing,
/// in a knot, or blocked.
pub(super) fn order(list: &List, missing: &[u32]) -> Order {
    let packages = list.len();
    let mut blocked = vec![false; list.names.len()];
    for &id in missing {
        blocked[id as usize] = true;
    }
    // By package: when the walk reached it, the earliest package still open
    // that it leads back to, whether it is open (on `stack`, its group not
    // closed), and its place on a cycle's path.
    let (mut reached, mut low) = (vec![NONE; packages], vec![0; packages]);
    let (mut open, mut step) = (vec![false; packages], vec![NONE; packages]);
    let (mut stack, mut next, mut order) = (vec![], 0, Order::default());
    let (mut lone, mut knot_lines) = (vec![], vec![]);
    // (package, how many of its dependencies were followed)
    let mut walk = vec![];
    for root in 0..packages as u32 {
        if reached[root as usize] != NONE {
            continue;
        }
        walk.push((root, 0));
        while let Some(&mut (package, ref mut followed)) = walk.last_mut() {
            let p = package as usize;
            if reached[p] == NONE {
                (reached[p], low[p], open[p]) = (next, next, true);
                next += 1;
                stack.push(package);
                // Its dependencies come next: fetching them now overlaps the misses.
                let ahead = list.dependencies(package).iter();
                for &d in ahead.filter(|&&d| (d as usize) < packages) {
                    sys::prefetch(&reached[d as usize]);
                    sys::prefetch(&list.starts[d as usize]);
                }
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
            if low[p] != reached[p] {
                continue;
            }
            let deps = |q: u32| list.dependencies(q).iter().copied();
            if stack.last() == Some(&package) {
                stack.pop();
                open[p] = false;
                blocked[p] = deps(package).any(|d| blocked[d as usize]);
                lone.push(package);
                continue;
            }
            let group = stack.split_off(stack.iter().rposition(|&m| m == package).unwrap_or(0));
            // Every member has a dependency in the group (open, reached
            // since `package`): following those must come back round.
            let in_group = |d: u32| open[d as usize] && reached[d as usize] >= reached[p];
            let mut path = vec![package];
            step[p] = 0;
            while let Some(next) = path
                .last()
                .and_then(|&last| deps(last).find(|&d| (d as usize) < packages && in_group(d)))
            {
                let at = step[next as usize];
                if at != NONE {
                    let cycle = &path[at as usize..];
                    let shown = cycle.iter().take(MAX_REPORTED).map(|&m| list.name(m));
                    let (shown, first) = (shown.collect::<Vec<_>>().join(" -> "), list.name(next));
                    let (of, and_so_on) = match cycle.len() {
                        n if n > MAX_REPORTED => (format!(" of {n} packages"), " -> ..."),
                        _ => (String::new(), ""),
                    };
                    let mut line = format!("dependency cycle{of}: {shown}{and_so_on} -> {first}");
                    let off_cycle = |&m: &u32| step[m as usize] == NONE || step[m as usize] < at;
                    let others: Vec<u32> = group.iter().copied().filter(off_cycle).collect();
                    if !others.is_empty() {
                        line += &format!(
                            "; tangled with it in further cycles: {}",
                            list.some_names(&others)
                        );
                    }
                    knot_lines.push(line);
                    break;
                }
                step[next as usize] = path.len() as u32;
                path.push(next);
            }
            for &member in &group {
                (open[member as usize], blocked[member as usize]) = (false, true);
            }
        }
    }
    // (missing name, blocked package needing it): only missing names are
    // unlisted and blocked.
    let mut needs: Vec<(u32, u32)> = (0..packages as u32)
        .filter(|&p| blocked[p as usize])
        .flat_map(|p| list.dependencies(p).iter().map(move |&d| (d, p)))
        .filter(|&(d, _)| d as usize >= packages && blocked[d as usize])
        .collect();
    needs.sort_unstable();
    let missing_lines = needs.chunk_by(|a, b| a.0 == b.0).map(|group| {
        let by: Vec<u32> = group.iter().map(|&(_, p)| p).collect();
        let name = list.name(group[0].0);
        let by = list.some_names(&by);
        format!("missing dependency {name} (not in the list, not on the server), needed by {by}")
    });
    order.report = cut(missing_lines.collect(), "missing dependencies");
    order.report.extend(cut(knot_lines, "dependency cycles"));
    let (mut blocked_packages, send): (Vec<u32>, _) =
        lone.into_iter().partition(|&p| blocked[p as usize]);
    order.send = send;
    blocked_packages.sort_unstable();
    if !blocked_packages.is_empty() {
        let count = crate::figures::count(blocked_packages.len(), "package", "packages");
        let names = list.some_names(&blocked_packages);
        let line = format!("{count} depending on those cannot be indexed either: {names}");
        order.report.push(line);
    }
    order
}

/// The first [`MAX_REPORTED`] of `lines`, and how many more `what` there are.
pub(super) fn cut(mut lines: Vec<String>, what: &str) -> Vec<String> {
    if lines.len() > MAX_REPORTED {
        let more = lines.len() - MAX_REPORTED;
        lines.truncate(MAX_REPORTED);
        lines.push(format!("and {more} more {what}"));
    }
    lines
}

#[cfg(test)]
mod tests;
