//! Durable state for `--data-dir` (SPEC §6): a write-ahead log with group
//! commit, snapshots that compact it, and crash recovery.
//!
//! The directory holds `log-<gen>.pi` and `snapshot-<gen>.pi` files.
//! `snapshot-<g>` holds the index as it was after every change in the logs
//! before `log-<g>`, so the state is the newest snapshot plus the logs from
//! its generation on (or every log from `log-1` when there is no snapshot).
//! New files are written under a `.tmp` name, synced and renamed into place,
//! so a file under its final name is always complete up to its records.
//!
//! The life of a data directory, as the server drives it:
//!
//! 1. [`recover`] locks the directory, replays snapshot and logs through a
//!    callback (which may refuse a change: that is damage too), and
//!    truncates a torn last record, reporting it for a warning.
//! 2. [`Wal::open`] continues the newest log; the server calls
//!    [`Wal::append`] under the index write lock and [`Wal::wait_durable`]
//!    after releasing it, before answering `OK`. A wait that fails means
//!    the disk failed: the server must stop (exit 1), not answer `OK`.
//! 3. When [`Wal::needs_compaction`] says so, a background thread creates
//!    the next log file ([`Wal::prepare_rotation`]), takes the index read
//!    lock, switches to it ([`Wal::rotate_to`]) and copies the packages,
//!    then [`Wal::write_snapshot`]s them; older files are deleted.
//! 4. On a graceful stop, [`Wal::close`] writes and syncs what is left.
//!
//! This module knows nothing of the index: changes and snapshot contents are
//! plain names.

mod crc32c;
mod files;
mod record;
mod recovery;
mod snapshot;
mod wal;

use std::fmt;
use std::str::FromStr;

pub use self::wal::{NextWalFile, Wal, WalEvent, WalStats};
pub use record::{Change, OwnedChange};
pub use recovery::{recover, LoadStats, Recovered, RecoveryError, TornTail};
pub use snapshot::{should_compact, MIN_COMPACTION_LOG_BYTES};

/// Numbers the log/snapshot files; a rotation starts the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(u64);

impl Generation {
    /// The first generation of a fresh directory.
    pub const FIRST: Generation = Generation(1);

    pub fn value(self) -> u64 {
        self.0
    }

    fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Position of a change in the log since it was opened: the n-th append
/// returns `Seq(n)`; `Seq(0)` is "nothing".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// The sequence number `value`, for callers that keep one in an atomic.
    pub const fn new(value: u64) -> Seq {
        Seq(value)
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

/// When an appended change counts as durable (`--fsync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// After an `fdatasync` covering it: survives a machine crash.
    #[default]
    Always,
    /// After `write(2)`: survives a crash of the process only.
    Never,
}

impl FromStr for Fsync {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            other => Err(format!("expected `always` or `never`, got `{other}`")),
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Never => "never",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Fsync;

    #[test]
    fn fsync_parses_and_prints() {
        for mode in [Fsync::Always, Fsync::Never] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        assert!("Always".parse::<Fsync>().is_err());
        assert!("".parse::<Fsync>().is_err());
    }
}
