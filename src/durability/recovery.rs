//! Rebuilding the state from a data directory at start. A [`survey`] judges
//! everything first: a refused problem stops the start with nothing
//! written; a torn last record is cut, after its bytes are saved.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, DirLock, Kind};
use super::survey::{self, Finding, Problem, Replay};
use super::Generation;

/// The state found by [`recover`], to hand to [`super::Wal::open`].
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(super) dir: PathBuf,
    /// Kept for as long as the log is open.
    pub(super) lock: DirLock,
    /// Generation of the snapshot the state starts from (or the first).
    pub(super) base: Generation,
    pub(super) has_snapshot: bool,
    /// The newest log and its length after recovery.
    pub(super) active_log: Option<(Generation, u64)>,
    /// Older logs left unsealed by a rotation a crash cut short.
    pub(super) unsealed: Vec<(Generation, PathBuf)>,
    pub(super) snapshot_bytes: u64,
    pub torn_tail: Option<TornTail>,
    pub stats: LoadStats,
}

/// What loading cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// The snapshot's packages.
    pub snapshot_records: u64,
    pub log_records: u64,
    /// Bytes read from all files.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// A record cut short by a crash and cut off the end of the log, after its
/// bytes were saved in `saved_to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// The file now ends here.
    pub offset: u64,
    pub dropped_bytes: u64,
    /// What was wrong with them, byte count first.
    pub reason: String,
    pub saved_to: PathBuf,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cut a torn last record at byte {} ({}); the cut bytes are in {}",
            self.file.display(),
            self.offset,
            self.reason,
            self.saved_to.display()
        )
    }
}

crate::log::as_text!(TornTail);

/// Why the state could not be loaded. Nothing in the directory was changed.
#[derive(Debug)]
pub enum RecoveryError {
    /// Reading, creating or cutting a file failed.
    Io { path: PathBuf, source: io::Error },
    /// Another process holds the directory.
    Locked { path: PathBuf },
    /// Damage no crash explains, or a missing file the state needs.
    Refused(Finding),
    /// `--data-dir` names something that is not a directory (or, for an
    /// offline tool, nothing).
    NotADirectory { path: PathBuf, exists: bool },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            RecoveryError::Locked { path } => write!(
                f,
                "{}: data directory is in use by another process: stop the server \
                 that holds it first",
                path.display()
            ),
            RecoveryError::Refused(finding) => finding.fmt(f),
            RecoveryError::NotADirectory { path, exists } => {
                let what = if *exists {
                    "not a directory"
                } else {
                    "no such directory"
                };
                write!(f, "{}: {what}", path.display())
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Takes the exclusive lock on `dir`, creating the directory first if it is
/// missing and `create` (a start; never an offline tool) says so.
pub(super) fn lock(dir: &Path, create: bool) -> Result<DirLock, RecoveryError> {
    let not_a_directory = |exists| RecoveryError::NotADirectory {
        path: dir.to_owned(),
        exists,
    };
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(not_a_directory(true)),
        Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
            // Durably: a directory entry lost in a crash would take every
            // file in it along.
            fs::create_dir_all(dir).map_err(io_error(dir))?;
            let parent = files::parent_dir(dir);
            files::sync_dir(parent).map_err(io_error(parent))?;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(not_a_directory(false))
        }
        Err(error) => return Err(io_error(dir)(error)),
    }
    DirLock::acquire(dir)
}

/// Loads the state kept in `dir` (created if missing) into `apply`; the
/// returned value keeps the directory's lock.
pub(crate) fn recover(dir: &Path, apply: impl Replay) -> Result<Recovered, RecoveryError> {
    let started = Instant::now();
    let lock = lock(dir, true)?;
    let survey = survey::survey(dir, apply)?;
    if let Some(refusal) = survey.refusal() {
        return Err(RecoveryError::Refused(refusal.clone()));
    }
    let torn_tail = (survey.findings.iter())
        .find(|finding| finding.problem == Problem::Torn)
        .map(save_and_cut)
        .transpose()?;
    let snapshot = survey.files.iter().find(|file| file.kind == Kind::Snapshot);
    let logs: Vec<_> = (survey.files.iter())
        .filter(|file| file.kind == Kind::Log)
        .collect();
    let unsealed = (logs.iter().rev().skip(1))
        .filter(|log| log.seal_at.is_none())
        .map(|log| (log.generation, log.path.clone()))
        .collect();
    // Nothing was refused: every change read was replayed.
    let stats = LoadStats {
        snapshot_records: snapshot.map_or(0, |snapshot| snapshot.changes),
        log_records: logs.iter().map(|log| log.changes).sum(),
        bytes: survey.files.iter().map(|file| file.len).sum(),
        elapsed: started.elapsed(),
    };
    Ok(Recovered {
        dir: dir.to_owned(),
        lock,
        // Nothing is missing: the state starts at its first file.
        base: (survey.files.first()).map_or(Generation::FIRST, |first| first.generation),
        has_snapshot: snapshot.is_some(),
        active_log: (logs.last()).map(|log| (log.generation, log.torn_at.unwrap_or(log.len))),
        unsealed,
        snapshot_bytes: snapshot.map_or(0, |snapshot| snapshot.len),
        torn_tail,
        stats,
    })
}

/// Saves the bytes of a torn last record beside their log, durably, then
/// cuts the log there, durably.
fn save_and_cut(finding: &Finding) -> Result<TornTail, RecoveryError> {
    let (path, offset) = (&finding.file, finding.offset.unwrap_or(0));
    let data = fs::read(path).map_err(io_error(path))?;
    let torn = data
        .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
        .unwrap_or_default();
    let suffix = format!("{}{offset}", files::SAVED_TORN);
    let saved_to = files::save_beside(path, &suffix, torn).map_err(io_error(path))?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(offset).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(TornTail {
        file: path.to_owned(),
        offset,
        dropped_bytes: torn.len() as u64,
        reason: finding.reason.clone(),
        saved_to,
    })
}
