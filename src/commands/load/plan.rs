//! A package list read into numbers, and the order to index it in.
//!
//! Loading must keep up with the server, and on a virtual machine a cache
//! miss costs hundreds of nanoseconds: a hash map from names to ids, probed
//! once per name as the lines go by, jumps around a table and the text
//! millions of times and takes longer than the server needs to index the
//! whole list. So the list is read in passes that each walk memory in
//! order:
//!
//! 1. The text is cut into pieces at line ends, each parsed on a thread of
//!    its own ([`package_list::parse_line_into`]). Every line's `INDEX`
//!    request is written out then, while the line is in cache; every name
//!    is noted (where it is in the text), hashed, and appended with its
//!    first 16 bytes to one of a few hundred partitions chosen by the
//!    hash's top bits.
//! 2. The partitions are shared out between two threads. Each is small
//!    enough to stay in cache while its names get their ids from a table
//!    of its own, compared byte for byte (bytes past the 16th are fetched
//!    from the text: rare, and only on a hash match). A name listed as a
//!    package gets that package's index as its id.
//! 3. From then on the list is arrays of `u32`s: ordering it (Kahn's
//!    algorithm), finding its cycles (Tarjan's strongly connected
//!    components) and sending it touch no map.
//!
//! The big arrays are asked to live in huge pages ([`huge`]).

use crate::package_list::{self, ListError};
use crate::protocol::{write_request, Command};
use crate::sys;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

/// Problems of a list kept for the report; the rest are counted.
pub(super) const MAX_REPORTED: usize = 20;

/// Texts below this size are read on the calling thread alone.
const PARALLEL_FROM_BYTES: usize = 1 << 20;

/// Most pieces the text is cut into (threads that parse it).
const MAX_PIECES: usize = 4;

/// Text bytes per partition of the names, so that one partition's records
/// (about 16,000 names of ~10 bytes: 400 KB) and table stay in cache.
const BYTES_PER_PARTITION: usize = 256 * 1024;

/// Bytes of a name kept beside its hash in a partition.
const KEY_BYTES: usize = 16;

/// An id or package index that is none.
const NONE: u32 = u32::MAX;

/// `n` as a `u32`. Every count and offset here (tokens, lines, packages,
/// ids, byte offsets) is at most the text's length, which [`List::read`]
/// checks fits in a `u32`.
#[allow(clippy::cast_possible_truncation)]
fn to_u32(n: usize) -> u32 {
    n as u32
}

/// An empty vector with room for `capacity`, asked to be backed by huge
/// pages: the arrays here are large and read at random, and on a virtual
/// machine every page fault and TLB miss is dear.
pub(super) fn huge<T>(capacity: usize) -> Vec<T> {
    let mut vec = Vec::with_capacity(capacity);
    sys::advise_huge_pages(&mut vec);
    vec
}

/// [`huge`], filled with `len` copies of `value`.
fn huge_filled<T: Clone>(len: usize, value: T) -> Vec<T> {
    let mut vec = huge(len);
    vec.resize(len, value);
    vec
}

/// Runs `first` on this thread and `second` on a new one, at once, and
/// returns both results; when no thread can be started, `second` runs here
/// after `first`. A panic in `second` is passed on.
fn in_parallel<A, B: Send>(first: impl FnOnce() -> A, second: impl FnOnce() -> B + Send) -> (A, B) {
    fn run_once<T>(slot: &Mutex<Option<impl FnOnce() -> T>>) -> Option<T> {
        let work = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        work.map(|work| work())
    }
    let second = Mutex::new(Some(second));
    thread::scope(|scope| {
        let spawned = thread::Builder::new()
            .name("load-worker".into())
            .spawn_scoped(scope, || run_once(&second));
        let a = first();
        let b = match spawned.map(|handle| handle.join()) {
            Ok(Ok(b)) => b,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => None,
        };
        match b.or_else(|| run_once(&second)) {
            Some(b) => (a, b),
            // The work is taken once, by the thread or here, and both ran.
            None => unreachable!("the second half of parallel work ran nowhere"),
        }
    })
}

/// The slot of `hash` in a table of `mask + 1` slots: its low bits.
#[allow(clippy::cast_possible_truncation)] // keeping the low bits is the point
fn slot_of(hash: u64, mask: usize) -> usize {
    hash as usize & mask
}

/// One name as written in the text.
#[derive(Clone, Copy, Debug)]
struct Token {
    at: u32,
    len: u8,
}

/// A list that parsed: each package once, every name interned.
///
/// A name's id is the index of the package listed under it (packages are
/// numbered in the list's order), so a dependency's id says at once which
/// package it is; a name without a line of its own gets an id from
/// `packages()` up.
#[derive(Debug)]
pub(super) struct List<'a> {
    text: &'a [u8],
    /// Every name in the text, in order: each package's name, then its
    /// dependencies.
    tokens: Vec<Token>,
    /// By package: the index in `tokens` of its name; one more entry ends
    /// the last package.
    starts: Vec<u32>,
    /// By package: its line number.
    lines: Vec<u32>,
    /// By token: the id of its name.
    ids: Vec<u32>,
    /// By unlisted name (id minus the number of packages): the first token
    /// that names it.
    unlisted_tokens: Vec<u32>,
    /// By package: how many packages name it as a dependency.
    dependent_counts: Vec<u32>,
    /// Each piece's `INDEX` lines, one a package, made while its text was
    /// in cache: sending then copies one run of bytes a package.
    requests: Vec<Vec<u8>>,
    /// By package: where its `INDEX` line ends in its piece's `requests`.
    request_ends: Vec<u32>,
    /// By piece: its first package.
    piece_starts: Vec<u32>,
}

/// Why a list cannot be used: the first [`MAX_REPORTED`] lines at fault,
/// and how many there are in all.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ListErrors {
    pub(super) first: Vec<ListError>,
    pub(super) total: usize,
}

impl ListErrors {
    fn push(&mut self, error: ListError) {
        if self.first.len() < MAX_REPORTED {
            self.first.push(error);
        }
        self.total += 1;
    }

    /// Adds `other`'s errors, whose line numbers are `line_offset` short.
    fn absorb(&mut self, other: ListErrors, line_offset: usize) {
        let shown = other.first.len();
        for mut error in other.first {
            error.line += line_offset;
            self.push(error);
        }
        self.total += other.total - shown;
    }
}

