//! The write-ahead log: appends under the index lock, group commit on a
//! background writer thread.
//!
//! [`Log::append`] only encodes the change into an in-memory buffer under a
//! short mutex, so log order is the order in which the caller (holding the
//! index write lock) made the changes, and no disk I/O happens under that
//! lock. The writer thread swaps the buffer for an empty spare, `write(2)`s
//! it, `fdatasync`s it with [`Fsync::Always`], and publishes the highest
//! sequence number now durable. Every waiter whose record was in that batch
//! wakes from the same sync: that is the group commit. With
//! [`Fsync::Never`] the batch is durable once written.
//!
//! A failed write or sync is final (after a failed `fsync` the kernel may
//! have dropped the dirty pages, so retrying could report success for lost
//! data): every waiter not already covered gets the error, and so does
//! every later call.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::files::{self, Kind};
use super::record::{self, Change};
use super::recovery::Recovered;
use super::snapshot;
use super::{Fsync, Generation, Seq};

/// What the writer thread reports to the server, on its own thread.
#[derive(Debug)]
pub enum LogEvent<'a> {
    /// A batch was synced; the time `fdatasync` took.
    Synced(Duration),
    /// A write or sync failed; the log is failed for good. Reported once.
    Failed(&'a io::Error),
}

/// A spare buffer that grew past this during a burst is dropped rather than
/// kept around.
const SPARE_CAPACITY_LIMIT: usize = 16 << 20;

/// The open write-ahead log of a data directory. Share it with `Arc`.
pub struct Log {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// Generation of the log receiving appends; the mutex also serialises
    /// rotations.
    generation: Mutex<Generation>,
    snapshot_bytes: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held (and the directory locked) until the log is dropped.
    _lock: File,
}

/// State shared with the writer thread.
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: something to write, a rotation, or closing.
    work: Condvar,
    progress: Mutex<Progress>,
    /// Wakes waiters: the durable point moved, or the log failed.
    progressed: Condvar,
    /// Set once; from then on nothing new becomes durable.
    failure: OnceLock<Failure>,
    /// Written only by the writer thread.
    batches_written: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
}

/// Counters of the log since it was opened, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
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
    /// A new log file to switch to once the buffer before it is written.
    switch_to: Option<(Generation, File)>,
    closing: bool,
    /// True while the writer sleeps on `work`: only then does an append
    /// need to wake it, which keeps a syscall out of the index write lock
    /// whenever the writer is busy anyway.
    writer_asleep: bool,
}

/// The log file receiving appends.
struct ActiveFile {
    generation: Generation,
    file: File,
    /// Its length, header included.
    bytes: u64,
}

struct Progress {
    durable: Seq,
    /// Generation of the file the writer writes to.
    generation: Generation,
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

impl Log {
    /// Opens the log after [`super::recover`]: continues the newest log file
    /// or creates the first one, removes files the newest snapshot made
    /// obsolete, and starts the writer thread. `observe` hears, on the
    /// writer thread, how long each sync took and, once, the write or sync
    /// error that failed the log.
    pub fn open(
        recovered: Recovered,
        fsync: Fsync,
        observe: impl Fn(LogEvent<'_>) + Send + 'static,
    ) -> io::Result<Log> {
        let Recovered {
            dir,
            lock: dir_lock,
            base,
            active_log,
            snapshot_bytes,
            ..
        } = recovered;
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
        Log::start(dir, dir_lock, active, snapshot_bytes, fsync, observe)
    }

    /// Starts the writer thread on `active`.
    fn start(
        dir: PathBuf,
        dir_lock: File,
        active: ActiveFile,
        snapshot_bytes: u64,
        fsync: Fsync,
        observe: impl Fn(LogEvent<'_>) + Send + 'static,
    ) -> io::Result<Log> {
        let ActiveFile {
            generation,
            file,
            bytes: log_bytes,
        } = active;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buffer: Vec::new(),
                last_appended: Seq(0),
                log_bytes,
                switch_to: None,
                closing: false,
                writer_asleep: false,
            }),
            work: Condvar::new(),
            progress: Mutex::new(Progress {
                durable: Seq(0),
                generation,
            }),
            progressed: Condvar::new(),
            failure: OnceLock::new(),
            batches_written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("wal-writer".to_owned())
                .spawn(move || shared.run_writer(file, fsync, observe))?
        };
        Ok(Log {
            shared,
            dir,
            generation: Mutex::new(generation),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            writer: Mutex::new(Some(writer)),
            _lock: dir_lock,
        })
    }

