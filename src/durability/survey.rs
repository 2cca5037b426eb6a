//! Reading and judging the files of a data directory: the one place that
//! decides what is damage (`docs/durability.md#what-a-start-refuses`).
//! Changes go to `apply` until the first refused problem; the files are then
//! read on without applying, to report every damaged stretch and count what
//! a cut at each file's first damage would drop.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::files::{self, DataFile, Kind};
use super::record::{self, Frame, LoggedChange, Record};
use super::recovery::{io_error, RecoveryError};
use super::Generation;

/// Everything a survey found in a data directory.
#[derive(Debug)]
pub(crate) struct Survey {
    /// In replay order: the newest snapshot, then the logs from its
    /// generation on.
    pub(crate) files: Vec<SurveyedFile>,
    /// In replay order, and by offset within a file.
    pub(crate) findings: Vec<Finding>,
    /// Files that play no part in the state, and what becomes of them.
    pub(crate) leftovers: Vec<(PathBuf, &'static str)>,
}

impl Survey {
    /// The first problem a start refuses: it fails with it, `repair` cuts it.
    pub(crate) fn refusal(&self) -> Option<&Finding> {
        self.findings.iter().find(|finding| finding.refuses())
    }
}

/// Where a survey's changes go, in replay order.
pub(crate) trait Replay {
    /// About `packages` packages (a snapshot's end marker's count) follow.
    fn reserve(&mut self, packages: usize);

    /// Applies `changes` in order up to the first it refuses: its place in
    /// `changes`, and why.
    fn apply(&mut self, changes: &[LoggedChange<'_>]) -> Result<(), (usize, String)>;
}

/// One file of the state, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SurveyedFile {
    pub(crate) path: PathBuf,
    pub(crate) kind: Kind,
    pub(crate) generation: Generation,
    pub(crate) len: u64,
    /// Change records that read intact (a snapshot's packages).
    pub(crate) changes: u64,
    pub(crate) seal_at: Option<u64>,
    /// Where a valid end marker starts.
    pub(crate) end_marker_at: Option<u64>,
    pub(crate) damage: Option<Damage>,
    pub(crate) torn_at: Option<u64>,
}

impl SurveyedFile {
    /// Whether its header is unreadable, which leaves nothing in it readable.
    pub(crate) fn header_damaged(&self) -> bool {
        self.damage.is_some_and(|damage| damage.offset == 0)
    }
}

impl fmt::Display for SurveyedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, len) = (file_name(&self.path), self.len);
        if self.header_damaged() {
            return write!(f, "{name}: {len} bytes, unreadable header");
        }
        let (what, end) = match self.kind {
            Kind::Snapshot if self.end_marker_at.is_some() => ("packages", "ended"),
            Kind::Snapshot => ("packages", "no end marker"),
            Kind::Log if self.seal_at.is_some() => ("changes", "sealed"),
            Kind::Log => ("changes", "not sealed"),
        };
        let changes = self.changes;
        let version = record::FORMAT_VERSION;
        write!(
            f,
            "{name}: {len} bytes, format {version}, {changes} {what}, {end}"
        )?;
        match self.damage {
            Some(damage) => write!(f, ", damaged from byte {}", damage.offset),
            None => Ok(()),
        }
    }
}

/// Where a file's damage starts and what lies from there on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    pub(crate) offset: u64,
    pub(crate) changes_before: u64,
    /// Stretches of bytes from there on that hold no intact record.
    pub(crate) stretches: u64,
}

/// What is wrong at a place in a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Bytes no crash explains, or a change the index refuses.
    Damaged,
    /// A file the state needs; `newest` when it is the newest log, which no
    /// file after it needs.
    Missing { newest: bool },
    /// A torn last record: a start saves and cuts it, and loads the rest.
    Torn,
}

/// One problem found, as `check` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    /// Where in the file; `None` for a missing file.
    pub offset: Option<u64>,
    pub problem: Problem,
    pub reason: String,
}