/// The name `text[at..at + len]`'s hash and its first 16 bytes as two
/// words, zero-padded (the key of its [`Record`]).
///
/// The hash is multiply-rotate over the name's 8-byte words, then a
/// finalizer that makes the low bits (a table's slot) and the top bits (a
/// partition) depend on every input bit. The names come from a file the
/// operator chose, not from an adversary, so protection against crafted
/// collisions would buy nothing.
fn hash_and_key(text: &[u8], at: usize, len: usize) -> (u64, [u64; 2]) {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hash = len as u64;
    // Two variables, not an array indexed in the loop, so that they stay in
    // registers.
    let (mut first, mut second) = (0, 0);
    let mut offset = 0;
    while offset < len {
        let word = word_at(text, at + offset, (len - offset).min(8));
        match offset {
            0 => first = word,
            8 => second = word,
            _ => {}
        }
        hash = (hash.rotate_left(23) ^ word).wrapping_mul(K);
        offset += 8;
    }
    // Murmur3's finalizer: every input bit reaches every output bit.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    (hash ^ (hash >> 33), [first, second])
}

/// The `valid` (1 to 8) bytes at `text[at..]` as a little-endian word,
/// zero-padded. Read as one load, past the name when the text goes on, and
/// masked: assembling a word byte by byte would stall the load on the
/// bytes just stored.
fn word_at(text: &[u8], at: usize, valid: usize) -> u64 {
    let word = match text.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => {
            let mut word = [0u8; 8];
            word[..valid].copy_from_slice(&text[at..at + valid]);
            u64::from_le_bytes(word)
        }
    };
    match valid {
        8.. => word,
        _ => word & ((1u64 << (valid * 8)) - 1),
    }
}

/// One name in a partition, in 24 bytes: its first 16 bytes (zero-padded:
/// a name holds no zero byte, so a shorter name's length is in its key),
/// the low half of its hash, and where it is.
#[derive(Clone, Copy)]
struct Record {
    key: [u64; 2],
    hash: u32,
    /// The token, or for a package's own name the package with
    /// [`DEFINES`] set; counted in its piece until [`Record::rebased`].
    at: u32,
}

/// Marks a record of a package's own name (numbers stay below 2^31:
/// every name takes at least two bytes of text).
const DEFINES: u32 = 1 << 31;

impl Record {
    fn new(hash: u64, key: [u64; 2], at: u32, defines: bool) -> Record {
        Record {
            key,
            // The low half picks the slot; the top bits picked the partition.
            hash: low_half(hash),
            at: if defines { at | DEFINES } else { at },
        }
    }

    fn defines(&self) -> bool {
        self.at & DEFINES != 0
    }

    /// The token, or the package for a package's own name.
    fn position(&self) -> u32 {
        self.at & !DEFINES
    }

    /// The record with its position counted in the whole list.
    fn rebased(self, base: Base) -> Record {
        let offset = if self.defines() {
            base.package
        } else {
            base.token
        };
        Record {
            at: self.at + offset,
            ..self
        }
    }

    /// Whether the name is longer than its key holds.
    fn is_long(&self) -> bool {
        self.key[1] >> 56 != 0
    }
}

#[allow(clippy::cast_possible_truncation)] // keeping the low half is the point
fn low_half(hash: u64) -> u32 {
    hash as u32
}

/// The partition of a hash: its top `bits` bits.
fn partition(hash: u64, bits: u32) -> usize {
    // At most 16 bits are kept: it fits.
    usize::try_from(hash.checked_shr(64 - bits).unwrap_or(0)).unwrap_or(0)
}

/// A piece of the text read on its own: tokens, packages and line numbers
/// count from the piece's start.
#[derive(Default)]
struct Piece {
    tokens: Vec<Token>,
    starts: Vec<u32>,
    lines: Vec<u32>,
    requests: Vec<u8>,
    request_ends: Vec<u32>,
    /// Lines in the piece (the last one may lack its `\n`).
    line_count: usize,
    errors: ListErrors,
    partitions: Vec<Vec<Record>>,
}

/// Where a piece's numbering starts in the whole list.
#[derive(Clone, Copy, Default)]
struct Base {
    token: u32,
    package: u32,
}

/// One distinct name of a partition.
struct Distinct {
    record: Record,
    /// The package listed under it, or [`NONE`].
    package: u32,
    /// The first token naming it as a dependency, or [`NONE`].
    first_token: u32,
    /// Its unlisted id within the interning thread, or [`NONE`].
    unlisted: u32,
    /// How many tokens name it as a dependency.
    dependents: u32,
}

/// What one interning thread found besides the ids it wrote.
#[derive(Default)]
struct Interned {
    /// By unlisted id (within the thread): the first token naming it.
    unlisted_tokens: Vec<u32>,
    /// (first package, package listing the same name again)
    duplicates: Vec<(u32, u32)>,
}

/// Ids written by the second interning thread for names without a line
/// carry this bit until its unlisted ids are placed after the first's
/// (ids stay below 2^31: every name takes at least two bytes of text).
const SECOND_THREAD: u32 = 1 << 31;

