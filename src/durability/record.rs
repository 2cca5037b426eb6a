//! The encoding of log and snapshot files: a header, then records framed by
//! length and CRC-32C (`docs/durability.md#file-format`).

use std::io;

use super::crc32c;
use super::files::Kind;
use crate::name::{Dependencies, PackageName};

/// Magic then version.
pub(super) const HEADER_LEN: usize = 12;
/// Length then checksum.
pub(super) const RECORD_HEADER_LEN: usize = 8;
/// The only version this build writes and reads.
pub(super) const FORMAT_VERSION: u32 = 2;
/// Far above any line the protocol accepts, far below what could exhaust
/// memory: larger payloads are refused when encoding, damage when reading.
pub(super) const MAX_PAYLOAD_LEN: u32 = 256 << 20;

const KIND_INDEX: u8 = 1;
const KIND_REMOVE: u8 = 2;
const KIND_SNAPSHOT_END: u8 = 3;
const KIND_SEAL: u8 = 4;

/// One state change of the index, borrowed from the request that made it,
/// or (as [`LoggedChange`]) from a file read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change<'a, D = Dependencies<'a>> {
    /// The package is added or its dependency list replaced.
    Index {
        package: PackageName<'a>,
        dependencies: D,
    },
    /// The package is removed.
    Remove { package: PackageName<'a> },
}

pub(crate) type LoggedChange<'a> = Change<'a, LoggedNames<'a>>;

/// The dependency names of a logged `INDEX`, left as encoded and checked
/// once, when decoded: no record needs a buffer of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoggedNames<'a>(&'a [u8]);

impl<'a> LoggedNames<'a> {
    pub(crate) fn iter(self) -> impl Iterator<Item = PackageName<'a>> + Clone + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (name, tail) = tail.split_at_checked(usize::from(len))?;
            rest = tail;
            PackageName::new(name)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Record<'a> {
    Change(LoggedChange<'a>),
    SnapshotEnd {
        records: u64,
    },
    /// The log ends here and log `next` continues the history.
    Seal {
        next: u64,
    },
}

fn magic(kind: Kind) -> [u8; 8] {
    match kind {
        Kind::Log => *b"PKIXLOG\n",
        Kind::Snapshot => *b"PKIXSNP\n",
    }
}

pub(super) fn header(kind: Kind) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&magic(kind));
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Checks that `data` starts with the header of `kind` in this version.
pub(super) fn check_header(data: &[u8], kind: Kind) -> Result<(), String> {
    let got = data.len();
    if got < HEADER_LEN {
        return Err(format!(
            "file header cut short ({got} of {HEADER_LEN} bytes)"
        ));
    }
    if data[..8] != magic(kind) {
        return Err(format!(
            "unknown file type (magic {:02x?}, expected {:02x?})",
            &data[..8],
            magic(kind)
        ));
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
        ));
    }
    Ok(())
}

/// Appends the record for `change` to `out` (see [`encode_index`]).
pub(super) fn encode_change(out: &mut Vec<u8>, change: &Change<'_>) -> io::Result<()> {
    match *change {
        Change::Index {
            package,
            dependencies,
        } => encode_index(
            out,
            package.as_str(),
            dependencies.iter().map(PackageName::as_str),
        ),
        Change::Remove { package } => encode_record(out, |out| {
            out.push(KIND_REMOVE);
            push_name(out, package.as_str())
        }),
    }
}

/// Appends an `INDEX` record to `out`. Names must be 1..=255 bytes; on any
/// error `out` is left as it was.
pub(super) fn encode_index<'d>(
    out: &mut Vec<u8>,
    package: &str,
    dependencies: impl IntoIterator<Item = &'d str>,
) -> io::Result<()> {
    encode_record(out, |out| {
        out.push(KIND_INDEX);
        push_name(out, package)?;
        // Patched in afterwards, so dependencies can be a one-pass iterator.
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut count: u32 = 0;
        for dependency in dependencies {
            push_name(out, dependency)?;
            count = count
                .checked_add(1)
                .ok_or_else(|| invalid("too many dependencies for one record"))?;
        }
        out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        Ok(())
    })
}