impl Finding {
    /// Whether a start refuses the directory for it.
    pub(crate) fn refuses(&self) -> bool {
        self.problem != Problem::Torn
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, reason) = (self.file.display(), &self.reason);
        let offset = self.offset.unwrap_or(0);
        match self.problem {
            Problem::Damaged => write!(f, "{file}: damaged at byte {offset}: {reason}"),
            Problem::Missing { .. } => write!(f, "{file}: file is missing: {reason}"),
            Problem::Torn => write!(
                f,
                "{file}: torn last record at byte {offset}: {reason}; a start cuts them off, saving them as {}.{}{offset}",
                file_name(&self.file),
                files::SAVED_TORN,
            ),
        }
    }
}

/// The last part of `path`, for messages.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// What becomes of each kind of leftover, as `check` prints it.
const STALE: &str = "older than the newest snapshot; a start deletes it";
const TEMPORARY: &str = "left by an interrupted write; a start deletes it";
const SAVED: &str = "bytes an earlier start (.torn-) or repair (.cut-) cut off; \
                     keep them until you know what they held";

/// Reads and judges every file of `dir` (which the caller has locked),
/// passing the changes to `apply` in replay order, in runs, until the first
/// refused problem; a change `apply` refuses is damage at that record.
/// Fails only when a file cannot be read.
pub(crate) fn survey(dir: &Path, mut apply: impl Replay) -> Result<Survey, RecoveryError> {
    let listing = files::list(dir).map_err(io_error(dir))?;
    let snapshot = listing.snapshots.last();
    let base = snapshot.map_or(Generation::FIRST, |snapshot| snapshot.generation);
    let chain: Vec<&DataFile> = (listing.logs.iter())
        .filter(|log| log.generation >= base)
        .collect();
    let stale = (listing.snapshots.iter().chain(&listing.logs))
        .filter(|file| file.generation < base)
        .map(|file| (file.path.clone(), STALE));
    let temporary = (listing.temporaries.iter()).map(|path| (path.clone(), TEMPORARY));
    let saved = (listing.saved.iter()).map(|path| (path.clone(), SAVED));
    let mut surveyor = Surveyor {
        dir,
        apply: &mut apply,
        replaying: true,
        survey: Survey {
            files: Vec::with_capacity(chain.len() + 1),
            findings: Vec::new(),
            leftovers: stale.chain(temporary).chain(saved).collect(),
        },
    };
    if let Some(snapshot) = snapshot {
        surveyor.file(snapshot, Kind::Snapshot, &[])?;
    }
    // Each log must follow the one before it, and the first the snapshot.
    let mut expected = base;
    for (at, log) in chain.iter().enumerate() {
        let name = file_name(&log.path);
        if log.generation != expected {
            if snapshot.is_none() && at == 0 {
                let reason = format!("{name} continues it, and the logs before it are gone too");
                surveyor.missing(Kind::Snapshot, log.generation, false, reason);
            } else if at == 0 {
                let reason = format!(
                    "snapshot-{base}.pi is continued by it, and {name} cannot follow the snapshot without it"
                );
                surveyor.missing(Kind::Log, base, false, reason);
            } else {
                let reason = format!("{name} cannot be replayed without it");
                surveyor.missing(Kind::Log, expected, false, reason);
            }
        }
        surveyor.file(log, Kind::Log, &chain[at + 1..])?;
        expected = log.generation.next();
    }
    match surveyor.survey.files.last() {
        Some(last) if last.kind == Kind::Log && last.seal_at.is_some() => {
            let next = last.generation.next();
            let reason = format!(
                "{} was sealed when log-{next}.pi was started",
                file_name(&last.path)
            );
            surveyor.missing(Kind::Log, next, true, reason);
        }
        Some(_) if chain.is_empty() => {
            let reason = format!("snapshot-{base}.pi is continued by it, and no later log exists");
            surveyor.missing(Kind::Log, base, true, reason);
        }
        _ => {}
    }
    Ok(surveyor.survey)
}

struct Surveyor<'a, F> {
    dir: &'a Path,
    apply: &'a mut F,
    /// Until the first refused problem.
    replaying: bool,
    survey: Survey,
}