impl<'a> List<'a> {
    /// Reads a whole list: lines split at `\n`, each through
    /// [`package_list::parse_line`]. A line that is not UTF-8 or does not
    /// parse, and a package listed twice, are errors naming their lines.
    pub(super) fn read(text: &'a [u8]) -> Result<List<'a>, ListErrors> {
        if u32::try_from(text.len()).is_err() {
            return Err(ListErrors {
                first: vec![ListError {
                    line: 0,
                    reason: "a list may be at most 4 GiB".into(),
                }],
                total: 1,
            });
        }
        let partition_bits = (text.len() / BYTES_PER_PARTITION)
            .next_power_of_two()
            .clamp(16, 1 << 16)
            .trailing_zeros();
        let pieces = read_pieces(text, partition_bits);

        let mut list = List {
            text,
            tokens: huge(pieces.iter().map(|p| p.tokens.len()).sum()),
            starts: huge(pieces.iter().map(|p| p.starts.len()).sum::<usize>() + 1),
            lines: huge(pieces.iter().map(|p| p.lines.len()).sum()),
            ids: Vec::new(),
            unlisted_tokens: Vec::new(),
            dependent_counts: Vec::new(),
            requests: Vec::with_capacity(pieces.len()),
            request_ends: huge(pieces.iter().map(|p| p.lines.len()).sum()),
            piece_starts: Vec::with_capacity(pieces.len()),
        };
        let mut errors = ListErrors::default();
        let mut line_offset = 0;
        let mut bases = Vec::with_capacity(pieces.len());
        let mut partitioned = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let base = Base {
                token: to_u32(list.tokens.len()),
                package: to_u32(list.starts.len()),
            };
            bases.push(base);
            list.tokens.extend_from_slice(&piece.tokens);
            list.piece_starts.push(base.package);
            list.request_ends.extend_from_slice(&piece.request_ends);
            list.requests.push(piece.requests);
            list.starts
                .extend(piece.starts.iter().map(|&s| s + base.token));
            let line_base = to_u32(line_offset);
            list.lines
                .extend(piece.lines.iter().map(|&l| l + line_base));
            errors.absorb(piece.errors, line_offset);
            line_offset += piece.line_count;
            partitioned.push(piece.partitions);
        }
        list.starts.push(to_u32(list.tokens.len()));
        let mut duplicates = list.intern(&partitioned, &bases);
        drop(partitioned);
        // Found partition by partition: shown, like the rest, by line.
        duplicates.sort_unstable_by_key(|&(_, again)| again);
        let mut twice = ListErrors::default();
        for (first, again) in duplicates {
            let (first_line, again_line) = (list.lines[first as usize], list.lines[again as usize]);
            twice.push(ListError {
                line: again_line as usize,
                reason: format!(
                    "package {} is listed twice, on line {first_line} and on line {again_line}",
                    list.package_name(again)
                ),
            });
        }
        if errors.total + twice.total > 0 {
            // Each kind keeps its first lines: together, the first of all.
            errors.first.extend(twice.first);
            errors.first.sort_by_key(|error| error.line);
            errors.first.truncate(MAX_REPORTED);
            errors.total += twice.total;
            return Err(errors);
        }
        Ok(list)
    }

    /// Gives every name its id: the partitions are shared out between two
    /// threads, each partition read twice while it is in cache, once to
    /// find its distinct names and once to write every token's id. Returns
    /// the packages listed twice.
    fn intern(&mut self, partitioned: &[Vec<Vec<Record>>], bases: &[Base]) -> Vec<(u32, u32)> {
        let packages = to_u32(self.len());
        let mut ids: Vec<AtomicU32> = huge(self.tokens.len());
        ids.extend((0..self.tokens.len()).map(|_| AtomicU32::new(0)));
        let mut dependent_counts: Vec<AtomicU32> = huge(self.len());
        dependent_counts.extend((0..self.len()).map(|_| AtomicU32::new(0)));
        let partitions = partitioned.first().map_or(0, Vec::len);
        let half = partitions / 2;
        let context = InternContext {
            text: self.text,
            tokens: &self.tokens,
            starts: &self.starts,
            partitioned,
            bases,
            ids: &ids,
            dependent_counts: &dependent_counts,
            packages,
        };
        let (first, second) = in_parallel(
            || context.intern(0..half, 0),
            || context.intern(half..partitions, SECOND_THREAD),
        );
        let first_unlisted = to_u32(first.unlisted_tokens.len());
        self.ids = ids
            .into_iter()
            .map(|id| {
                let id = id.into_inner();
                if id & SECOND_THREAD == 0 {
                    id
                } else {
                    (id & !SECOND_THREAD) + first_unlisted
                }
            })
            .collect();
        for (package, &start) in self.starts[..self.len()].iter().enumerate() {
            self.ids[start as usize] = to_u32(package);
        }
        self.dependent_counts = dependent_counts
            .into_iter()
            .map(AtomicU32::into_inner)
            .collect();
        self.unlisted_tokens = first.unlisted_tokens;
        self.unlisted_tokens.extend(second.unlisted_tokens);
        let mut duplicates = first.duplicates;
        duplicates.extend(second.duplicates);
        duplicates
    }

    fn token_str(&self, token: u32) -> &'a str {
        let Token { at, len } = self.tokens[token as usize];
        let bytes = &self.text[at as usize..at as usize + usize::from(len)];
        // Tokens were cut from names `parse_line` validated: ASCII.
        std::str::from_utf8(bytes).unwrap_or("?")
    }

    /// The name with id `id`.
    pub(super) fn name(&self, id: u32) -> &'a str {
        match (id as usize).checked_sub(self.len()) {
            None => self.package_name(id),
            Some(unlisted) => self.token_str(self.unlisted_tokens[unlisted]),
        }
    }

    /// The name of the package `package` (numbered in the list's order).
    pub(super) fn package_name(&self, package: u32) -> &'a str {
        self.token_str(self.starts[package as usize])
    }

    /// The ids of a package's dependencies: below `len()` for listed ones.
    fn dependencies(&self, package: u32) -> &[u32] {
        let package = package as usize;
        &self.ids[self.starts[package] as usize + 1..self.starts[package + 1] as usize]
    }

    /// The dependencies of `package` that are themselves listed.
    fn listed_dependencies(&self, package: u32) -> impl Iterator<Item = u32> + '_ {
        let packages = to_u32(self.len());
        self.dependencies(package)
            .iter()
            .copied()
            .filter(move |&id| id < packages)
    }

    /// How many packages the list holds.
    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }

    /// How many distinct names the list holds.
    fn names(&self) -> usize {
        self.len() + self.unlisted_tokens.len()
    }

    /// The ids of the names that are dependencies without a line of their
    /// own (the server must hold them already), in order of first mention.
    pub(super) fn unlisted(&self) -> Vec<u32> {
        let mut unlisted: Vec<u32> = (to_u32(self.len())..to_u32(self.names())).collect();
        unlisted.sort_by_key(|&id| self.unlisted_tokens[id as usize - self.len()]);
        unlisted
    }

    /// Appends `INDEX|name|dep,dep\n` for `package`, as its line wrote it.
    pub(super) fn push_index_line(&self, out: &mut Vec<u8>, package: u32) {
        let piece = self.piece_starts.partition_point(|&first| first <= package) - 1;
        let start = if package == self.piece_starts[piece] {
            0
        } else {
            self.request_ends[package as usize - 1]
        };
        let end = self.request_ends[package as usize];
        out.extend_from_slice(&self.requests[piece][start as usize..end as usize]);
    }
}

/// What the interning threads share.
struct InternContext<'l> {
    text: &'l [u8],
    tokens: &'l [Token],
    starts: &'l [u32],
    partitioned: &'l [Vec<Vec<Record>>],
    bases: &'l [Base],
    /// By token, written once each by whichever thread holds its partition.
    ids: &'l [AtomicU32],
    /// By package, written likewise.
    dependent_counts: &'l [AtomicU32],
    packages: u32,
}

