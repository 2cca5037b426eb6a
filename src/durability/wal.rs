//! The write-ahead log: append, group commit, sync and who waits
//! (`docs/durability.md`, "Writing and group commit").
//!
//! A connection thread appends under the index write lock, then calls
//! [`Wal::wait_durable`] and sends its own answers once it returns. The
//! first waiter that finds no batch in progress leads one (`lead`: one
//! write, then `fdatasync` with `--fsync always`); the others park as
//! [`Waiter`]s, and a batch unparks exactly those it covers (one condition
//! variable waking all of them measured 10-20% slower: BENCHMARKS.md).
//!
//! Vanished files fail nothing, as memory holds every change: no batch is
//! led until the compactor has written them again ([`Wal::prepare_restore`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::compactor::CompactionSignal;
use super::files::{self, DirLock, Kind, Watched};
use super::record::{self, Change};
use super::recovery::Recovered;
use super::snapshot;
use super::{DurableOptions, Fsync, Generation};
use crate::metrics::{Metrics, StoreGauges};

/// A spare buffer that grew past this in a burst is dropped, not kept.
const SPARE_CAPACITY_LIMIT: usize = 16 << 20;

/// A change's place in the log since it was opened: the n-th append is
/// `LogPosition(n)`; the default, 0, is "nothing". An answer may be sent
/// once the log is durable up to the newest change it could reveal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition(u64);

/// The open write-ahead log of a data directory. Share it with `Arc`.
pub(crate) struct Wal {
    dir: PathBuf,
    fsync: Fsync,
    pub(super) metrics: Arc<Metrics>,
    /// How batches ask for a compaction, and writers wait for one.
    pub(super) signal: CompactionSignal,
    compact_at_least: u64,
    /// Encoded changes not yet handed to a batch.
    pending: Mutex<Vec<u8>>,
    /// The position of the newest append: written under `pending` (and the
    /// index write lock), read without a lock.
    appended: AtomicU64,
    /// The file being written; taken only by the thread that leads a batch,
    /// so batches reach the file in order.
    writer: Mutex<Writer>,
    commit: Mutex<CommitState>,
    /// The highest position durable so far: raised under `commit`, read
    /// without it.
    durable: AtomicU64,
    /// Set once, to the error that failed the log or to `None` when it
    /// closed; from then on nothing new becomes durable.
    failure: OnceLock<Option<io::Error>>,
    /// The generation receiving appends; the mutex also serialises rotations.
    active: Mutex<Generation>,
    snapshot_bytes: AtomicU64,
    /// Bytes in the active log, buffer included: written only under `pending`.
    log_bytes: AtomicU64,
    batches_written: AtomicU64,
    /// Held until the log is dropped; taken again if the directory is remade.
    lock: Mutex<DirLock>,
}

/// Where group commit stands; a waiter decides under this lock whether to
/// lead a batch or to park until one covers it.
struct CommitState {
    writing: bool,
    /// Oldest first.
    waiters: Vec<Waiter>,
    /// Why files must be written again, until they are: meanwhile no batch
    /// is led.
    lost: Option<String>,
}

/// A thread parked in [`Wal::wait_durable`] until the log covers
/// `position`. It is removed from the list and unparked exactly once: when
/// a batch covers it, when it is the oldest left and is to lead the next
/// batch, or when the log fails.
struct Waiter {
    position: LogPosition,
    thread: Thread,
}

struct Writer {
    file: File,
    /// Swapped with `pending` to take a batch; reused.
    spare: Vec<u8>,
    log: Watched,
    /// `None` while a newer snapshot, which supersedes it, is being written.
    snapshot: Option<Watched>,
}

impl Writer {
    /// Fails when the log or the snapshot is no longer the file at its path.
    fn check(&self) -> io::Result<()> {
        self.log.check()?;
        self.snapshot.as_ref().map_or(Ok(()), Watched::check)
    }
}