impl<F: Replay> Surveyor<'_, F> {
    /// Records a problem; any but a torn last record ends the replay.
    fn found(&mut self, file: &Path, offset: Option<usize>, problem: Problem, reason: String) {
        self.replaying &= problem == Problem::Torn;
        self.survey.findings.push(Finding {
            file: file.to_owned(),
            offset: offset.map(|at| at as u64),
            problem,
            reason,
        });
    }

    fn missing(&mut self, kind: Kind, generation: Generation, newest: bool, reason: String) {
        let path = files::path(self.dir, kind, generation);
        self.found(&path, None, Problem::Missing { newest }, reason);
    }

    /// Damage at `at`: each `stretch` without an intact record is a problem
    /// of its own; a broken rule is one only as the file's first damage.
    fn damaged(&mut self, file: &mut SurveyedFile, at: usize, stretch: bool, reason: String) {
        let first = file.damage.is_none();
        let damage = file.damage.get_or_insert(Damage {
            offset: at as u64,
            changes_before: file.changes,
            stretches: 0,
        });
        damage.stretches += u64::from(stretch);
        if first || stretch {
            self.found(&file.path, Some(at), Problem::Damaged, reason);
        }
    }

    /// Passes `run` to `apply` while replaying and counts its changes; a
    /// refused change is damage at its offset.
    fn flush(&mut self, file: &mut SurveyedFile, run: &mut Run<'_>) {
        let replaying = self.replaying && !run.changes.is_empty();
        let refused = replaying
            .then(|| self.apply.apply(&run.changes).err())
            .flatten();
        let applied = refused
            .as_ref()
            .map_or(run.changes.len(), |(place, _)| *place);
        file.changes += applied as u64;
        if let Some((place, reason)) = refused {
            self.damaged(file, run.offsets[place], false, reason);
        }
        file.changes += (run.changes.len() - applied) as u64;
        run.offsets.clear();
        run.changes.clear();
    }

    /// Surveys one file and judges how it ends; `later` are the logs after it.
    fn file(
        &mut self,
        found: &DataFile,
        kind: Kind,
        later: &[&DataFile],
    ) -> Result<(), RecoveryError> {
        let data = fs::read(&found.path).map_err(io_error(&found.path))?;
        let mut file = SurveyedFile {
            path: found.path.clone(),
            kind,
            generation: found.generation,
            len: data.len() as u64,
            changes: 0,
            seal_at: None,
            end_marker_at: None,
            damage: None,
            torn_at: None,
        };
        if let Err(reason) = record::check_header(&data, kind) {
            // Nothing in it can be framed: all of it is one damaged stretch.
            self.damaged(&mut file, 0, true, reason);
            self.survey.files.push(file);
            return Ok(());
        }
        let packages = record::snapshot_packages(&data).filter(|_| kind == Kind::Snapshot);
        if let Some(packages) = packages {
            self.apply.reserve(packages);
        }
        let tail = self.walk(&mut file, &data);
        // A torn end, or a log ending without its seal, is only possible
        // when no later log holds anything (a crash during a rotation).
        let open = kind == Kind::Log && file.seal_at.is_none() && file.damage.is_none();
        let continued = match open {
            true => first_with_content(later)?,
            false => None,
        };
        match (tail, continued) {
            (Some((offset, reason)), _) if !open => {
                // Snapshots are complete before they get their name, and
                // nothing is ever written to a log after its seal.
                let reason = match (kind, file.damage) {
                    (Kind::Log, None) => format!("{reason} after the log's seal"),
                    _ => reason,
                };
                self.damaged(&mut file, offset, true, reason);
            }
            (Some((offset, reason)), Some(later)) => {
                let reason = format!("{reason}, yet {later} holds records after it");
                self.damaged(&mut file, offset, true, reason);
            }
            (None, Some(later)) => {
                let reason = format!(
                    "the log ends without the seal a rotation writes, yet {later} holds records after it"
                );
                self.damaged(&mut file, data.len(), false, reason);
            }
            (Some((offset, reason)), None) => {
                file.torn_at = Some(offset as u64);
                let what = format!("{} bytes: {reason}", data.len() - offset);
                self.found(&file.path, Some(offset), Problem::Torn, what);
            }
            (None, None) => {}
        }
        if kind == Kind::Snapshot && file.end_marker_at.is_none() {
            let reason = "snapshot ends without its end marker".to_owned();
            self.damaged(&mut file, data.len(), false, reason);
        }
        self.survey.files.push(file);
        Ok(())
    }

    /// Walks the records of `data` (header checked), each judged by
    /// [`meaning`] until the file's first damage, then only counted. Invalid
    /// bytes that a valid record follows are a damaged stretch; returns
    /// those no valid record follows: their offset and what is wrong.
    fn walk(&mut self, file: &mut SurveyedFile, data: &[u8]) -> Option<(usize, String)> {
        let mut run = Run::default();
        let mut at = record::HEADER_LEN;
        let tail = loop {
            let (decoded, next) = match record::next_frame(data, at) {
                Frame::End => break None,
                Frame::Record { payload, next } => (record::decode(payload), next),
                Frame::Invalid(reason) => match record::find_valid_record(data, at + 1) {
                    Some(valid) => {
                        let reason =
                            format!("{reason}, and a valid record follows at byte {valid}");
                        (Err(reason), valid)
                    }
                    None => break Some((at, reason)),
                },
            };
            let record = match decoded {
                Ok(record) => record,
                Err(reason) => {
                    self.flush(file, &mut run);
                    self.damaged(file, at, true, reason);
                    at = next;
                    continue;
                }
            };
            let is_change = matches!(record, Record::Change(_));
            if !is_change {
                // A marker is judged against the changes counted before it.
                self.flush(file, &mut run);
            }
            match file.damage.is_none().then(|| meaning(file, at, record)) {
                Some(Ok(Some(change))) => {
                    run.offsets.push(at);
                    run.changes.push(change);
                    if run.changes.len() == RUN_LEN {
                        self.flush(file, &mut run);
                    }
                }
                Some(Err(reason)) => {
                    self.flush(file, &mut run);
                    self.damaged(file, at, false, reason);
                    file.changes += u64::from(is_change);
                }
                Some(Ok(None)) | None => file.changes += u64::from(is_change),
            }
            at = next;
        };
        self.flush(file, &mut run);
        tail
    }
}