pub(super) fn encode_snapshot_end(out: &mut Vec<u8>, records: u64) -> io::Result<()> {
    encode_record(out, |out| push_u64_payload(out, KIND_SNAPSHOT_END, records))
}

/// Appends the seal that names `next` as the log continuing this one.
pub(super) fn encode_seal(out: &mut Vec<u8>, next: u64) -> io::Result<()> {
    encode_record(out, |out| push_u64_payload(out, KIND_SEAL, next))
}

fn push_u64_payload(out: &mut Vec<u8>, kind: u8, value: u64) -> io::Result<()> {
    out.push(kind);
    out.extend_from_slice(&value.to_le_bytes());
    Ok(())
}

/// Frames the payload written by `write_payload` with its length and
/// checksum, or rolls `out` back if it fails or the payload is too large.
fn encode_record(
    out: &mut Vec<u8>,
    write_payload: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    let framed = write_payload(out).and_then(|()| {
        let payload = &out[start + RECORD_HEADER_LEN..];
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= MAX_PAYLOAD_LEN)
            .ok_or_else(|| invalid("record too large"))?;
        let crc = crc32c::checksum(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    });
    if framed.is_err() {
        out.truncate(start);
    }
    framed
}

fn push_name(out: &mut Vec<u8>, name: &str) -> io::Result<()> {
    let len = u8::try_from(name.len())
        .ok()
        .filter(|&len| len > 0)
        .ok_or_else(|| invalid("a name must be 1 to 255 bytes"))?;
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason)
}

/// Decodes one payload (already checked against its CRC).
pub(super) fn decode(payload: &[u8]) -> Result<Record<'_>, String> {
    let mut reader = PayloadReader { rest: payload };
    let record = match reader.array::<1>()?[0] {
        KIND_INDEX => {
            let package = reader.name()?;
            let count = u32::from_le_bytes(reader.array()?);
            let names = reader.rest;
            for _ in 0..count {
                reader.name()?;
            }
            let names = &names[..names.len() - reader.rest.len()];
            Record::Change(LoggedChange::Index {
                package,
                dependencies: LoggedNames(names),
            })
        }
        KIND_REMOVE => Record::Change(LoggedChange::Remove {
            package: reader.name()?,
        }),
        KIND_SNAPSHOT_END => Record::SnapshotEnd {
            records: u64::from_le_bytes(reader.array()?),
        },
        KIND_SEAL => Record::Seal {
            next: u64::from_le_bytes(reader.array()?),
        },
        kind => return Err(format!("unknown record kind {kind}")),
    };
    let extra = reader.rest.len();
    if extra > 0 {
        return Err(format!("{extra} unexpected bytes after the record"));
    }
    Ok(record)
}

struct PayloadReader<'a> {
    rest: &'a [u8],
}

impl<'a> PayloadReader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = (self.rest.split_at_checked(len))
            .ok_or_else(|| "record payload ends early".to_owned())?;
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (taken, rest) = (self.rest.split_first_chunk::<N>())
            .ok_or_else(|| "record payload ends early".to_owned())?;
        self.rest = rest;
        Ok(*taken)
    }

    fn name(&mut self) -> Result<PackageName<'a>, String> {
        let [len] = self.array()?;
        let bytes = self.take(usize::from(len))?;
        PackageName::new(bytes).ok_or_else(|| "a name that is not a valid package name".to_owned())
    }
}

/// A valid end marker's package count, capped at what the file could hold
/// (`INDEX` records take at least 15 bytes) against a damaged count.
pub(super) fn snapshot_packages(data: &[u8]) -> Option<usize> {
    const END_MARKER_LEN: usize = RECORD_HEADER_LEN + 1 + 8;
    let at = data.len().checked_sub(END_MARKER_LEN)?;
    let Frame::Record { payload, .. } = next_frame(data, at) else {
        return None;
    };
    let Ok(Record::SnapshotEnd { records }) = decode(payload) else {
        return None;
    };
    let records = usize::try_from(records).ok()?;
    Some(records.min(data.len() / (RECORD_HEADER_LEN + 1 + 2 + 4)))
}