impl InternContext<'_> {
    /// Interns the partitions in `range`; unlisted ids are numbered from 0
    /// with `flag` set.
    fn intern(&self, range: Range<usize>, flag: u32) -> Interned {
        let mut found = Interned::default();
        let mut slots: Vec<u32> = Vec::new();
        let mut distinct: Vec<Distinct> = Vec::new();
        let mut which: Vec<u32> = Vec::new();
        for p in range {
            let size: usize = self.partitioned.iter().map(|piece| piece[p].len()).sum();
            let capacity = (size * 2).next_power_of_two().max(16);
            let mask = capacity - 1;
            slots.clear();
            slots.resize(capacity, NONE);
            distinct.clear();
            which.clear();
            let records = self
                .partitioned
                .iter()
                .zip(self.bases)
                .flat_map(|(piece, &base)| piece[p].iter().map(move |record| record.rebased(base)));
            for record in records.clone() {
                let mut slot = slot_of(u64::from(record.hash), mask);
                let held = loop {
                    let held = slots[slot];
                    if held == NONE {
                        slots[slot] = to_u32(distinct.len());
                        distinct.push(Distinct {
                            record,
                            package: NONE,
                            first_token: NONE,
                            unlisted: NONE,
                            dependents: 0,
                        });
                        break slots[slot];
                    }
                    if self.same_name(&distinct[held as usize].record, &record) {
                        break held;
                    }
                    slot = (slot + 1) & mask;
                };
                which.push(held);
                let name = &mut distinct[held as usize];
                if !record.defines() {
                    name.dependents += 1;
                    if name.first_token == NONE {
                        name.first_token = record.position();
                    }
                } else if name.package == NONE {
                    name.package = record.position();
                } else {
                    found.duplicates.push((name.package, record.position()));
                }
            }
            for (record, &held) in records.zip(&which) {
                if record.defines() {
                    continue;
                }
                let name = &mut distinct[held as usize];
                let id = if name.package != NONE {
                    name.package
                } else {
                    if name.unlisted == NONE {
                        name.unlisted = to_u32(found.unlisted_tokens.len());
                        found.unlisted_tokens.push(name.first_token);
                    }
                    if flag == 0 {
                        self.packages + name.unlisted
                    } else {
                        (self.packages + name.unlisted) | flag
                    }
                };
                self.ids[record.position() as usize].store(id, Ordering::Relaxed);
            }
            for name in &distinct {
                if name.package != NONE {
                    self.dependent_counts[name.package as usize]
                        .store(name.dependents, Ordering::Relaxed);
                }
            }
        }
        found
    }

    /// Whether `a` and `b` are the same name.
    fn same_name(&self, a: &Record, b: &Record) -> bool {
        if a.hash != b.hash || a.key != b.key {
            return false;
        }
        !a.is_long() || {
            // Both are longer than the key: rare, and fetched from the text.
            let rest = |record: &Record| {
                let token = if record.defines() {
                    self.starts[record.position() as usize]
                } else {
                    record.position()
                };
                let Token { at, len } = self.tokens[token as usize];
                &self.text[at as usize + KEY_BYTES..at as usize + usize::from(len)]
            };
            rest(a) == rest(b)
        }
    }
}

/// Cuts `text` into pieces at line ends and reads each, on threads when
/// the text is large; pieces come back in the text's order.
fn read_pieces(text: &[u8], partition_bits: u32) -> Vec<Piece> {
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let count = if text.len() < PARALLEL_FROM_BYTES {
        1
    } else {
        threads.clamp(1, MAX_PIECES)
    };
    if count == 1 {
        return vec![read_piece(text, 0..text.len(), partition_bits)];
    }
    let mut ranges = Vec::with_capacity(count);
    let mut start = 0;
    for i in 1..=count {
        let end = if i == count {
            text.len()
        } else {
            let guess = (text.len() * i / count).max(start);
            text[guess..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |at| guess + at + 1)
        };
        ranges.push(start..end);
        start = end;
    }
    thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|range| {
                let piece = range.clone();
                let spawned = thread::Builder::new()
                    .name("load-reader".into())
                    .spawn_scoped(scope, move || read_piece(text, piece, partition_bits));
                (spawned, range)
            })
            .collect();
        handles
            .into_iter()
            .map(
                |(spawned, range)| match spawned.map(|handle| handle.join()) {
                    Ok(Ok(piece)) => piece,
                    // No thread to spare (or a bug): read it here.
                    _ => read_piece(text, range, partition_bits),
                },
            )
            .collect()
    })
}

/// Reads the lines of `text[range]`, which starts at a line start.
fn read_piece(text: &[u8], range: Range<usize>, partition_bits: u32) -> Piece {
    let bytes = &text[range];
    let partitions = 1usize << partition_bits;
    let expected_names = bytes.len() / 8;
    let mut piece = Piece {
        tokens: huge(expected_names),
        requests: huge(bytes.len() + bytes.len() / 4),
        partitions: (0..partitions)
            .map(|_| Vec::with_capacity(expected_names / partitions + 16))
            .collect(),
        ..Piece::default()
    };
    let base = text.as_ptr().addr();
    // The whole piece is checked at once, which is faster than line by
    // line; only a piece that is not UTF-8 is checked line by line, to
    // name the lines at fault.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let lines: Box<dyn Iterator<Item = Option<&str>>> = match std::str::from_utf8(body) {
        _ if bytes.is_empty() => Box::new(std::iter::empty()),
        Ok(body) => Box::new(body.split('\n').map(Some)),
        Err(_) => Box::new(
            body.split(|&b| b == b'\n')
                .map(|line| std::str::from_utf8(line).ok()),
        ),
    };
    let mut dependencies = Vec::new();
    for line in lines {
        piece.line_count += 1;
        let number = piece.line_count;
        let name = match line {
            Some(line) => package_list::parse_line_into(number, line, &mut dependencies),
            None => Err(ListError {
                line: number,
                reason: "not valid UTF-8".into(),
            }),
        };
        let name = match name {
            Ok(Some(name)) => name,
            Ok(None) => continue,
            Err(error) => {
                piece.errors.push(error);
                continue;
            }
        };
        let package = to_u32(piece.starts.len());
        piece.starts.push(to_u32(piece.tokens.len()));
        piece.lines.push(to_u32(number));
        write_request(
            &mut piece.requests,
            Command::Index,
            name.as_str(),
            &dependencies,
        );
        piece.request_ends.push(to_u32(piece.requests.len()));
        for (i, name) in std::iter::once(name)
            .chain(dependencies.iter().copied())
            .enumerate()
        {
            let offset = name.as_bytes().as_ptr().addr() - base;
            let (hash, key) = hash_and_key(text, offset, name.as_bytes().len());
            let defines = i == 0;
            let at = if defines {
                package
            } else {
                to_u32(piece.tokens.len())
            };
            piece.tokens.push(Token {
                at: to_u32(offset),
                len: name.len_u8(),
            });
            piece.partitions[partition(hash, partition_bits)]
                .push(Record::new(hash, key, at, defines));
        }
    }
    piece
}

