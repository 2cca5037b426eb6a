//! Rebuilding the state from a data directory at start.
//!
//! Recovery never guesses. Everything is read and checked before anything
//! is changed, and the only change it ever makes is cutting a torn last
//! record off the end of the log, after saving the cut bytes beside it.
//!
//! - **Which files the state needs** is known from the files themselves:
//!   the newest snapshot `snapshot-<g>` is continued by `log-<g>`, logs
//!   follow each other without gaps, and a log that was left for the next
//!   one ends with a seal naming it. A needed file that is missing stops the
//!   start, naming the file.
//! - **A torn tail is only what no valid record follows.** A crash cuts
//!   writes short at the end of the log, so invalid bytes followed by any
//!   valid record (a frame that decodes and whose checksum matches, at any
//!   offset) are damage, and so are invalid bytes at the end of a log that a
//!   later log continues with records. Damage stops the start naming the
//!   file and byte offset; nothing is written.
//!
//! Each file is read whole (a snapshot of 1,000,000 packages is tens of
//! megabytes, and a log is compacted before it outgrows the snapshot), which
//! lets records be decoded in place without copying names.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, DataFile, DirLock, Kind, LockError};
use super::record::{self, Frame, LoggedChange, Record};
use super::Generation;

/// The state found by [`recover`], to hand to [`super::Wal::open`].
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(super) dir: PathBuf,
    /// Exclusive hold on the directory, kept for as long as the log is open.
    pub(super) lock: DirLock,
    /// Generation of the snapshot the state starts from (or the first).
    pub(super) base: Generation,
    /// Whether `snapshot-<base>` exists; a directory that has none gets an
    /// empty one, so that from then on its log can never go missing unseen.
    pub(super) has_snapshot: bool,
    /// The newest log and its length after recovery, if there is one.
    pub(super) active_log: Option<(Generation, u64)>,
    /// Older logs without the seal of a rotation that a crash cut short:
    /// opening the log finishes that rotation by sealing them.
    pub(super) unsealed: Vec<(Generation, PathBuf)>,
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

/// A record cut short by a crash and cut off the end of the log; its bytes
/// were saved in `saved_to` first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Where the dropped record started; the file now ends here.
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
    pub saved_to: PathBuf,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cut a torn last record at byte {} ({} bytes: {}); the cut bytes are in {}",
            self.file.display(),
            self.offset,
            self.dropped_bytes,
            self.reason,
            self.saved_to.display()
        )
    }
}

crate::log::as_text!(TornTail);