/// Appends to the log with its buffer locked (see [`Wal::appender`]).
pub(crate) struct Appender<'a> {
    wal: &'a Wal,
    pending: MutexGuard<'a, Vec<u8>>,
}

impl Appender<'_> {
    /// Encodes `change`; fails for names outside 1..=255 bytes.
    pub(crate) fn append(&mut self, change: &Change<'_>) -> io::Result<LogPosition> {
        let before = self.pending.len();
        record::encode_change(&mut self.pending, change)?;
        let appended = (self.pending.len() - before) as u64;
        self.wal.log_bytes.fetch_add(appended, Ordering::Relaxed);
        let position = self.wal.appended.load(Ordering::Relaxed) + 1;
        self.wal.appended.store(position, Ordering::Relaxed);
        Ok(LogPosition(position))
    }
}

/// A log file created for the next rotation (see [`Wal::prepare_rotation`]).
pub(crate) struct NextWalFile<'a> {
    /// The active generation, locked until the switch.
    current: MutexGuard<'a, Generation>,
    file: File,
    header_len: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The sections under these locks cannot leave the data half-changed, so
    // a panic elsewhere while holding one does not make the data unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Wal {
    /// Opens the log after [`super::recover`], making the changes
    /// `docs/durability.md` lists under "What a start changes".
    pub(crate) fn open(
        recovered: Recovered,
        options: &DurableOptions,
        metrics: Arc<Metrics>,
    ) -> io::Result<Wal> {
        let Recovered {
            dir,
            lock: dir_lock,
            base,
            has_snapshot,
            active_log,
            unsealed,
            snapshot_bytes,
            ..
        } = recovered;
        for (generation, path) in unsealed {
            seal_file(&path, generation.next())?;
        }
        files::remove_older_than(&dir, base, true)?;
        let (generation, file, log_bytes) = match active_log {
            Some((generation, len)) => {
                let path = files::path(&dir, Kind::Log, generation);
                (generation, OpenOptions::new().append(true).open(path)?, len)
            }
            None => {
                let (file, bytes) = create_log_file(&dir, base)?;
                (base, file, bytes)
            }
        };
        // After the log, so a snapshot is always continued by one. An empty
        // first snapshot makes a deleted log missing, not a new directory.
        let snapshot_bytes = if has_snapshot {
            snapshot_bytes
        } else {
            snapshot::write(&dir, base, std::iter::empty::<(&str, [&str; 0])>())?
        };
        let log = Watched::at(files::path(&dir, Kind::Log, generation))?;
        let snapshot = Some(Watched::at(files::path(&dir, Kind::Snapshot, base))?);
        Ok(Wal {
            dir,
            fsync: options.fsync,
            metrics,
            signal: CompactionSignal::default(),
            compact_at_least: options.compact_at_least,
            pending: Mutex::new(Vec::new()),
            appended: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                file,
                spare: Vec::new(),
                log,
                snapshot,
            }),
            commit: Mutex::new(CommitState {
                writing: false,
                waiters: Vec::new(),
                lost: None,
            }),
            durable: AtomicU64::new(0),
            failure: OnceLock::new(),
            active: Mutex::new(generation),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            log_bytes: AtomicU64::new(log_bytes),
            batches_written: AtomicU64::new(0),
            lock: Mutex::new(dir_lock),
        })
    }

    /// Locks the append buffer for a run of changes made under one hold of
    /// the index write lock. Fails once the log has failed or closed.
    pub(crate) fn appender(&self) -> io::Result<Appender<'_>> {
        let pending = lock(&self.pending);
        self.check_alive()?;
        Ok(Appender { wal: self, pending })
    }

    /// The error that failed (or closed) the log, if it did.
    pub(crate) fn check_alive(&self) -> io::Result<()> {
        match self.failure.get() {
            Some(Some(error)) => Err(io::Error::new(
                error.kind(),
                format!("write-ahead log failed earlier: {error}"),
            )),
            Some(None) => Err(io::Error::other("write-ahead log is closed")),
            None => Ok(()),
        }
    }

    /// The newest append's position: read under the index lock, it covers
    /// every change a reader there could have seen.
    pub(crate) fn last_appended(&self) -> LogPosition {
        LogPosition(self.appended.load(Ordering::Relaxed))
    }

    fn durable(&self) -> LogPosition {
        LogPosition(self.durable.load(Ordering::Acquire))
    }

    /// Blocks until everything up to `position` is durable as the [`Fsync`]
    /// mode defines it (leading the batch when none is being written), or
    /// returns the error that failed the log. Then, while the log is past its
    /// cap, waits for the compactor to rotate it: disk use stays bounded.
    pub(crate) fn wait_durable(&self, position: LogPosition) -> io::Result<()> {
        while self.durable() < position {
            let commit = lock(&self.commit);
            if self.durable() >= position {
                break;
            }
            self.check_alive()?;
            if !commit.writing && commit.lost.is_none() {
                self.lead(commit, None, self.fsync == Fsync::Always)?;
            } else {
                self.park(commit, position);
            }
        }
        self.signal.wait_for_room(|| self.over_cap());
        Ok(())
    }

    /// Joins the waiters and sleeps until woken (see [`Waiter`]).
    fn park(&self, mut commit: MutexGuard<'_, CommitState>, position: LogPosition) {
        let thread = thread::current();
        commit.waiters.push(Waiter { position, thread });
        drop(commit);
        thread::park();
    }

    /// Leads a synced batch once none is being written.
    fn lead_when_free(&self, mut next_file: Option<File>) -> io::Result<()> {
        loop {
            let commit = lock(&self.commit);
            self.check_alive()?;
            if let Some(lost) = &commit.lost {
                return Err(io::Error::new(io::ErrorKind::NotFound, lost.clone()));
            }
            if !commit.writing {
                return self.lead(commit, next_file.take(), true);
            }
            // Never covered: woken as the oldest waiter left after a batch.
            self.park(commit, LogPosition(u64::MAX));
        }
    }

    /// Writes everything appended as the next batch, syncs it when `sync`,
    /// switches to `next_file` and publishes the durable position. The
    /// caller holds `commit` and no batch is being written.
    fn lead(
        &self,
        mut commit: MutexGuard<'_, CommitState>,
        next_file: Option<File>,
        sync: bool,
    ) -> io::Result<()> {
        let mut writer = lock(&self.writer);
        let last = {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut *pending, &mut writer.spare);
            self.last_appended()
        };
        commit.writing = true;
        drop(commit);

        let written = {
            let Writer { file, spare, .. } = &mut *writer;
            write_batch(file, spare, sync)
        };
        // Bytes synced to a file that is no longer at its path may be lost
        // with it: find out before anyone is told they are durable.
        let lost = match written {
            Ok(_) if self.fsync == Fsync::Always => writer.check().err(),
            _ => None,
        };
        if !writer.spare.is_empty() {
            self.batches_written.fetch_add(1, Ordering::Relaxed);
        }
        writer.spare.clear();
        if writer.spare.capacity() > SPARE_CAPACITY_LIMIT {
            writer.spare = Vec::new();
        }
        if let (Ok(_), Some(file)) = (&written, next_file) {
            writer.file = file;
        }
        drop(writer);
        if let Err(error) = &written {
            self.fail(Some(error));
        }
        let mut commit = lock(&self.commit);
        commit.writing = false;
        match lost {
            _ if written.is_err() => {}
            Some(error) => {
                commit.lost.get_or_insert_with(|| error.to_string());
                self.signal.request();
            }
            None => {
                self.durable.fetch_max(last.0, Ordering::Release);
            }
        }
        self.wake_waiters(commit);
        if let Some(took) = written? {
            self.metrics.record_fsync(took);
        }
        if self.needs_compaction() {
            self.signal.request();
        }
        Ok(())
    }

    /// Wakes the waiters the durable position covers and, unless files
    /// are lost, the oldest it does not, to lead the next batch.
    fn wake_waiters(&self, mut commit: MutexGuard<'_, CommitState>) {
        let durable = self.durable();
        let mut woken = Vec::new();
        if commit.lost.is_none() {
            if let Some(next) = commit.waiters.iter().position(|w| w.position > durable) {
                woken.push(commit.waiters.remove(next).thread);
            }
        }
        commit.waiters.retain(|waiter| {
            let covered = waiter.position <= durable;
            if covered {
                woken.push(waiter.thread.clone());
            }
            !covered
        });
        drop(commit);
        for thread in woken {
            thread.unpark();
        }
    }

    /// Fails the log for good with `error` (closes it, with `None`) and
    /// wakes every waiter. Only the first call counts.
    pub(crate) fn fail(&self, error: Option<&io::Error>) {
        let failure = error.map(|error| io::Error::new(error.kind(), error.to_string()));
        if self.failure.set(failure).is_ok() && error.is_some() {
            self.metrics.durability_error();
        }
        // Taking the lock orders this after any waiter's check of `failure`,
        // so none misses the wake-up.
        let waiters = std::mem::take(&mut lock(&self.commit).waiters);
        for waiter in waiters {
            waiter.thread.unpark();
        }
    }

    /// Why the files must be written again, if the directory, log or
    /// snapshot is gone or replaced. `None` once the log has failed or closed.
    pub(crate) fn missing_files(&self) -> Option<String> {
        if self.check_alive().is_err() {
            return None;
        }
        if let Some(lost) = &lock(&self.commit).lost {
            return Some(lost.clone());
        }
        let checked = lock(&self.lock).dir.check();
        let checked = checked.and_then(|()| lock(&self.writer).check());
        checked.err().map(|error| error.to_string())
    }

    /// Starts writing the files again ([`Wal::missing_files`]): holds every
    /// batch, remakes and relocks the directory if needed, creates a log.
    pub(crate) fn prepare_restore(&self, why: &str) -> io::Result<NextWalFile<'_>> {
        loop {
            let mut commit = lock(&self.commit);
            commit.lost.get_or_insert_with(|| why.to_owned());
            if !commit.writing {
                break;
            }
            drop(commit);
            thread::sleep(Duration::from_millis(1));
        }
        fs::create_dir_all(&self.dir)?;
        let mut dir_lock = lock(&self.lock);
        if dir_lock.dir.check().is_err() {
            *dir_lock = DirLock::acquire(&self.dir).map_err(io::Error::other)?;
        }
        drop(dir_lock);
        self.prepare_rotation()
    }

    /// The snapshot is synced: everything up to `position` is durable.
    pub(crate) fn restored(&self, position: LogPosition) {
        let mut commit = lock(&self.commit);
        commit.lost = None;
        self.durable.fetch_max(position.0, Ordering::Release);
        self.wake_waiters(commit);
    }

    /// For metrics: counts since the log was opened.
    pub(crate) fn gauges(&self) -> StoreGauges {
        StoreGauges {
            log_bytes: self.log_bytes(),
            log_appends: self.last_appended().0,
            log_writes: self.batches_written.load(Ordering::Relaxed),
            ..StoreGauges::default()
        }
    }

    /// Bytes in the log file receiving appends.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Relaxed)
    }

    /// Whether the log has outgrown the snapshot ([`snapshot::should_compact`]).
    pub(crate) fn needs_compaction(&self) -> bool {
        snapshot::should_compact(
            self.log_bytes(),
            self.snapshot_bytes.load(Ordering::Relaxed),
            self.compact_at_least,
        )
    }

    /// Whether writers should wait for a rotation ([`snapshot::log_cap`]).
    fn over_cap(&self) -> bool {
        let cap = snapshot::log_cap(
            self.snapshot_bytes.load(Ordering::Relaxed),
            self.compact_at_least,
        );
        self.log_bytes() > cap
    }

    /// Creates the next log ahead of [`Wal::switch_to`], so no file system
    /// work happens under the index lock. Holds the rotation lock until used.
    pub(crate) fn prepare_rotation(&self) -> io::Result<NextWalFile<'_>> {
        let current = lock(&self.active);
        self.check_alive()?;
        let (file, header_len) = create_log_file(&self.dir, current.next())?;
        Ok(NextWalFile {
            current,
            file,
            header_len,
        })
    }

    /// Switches appends to `next`; returns its generation (the next
    /// snapshot's) and the newest position. Call it holding the index read
    /// lock and copy the snapshot under the same hold, so each change is in
    /// exactly one of the snapshot and the new log. A rotation returns once
    /// the old log is written, sealed and synced; a restore drops unwritten
    /// appends, which the snapshot holds.
    pub(crate) fn switch_to(&self, next: NextWalFile<'_>) -> io::Result<(Generation, LogPosition)> {
        let NextWalFile {
            mut current,
            file,
            header_len,
        } = next;
        self.check_alive()?;
        let generation = current.next();
        let log = Watched::at(files::path(&self.dir, Kind::Log, generation))?;
        // No append can come in between: the caller holds the index read
        // lock, and appends happen under its write lock.
        let restoring = lock(&self.commit).lost.is_some();
        {
            let mut pending = lock(&self.pending);
            if restoring {
                pending.clear();
            } else {
                record::encode_seal(&mut pending, generation.value())?;
            }
            self.log_bytes.store(header_len, Ordering::Relaxed);
        }
        if restoring {
            lock(&self.writer).file = file;
        } else {
            self.lead_when_free(Some(file))?;
        }
        lock(&self.writer).log = log;
        *current = generation;
        Ok((generation, self.last_appended()))
    }

    /// Writes the snapshot for `generation` (from [`Wal::switch_to`]) while
    /// appends carry on; returns its size (see [`snapshot::write`]).
    pub(crate) fn write_snapshot<'p, D>(
        &self,
        generation: Generation,
        packages: impl IntoIterator<Item = (&'p str, D)>,
    ) -> io::Result<u64>
    where
        D: IntoIterator<Item = &'p str>,
    {
        let previous = lock(&self.writer).snapshot.take();
        let bytes = snapshot::write(&self.dir, generation, packages).inspect_err(|_| {
            lock(&self.writer).snapshot = previous;
        })?;
        let watched = Watched::at(files::path(&self.dir, Kind::Snapshot, generation))?;
        lock(&self.writer).snapshot = Some(watched);
        self.snapshot_bytes.store(bytes, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Writes and syncs everything appended, whatever the [`Fsync`] mode;
    /// later appends and waits fail. Returns the error that failed the log.
    pub(crate) fn close(&self) -> io::Result<()> {
        match self.lead_when_free(None) {
            Ok(()) => {
                self.fail(None);
                Ok(())
            }
            Err(_) if matches!(self.failure.get(), Some(None)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Writes `batch`, then syncs when asked; returns how long the sync took.
fn write_batch(file: &mut File, batch: &[u8], sync: bool) -> io::Result<Option<Duration>> {
    file.write_all(batch)?;
    if !sync {
        return Ok(None);
    }
    let started = Instant::now();
    file.sync_data()?;
    Ok(Some(started.elapsed()))
}

/// Seals the log at `path` durably, finishing a rotation a crash cut short.
fn seal_file(path: &Path, next: Generation) -> io::Result<()> {
    let mut seal = Vec::new();
    record::encode_seal(&mut seal, next.value())?;
    let mut file = OpenOptions::new().append(true).open(path)?;
    file.write_all(&seal)?;
    file.sync_data()
}

/// Creates log `generation` holding only its header, durably.
fn create_log_file(dir: &Path, generation: Generation) -> io::Result<(File, u64)> {
    files::write_atomically(&files::path(dir, Kind::Log, generation), |file| {
        file.write_all(&record::header(Kind::Log))
    })
}

#[cfg(test)]
impl Wal {
    /// Appends one change (see [`Appender::append`]).
    pub(crate) fn append(&self, change: &Change<'_>) -> io::Result<LogPosition> {
        self.appender()?.append(change)
    }
}