/// What to send, in what order, and what can never be indexed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Order {
    /// Packages to index, each after its listed dependencies.
    pub(super) send: Vec<u32>,
    /// Dependencies (ids) neither listed nor on the server, each with the
    /// packages that name it.
    pub(super) missing: Vec<(u32, Vec<u32>)>,
    /// Each group of packages that depend on each other in a circle: one
    /// cycle through them (first package repeated at the end), and the
    /// other members of the group.
    pub(super) cycles: Vec<(Vec<u32>, Vec<u32>)>,
    /// The other packages that cannot be indexed: they depend, directly or
    /// not, on a missing dependency or on a cycle.
    pub(super) blocked: Vec<u32>,
}

impl Order {
    /// How many listed packages can never be indexed.
    pub(super) fn skipped(&self) -> usize {
        self.blocked.len()
            + self
                .cycles
                .iter()
                .map(|(cycle, others)| cycle.len() - 1 + others.len())
                .sum::<usize>()
    }

    /// One line per problem, names listed up to [`MAX_REPORTED`].
    pub(super) fn report(&self, list: &List) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, needed_by) in self.missing.iter().take(MAX_REPORTED) {
            lines.push(format!(
                "missing dependency {} (not in the list, not on the server), needed by {}",
                list.name(*name),
                package_names(list, needed_by)
            ));
        }
        if self.missing.len() > MAX_REPORTED {
            lines.push(format!(
                "and {} more missing dependencies",
                self.missing.len() - MAX_REPORTED
            ));
        }
        for (cycle, others) in self.cycles.iter().take(MAX_REPORTED) {
            let mut line = if cycle.len() <= MAX_REPORTED + 1 {
                let path: Vec<&str> = cycle.iter().map(|&p| list.package_name(p)).collect();
                format!("dependency cycle: {}", path.join(" -> "))
            } else {
                let path: Vec<&str> = cycle[..MAX_REPORTED]
                    .iter()
                    .map(|&p| list.package_name(p))
                    .collect();
                format!(
                    "dependency cycle of {} packages: {} -> ... -> {}",
                    cycle.len() - 1,
                    path.join(" -> "),
                    list.package_name(cycle[0])
                )
            };
            if !others.is_empty() {
                line.push_str(&format!(
                    "; tangled with it in further cycles: {}",
                    package_names(list, others)
                ));
            }
            lines.push(line);
        }
        if self.cycles.len() > MAX_REPORTED {
            lines.push(format!(
                "and {} more dependency cycles",
                self.cycles.len() - MAX_REPORTED
            ));
        }
        if !self.blocked.is_empty() {
            lines.push(format!(
                "{} depending on those cannot be indexed either: {}",
                count(self.blocked.len(), "package", "packages"),
                package_names(list, &self.blocked)
            ));
        }
        lines
    }
}

/// `n` and the noun, singular or plural.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first [`MAX_REPORTED`] of `count` names, comma-separated, and how
/// many more there are.
pub(super) fn some_names<'n>(count: usize, names: impl Iterator<Item = &'n str>) -> String {
    let shown: Vec<&str> = names.take(MAX_REPORTED).collect();
    let mut text = shown.join(", ");
    if count > shown.len() {
        text.push_str(&format!(" and {} more", count - shown.len()));
    }
    text
}

/// The names of `packages`, as [`some_names`] shows them.
fn package_names(list: &List, packages: &[u32]) -> String {
    some_names(
        packages.len(),
        packages.iter().map(|&p| list.package_name(p)),
    )
}

/// Orders `list` by dependencies (Kahn's algorithm, roots in the list's
/// order); `missing` are the ids of unlisted names the server does not
/// hold. A list already in dependency order with nothing missing, as an
/// export writes it, is sent as it is.
pub(super) fn order(list: &List, missing: &[u32]) -> Order {
    let packages = list.len();
    if missing.is_empty() && in_dependency_order(list) {
        return Order {
            send: (0..to_u32(packages)).collect(),
            ..Order::default()
        };
    }
    let mut is_missing = vec![false; list.names()];
    for &id in missing {
        is_missing[id as usize] = true;
    }
    // The packages that wait on each one, as one flat array (the counts
    // came with the list).
    let mut first_dependent = huge(packages + 1);
    first_dependent.push(0u32);
    let mut total = 0u32;
    for &count in &list.dependent_counts {
        total += count;
        first_dependent.push(total);
    }
    let (dependents, unmet) = link_dependents(list, &is_missing, &first_dependent);
    let (send, unmet) = release_in_levels(&first_dependent, &dependents, unmet);
    let mut order = Order {
        send,
        ..Order::default()
    };
    if order.send.len() == packages {
        return order;
    }
    drop(dependents);

    let stuck: Vec<u32> = (0..to_u32(packages))
        .filter(|&p| unmet[p as usize] > 0)
        .collect();
    let mut needed_by: Vec<Vec<u32>> = vec![Vec::new(); missing.len()];
    let mut missing_at = vec![NONE; list.names()];
    for (at, &id) in missing.iter().enumerate() {
        missing_at[id as usize] = to_u32(at);
    }
    for &package in &stuck {
        // A line names each dependency once (`parse_line`).
        for &id in list.dependencies(package) {
            let at = missing_at[id as usize];
            if at != NONE {
                needed_by[at as usize].push(package);
            }
        }
    }
    order.missing = missing
        .iter()
        .copied()
        .zip(needed_by)
        .filter(|(_, needed_by)| !needed_by.is_empty())
        .collect();
    let mut is_stuck = vec![false; packages];
    for &package in &stuck {
        is_stuck[package as usize] = true;
    }
    let groups = circular_groups(list, &stuck, &is_stuck);
    let mut in_group = vec![false; packages];
    for group in &groups {
        for &package in group {
            in_group[package as usize] = true;
        }
        let cycle = cycle_through(list, group, &in_group);
        let others = group
            .iter()
            .copied()
            .filter(|package| !cycle.contains(package))
            .collect();
        order.cycles.push((cycle, others));
        // A walk must stay in its own group: unmark it for the next one.
        for &package in group {
            in_group[package as usize] = false;
        }
    }
    for group in &groups {
        for &package in group {
            in_group[package as usize] = true;
        }
    }
    order.blocked = stuck
        .into_iter()
        .filter(|&package| !in_group[package as usize])
        .collect();
    order
}