/// Why the state could not be loaded. Nothing in the directory was changed.
#[derive(Debug)]
pub enum RecoveryError {
    /// Reading (or creating, or cutting) a file failed.
    Io { path: PathBuf, source: io::Error },
    /// Another process holds the directory.
    Locked { path: PathBuf },
    /// A file is damaged in a way no crash can explain.
    Damaged {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A file the state needs is not there.
    Missing { file: PathBuf, reason: String },
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
            RecoveryError::Missing { file, reason } => {
                write!(f, "{}: file is missing: {reason}", file.display())
            }
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

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Loads the state kept in `dir`, creating the directory if it is missing,
/// and passes every change to `apply` in order: the snapshot's packages
/// (dependencies first) as `Index` changes, then the logged changes. If
/// `apply` refuses a change (the index would not accept it, so the files
/// are inconsistent), recovery stops with damage at that record.
/// Takes an exclusive lock on the directory that the returned value keeps.
pub(crate) fn recover(
    dir: &Path,
    mut apply: impl FnMut(LoggedChange<'_>) -> Result<(), String>,
) -> Result<Recovered, RecoveryError> {
    let started = Instant::now();
    create_dir(dir)?;
    let lock = DirLock::acquire(dir).map_err(|error| match error {
        LockError::Held { path } => RecoveryError::Locked { path },
        LockError::Io { path, source } => RecoveryError::Io { path, source },
    })?;
    let listing = files::list(dir).map_err(io_error(dir))?;
    let snapshot = listing.snapshots.last();
    let base = snapshot.map_or(Generation::FIRST, |snapshot| snapshot.generation);
    // Missing files are found before anything is loaded.
    let logs = log_chain(dir, &listing.logs, base, snapshot.is_some())?;

    let mut stats = LoadStats::default();
    let snapshot_bytes = match snapshot {
        Some(snapshot) => load_snapshot(&snapshot.path, &mut apply, &mut stats)?,
        None => 0,
    };
    let mut replayed = Vec::with_capacity(logs.len());
    for log in logs {
        replayed.push(replay_log(log, &mut apply, &mut stats)?);
    }
    check_log_ends(dir, &replayed)?;

    let torn_tail = match replayed.iter().find_map(|log| log.tear.as_ref()) {
        Some(tear) => Some(save_and_cut(dir, tear)?),
        None => None,
    };
    let unsealed = replayed
        .iter()
        .rev()
        .skip(1)
        .filter(|log| !log.sealed)
        .map(|log| (log.generation, log.path.clone()))
        .collect();
    let active_log = replayed.last().map(|log| {
        let len = log.tear.as_ref().map_or(log.len, |tear| tear.offset);
        (log.generation, len as u64)
    });
    stats.elapsed = started.elapsed();
    Ok(Recovered {
        dir: dir.to_owned(),
        lock,
        base,
        has_snapshot: snapshot.is_some(),
        active_log,
        unsealed,
        snapshot_bytes,
        torn_tail,
        stats,
    })
}

/// The logs the state is made of: `log-<base>` and every later one, with
/// no gap. With a snapshot, `log-<base>` must exist: it was created before
/// the snapshot was written. Without one, the logs must start at the first.
fn log_chain<'a>(
    dir: &Path,
    logs: &'a [DataFile],
    base: Generation,
    has_snapshot: bool,
) -> Result<Vec<&'a DataFile>, RecoveryError> {
    let chain: Vec<&DataFile> = logs.iter().filter(|log| log.generation >= base).collect();
    let missing = |generation: Generation, reason: String| RecoveryError::Missing {
        file: files::path(dir, Kind::Log, generation),
        reason,
    };
    match chain.first() {
        None if has_snapshot => {
            return Err(missing(
                base,
                format!("snapshot-{base}.pi is continued by it, and no later log exists"),
            ))
        }
        Some(first) if first.generation != base && has_snapshot => {
            return Err(missing(
                base,
                format!("snapshot-{base}.pi is continued by it, and {} cannot follow the snapshot without it", file_name(&first.path)),
            ))
        }
        Some(first) if first.generation != base => {
            return Err(RecoveryError::Missing {
                file: files::path(dir, Kind::Snapshot, first.generation),
                reason: format!(
                    "{} continues it, and the logs before it are gone too",
                    file_name(&first.path)
                ),
            })
        }
        _ => {}
    }
    for pair in chain.windows(2) {
        let expected = pair[0].generation.next();
        if pair[1].generation != expected {
            return Err(missing(
                expected,
                format!("{} cannot be replayed without it", file_name(&pair[1].path)),
            ));
        }
    }
    Ok(chain)
}

/// Checks how each log ends against the logs after it: a seal must be
/// followed by the log it names (so a sealed newest log means the next one
/// is missing); a torn end, or a version 2 log ending without its seal, is
/// only possible when no later log holds a record (a crash during a
/// rotation).
fn check_log_ends(dir: &Path, logs: &[ReplayedLog]) -> Result<(), RecoveryError> {
    for (at, log) in logs.iter().enumerate() {
        let later_with_records = logs[at + 1..]
            .iter()
            .find(|later| later.records > 0 || later.tear.is_some());
        match (&log.tear, later_with_records) {
            (Some(tear), Some(later)) => {
                return Err(damaged(
                    &log.path,
                    tear.offset,
                    format!("{}, yet {} holds records after it", tear.reason, file_name(&later.path)),
                ))
            }
            (None, Some(later)) if !log.sealed && log.version >= 2 => {
                return Err(damaged(
                    &log.path,
                    log.len,
                    format!(
                        "the log ends without the seal a rotation writes, yet {} holds records after it",
                        file_name(&later.path)
                    ),
                ))
            }
            _ => {}
        }
        if log.sealed && at + 1 == logs.len() {
            let next = log.generation.next();
            return Err(RecoveryError::Missing {
                file: files::path(dir, Kind::Log, next),
                reason: format!(
                    "{} was sealed when log-{next}.pi was started",
                    file_name(&log.path)
                ),
            });
        }
    }
    Ok(())
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

/// Loads a snapshot; returns its size.
fn load_snapshot(
    path: &Path,
    apply: &mut impl FnMut(LoggedChange<'_>) -> Result<(), String>,
    stats: &mut LoadStats,
) -> Result<u64, RecoveryError> {
    let data = fs::read(path).map_err(io_error(path))?;
    stats.bytes += data.len() as u64;
    let mut packages: u64 = 0;
    let mut ended = false;
    let (_, end) = scan(path, &data, record::SNAPSHOT_MAGIC, |record| {
        if ended {
            return Err("record after the snapshot's end marker".to_owned());
        }
        match record {
            Record::Change(change @ LoggedChange::Index { .. }) => {
                packages += 1;
                apply(change)
            }
            Record::Change(LoggedChange::Remove { .. }) => {
                Err("REMOVE record in a snapshot".to_owned())
            }
            Record::SnapshotEnd { records } if records == packages => {
                ended = true;
                Ok(())
            }
            Record::SnapshotEnd { records } => Err(format!(
                "end marker counts {records} packages, the snapshot holds {packages}"
            )),
            Record::Seal { .. } => Err("log seal in a snapshot".to_owned()),
        }
    })?;
    // Snapshots are complete before they get their name: even a cut-short
    // record is damage here.
    if let Scanned::Invalid { offset, reason } = end {
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

/// One log after replay.
#[derive(Debug)]
struct ReplayedLog {
    path: PathBuf,
    generation: Generation,
    version: u32,
    /// The file's length.
    len: usize,
    /// Changes replayed from it.
    records: u64,
    /// Whether it ends with a seal.
    sealed: bool,
    /// The torn record at its end, if any.
    tear: Option<Tear>,
}

/// Invalid bytes at the end of a log, with no valid record after them.
#[derive(Debug)]
struct Tear {
    path: PathBuf,
    offset: usize,
    reason: String,
    bytes: Vec<u8>,
}

/// Replays one log.
fn replay_log(
    log: &DataFile,
    apply: &mut impl FnMut(LoggedChange<'_>) -> Result<(), String>,
    stats: &mut LoadStats,
) -> Result<ReplayedLog, RecoveryError> {
    let path = &log.path;
    let data = fs::read(path).map_err(io_error(path))?;
    stats.bytes += data.len() as u64;
    let mut records = 0;
    let mut sealed = false;
    let (version, end) = scan(path, &data, record::LOG_MAGIC, |record| {
        if sealed {
            return Err("a record after the log's seal".to_owned());
        }
        match record {
            Record::Change(change) => {
                records += 1;
                apply(change)
            }
            Record::Seal { next } if next == log.generation.next().value() => {
                sealed = true;
                Ok(())
            }
            Record::Seal { next } => Err(format!(
                "the seal names log {next}, not the next one ({})",
                log.generation.next()
            )),
            Record::SnapshotEnd { .. } => Err("snapshot end marker in a log".to_owned()),
        }
    })?;
    stats.log_records += records;
    let tear = match end {
        Scanned::Clean => None,
        // Nothing is ever written to a log after its seal.
        Scanned::Invalid { offset, reason } if sealed => {
            return Err(damaged(
                path,
                offset,
                format!("{reason} after the log's seal"),
            ))
        }
        Scanned::Invalid { offset, reason } => Some(Tear {
            path: path.clone(),
            offset,
            reason,
            bytes: data[offset..].to_vec(),
        }),
    };
    Ok(ReplayedLog {
        path: path.clone(),
        generation: log.generation,
        version,
        len: data.len(),
        records,
        sealed,
        tear,
    })
}

/// How a file's records ended.
enum Scanned {
    Clean,
    /// Invalid bytes from `offset` to the end, with no valid record among
    /// them.
    Invalid {
        offset: usize,
        reason: String,
    },
}

/// Checks the header, then decodes every record and passes it to
/// `on_record`, which may refuse it with a reason. Returns the file's
/// format version and how its records ended; invalid bytes followed by a
/// valid record are damage.
fn scan(
    path: &Path,
    data: &[u8],
    magic: [u8; 8],
    mut on_record: impl FnMut(Record<'_>) -> Result<(), String>,
) -> Result<(u32, Scanned), RecoveryError> {
    let version = record::check_header(data, magic).map_err(|reason| damaged(path, 0, reason))?;
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
            Frame::End => return Ok((version, Scanned::Clean)),
            Frame::Invalid(reason) => {
                if let Some(valid) = record::find_valid_record(data, at + 1) {
                    return Err(damaged(
                        path,
                        at,
                        format!("{reason}, and a valid record follows at byte {valid}"),
                    ));
                }
                return Ok((version, Scanned::Invalid { offset: at, reason }));
            }
        }
    }
}

/// Saves the torn bytes beside their log (`log-<g>.pi.torn-<offset>`),
/// durably, then cuts the log there, durably.
fn save_and_cut(dir: &Path, tear: &Tear) -> Result<TornTail, RecoveryError> {
    let saved_to = files::save_beside(&tear.path, &format!("torn-{}", tear.offset), &tear.bytes)
        .map_err(io_error(&tear.path))?;
    files::sync_dir(dir).map_err(io_error(dir))?;
    let file = OpenOptions::new()
        .write(true)
        .open(&tear.path)
        .map_err(io_error(&tear.path))?;
    file.set_len(tear.offset as u64)
        .map_err(io_error(&tear.path))?;
    file.sync_all().map_err(io_error(&tear.path))?;
    Ok(TornTail {
        file: tear.path.clone(),
        offset: tear.offset as u64,
        dropped_bytes: tear.bytes.len() as u64,
        reason: tear.reason.clone(),
        saved_to,
    })
}
