//! Writing snapshots, and the rule for when one is due.

use std::io::{self, Write};
use std::path::Path;

use super::files::{self, Kind};
use super::record;
use super::Generation;

/// Below this a log is never compacted: rewriting a tiny index every few
/// changes would cost more than the disk it saves.
pub(crate) const MIN_COMPACTION_LOG_BYTES: u64 = 1 << 20;

/// Whether the log has outgrown its snapshot: compacting then keeps the
/// directory within about twice the index's size, however many commands
/// were ever sent.
pub(super) fn should_compact(log_bytes: u64, snapshot_bytes: u64, at_least: u64) -> bool {
    log_bytes >= at_least.max(snapshot_bytes)
}

/// How large the log receiving appends may grow before writers wait for the
/// compactor to rotate it: twice the size at which a compaction starts, so
/// that churn at full speed (tens of megabytes a second) cannot outrun a
/// compaction whose syncs take milliseconds.
pub(crate) fn log_cap(snapshot_bytes: u64, at_least: u64) -> u64 {
    at_least.max(snapshot_bytes).saturating_mul(2)
}

/// Bytes gathered before each `write(2)` of a snapshot.
const WRITE_CHUNK: usize = 1 << 20;

/// Writes `packages` (dependencies before dependents, the order replay
/// needs) as snapshot `generation`, durably, then deletes the files it
/// supersedes. Returns its size.
pub(super) fn write<'p, D>(
    dir: &Path,
    generation: Generation,
    packages: impl IntoIterator<Item = (&'p str, D)>,
) -> io::Result<u64>
where
    D: IntoIterator<Item = &'p str>,
{
    let (_, bytes) =
        files::write_atomically(&files::path(dir, Kind::Snapshot, generation), |file| {
            let mut chunk = Vec::with_capacity(WRITE_CHUNK);
            chunk.extend_from_slice(&record::header(Kind::Snapshot));
            let mut records: u64 = 0;
            for (package, dependencies) in packages {
                record::encode_index(&mut chunk, package, dependencies)?;
                records += 1;
                if chunk.len() >= WRITE_CHUNK {
                    file.write_all(&chunk)?;
                    chunk.clear();
                }
            }
            record::encode_snapshot_end(&mut chunk, records)?;
            file.write_all(&chunk)
        })?;
    files::remove_older_than(dir, generation, false)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_waits_for_the_minimum_then_tracks_the_snapshot() {
        let min = MIN_COMPACTION_LOG_BYTES;
        assert!(!should_compact(0, 0, min));
        assert!(!should_compact(min - 1, 0, min));
        assert!(should_compact(min, 0, min));
        assert!(!should_compact(5 << 20, 6 << 20, min));
        assert!(should_compact(6 << 20, 6 << 20, min));
        assert!(should_compact(100, 0, 1));
    }
}