/// Each package's dependents, in package order, at `first_dependent[p]..
/// first_dependent[p + 1]`, and each package's unmet dependencies (listed,
/// or missing: a missing one is never met). Two threads share the work by
/// halves of the package numbers: each reads every dependency list and
/// writes only its own half of both arrays.
fn link_dependents(
    list: &List,
    is_missing: &[bool],
    first_dependent: &[u32],
) -> (Vec<u32>, Vec<u32>) {
    let packages = list.len();
    let mut dependents = huge_filled(first_dependent[packages] as usize, 0u32);
    let mut unmet = huge_filled(packages, 0u32);
    let middle = packages / 2;
    let (low_dependents, high_dependents) =
        dependents.split_at_mut(first_dependent[middle] as usize);
    let (low_unmet, high_unmet) = unmet.split_at_mut(middle);
    let link = |half: Range<usize>, dependents: &mut [u32], unmet: &mut [u32]| {
        let base = first_dependent[half.start];
        let mut fill: Vec<u32> = first_dependent[half.clone()]
            .iter()
            .map(|&first| first - base)
            .collect();
        for package in 0..to_u32(packages) {
            let own = half.contains(&(package as usize));
            for &id in list.dependencies(package) {
                let id = id as usize;
                let listed = id < packages;
                if listed && half.contains(&id) {
                    let at = &mut fill[id - half.start];
                    dependents[*at as usize] = package;
                    *at += 1;
                }
                if own && (listed || is_missing[id]) {
                    unmet[package as usize - half.start] += 1;
                }
            }
        }
    };
    in_parallel(
        || link(0..middle, low_dependents, low_unmet),
        || link(middle..packages, high_dependents, high_unmet),
    );
    (dependents, unmet)
}

/// Frontiers this large are released on two threads.
const PARALLEL_FRONTIER: usize = 4096;

/// Kahn's algorithm, a level at a time: the packages with no unmet
/// dependency, then those whose last one that level met, and so on, each
/// level in package order, so the result is the same however the work was
/// shared. Returns the order and what remains unmet (more than zero for
/// the packages that can never be indexed).
fn release_in_levels(
    first_dependent: &[u32],
    dependents: &[u32],
    unmet: Vec<u32>,
) -> (Vec<u32>, Vec<u32>) {
    let packages = unmet.len();
    let mut send: Vec<u32> = huge(packages);
    send.extend((0..to_u32(packages)).filter(|&p| unmet[p as usize] == 0));
    let unmet: Vec<AtomicU32> = unmet.into_iter().map(AtomicU32::new).collect();
    // The packages in `frontier` meet their dependents' dependencies.
    let release = |frontier: &[u32]| {
        let mut released = Vec::new();
        for &package in frontier {
            let range = first_dependent[package as usize] as usize
                ..first_dependent[package as usize + 1] as usize;
            for &dependent in &dependents[range] {
                if unmet[dependent as usize].fetch_sub(1, Ordering::Relaxed) == 1 {
                    released.push(dependent);
                }
            }
        }
        released
    };
    let mut level = 0..send.len();
    while !level.is_empty() {
        let frontier = &send[level.clone()];
        let mut next = if frontier.len() >= PARALLEL_FRONTIER {
            let (low, high) = frontier.split_at(frontier.len() / 2);
            let (mut low, high) = in_parallel(|| release(low), || release(high));
            low.extend(high);
            low
        } else {
            release(frontier)
        };
        next.sort_unstable();
        level = send.len()..send.len() + next.len();
        send.extend(next);
    }
    let unmet = unmet.into_iter().map(AtomicU32::into_inner).collect();
    (send, unmet)
}

/// Whether every package's listed dependencies come before it in the
/// list: one pass, in the order the ids lie in memory.
fn in_dependency_order(list: &List) -> bool {
    (0..to_u32(list.len())).all(|package| {
        list.dependencies(package)
            .iter()
            .all(|&id| id < package || id as usize >= list.len())
    })
}

