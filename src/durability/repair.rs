//! Repairing a data directory offline (`docs/durability.md#repair`): survey,
//! cut at the first problem a start refuses, survey again. Every byte cut is
//! first saved beside its file, durably; the file is rewritten atomically.

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::files::{self, Kind};
use super::record;
use super::recovery::{self, io_error, RecoveryError};
use super::survey::{file_name, Finding, Problem, Survey, SurveyedFile};
use super::{examine_locked, Examined};

/// Each round shortens what it cuts: a directory needing more is stuck.
const MAX_ROUNDS: usize = 64;

/// One change `repair` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RepairStep {
    /// A file was cut.
    Cut(Cut),
    /// A missing newest log was created, empty.
    Created { file: PathBuf, why: String },
}

/// A file cut at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) file: PathBuf,
    pub(crate) offset: u64,
    /// `None` when no bytes followed `offset`.
    pub(crate) saved_to: Option<PathBuf>,
    /// Intact change records dropped (a snapshot's packages).
    pub(crate) intact: u64,
    /// Damaged stretches dropped, each counted as one record.
    pub(crate) damaged: u64,
    /// The package count of the end marker a snapshot was closed with.
    pub(crate) closed_with: Option<u64>,
    pub(crate) why: String,
}

impl Cut {
    pub(crate) fn dropped(&self) -> u64 {
        self.intact + self.damaged
    }
}

/// Why `repair` stopped short of a directory that starts.
#[derive(Debug)]
pub(crate) enum RepairError {
    /// The directory could not be locked, read or written.
    Failed(RecoveryError),
    /// A missing file repair does not replace; nothing was changed.
    Missing(Finding),
    Stuck(Finding),
}

impl From<RecoveryError> for RepairError {
    fn from(error: RecoveryError) -> Self {
        RepairError::Failed(error)
    }
}

impl fmt::Display for RepairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepairError::Failed(error) => error.fmt(f),
            RepairError::Missing(finding) => write!(
                f,
                "{finding}; repair does not replace a missing file: restore it from a backup, \
                 or, if it is lost for good, move the files after it out of the directory \
                 and run repair again"
            ),
            RepairError::Stuck(finding) => {
                write!(f, "{finding}; cutting did not clear it, so repair stopped")
            }
        }
    }
}

/// Repairs `dir` (which must exist, unheld by any server) until a start
/// would load it, telling `report` each change; returns it as it now is.
pub(crate) fn repair(
    dir: &Path,
    mut report: impl FnMut(&RepairStep),
) -> Result<Examined, RepairError> {
    let _lock = recovery::lock(dir, false)?;
    let mut previous: Option<Finding> = None;
    let mut round = 0;
    loop {
        let examined = examine_locked(dir)?;
        // Checked before any cut, wherever it is: nothing is changed for
        // a directory that needs the operator's decision.
        let findings = &examined.survey.findings;
        let needed = Problem::Missing { newest: false };
        if let Some(finding) = findings.iter().find(|finding| finding.problem == needed) {
            return Err(RepairError::Missing(finding.clone()));
        }
        let Some(refusal) = examined.survey.refusal().cloned() else {
            return Ok(examined);
        };
        if round == MAX_ROUNDS || previous.as_ref() == Some(&refusal) {
            return Err(RepairError::Stuck(refusal));
        }
        match refusal.problem {
            Problem::Missing { .. } => close_history(dir, &examined.survey, &refusal, &mut report)?,
            Problem::Damaged | Problem::Torn => {
                cut_damage(dir, &examined.survey, &refusal, &mut report)?
            }
        }
        previous = Some(refusal);
        round += 1;
    }
}