/// What [`next_frame`] found at a position in a file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A record whose checksum matches; the payload is not yet decoded.
    Record { payload: &'a [u8], next: usize },
    /// Clean end of the file.
    End,
    /// Torn or damaged, depending on what follows ([`find_valid_record`]).
    Invalid(String),
}

/// Reads the record frame starting at `at` in `data` (a whole file).
pub(super) fn next_frame(data: &[u8], at: usize) -> Frame<'_> {
    let rest = &data[at.min(data.len())..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < RECORD_HEADER_LEN {
        return Frame::Invalid(format!(
            "record header cut short ({} of {RECORD_HEADER_LEN} bytes)",
            rest.len()
        ));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 && rest.iter().all(|&b| b == 0) {
        // A file extended by a crash but whose data never reached the disk
        // reads back as zeros; no record starts with a zero length.
        return Frame::Invalid(format!("{} zero bytes", rest.len()));
    }
    if len == 0 || len > MAX_PAYLOAD_LEN {
        return Frame::Invalid(format!("impossible record length {len}"));
    }
    let available = rest.len() - RECORD_HEADER_LEN;
    let len = len as usize;
    if len > available {
        return Frame::Invalid(format!(
            "record cut short ({available} of {len} payload bytes)"
        ));
    }
    let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if crc32c::checksum(payload) != crc {
        return Frame::Invalid("record checksum mismatch".to_owned());
    }
    Frame::Record {
        payload,
        next: at + RECORD_HEADER_LEN + len,
    }
}

/// Where the first valid record after `from` starts: invalid bytes with a
/// valid record after them are damage, never a torn write (a crash cuts
/// only a log's end). Every offset is tried, as damage may shift record
/// boundaries; decoding before the checksum rejects garbage in a few bytes.
pub(super) fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&at| {
        let rest = &data[at..];
        let Some(header) = rest.get(..RECORD_HEADER_LEN) else {
            return false;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = rest[RECORD_HEADER_LEN..].get(..len) else {
            return false;
        };
        len > 0 && decode(payload).is_ok() && crc32c::checksum(payload) == crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::tests::OwnedChange;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._+@/-]{1,255}"
    }

    fn valid(text: &str) -> PackageName<'_> {
        PackageName::new(text.as_bytes()).unwrap()
    }

    fn remove(package: &str) -> Change<'_> {
        Change::Remove {
            package: valid(package),
        }
    }

    fn owned_change() -> impl Strategy<Value = OwnedChange> {
        prop_oneof![
            (name(), proptest::collection::vec(name(), 0..8)).prop_map(
                |(package, dependencies)| OwnedChange::Index {
                    package,
                    dependencies
                }
            ),
            name().prop_map(|package| OwnedChange::Remove { package }),
        ]
    }

    fn encode_owned(out: &mut Vec<u8>, change: &OwnedChange) {
        match change {
            OwnedChange::Index {
                package,
                dependencies,
            } => encode_index(out, package, dependencies.iter().map(String::as_str)),
            OwnedChange::Remove { package } => encode_change(out, &remove(package)),
        }
        .unwrap();
    }

    proptest! {
        #[test]
        fn round_trip(changes in proptest::collection::vec(owned_change(), 0..20)) {
            let mut bytes = Vec::new();
            for change in &changes {
                encode_owned(&mut bytes, change);
            }
            let mut at = 0;
            let mut decoded = Vec::new();
            loop {
                match next_frame(&bytes, at) {
                    Frame::Record { payload, next } => {
                        match decode(payload).unwrap() {
                            Record::Change(change) => decoded.push(OwnedChange::from(change)),
                            other => panic!("unexpected {other:?}"),
                        }
                        at = next;
                    }
                    Frame::End => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            prop_assert_eq!(decoded, changes);
        }
    }

    #[test]
    fn a_change_and_the_snapshot_form_encode_alike() {
        let mut from_change = Vec::new();
        let change = Change::Index {
            package: valid("a"),
            dependencies: Dependencies::new(b"b,c").unwrap(),
        };
        encode_change(&mut from_change, &change).unwrap();
        let mut from_snapshot = Vec::new();
        encode_index(&mut from_snapshot, "a", ["b", "c"]).unwrap();
        assert_eq!(from_change, from_snapshot);
    }

    #[test]
    fn names_of_a_wrong_length_are_refused_and_leave_the_buffer_alone() {
        let mut out = vec![7];
        let long = "x".repeat(256);
        assert!(encode_index(&mut out, "", []).is_err());
        assert!(encode_index(&mut out, &long, []).is_err());
        assert!(encode_index(&mut out, "a", ["ok", ""]).is_err());
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn snapshot_end_round_trips() {
        let mut out = Vec::new();
        encode_snapshot_end(&mut out, 1_000_000).unwrap();
        let Frame::Record { payload, .. } = next_frame(&out, 0) else {
            panic!("no record");
        };
        assert_eq!(
            decode(payload),
            Ok(Record::SnapshotEnd { records: 1_000_000 })
        );
    }

    #[test]
    fn invalid_frames_and_the_valid_record_after_them() {
        let mut out = Vec::new();
        encode_change(&mut out, &remove("a")).unwrap();
        let one = out.len();
        encode_change(&mut out, &remove("b")).unwrap();
        let invalid = |data: &[u8], at| matches!(next_frame(data, at), Frame::Invalid(_));
        // Cut inside the second record: invalid, and nothing valid after it.
        for cut in [one + 3, out.len() - 1] {
            assert!(invalid(&out[..cut], one));
            assert_eq!(find_valid_record(&out[..cut], one + 1), None);
        }
        // A bad checksum in the last record: nothing valid follows it.
        let mut last_bad = out.clone();
        *last_bad.last_mut().unwrap() ^= 1;
        assert!(invalid(&last_bad, one));
        assert_eq!(find_valid_record(&last_bad, one + 1), None);
        // In the first record, or in its length: the second one follows.
        for byte in [one - 1, 0, 3] {
            let mut first_bad = out.clone();
            first_bad[byte] ^= 0x40;
            assert!(invalid(&first_bad, 0), "byte {byte}");
            assert_eq!(find_valid_record(&first_bad, 1), Some(one), "byte {byte}");
        }
        // Zeros, or a huge length: invalid.
        let mut zeros = out.clone();
        zeros.extend_from_slice(&[0; 40]);
        assert!(invalid(&zeros, out.len()));
        assert_eq!(find_valid_record(&zeros, out.len()), None);
        let mut huge = out.clone();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 20]);
        assert!(invalid(&huge, out.len()));
    }

    #[test]
    fn a_record_with_an_invalid_name_does_not_decode() {
        let mut out = Vec::new();
        encode_index(&mut out, "a b", []).unwrap();
        let Frame::Record { payload, .. } = next_frame(&out, 0) else {
            panic!("no frame");
        };
        assert!(decode(payload).is_err());
        assert_eq!(find_valid_record(&out, 0), None);
    }

    #[test]
    fn seals_round_trip() {
        let mut out = Vec::new();
        encode_seal(&mut out, 7).unwrap();
        let Frame::Record { payload, .. } = next_frame(&out, 0) else {
            panic!("no frame");
        };
        assert_eq!(decode(payload), Ok(Record::Seal { next: 7 }));
    }

    #[test]
    fn headers_are_checked() {
        let good = header(Kind::Log);
        assert_eq!(check_header(&good, Kind::Log), Ok(()));
        assert!(check_header(&good, Kind::Snapshot).is_err());
        assert!(check_header(&good[..5], Kind::Log).is_err());
        for version in [1, 3] {
            let mut other = good;
            other[8] = version;
            let reason = check_header(&other, Kind::Log).unwrap_err();
            assert!(reason.contains(&format!("version {version} ")), "{reason}");
        }
    }
}
