//! Rebuilding the state from a data directory at start.
//!
//! Everything is read and checked before anything is changed: the only write
//! recovery makes is cutting off a torn last record (the end of the last log
//! holding records), and that happens after every other byte has been
//! accepted. Each file is read whole
//! (a snapshot of 1,000,000 packages is tens of megabytes, and a log is
//! compacted before it outgrows the snapshot), which lets records be decoded
//! in place without copying names.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, DataFile, Kind};
use super::record::{self, Change, Frame, Record};
use super::Generation;

/// The state found by [`recover`], to hand to [`super::Log::open`].
#[derive(Debug)]
pub struct Recovered {
    pub(super) dir: PathBuf,
    /// Exclusive lock on the directory, kept for as long as the log is open.
    pub(super) lock: File,
    /// Generation of the snapshot the state starts from (or the first).
    pub(super) base: Generation,
    /// The newest log and its length after recovery, if there is one.
    pub(super) active_log: Option<(Generation, u64)>,
    pub(super) snapshot_bytes: u64,
    /// The torn last record that was cut off, if any: worth a warning.
    pub torn_tail: Option<TornTail>,
    pub stats: LoadStats,
}

/// What loading cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// `INDEX` records read from the snapshot (its package count).
    pub snapshot_records: u64,
    /// Changes replayed from the logs.
    pub log_records: u64,
    /// Bytes read from all files.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// A record cut short by a crash and dropped from the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Where the dropped record started; the file now ends here.
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: dropped a torn last record at byte {} ({} bytes: {})",
            self.file.display(),
            self.offset,
            self.dropped_bytes,
            self.reason
        )
    }
}

/// Why the state could not be loaded. Nothing in the directory was changed.
#[derive(Debug)]
pub enum RecoveryError {
    /// Reading (or creating, or truncating) a file failed.
    Io { path: PathBuf, source: io::Error },
    /// Another process holds the directory.
    Locked { path: PathBuf },
    /// A file is damaged in a way no crash can explain.
    Damaged {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            RecoveryError::Locked { path } => write!(
                f,
                "{}: data directory is in use by another process",
                path.display()
            ),
            RecoveryError::Damaged {
                file,
                offset,
                reason,
            } => write!(f, "{}: damaged at byte {offset}: {reason}", file.display()),
        }
    }
}

impl std::error::Error for RecoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoveryError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.to_owned(),
        source,
    }
}

fn damaged(file: &Path, offset: usize, reason: String) -> RecoveryError {
    RecoveryError::Damaged {
        file: file.to_owned(),
        offset: offset as u64,
        reason,
    }
}

/// Loads the state kept in `dir`, creating the directory if it is missing,
/// and passes every change to `apply` in order: the snapshot's packages
/// (dependencies first) as `Index` changes, then the logged changes. If
/// `apply` refuses a change (the index would not accept it, so the files
/// are inconsistent), recovery stops with damage at that record.
/// Takes an exclusive lock on the directory that the returned value keeps.
pub fn recover(
    dir: &Path,
    mut apply: impl FnMut(Change<'_>) -> Result<(), String>,
) -> Result<Recovered, RecoveryError> {
    let started = Instant::now();
    create_dir(dir)?;
    let lock = lock_dir(dir)?;
    let listing = files::list(dir).map_err(io_error(dir))?;
    let mut stats = LoadStats::default();

    let (base, snapshot_bytes) = match listing.snapshots.last() {
        Some(snapshot) => {
            let bytes = load_snapshot(&snapshot.path, &mut apply, &mut stats)?;
            (snapshot.generation, bytes)
        }
        None => (Generation::FIRST, 0),
    };

    let logs: Vec<&DataFile> = listing
        .logs
        .iter()
        .filter(|log| log.generation >= base)
        .collect();
    let mut expected = base;
    for log in &logs {
        if log.generation != expected {
            let missing = files::path(dir, Kind::Log, expected);
            return Err(damaged(
                &missing,
                0,
                format!(
                    "file is missing, so {} cannot be replayed",
                    log.path.display()
                ),
            ));
        }
        expected = expected.next();
    }

    let mut active_log = None;
    let mut torn_tail: Option<TornTail> = None;
    for log in &logs {
        let records_before = stats.log_records;
        let (valid_len, torn) = replay_log(&log.path, &mut apply, &mut stats)?;
        // The writer finishes and syncs a log before the next one gets a
        // record, so a torn record may end an older log only when a crash
        // hit during a rotation: every later log must be empty.
        if let Some(earlier) = &torn_tail {
            if stats.log_records > records_before || torn.is_some() {
                return Err(RecoveryError::Damaged {
                    file: earlier.file.clone(),
                    offset: earlier.offset,
                    reason: format!(
                        "{}, yet {} holds records after it",
                        earlier.reason,
                        log.path.display()
                    ),
                });
            }
        }
        active_log = Some((log.generation, valid_len));
        torn_tail = torn_tail.or(torn);
    }

    if let Some(torn) = &torn_tail {
        cut(&torn.file, torn.offset)?;
    }
    stats.elapsed = started.elapsed();
    Ok(Recovered {
        dir: dir.to_owned(),
        lock,
        base,
        active_log,
        snapshot_bytes,
        torn_tail,
        stats,
    })
}

/// Creates `dir` if missing, durably: a directory entry lost in a crash
/// would take every file in it along.
fn create_dir(dir: &Path) -> Result<(), RecoveryError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    files::sync_dir(parent).map_err(io_error(parent))
}