/// Cuts the file `damaged` names at its first damage and, for a log, every
/// later log to its header.
fn cut_damage(
    dir: &Path,
    survey: &Survey,
    damaged: &Finding,
    report: &mut impl FnMut(&RepairStep),
) -> Result<(), RecoveryError> {
    let position = (survey.files.iter()).position(|file| file.path == damaged.file);
    let Some((position, Some(damage))) = position.map(|at| (at, survey.files[at].damage)) else {
        return Ok(());
    };
    let file = &survey.files[position];
    let why = damaged.to_string();
    let first = cut(dir, file, damage.offset, damage.changes_before, why)?;
    report(&RepairStep::Cut(first));
    if file.kind == Kind::Log {
        let header = record::HEADER_LEN as u64;
        let why = format!(
            "it follows {}, cut at byte {}: its changes cannot be replayed without the ones cut",
            file_name(&file.path),
            damage.offset
        );
        for later in &survey.files[position + 1..] {
            if later.len > header || later.header_damaged() {
                report(&RepairStep::Cut(cut(dir, later, header, 0, why.clone())?));
            }
        }
    }
    Ok(())
}

/// The newest log is missing: cuts off the seal that names it, or creates
/// it empty to continue the snapshot.
fn close_history(
    dir: &Path,
    survey: &Survey,
    missing: &Finding,
    report: &mut impl FnMut(&RepairStep),
) -> Result<(), RecoveryError> {
    // Only a log has a seal.
    if let Some((last, Some(seal_at))) = survey.files.last().map(|last| (last, last.seal_at)) {
        let why = format!("{missing}; what it held is lost, and its seal is cut off");
        let step = cut(dir, last, seal_at, last.changes, why)?;
        report(&RepairStep::Cut(step));
        return Ok(());
    }
    let owner = fs::metadata(dir).map_err(io_error(dir))?;
    files::write_atomically(&missing.file, |out| {
        out.write_all(&record::header(Kind::Log))?;
        keep_owner(out, &owner)
    })
    .map_err(io_error(&missing.file))?;
    report(&RepairStep::Created {
        file: missing.file.clone(),
        why: format!("{missing}; what it held is lost, and an empty log continues the snapshot"),
    });
    Ok(())
}

/// Saves the bytes of `file` from `offset` on beside it, then rewrites it
/// with the bytes before (a fresh header if it cut into the header) and a
/// new end marker for a snapshot that lost its own, counting the
/// `changes_before` kept. `offset` is at or before the first damage.
fn cut(
    dir: &Path,
    file: &SurveyedFile,
    offset: u64,
    changes_before: u64,
    why: String,
) -> Result<Cut, RecoveryError> {
    let path = &file.path;
    let original = fs::metadata(path).map_err(io_error(path))?;
    let data = fs::read(path).map_err(io_error(path))?;
    let at = usize::try_from(offset).map_or(data.len(), |at| at.min(data.len()));
    let saved_to = if at < data.len() {
        let suffix = format!("{}{offset}", files::SAVED_CUT);
        Some(files::save_beside(path, &suffix, &data[at..]).map_err(io_error(path))?)
    } else {
        None
    };
    let mut kept = if at < record::HEADER_LEN {
        record::header(file.kind).to_vec()
    } else {
        data[..at].to_vec()
    };
    let keeps_end_marker = file.end_marker_at.is_some_and(|end| end < offset);
    let closed_with = (file.kind == Kind::Snapshot && !keeps_end_marker).then_some(changes_before);
    if let Some(packages) = closed_with {
        record::encode_snapshot_end(&mut kept, packages).map_err(io_error(path))?;
    }
    files::write_atomically(&files::path(dir, file.kind, file.generation), |out| {
        out.write_all(&kept)?;
        out.set_permissions(original.permissions())?;
        keep_owner(out, &original)
    })
    .map_err(io_error(path))?;
    // Every damaged stretch and any torn end lie at or after the cut.
    let damaged =
        file.damage.map_or(0, |damage| damage.stretches) + u64::from(file.torn_at.is_some());
    Ok(Cut {
        file: path.clone(),
        offset,
        saved_to,
        intact: file.changes - changes_before,
        damaged,
        closed_with,
        why,
    })
}

/// Gives `file` the owner of `like`: repair run as root must not leave the
/// server's files to root, which the server could then not write.
fn keep_owner(file: &File, like: &Metadata) -> io::Result<()> {
    let current = file.metadata()?;
    if (current.uid(), current.gid()) == (like.uid(), like.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()))
}
