//! The write-ahead log: appends under the index lock, group commit by the
//! waiters themselves.
//!
//! [`Wal::append`] only encodes the change into an in-memory buffer under a
//! short mutex, so log order is the order in which the caller (holding the
//! index write lock) made the changes, and no disk I/O happens under that
//! lock.
//!
//! [`Wal::wait_durable`] is where the disk is written. The first waiter to
//! find nobody writing becomes the leader: it takes everything appended so
//! far, `write(2)`s it, `fdatasync`s it with [`Fsync::Always`], publishes
//! the highest sequence number now durable and wakes the others. Threads
//! that arrive while a leader writes wait for it, and the next leader
//! writes all they appended meanwhile in one go: that is the group commit.
//!
//! Waiters sleep on one of two condition variables by the parity of the
//! batch that will cover them, so the end of a batch wakes the threads it
//! covered and one thread to lead the next batch, not every waiter.
//! With [`Fsync::Never`] a batch is durable once written. No thread hand-off
//! stands between a lone writer and its disk, which matters most with
//! `never`, where the write itself is cheap.
//!
//! A failed write or sync is final (after a failed `fsync` the kernel may
//! have dropped the dirty pages, so retrying could report success for lost
//! data): every waiter not already covered gets the error, and so does
//! every later call.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::files::{self, DirLock, Kind};
use super::record::{self, Change};
use super::recovery::Recovered;
use super::snapshot;
use super::{Fsync, Generation, Seq};

/// What the log reports to the server, on the thread that wrote.
#[derive(Debug)]
pub enum WalEvent<'a> {
    /// A batch was synced; the time `fdatasync` took.
    Synced(Duration),
    /// A write or sync failed; the log is failed for good. Reported once.
    Failed(&'a io::Error),
}

/// A spare buffer that grew past this during a burst is dropped rather than
/// kept around.
const SPARE_CAPACITY_LIMIT: usize = 16 << 20;

type Observer = Box<dyn Fn(WalEvent<'_>) + Send + Sync>;

/// The open write-ahead log of a data directory. Share it with `Arc`.
pub struct Wal {
    dir: PathBuf,
    fsync: Fsync,
    observe: Observer,
    pending: Mutex<Pending>,
    /// The file being written; taken only by the thread that leads a batch
    /// (`Progress::writing`), so batches reach the file in order.
    writer: Mutex<Writer>,
    progress: Mutex<Progress>,
    /// Waiters for batch `n` sleep on `batch_done[n % 2]`.
    batch_done: [Condvar; 2],
    /// Set once; from then on nothing new becomes durable.
    failure: OnceLock<Failure>,
    /// Generation of the log receiving appends; the mutex also serialises
    /// rotations.
    generation: Mutex<Generation>,
    snapshot_bytes: AtomicU64,
    batches_written: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
    /// The directory stays locked until the log is dropped.
    _lock: DirLock,
}

/// Counters of the log since it was opened, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Changes appended.
    pub appended: u64,
    /// Changes durable.
    pub durable: u64,
    /// `write(2)` batches: with many writers each holds many changes.
    pub batches_written: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    pub bytes_written: u64,
}

struct Pending {
    buffer: Vec<u8>,
    last_appended: Seq,
    /// Bytes in the log file receiving appends, counting the buffer.
    log_bytes: u64,
}

/// Where writing stands; waiters decide under this lock whether to lead,
/// wait for the batch being written, or wait for the next one.
struct Progress {
    /// The highest sequence number durable so far.
    durable: Seq,
    /// Number of the latest batch started.
    batch: u64,
    /// The last sequence number the batch being written covers, while one
    /// is being written.
    writing: Option<Seq>,
}

struct Writer {
    file: File,
    /// The buffer swapped in for the one being written, reused.
    spare: Vec<u8>,
}

/// A log file created for the next rotation (see [`Wal::prepare_rotation`]).
pub struct NextWalFile<'a> {
    /// The generation receiving appends now, locked until the switch.
    current: MutexGuard<'a, Generation>,
    file: File,
    header_len: u64,
}

/// The log file receiving appends.
struct ActiveFile {
    generation: Generation,
    file: File,
    /// Its length, header included.
    bytes: u64,
}

#[derive(Debug)]
enum Failure {
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    Closed,
}