/// The strongly connected components of more than one package among
/// `stuck` (Tarjan's algorithm, iterative), each in the list's order, the
/// groups in the order of their first package.
fn circular_groups(list: &List, stuck: &[u32], is_stuck: &[bool]) -> Vec<Vec<u32>> {
    let packages = is_stuck.len();
    let mut index = vec![NONE; packages];
    let mut low = vec![0u32; packages];
    let mut on_stack = vec![false; packages];
    let mut stack: Vec<u32> = Vec::new();
    let mut next_index = 0u32;
    let mut groups = Vec::new();
    for &root in stuck {
        if index[root as usize] != NONE {
            continue;
        }
        // (package, how many of its dependencies were followed)
        let mut calls: Vec<(u32, usize)> = vec![(root, 0)];
        index[root as usize] = next_index;
        low[root as usize] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        while let Some(&mut (package, ref mut followed)) = calls.last_mut() {
            if let Some(&dependency) = list.dependencies(package).get(*followed) {
                *followed += 1;
                let d = dependency as usize;
                if d >= packages || !is_stuck[d] {
                    continue;
                }
                if index[d] == NONE {
                    index[d] = next_index;
                    low[d] = next_index;
                    next_index += 1;
                    stack.push(dependency);
                    on_stack[d] = true;
                    calls.push((dependency, 0));
                } else if on_stack[d] {
                    low[package as usize] = low[package as usize].min(index[d]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(caller, _)) = calls.last() {
                low[caller as usize] = low[caller as usize].min(low[package as usize]);
            }
            if low[package as usize] == index[package as usize] {
                let mut group = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member as usize] = false;
                    group.push(member);
                    if member == package {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort_unstable();
                    groups.push(group);
                }
            }
        }
    }
    groups.sort_by_key(|group| group[0]);
    groups
}

/// One cycle through `group`'s first package: every member of a circular
/// group has a dependency in it, so following them must come back.
fn cycle_through(list: &List, group: &[u32], in_group: &[bool]) -> Vec<u32> {
    let mut path = vec![group[0]];
    loop {
        let Some(&last) = path.last() else {
            return path;
        };
        let next = list
            .listed_dependencies(last)
            .find(|&d| in_group[d as usize]);
        let Some(next) = next else {
            // Cannot happen in a strongly connected group; show the path.
            return path;
        };
        if let Some(at) = path.iter().position(|&p| p == next) {
            let mut cycle = path.split_off(at);
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> List<'_> {
        List::read(text.as_bytes()).unwrap()
    }

    fn names<'a>(list: &List<'a>, packages: &[u32]) -> Vec<&'a str> {
        packages.iter().map(|&p| list.package_name(p)).collect()
    }

    fn id(list: &List, name: &str) -> u32 {
        (0..to_u32(list.names()))
            .find(|&id| list.name(id) == name)
            .unwrap()
    }

    fn index_lines(list: &List, packages: &[u32]) -> String {
        let mut lines = Vec::new();
        for &package in packages {
            list.push_index_line(&mut lines, package);
        }
        String::from_utf8(lines).unwrap()
    }

    #[test]
    fn orders_dependencies_first_keeping_the_list_order_of_roots() {
        let list = read("app: lib  zlib lib\n\nlib: zlib\nzlib:\ntool:\r\n");
        let order = order(&list, &[]);
        assert_eq!(names(&list, &order.send), ["zlib", "tool", "lib", "app"]);
        assert_eq!(order.skipped(), 0);
        assert!(order.report(&list).is_empty());
        assert_eq!(
            index_lines(&list, &order.send),
            "INDEX|zlib|\nINDEX|tool|\nINDEX|lib|zlib\nINDEX|app|lib,zlib\n"
        );
    }

    #[test]
    fn a_list_in_dependency_order_is_sent_as_it_is() {
        let list = read("zlib:\nlib: zlib gpg\napp: lib zlib\ntool:\n");
        assert_eq!(
            names(&list, &order(&list, &[]).send),
            ["zlib", "lib", "app", "tool"]
        );
        // Missing a dependency, it is ordered and reported as any list.
        let order = order(&list, &[id(&list, "gpg")]);
        assert_eq!(names(&list, &order.send), ["zlib", "tool"]);
        assert_eq!(names(&list, &order.blocked), ["lib", "app"]);
    }

    #[test]
    fn unlisted_dependencies_on_the_server_count_as_met() {
        let list = read("app: gpg lib docbook2X\nlib: gpg\n");
        let unlisted: Vec<&str> = list.unlisted().iter().map(|&id| list.name(id)).collect();
        assert_eq!(unlisted, ["gpg", "docbook2X"]);
        let order = order(&list, &[]);
        assert_eq!(names(&list, &order.send), ["lib", "app"]);
    }

    #[test]
    fn names_missing_dependencies_cycles_and_what_hangs_on_them() {
        let text = "\
ok: base
base:
a: b
b: c base
c: a
d: b
e: missing other
f: e
g: d ok
x: y
y: x z
z: x
";
        let list = read(text);
        let missing = [id(&list, "missing"), id(&list, "other")];
        let order = order(&list, &missing);
        assert_eq!(names(&list, &order.send), ["base", "ok"]);
        let cycles: Vec<(Vec<&str>, Vec<&str>)> = order
            .cycles
            .iter()
            .map(|(cycle, others)| (names(&list, cycle), names(&list, others)))
            .collect();
        assert_eq!(
            cycles,
            [
                (vec!["a", "b", "c", "a"], vec![]),
                (vec!["x", "y", "x"], vec!["z"]),
            ]
        );
        assert_eq!(names(&list, &order.blocked), ["d", "e", "f", "g"]);
        assert_eq!(order.skipped(), 10);
        assert_eq!(
            order.report(&list),
            [
                "missing dependency missing (not in the list, not on the server), needed by e",
                "missing dependency other (not in the list, not on the server), needed by e",
                "dependency cycle: a -> b -> c -> a",
                "dependency cycle: x -> y -> x; tangled with it in further cycles: z",
                "4 packages depending on those cannot be indexed either: d, e, f, g",
            ]
        );
    }

    #[test]
    fn long_name_lists_are_cut_with_a_count() {
        let mut text = String::from("root: gone\n");
        for i in 0..25 {
            text.push_str(&format!("p{i}: root\n"));
        }
        let list = read(&text);
        let order = order(&list, &[id(&list, "gone")]);
        let report = order.report(&list);
        assert!(
            report[1].starts_with("26 packages depending on those"),
            "{report:?}"
        );
        assert!(report[1].ends_with("p18 and 6 more"), "{report:?}");
    }

    #[test]
    fn long_cycles_and_many_missing_names_are_cut_too() {
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("c{i}: c{}\n", (i + 1) % 30));
        }
        for i in 0..25 {
            text.push_str(&format!("m{i}: gone{i}\n"));
        }
        let list = read(&text);
        let missing: Vec<u32> = list.unlisted();
        let report = order(&list, &missing).report(&list);
        assert_eq!(report.len(), MAX_REPORTED + 3, "{report:?}");
        assert_eq!(report[MAX_REPORTED], "and 5 more missing dependencies");
        assert!(
            report[MAX_REPORTED + 1].starts_with("dependency cycle of 30 packages: c0 -> c1 -> "),
            "{report:?}"
        );
        assert!(
            report[MAX_REPORTED + 1].ends_with(" -> c19 -> ... -> c0"),
            "{report:?}"
        );
    }

    #[test]
    fn errors_name_their_lines_duplicates_both() {
        let text = b"a: b\nb:\nbad line\na:\nc: \xff\n";
        let errors = List::read(text).unwrap_err();
        assert_eq!(errors.total, 3);
        let shown: Vec<String> = errors.first.iter().map(ToString::to_string).collect();
        assert!(
            shown[0].starts_with("line 3: expected `name: dep dep ...`"),
            "{shown:?}"
        );
        assert_eq!(
            shown[1],
            "line 4: package a is listed twice, on line 1 and on line 4"
        );
        assert_eq!(shown[2], "line 5: not valid UTF-8");
    }

    #[test]
    fn many_errors_keep_the_first_and_count_all() {
        let text = "?\n".repeat(MAX_REPORTED + 5);
        let errors = List::read(text.as_bytes()).unwrap_err();
        assert_eq!(
            (errors.first.len(), errors.total),
            (MAX_REPORTED, MAX_REPORTED + 5)
        );
        // A package listed twice early is among the first shown.
        let text = format!("a:\n{}a:\n", "?\n".repeat(MAX_REPORTED + 5));
        let errors = List::read(text.as_bytes()).unwrap_err();
        let lines: Vec<usize> = errors.first.iter().map(|e| e.line).collect();
        assert_eq!(lines, (2..2 + MAX_REPORTED).collect::<Vec<_>>());
        assert_eq!(errors.total, MAX_REPORTED + 6);
        let text = format!("a:\na:\n{}", "?\n".repeat(MAX_REPORTED + 5));
        let errors = List::read(text.as_bytes()).unwrap_err();
        assert!(
            errors.first[0].reason.contains("listed twice"),
            "{:?}",
            errors.first[0]
        );
    }

    /// A list big enough to be read in pieces and partitions on threads,
    /// with names that share their first 16 bytes, and a cycle and an
    /// error placed in the later pieces.
    fn big_list(packages: usize) -> String {
        let mut text = String::new();
        for i in 0..packages {
            // Dependencies on later lines, so only ordering can succeed.
            let deps: Vec<String> = [i + 1, i * 7 + 3, i * 13 + 5]
                .iter()
                .filter(|&&d| d < packages && d != i)
                .map(|d| format!("a-very-long-shared-prefix-{d}"))
                .collect();
            text.push_str(&format!(
                "a-very-long-shared-prefix-{i}:  {}\n",
                deps.join(" ")
            ));
        }
        text
    }

    #[test]
    fn a_large_list_read_on_threads_is_the_same_list() {
        let packages = 60_000;
        let text = big_list(packages);
        assert!(text.len() > PARALLEL_FROM_BYTES);
        let list = read(&text);
        assert_eq!(list.len(), packages);
        assert!(list.unlisted().is_empty());
        let order = order(&list, &[]);
        assert_eq!(order.send.len(), packages);
        // Every package comes after its dependencies.
        let mut position = vec![0; packages];
        for (at, &package) in order.send.iter().enumerate() {
            position[package as usize] = at;
        }
        for package in 0..to_u32(packages) {
            for dependency in list.listed_dependencies(package) {
                assert!(position[dependency as usize] < position[package as usize]);
            }
        }
        // And each line sent is the line as listed.
        let sent = index_lines(&list, &order.send);
        let mut sent: Vec<&str> = sent.lines().collect();
        sent.sort_unstable();
        let mut listed: Vec<String> = text
            .lines()
            .map(|line| {
                let entry = package_list::parse_line(1, line).unwrap().unwrap();
                let deps: Vec<&str> = entry.dependencies.iter().map(|d| d.as_str()).collect();
                format!("INDEX|{}|{}", entry.name, deps.join(","))
            })
            .collect();
        listed.sort_unstable();
        assert_eq!(sent, listed);
    }

    #[test]
    fn wide_levels_shared_between_threads_give_the_same_order_every_time() {
        // Each package depends on up to three earlier ones, listed last
        // first: wide levels, released on two threads.
        // 100,000 make levels of up to 7,000 (PARALLEL_FRONTIER is 4,096).
        let packages = 100_000;
        let mut seed = 7u64;
        let mut text = String::new();
        for i in (0..packages).rev() {
            let mut deps = Vec::new();
            for _ in 0..3.min(i) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                deps.push(format!("p{}", (seed >> 33) as usize % i));
            }
            text.push_str(&format!("p{i}: {}\n", deps.join(" ")));
        }
        let list = read(&text);
        let first = order(&list, &[]);
        assert_eq!(first.send.len(), packages);
        let mut position = vec![0; packages];
        for (at, &package) in first.send.iter().enumerate() {
            position[package as usize] = at;
        }
        for package in 0..to_u32(packages) {
            for dependency in list.listed_dependencies(package) {
                assert!(position[dependency as usize] < position[package as usize]);
            }
        }
        assert_eq!(order(&list, &[]).send, first.send);
    }

    #[test]
    fn a_large_list_names_its_late_troubles() {
        let text = big_list(60_000);
        let twice = format!("{text}a-very-long-shared-prefix-0:\n");
        assert_eq!(
            List::read(twice.as_bytes()).unwrap_err().first[0].to_string(),
            "line 60001: package a-very-long-shared-prefix-0 is listed twice, \
             on line 1 and on line 60001"
        );
        let troubled = format!("{text}loop-a: loop-b missing-one\nloop-b: loop-a\n");
        let list = read(&troubled);
        let order = order(&list, &[id(&list, "missing-one")]);
        assert_eq!(order.send.len(), 60_000);
        assert_eq!(
            order.report(&list),
            [
                "missing dependency missing-one (not in the list, not on the server), \
                 needed by loop-a",
                "dependency cycle: loop-a -> loop-b -> loop-a",
            ]
        );
    }

    #[test]
    fn line_numbers_count_across_pieces_blank_lines_included() {
        // A run of blank lines long enough to be pieces of their own, then
        // a bad line: its number counts every line before it.
        let mut text = big_list(30_000);
        text.push_str(&"\n".repeat(PARALLEL_FROM_BYTES));
        text.push_str("  \r\nbad\n");
        let errors = List::read(text.as_bytes()).unwrap_err();
        let line = 30_000 + PARALLEL_FROM_BYTES + 2;
        assert_eq!(errors.first[0].line, line, "{:?}", errors.first);
    }

    #[test]
    fn a_name_hashes_alike_wherever_it_stands() {
        // Read in one load past its end, or byte by byte at the text's end.
        for name in [
            "a",
            "pkg1234",
            "pkg12345",
            "exactly-16-bytes",
            "a-name-of-twenty-five-byt",
        ] {
            let inside = format!("x: {name} {name}zzzzzzzzzzzzzzzz\n");
            let at = inside.find(name).unwrap();
            let alone = hash_and_key(name.as_bytes(), 0, name.len());
            assert_eq!(
                hash_and_key(inside.as_bytes(), at, name.len()),
                alone,
                "{name}"
            );
            let mut padded = [0u8; 16];
            let kept = name.len().min(16);
            padded[..kept].copy_from_slice(&name.as_bytes()[..kept]);
            let words =
                [&padded[..8], &padded[8..]].map(|w| u64::from_le_bytes(w.try_into().unwrap()));
            assert_eq!(alone.1, words, "{name}");
        }
    }

    #[test]
    fn names_hash_apart() {
        let mut buckets = std::collections::HashSet::new();
        for i in 0..1000 {
            // The low bits pick the slot; these names differ in their last bytes.
            let name = format!("pkg{i:05}");
            buckets.insert(hash_and_key(name.as_bytes(), 0, name.len()).0 & 0xFFF);
        }
        assert!(buckets.len() > 800, "{}", buckets.len());
    }
}