    /// Appends `change` and returns its sequence number. Call it while
    /// holding the index write lock, right after making the change; wait for
    /// durability after releasing the lock. Fails for names outside 1..=255
    /// bytes, and once the log has failed or closed.
    pub fn append(&self, change: &Change<'_>) -> io::Result<Seq> {
        let mut pending = lock(&self.shared.pending);
        self.check_alive()?;
        let before = pending.buffer.len();
        record::encode_change(&mut pending.buffer, change)?;
        pending.log_bytes += (pending.buffer.len() - before) as u64;
        pending.last_appended = Seq(pending.last_appended.0 + 1);
        let seq = pending.last_appended;
        let wake = std::mem::replace(&mut pending.writer_asleep, false);
        drop(pending);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(seq)
    }

    /// The error that failed (or closed) the log, if it did.
    fn check_alive(&self) -> io::Result<()> {
        match self.shared.failure.get() {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }

    /// The sequence number of the newest append: a reader that wants what
    /// it saw to be durable waits for this.
    pub fn last_appended(&self) -> Seq {
        lock(&self.shared.pending).last_appended
    }

    /// Blocks until the change numbered `seq` (and all before it) is
    /// durable as the [`Fsync`] mode defines it, or returns the error that
    /// failed the log.
    pub fn wait_durable(&self, seq: Seq) -> io::Result<()> {
        let mut progress = lock(&self.shared.progress);
        loop {
            if progress.durable >= seq {
                return Ok(());
            }
            self.check_alive()?;
            progress = self
                .shared
                .progressed
                .wait(progress)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> LogStats {
        let shared = &self.shared;
        LogStats {
            appended: self.last_appended().0,
            durable: lock(&shared.progress).durable.0,
            batches_written: shared.batches_written.load(Ordering::Relaxed),
            syncs: shared.syncs.load(Ordering::Relaxed),
            bytes_written: shared.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Bytes in the log file receiving appends.
    pub fn log_bytes(&self) -> u64 {
        lock(&self.shared.pending).log_bytes
    }

    /// Whether the log has outgrown the snapshot ([`snapshot::should_compact`]).
    pub fn needs_compaction(&self) -> bool {
        snapshot::should_compact(
            self.log_bytes(),
            self.snapshot_bytes.load(Ordering::Relaxed),
        )
    }

    /// Starts a new log file and returns its generation, which is the
    /// generation of the snapshot to write next. Call it while holding the
    /// index read lock and take the snapshot contents under the same lock:
    /// then every change before them is in the older logs and every change
    /// after them in the new one. Returns once every record before the
    /// switch is written and synced and the new file receives appends.
    pub fn rotate(&self) -> io::Result<Generation> {
        let mut generation = lock(&self.generation);
        self.check_alive()?;
        let next = generation.next();
        let (file, header_len) = create_log_file(&self.dir, next)?;
        {
            let mut pending = lock(&self.shared.pending);
            self.check_alive()?;
            pending.switch_to = Some((next, file));
            pending.log_bytes = header_len;
        }
        self.shared.work.notify_one();
        let mut progress = lock(&self.shared.progress);
        while progress.generation < next {
            self.check_alive()?;
            progress = self
                .shared
                .progressed
                .wait(progress)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *generation = next;
        Ok(next)
    }

    /// Writes the snapshot for `generation` (from [`Log::rotate`]) from
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

    /// Writes and syncs everything appended (whatever the [`Fsync`] mode),
    /// then stops the writer; later appends and waits fail. Returns the
    /// error that failed the log, if any. Dropping the log does the same.
    pub fn close(&self) -> io::Result<()> {
        lock(&self.shared.pending).closing = true;
        self.shared.work.notify_one();
        if let Some(writer) = lock(&self.writer).take() {
            writer
                .join()
                .map_err(|_| io::Error::other("write-ahead log writer panicked"))?;
        }
        match self.shared.failure.get() {
            Some(failure @ Failure::Io { .. }) => Err(failure.to_error()),
            _ => Ok(()),
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Errors were already reported through `observe`.
        let _ = self.close();
    }
}

impl Shared {
    fn run_writer(&self, mut file: File, fsync: Fsync, observe: impl Fn(LogEvent<'_>)) {
        let mut batch = Vec::new();
        loop {
            let (last_in_batch, switch_to, closing) = {
                let mut pending = lock(&self.pending);
                while pending.buffer.is_empty() && pending.switch_to.is_none() && !pending.closing {
                    pending.writer_asleep = true;
                    pending = self
                        .work
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                pending.writer_asleep = false;
                std::mem::swap(&mut pending.buffer, &mut batch);
                (
                    pending.last_appended,
                    pending.switch_to.take(),
                    pending.closing,
                )
            };
            // The file being left and the final state are synced in either
            // mode, so an older log is always complete on disk.
            let sync = fsync == Fsync::Always || switch_to.is_some() || closing;
            let synced = write_batch(&mut file, &batch, sync);
            if let Ok(Some(took)) = synced {
                observe(LogEvent::Synced(took));
            }
            if let Err(error) = synced {
                // Waiters learn first, so even a panicking hook cannot
                // leave them hanging.
                self.finish(Failure::Io {
                    kind: error.kind(),
                    message: error.to_string(),
                });
                observe(LogEvent::Failed(&error));
                return;
            }
            if !batch.is_empty() {
                self.batches_written.fetch_add(1, Ordering::Relaxed);
                self.bytes_written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            self.syncs.fetch_add(u64::from(sync), Ordering::Relaxed);
            batch.clear();
            if batch.capacity() > SPARE_CAPACITY_LIMIT {
                batch = Vec::new();
            }
            {
                let mut progress = lock(&self.progress);
                progress.durable = last_in_batch;
                if let Some((generation, new_file)) = switch_to {
                    file = new_file;
                    progress.generation = generation;
                }
            }
            self.progressed.notify_all();
            if closing {
                self.finish(Failure::Closed);
                return;
            }
        }
    }

    /// Fails the log for good and wakes everyone waiting on it.
    fn finish(&self, failure: Failure) {
        // Only the writer sets a failure, and only once.
        let _ = self.failure.set(failure);
        // Taking the lock orders this after any waiter's check of `failure`,
        // so none misses the wake-up.
        drop(lock(&self.progress));
        self.progressed.notify_all();
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

    #[test]
    fn a_failed_write_fails_every_waiter_and_every_later_call() {
        let dir = std::env::temp_dir().join(format!("pi-wal-failure-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log-1.pi");
        fs::write(&path, b"").unwrap();
        // Writing to a file opened read-only fails like a dying disk would.
        let read_only = File::open(&path).unwrap();
        let lock_file = File::create(dir.join("LOCK")).unwrap();
        let reported = Arc::new(AtomicUsize::new(0));
        let log = {
            let reported = Arc::clone(&reported);
            let active = ActiveFile {
                generation: Generation::FIRST,
                file: read_only,
                bytes: 0,
            };
            Log::start(
                dir.clone(),
                lock_file,
                active,
                0,
                Fsync::Always,
                move |event| {
                    if let LogEvent::Failed(_) = event {
                        reported.fetch_add(1, Ordering::SeqCst);
                    }
                },
            )
            .unwrap()
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