fn lock_dir(dir: &Path) -> Result<File, RecoveryError> {
    let path = dir.join(files::LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(RecoveryError::Locked { path }),
        Err(TryLockError::Error(source)) => Err(RecoveryError::Io { path, source }),
    }
}

/// Loads a snapshot; returns its size.
fn load_snapshot(
    path: &Path,
    apply: &mut impl FnMut(Change<'_>) -> Result<(), String>,
    stats: &mut LoadStats,
) -> Result<u64, RecoveryError> {
    let data = fs::read(path).map_err(io_error(path))?;
    stats.bytes += data.len() as u64;
    let mut packages: u64 = 0;
    let mut ended = false;
    let end = scan(path, &data, record::SNAPSHOT_MAGIC, |record| {
        if ended {
            return Err("record after the snapshot's end marker".to_owned());
        }
        match record {
            Record::Change(change @ Change::Index { .. }) => {
                packages += 1;
                apply(change)
            }
            Record::Change(Change::Remove { .. }) => Err("REMOVE record in a snapshot".to_owned()),
            Record::SnapshotEnd { records } if records == packages => {
                ended = true;
                Ok(())
            }
            Record::SnapshotEnd { records } => Err(format!(
                "end marker counts {records} packages, the snapshot holds {packages}"
            )),
        }
    })?;
    // Snapshots are complete before they get their name: even a cut-short
    // record is damage here.
    if let Scanned::Torn { offset, reason } = end {
        return Err(damaged(path, offset, reason));
    }
    if !ended {
        return Err(damaged(
            path,
            data.len(),
            "snapshot ends without its end marker".to_owned(),
        ));
    }
    stats.snapshot_records = packages;
    Ok(data.len() as u64)
}

/// Replays one log; returns its valid length and the torn record at its
/// end, if any.
fn replay_log(
    path: &Path,
    apply: &mut impl FnMut(Change<'_>) -> Result<(), String>,
    stats: &mut LoadStats,
) -> Result<(u64, Option<TornTail>), RecoveryError> {
    let data = fs::read(path).map_err(io_error(path))?;
    stats.bytes += data.len() as u64;
    let end = scan(path, &data, record::LOG_MAGIC, |record| match record {
        Record::Change(change) => {
            stats.log_records += 1;
            apply(change)
        }
        Record::SnapshotEnd { .. } => Err("snapshot end marker in a log".to_owned()),
    })?;
    match end {
        Scanned::Clean => Ok((data.len() as u64, None)),
        Scanned::Torn { offset, reason } => Ok((
            offset as u64,
            Some(TornTail {
                file: path.to_owned(),
                offset: offset as u64,
                dropped_bytes: (data.len() - offset) as u64,
                reason,
            }),
        )),
    }
}

/// How a file's records ended.
enum Scanned {
    Clean,
    Torn { offset: usize, reason: String },
}

/// Checks the header, then decodes every record and passes it to
/// `on_record`, which may refuse it with a reason.
fn scan(
    path: &Path,
    data: &[u8],
    magic: [u8; 8],
    mut on_record: impl FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Scanned, RecoveryError> {
    record::check_header(data, magic).map_err(|reason| damaged(path, 0, reason))?;
    let mut dependencies = Vec::new();
    let mut at = record::HEADER_LEN;
    loop {
        match record::next_frame(data, at) {
            Frame::Record { payload, next } => {
                record::decode(payload, &mut dependencies)
                    .and_then(&mut on_record)
                    .map_err(|reason| damaged(path, at, reason))?;
                at = next;
            }
            Frame::End => return Ok(Scanned::Clean),
            Frame::Torn(reason) => return Ok(Scanned::Torn { offset: at, reason }),
            Frame::Corrupt(reason) => return Err(damaged(path, at, reason)),
        }
    }
}

/// Cuts `path` to `len` bytes, durably.
fn cut(path: &Path, len: u64) -> Result<(), RecoveryError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(len).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}