/// What a record means in `file`: a change to replay, a marker (`None`),
/// or damage, given as its reason.
fn meaning<'r>(
    file: &mut SurveyedFile,
    at: usize,
    record: Record<'r>,
) -> Result<Option<LoggedChange<'r>>, String> {
    let in_snapshot = file.kind == Kind::Snapshot;
    let next = file.generation.next();
    match record {
        _ if file.end_marker_at.is_some() => {
            Err("record after the snapshot's end marker".to_owned())
        }
        _ if file.seal_at.is_some() => Err("a record after the log's seal".to_owned()),
        Record::Change(LoggedChange::Remove { .. }) if in_snapshot => {
            Err("REMOVE record in a snapshot".to_owned())
        }
        Record::Change(change) => Ok(Some(change)),
        Record::SnapshotEnd { records } if in_snapshot && records == file.changes => {
            file.end_marker_at = Some(at as u64);
            Ok(None)
        }
        Record::SnapshotEnd { records } if in_snapshot => Err(format!(
            "end marker counts {records} packages, the snapshot holds {}",
            file.changes
        )),
        Record::SnapshotEnd { .. } => Err("snapshot end marker in a log".to_owned()),
        Record::Seal { .. } if in_snapshot => Err("log seal in a snapshot".to_owned()),
        Record::Seal { next: named } if named == next.value() => {
            file.seal_at = Some(at as u64);
            Ok(None)
        }
        Record::Seal { next: named } => Err(format!(
            "the seal names log {named}, not the next one ({next})"
        )),
    }
}

/// The name of the first of `logs` holding anything after its header.
fn first_with_content(logs: &[&DataFile]) -> Result<Option<String>, RecoveryError> {
    for log in logs {
        let len = fs::metadata(&log.path).map_err(io_error(&log.path))?.len();
        if len > record::HEADER_LEN as u64 {
            return Ok(Some(file_name(&log.path)));
        }
    }
    Ok(None)
}

/// Changes passed to `apply` at a time, at most: enough for the index to
/// stage their lookups together, few enough to keep little in memory.
const RUN_LEN: usize = 256;

/// Changes of one file not yet passed to `apply`, with their offsets.
#[derive(Default)]
struct Run<'r> {
    offsets: Vec<usize>,
    changes: Vec<LoggedChange<'r>>,
}