impl Failure {
    fn to_error(&self) -> io::Error {
        match self {
            Failure::Io { kind, message } => {
                io::Error::new(*kind, format!("write-ahead log failed earlier: {message}"))
            }
            Failure::Closed => io::Error::other("write-ahead log is closed"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The sections under these locks cannot leave the data half-changed, so
    // a panic elsewhere while holding one does not make the data unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Wal {
    /// Opens the log after [`super::recover`]: continues the newest log file
    /// or creates the first one, writes an empty first snapshot for a
    /// directory that has none (so that its log, once deleted, is found
    /// missing rather than taken for a new directory), and removes files the
    /// newest snapshot made obsolete. `observe` hears, on whichever thread wrote, how long each
    /// sync took and, once, the write or sync error that failed the log.
    pub fn open(
        recovered: Recovered,
        fsync: Fsync,
        observe: impl Fn(WalEvent<'_>) + Send + Sync + 'static,
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
        let active = match active_log {
            Some((generation, len)) => ActiveFile {
                generation,
                file: OpenOptions::new().append(true).open(files::path(
                    &dir,
                    Kind::Log,
                    generation,
                ))?,
                bytes: len,
            },
            None => {
                let (file, bytes) = create_log_file(&dir, base)?;
                ActiveFile {
                    generation: base,
                    file,
                    bytes,
                }
            }
        };
        // After the log: a snapshot is always continued by an existing log.
        let snapshot_bytes = if has_snapshot {
            snapshot_bytes
        } else {
            snapshot::write(&dir, base, std::iter::empty::<(&str, [&str; 0])>())?
        };
        Ok(Wal::start(
            dir,
            dir_lock,
            active,
            snapshot_bytes,
            fsync,
            Box::new(observe),
        ))
    }

    /// Builds the log around `active`.
    fn start(
        dir: PathBuf,
        dir_lock: DirLock,
        active: ActiveFile,
        snapshot_bytes: u64,
        fsync: Fsync,
        observe: Observer,
    ) -> Wal {
        let ActiveFile {
            generation,
            file,
            bytes: log_bytes,
        } = active;
        Wal {
            dir,
            fsync,
            observe,
            pending: Mutex::new(Pending {
                buffer: Vec::new(),
                last_appended: Seq(0),
                log_bytes,
            }),
            writer: Mutex::new(Writer {
                file,
                spare: Vec::new(),
            }),
            progress: Mutex::new(Progress {
                durable: Seq(0),
                batch: 0,
                writing: None,
            }),
            batch_done: [Condvar::new(), Condvar::new()],
            failure: OnceLock::new(),
            generation: Mutex::new(generation),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            batches_written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            _lock: dir_lock,
        }
    }

    /// Appends `change` and returns its sequence number. Call it while
    /// holding the index write lock, right after making the change; wait for
    /// durability after releasing the lock. Fails for names outside 1..=255
    /// bytes, and once the log has failed or closed.
    pub fn append(&self, change: &Change<'_>) -> io::Result<Seq> {
        let mut pending = lock(&self.pending);
        self.check_alive()?;
        let before = pending.buffer.len();
        record::encode_change(&mut pending.buffer, change)?;
        pending.log_bytes += (pending.buffer.len() - before) as u64;
        pending.last_appended = Seq(pending.last_appended.0 + 1);
        Ok(pending.last_appended)
    }

    /// The error that failed (or closed) the log, if it did.
    fn check_alive(&self) -> io::Result<()> {
        match self.failure.get() {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }

    /// The sequence number of the newest append: a reader that wants what
    /// it saw to be durable waits for this.
    pub fn last_appended(&self) -> Seq {
        lock(&self.pending).last_appended
    }

    /// Blocks until the change numbered `seq` (and all before it) is
    /// durable as the [`Fsync`] mode defines it, or returns the error that
    /// failed the log. Writes the log itself when nobody else is writing.
    pub fn wait_durable(&self, seq: Seq) -> io::Result<()> {
        let mut progress = lock(&self.progress);
        loop {
            if progress.durable >= seq {
                return Ok(());
            }
            self.check_alive()?;
            let batch = match progress.writing {
                None => return self.lead(progress, None, false),
                // The batch being written covers this change.
                Some(last) if last >= seq => progress.batch,
                // The next one will.
                Some(_) => progress.batch + 1,
            };
            progress = self.batch_done[(batch % 2) as usize]
                .wait(progress)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits until no batch is being written, then writes one (see `lead`).
    fn lead_when_free(&self, next_file: Option<File>, force_sync: bool) -> io::Result<()> {
        let mut progress = lock(&self.progress);
        while progress.writing.is_some() {
            let batch = progress.batch;
            progress = self.batch_done[(batch % 2) as usize]
                .wait(progress)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.check_alive()?;
        self.lead(progress, next_file, force_sync)
    }

    /// Writes everything appended so far as the next batch, syncing when
    /// the mode, a switch to `next_file` or `force_sync` asks for it, then
    /// publishes the new durable point. The caller holds `progress` and no
    /// batch is being written.
    fn lead(
        &self,
        mut progress: MutexGuard<'_, Progress>,
        next_file: Option<File>,
        force_sync: bool,
    ) -> io::Result<()> {
        let mut writer = lock(&self.writer);
        let last = {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut pending.buffer, &mut writer.spare);
            pending.last_appended
        };
        progress.batch += 1;
        progress.writing = Some(last);
        let batch = progress.batch;
        drop(progress);

        let sync = self.fsync == Fsync::Always || next_file.is_some() || force_sync;
        let written = {
            let Writer { file, spare } = &mut *writer;
            let written = write_batch(file, spare, sync);
            if !spare.is_empty() {
                self.batches_written.fetch_add(1, Ordering::Relaxed);
                self.bytes_written
                    .fetch_add(spare.len() as u64, Ordering::Relaxed);
            }
            spare.clear();
            if spare.capacity() > SPARE_CAPACITY_LIMIT {
                *spare = Vec::new();
            }
            written
        };
        if let (Ok(_), Some(file)) = (&written, next_file) {
            writer.file = file;
        }
        drop(writer);
        if let Err(error) = &written {
            self.fail(Failure::Io {
                kind: error.kind(),
                message: error.to_string(),
            });
            (self.observe)(WalEvent::Failed(error));
        }
        let mut progress = lock(&self.progress);
        progress.writing = None;
        if written.is_ok() {
            progress.durable = progress.durable.max(last);
        }
        drop(progress);
        // Everyone this batch covered, and one thread to lead the next.
        self.batch_done[(batch % 2) as usize].notify_all();
        self.batch_done[((batch + 1) % 2) as usize].notify_one();
        match written {
            Ok(Some(took)) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                (self.observe)(WalEvent::Synced(took));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Fails the log for good and wakes everyone waiting on it.
    fn fail(&self, failure: Failure) {
        // The first failure wins; a later one changes nothing.
        let _ = self.failure.set(failure);
        // Taking the lock orders this after any waiter's check of `failure`,
        // so none misses the wake-up.
        drop(lock(&self.progress));
        for waiters in &self.batch_done {
            waiters.notify_all();
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WalStats {
        WalStats {
            appended: self.last_appended().0,
            durable: lock(&self.progress).durable.0,
            batches_written: self.batches_written.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Bytes in the log file receiving appends.
    pub fn log_bytes(&self) -> u64 {
        lock(&self.pending).log_bytes
    }

    /// Whether the log has outgrown the snapshot ([`snapshot::should_compact`]).
    pub fn needs_compaction(&self) -> bool {
        snapshot::should_compact(
            self.log_bytes(),
            self.snapshot_bytes.load(Ordering::Relaxed),
        )
    }

    /// Creates and syncs the next log file, ahead of [`Wal::rotate_to`], so
    /// that no file system work happens while the caller holds the index
    /// lock.
    /// The returned value holds the rotation lock until it is used, so a
    /// second rotation cannot prepare the same file meanwhile.
    pub fn prepare_rotation(&self) -> io::Result<NextWalFile<'_>> {
        let current = lock(&self.generation);
        self.check_alive()?;
        let (file, header_len) = create_log_file(&self.dir, current.next())?;
        Ok(NextWalFile {
            current,
            file,
            header_len,
        })
    }

    /// Switches appends to `next` and returns its generation, which is the
    /// generation of the snapshot to write next. Call it while holding the
    /// index read lock and take the snapshot contents under the same lock:
    /// then every change before them is in the older logs and every change
    /// after them in the new one. Returns once every record before the
    /// switch is written and synced.
    pub fn rotate_to(&self, next: NextWalFile<'_>) -> io::Result<Generation> {
        let NextWalFile {
            mut current,
            file,
            header_len,
        } = next;
        self.check_alive()?;
        // No append can come in between: the caller holds the index read
        // lock, and appends happen under its write lock. The seal goes out
        // with the last batch of the old file, before the switch.
        {
            let mut pending = lock(&self.pending);
            record::encode_seal(&mut pending.buffer, current.next().value())?;
            pending.log_bytes = header_len;
        }
        self.lead_when_free(Some(file), true)?;
        *current = current.next();
        Ok(*current)
    }

    /// [`Wal::prepare_rotation`] and [`Wal::rotate_to`] in one step, for
    /// callers that hold no lock worth keeping short.
    pub fn rotate(&self) -> io::Result<Generation> {
        self.rotate_to(self.prepare_rotation()?)
    }

    /// Writes the snapshot for `generation` (from [`Wal::rotate`]) from
    /// `packages`, dependencies before dependents, then deletes the files it
    /// supersedes. Readers and writers of the log carry on meanwhile.
    /// Returns the snapshot's size.
    pub fn write_snapshot<'p, D>(
        &self,
        generation: Generation,
        packages: impl IntoIterator<Item = (&'p str, D)>,
    ) -> io::Result<u64>
    where
        D: IntoIterator<Item = &'p str>,
    {
        let bytes = snapshot::write(&self.dir, generation, packages)?;
        self.snapshot_bytes.store(bytes, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Writes and syncs everything appended (whatever the [`Fsync`] mode);
    /// later appends and waits fail. Returns the error that failed the log,
    /// if any. Dropping the log does the same.
    pub fn close(&self) -> io::Result<()> {
        match self.lead_when_free(None, true) {
            Ok(()) => {
                self.fail(Failure::Closed);
                Ok(())
            }
            Err(_) if matches!(self.failure.get(), Some(Failure::Closed)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Errors were already reported through `observe`.
        let _ = self.close();
    }
}

/// Writes `batch`, then syncs when asked; returns how long the sync took.
fn write_batch(file: &mut File, batch: &[u8], sync: bool) -> io::Result<Option<Duration>> {
    if !batch.is_empty() {
        file.write_all(batch)?;
    }
    if !sync {
        return Ok(None);
    }
    let started = Instant::now();
    file.sync_data()?;
    Ok(Some(started.elapsed()))
}

/// Appends the seal naming `next` to the log at `path`, durably: this
/// finishes a rotation that a crash interrupted after `next` was created.
fn seal_file(path: &Path, next: Generation) -> io::Result<()> {
    let mut seal = Vec::new();
    record::encode_seal(&mut seal, next.value())?;
    let mut file = OpenOptions::new().append(true).open(path)?;
    file.write_all(&seal)?;
    file.sync_data()
}

/// Creates log `generation` holding only its header, durably.
fn create_log_file(dir: &Path, generation: Generation) -> io::Result<(File, u64)> {
    files::install(dir, Kind::Log, generation, |file| {
        file.write_all(&record::header(record::LOG_MAGIC))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn a_failed_write_fails_every_waiter_and_every_later_call() {
        let dir = std::env::temp_dir().join(format!("pi-wal-failure-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log-1.pi");
        fs::write(&path, b"").unwrap();
        // Writing to a file opened read-only fails like a dying disk would.
        let read_only = File::open(&path).unwrap();
        let lock_file = DirLock::acquire(&dir).unwrap();
        let reported = Arc::new(AtomicUsize::new(0));
        let log = {
            let reported = Arc::clone(&reported);
            let active = ActiveFile {
                generation: Generation::FIRST,
                file: read_only,
                bytes: 0,
            };
            Wal::start(
                dir.clone(),
                lock_file,
                active,
                0,
                Fsync::Always,
                Box::new(move |event| {
                    if let WalEvent::Failed(_) = event {
                        reported.fetch_add(1, Ordering::SeqCst);
                    }
                }),
            )
        };
        let seq = log.append(&Change::Remove { package: "a" }).unwrap();
        assert!(log.wait_durable(seq).is_err());
        assert!(log.wait_durable(seq).is_err(), "the error is sticky");
        assert!(log.append(&Change::Remove { package: "b" }).is_err());
        assert!(log.rotate().is_err());
        assert!(log.close().is_err());
        drop(log);
        assert_eq!(reported.load(Ordering::SeqCst), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
