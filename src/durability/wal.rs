//! The write-ahead log: appends under the index lock, group commit, and
//! answers delivered by whoever writes.
//!
//! [`Wal::appender`] only encodes changes into an in-memory buffer under a
//! short mutex, so log order is the order in which the caller (holding the
//! index write lock) made the changes, and no disk I/O happens under that
//! lock.
//!
//! A batch is led by one thread at a time (`lead`): it takes everything
//! appended so far, `write(2)`s it, `fdatasync`s it with [`Fsync::Always`],
//! publishes the highest sequence number now durable and wakes whoever
//! waits. Everything appended while it writes goes out with the next batch
//! in one go: that is the group commit. With [`Fsync::Never`] a batch is
//! durable once written.
//!
//! Connections do not wait for their answers: they hand them over
//! ([`Wal::write_or_hand_over`], a [`Completion`]) and go back to reading
//! their socket. The completer thread ([`Wal::run_completer`], started and
//! joined by the log's owner) leads the batches they need and delivers each
//! once a batch covers it. So one thread sleeps in `fdatasync` for a whole
//! batch, rather than every connection thread sleeping on a condition
//! variable and being woken for its own answers. With [`Fsync::Never`],
//! where a batch is one cheap `write`, a connection that finds nobody
//! writing writes the batch itself and sends its own answers, then delivers
//! what others handed over meanwhile: the common case needs no other
//! thread. Delivering never blocks: a receiver that takes nothing now is
//! offered its answers again every [`RETRY_BLOCKED`] (and decides itself
//! when it has waited too long).
//!
//! [`Wal::wait_durable`] blocks instead, for callers with no socket to go
//! back to (the compactor's rotation, the close, tests): the first such
//! waiter to find nobody writing leads the batch itself; the others sleep on
//! one of two condition variables by the parity of the batch that will
//! cover them, so the end of a batch wakes the threads it covered and one
//! thread to lead the next batch, not every waiter.
//!
//! A failed write or sync is final (after a failed `fsync` the kernel may
//! have dropped the dirty pages, so retrying could report success for lost
//! data): every waiter not already covered gets the error, every completion
//! not already covered is abandoned unsent, and every later call fails. So
//! is a log file found deleted after a batch was written to it, or found
//! replaced at its path by [`Wal::check_files`]: what was written there can
//! no longer be recovered.
//!
//! The writer also decides when to compact: a batch that leaves the log
//! past its threshold asks the compactor for a compaction.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::compactor::CompactionSignal;
use super::files::{self, DirLock, FileId, Kind};
use super::record::{self, Change};
use super::recovery::Recovered;
use super::snapshot;
use super::{DurabilityEvent, DurableOptions, Fsync, Generation, Observer, Seq};

/// A spare buffer that grew past this during a burst is dropped rather than
/// kept around.
const SPARE_CAPACITY_LIMIT: usize = 16 << 20;
/// Completions the completer takes from those it shared out at a time.
const DELIVERY_CHUNK: usize = 8;
/// Completions a connection's thread takes from those shared out each time
/// it hands its own answers over.
const HELPING_CHUNK: usize = 4;
/// How often the completer offers answers again to receivers that took
/// none the last time (clients not reading their socket).
pub(crate) const RETRY_BLOCKED: Duration = Duration::from_millis(10);

/// Answers that wait for the log to cover a position, delivered by the
/// completer thread (see [`Wal::write_or_hand_over`]).
pub(crate) trait Completion: Send + Sync {
    /// The log covers every change up to `durable`: deliver what waits for
    /// no later position, without ever blocking.
    fn deliver(&self, durable: Seq) -> Delivery;
    /// Nothing waiting will become durable (the log failed, or closed
    /// before it could): drop it unsent.
    fn abandon(&self);
}

/// What [`Completion::deliver`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Delivered, or given up for good: the completer forgets it.
    Done,
    /// It waits for a later position: offered again after the next batch.
    Later,
    /// Its receiver takes nothing now: offered again after
    /// [`RETRY_BLOCKED`].
    Blocked,
}

/// The open write-ahead log of a data directory. Share it with `Arc`.
pub(crate) struct Wal {
    dir: PathBuf,
    fsync: Fsync,
    observe: Arc<Observer>,
    compaction: Arc<CompactionSignal>,
    /// A log smaller than this is never compacted.
    compact_at_least: u64,
    pending: Mutex<Pending>,
    /// The sequence number of the newest append: written under `pending`
    /// (and the index write lock), read without a lock.
    appended: AtomicU64,
    /// The file being written; taken only by the thread that leads a batch
    /// (`Progress::writing`), so batches reach the file in order.
    writer: Mutex<Writer>,
    progress: Mutex<Progress>,
    /// Waiters for batch `n` sleep on `batch_done[n % 2]` (see
    /// [`Wal::wait_for_batch`]).
    batch_done: [Condvar; 2],
    /// The completer sleeps on this while it has nothing to do.
    completer_wake: Condvar,
    /// `Progress::durable`, readable without the lock.
    durable: AtomicU64,
    /// Set once; from then on nothing new becomes durable.
    failure: OnceLock<Failure>,
    /// The log file receiving appends; the mutex also serialises rotations.
    active: Mutex<ActiveLog>,
    snapshot_bytes: AtomicU64,
    /// Bytes in the log file receiving appends, counting the buffer:
    /// written only under the `pending` lock, so it agrees with the buffer
    /// there, and read without it by the connections checking for room
    /// after each batch (taking `pending` for that would contend with the
    /// appends made under the index write lock).
    log_bytes: AtomicU64,
    batches_written: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
    /// The directory stays locked until the log is dropped.
    lock: DirLock,
}

/// Which log file receives appends.
struct ActiveLog {
    generation: Generation,
    id: FileId,
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
    /// Bytes in the log file receiving appends.
    pub log_bytes: u64,
}

struct Pending {
    buffer: Vec<u8>,
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
    /// Threads asleep on each of `batch_done`: the end of a batch wakes
    /// only those that are there, since a notification is a system call
    /// even when nobody waits, and most batches have no waiter.
    asleep: [u32; 2],
    /// Completions handed over and not yet taken by the completer.
    handed_over: Vec<Arc<dyn Completion>>,
    /// Completions a batch may have covered, shared out by the completer:
    /// it and connection threads handing over take them to deliver.
    ready: Vec<Arc<dyn Completion>>,
    /// The completer sleeps on `completer_wake`: it must be woken when a
    /// batch is published or a completion it can deliver is handed over.
    completer_asleep: bool,
    /// Set once: the completer ends once it has delivered what it can.
    completer_stopping: bool,
    /// Set once the completer has ended: what comes back is abandoned.
    completer_gone: bool,
}

struct Writer {
    file: File,
    /// The buffer swapped in for the one being written, reused.
    spare: Vec<u8>,
}

/// Appends to the log with its buffer locked (see [`Wal::appender`]).
pub(crate) struct Appender<'a> {
    wal: &'a Wal,
    pending: MutexGuard<'a, Pending>,
}

impl Appender<'_> {
    /// [`Wal::append`] under the held lock.
    pub(crate) fn append(&mut self, change: &Change<'_>) -> io::Result<Seq> {
        let pending = &mut *self.pending;
        let before = pending.buffer.len();
        record::encode_change(&mut pending.buffer, change)?;
        let appended = (pending.buffer.len() - before) as u64;
        self.wal.log_bytes.fetch_add(appended, Ordering::Relaxed);
        let seq = self.wal.appended.load(Ordering::Relaxed) + 1;
        self.wal.appended.store(seq, Ordering::Relaxed);
        Ok(Seq(seq))
    }
}

/// A log file created for the next rotation (see [`Wal::prepare_rotation`]).
pub(crate) struct NextWalFile<'a> {
    /// The log receiving appends now, locked until the switch.
    current: MutexGuard<'a, ActiveLog>,
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
    /// newest snapshot made obsolete. `observe` hears, on whichever thread
    /// wrote, how long each sync took and, once, the error that failed the
    /// log; `compaction` is signalled when the log outgrows its snapshot.
    pub(crate) fn open(
        recovered: Recovered,
        options: &DurableOptions,
        observe: Arc<Observer>,
        compaction: Arc<CompactionSignal>,
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
        Wal::start(
            dir,
            dir_lock,
            active,
            snapshot_bytes,
            options,
            observe,
            compaction,
        )
    }

    /// Builds the log around `active`.
    fn start(
        dir: PathBuf,
        dir_lock: DirLock,
        active: ActiveFile,
        snapshot_bytes: u64,
        options: &DurableOptions,
        observe: Arc<Observer>,
        compaction: Arc<CompactionSignal>,
    ) -> io::Result<Wal> {
        let ActiveFile {
            generation,
            file,
            bytes: log_bytes,
        } = active;
        let id = FileId::of(&file)?;
        Ok(Wal {
            dir,
            fsync: options.fsync,
            observe,
            compaction,
            compact_at_least: options.compact_at_least,
            pending: Mutex::new(Pending { buffer: Vec::new() }),
            appended: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                file,
                spare: Vec::new(),
            }),
            progress: Mutex::new(Progress {
                durable: Seq(0),
                batch: 0,
                writing: None,
                asleep: [0; 2],
                handed_over: Vec::new(),
                ready: Vec::new(),
                completer_asleep: false,
                completer_stopping: false,
                completer_gone: false,
            }),
            batch_done: [Condvar::new(), Condvar::new()],
            completer_wake: Condvar::new(),
            durable: AtomicU64::new(0),
            failure: OnceLock::new(),
            active: Mutex::new(ActiveLog { generation, id }),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            log_bytes: AtomicU64::new(log_bytes),
            batches_written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            lock: dir_lock,
        })
    }

    /// Appends `change` and returns its sequence number. Call it while
    /// holding the index write lock, right after making the change; wait for
    /// durability after releasing the lock. Fails for names outside 1..=255
    /// bytes, and once the log has failed or closed.
    #[cfg(test)]
    pub(crate) fn append(&self, change: &Change<'_>) -> io::Result<Seq> {
        self.appender()?.append(change)
    }

    /// Holds the buffer of appends for a run of changes made under one hold
    /// of the index write lock, so the run takes this lock once. Fails once
    /// the log has failed or closed.
    pub(crate) fn appender(&self) -> io::Result<Appender<'_>> {
        let pending = lock(&self.pending);
        self.check_alive()?;
        Ok(Appender { wal: self, pending })
    }

    /// The error that failed (or closed) the log, if it did.
    fn check_alive(&self) -> io::Result<()> {
        match self.failure.get() {
            Some(failure) => Err(failure.to_error()),
            None => Ok(()),
        }
    }

    /// The sequence number of the newest append: a reader that wants what
    /// it saw to be durable waits for this. Read under the index lock, it
    /// covers every change that lock has let through.
    pub(crate) fn last_appended(&self) -> Seq {
        Seq(self.appended.load(Ordering::Relaxed))
    }

    /// Blocks until the change numbered `seq` (and all before it) is
    /// durable as the [`Fsync`] mode defines it, or returns the error that
    /// failed the log. Writes the log itself when nobody else is writing.
    pub(crate) fn wait_durable(&self, seq: Seq) -> io::Result<()> {
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
            progress = self.wait_for_batch(progress, batch);
        }
    }

    /// Sleeps until batch `batch` has ended (or a failure wakes everyone),
    /// counted in `Progress::asleep` so that the batch's end knows to wake
    /// this thread. Returns the lock, taken again.
    fn wait_for_batch<'a>(
        &'a self,
        mut progress: MutexGuard<'a, Progress>,
        batch: u64,
    ) -> MutexGuard<'a, Progress> {
        let parity = (batch % 2) as usize;
        progress.asleep[parity] += 1;
        let mut progress = self.batch_done[parity]
            .wait(progress)
            .unwrap_or_else(PoisonError::into_inner);
        progress.asleep[parity] -= 1;
        progress
    }

    /// The highest sequence number durable so far: answers waiting for no
    /// later change may be sent.
    pub(crate) fn durable(&self) -> Seq {
        Seq(self.durable.load(Ordering::Acquire))
    }

    /// For answers waiting for `wait_for`, held by `completion`: when a
    /// batch is one cheap `write` ([`Fsync::Never`]) and nobody is writing
    /// one, writes it on the calling thread, delivers what others handed
    /// over meanwhile, and returns true: the caller sends its own answers.
    /// Otherwise hands `completion` over to the completer thread,
    /// which delivers it once the log covers `wait_for` (the completion
    /// itself says: see [`Completion::deliver`]), and returns false. No thread sleeps
    /// either way: a writer that found the log busy leaves its answers to
    /// whoever writes.
    pub(crate) fn write_or_hand_over(
        &self,
        wait_for: Seq,
        completion: &Arc<dyn Completion>,
    ) -> io::Result<bool> {
        let mut progress = lock(&self.progress);
        self.check_alive()?;
        if progress.durable >= wait_for {
            return Ok(true);
        }
        if self.fsync == Fsync::Always || progress.writing.is_some() {
            progress.handed_over.push(Arc::clone(completion));
            let help = take_chunk(&mut progress.ready, HELPING_CHUNK);
            self.expect_locked(progress, wait_for);
            self.help_deliver(help);
            return Ok(false);
        }
        self.lead(progress, None, false)?;
        // What this batch did not cover, or a client not reading, goes back
        // to the completer.
        let handed_over = std::mem::take(&mut lock(&self.progress).handed_over);
        self.help_deliver(handed_over);
        Ok(true)
    }

    /// Pops up to `chunk` completions the completer shared out; `None`
    /// when there are none.
    fn take_ready(&self, chunk: usize) -> Option<Vec<Arc<dyn Completion>>> {
        let taken = take_chunk(&mut lock(&self.progress).ready, chunk);
        (!taken.is_empty()).then_some(taken)
    }

    /// Delivers `completions` (the completer shared them out, or this
    /// thread just wrote the batch they waited for) on a connection's
    /// thread that is running anyway: the sends of a batch spread over the
    /// threads awake, and the completer is left fewer. Those not done go
    /// back to the completer.
    fn help_deliver(&self, completions: Vec<Arc<dyn Completion>>) {
        if completions.is_empty() {
            return;
        }
        let durable = self.durable();
        let mut waiting = Vec::new();
        let mut blocked = Vec::new();
        for completion in completions {
            sort_delivery(completion, durable, &mut waiting, &mut blocked);
        }
        if !waiting.is_empty() || !blocked.is_empty() {
            let mut progress = lock(&self.progress);
            if progress.completer_gone {
                // Stopped after the close: nothing more will be covered.
                drop(progress);
                for completion in waiting.into_iter().chain(blocked) {
                    completion.abandon();
                }
                return;
            }
            progress.handed_over.append(&mut waiting);
            progress.handed_over.append(&mut blocked);
            self.expect_locked(progress, durable);
        }
    }

    /// Makes sure the log comes to cover `wait_for` and the completer looks
    /// at its completions then: for a completion already handed over whose
    /// position grew.
    pub(crate) fn expect_durable(&self, wait_for: Seq) {
        self.expect_locked(lock(&self.progress), wait_for);
    }

    /// Wakes the completer if it sleeps: it delivers `wait_for` at once
    /// when the log covers it, and writes the batch it needs otherwise.
    fn expect_locked(&self, mut progress: MutexGuard<'_, Progress>, _wait_for: Seq) {
        if std::mem::take(&mut progress.completer_asleep) {
            drop(progress);
            self.completer_wake.notify_one();
        }
    }

    /// The completer thread's life, until [`Wal::stop_completer`]: takes
    /// the completions handed over, delivers those the log covers, leads
    /// the batch the others need (or waits for the one being written),
    /// offers blocked ones again every [`RETRY_BLOCKED`], and abandons
    /// those the log can no longer cover once it has failed or closed.
    pub(crate) fn run_completer(&self) {
        let mut waiting: Vec<Arc<dyn Completion>> = Vec::new();
        let mut blocked: Vec<Arc<dyn Completion>> = Vec::new();
        let mut progress = lock(&self.progress);
        loop {
            waiting.append(&mut progress.handed_over);
            // A failure (or the close) is set after the last batch it lets
            // through is published: read in this order, `durable` is final
            // whenever `ended` is true.
            let ended = self.failure.get().is_some();
            let durable = progress.durable;
            let stopping = progress.completer_stopping;
            if waiting.is_empty() && blocked.is_empty() {
                if stopping {
                    progress.completer_gone = true;
                    return;
                }
                progress.completer_asleep = true;
                progress = self
                    .completer_wake
                    .wait(progress)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Whatever a batch may have covered is shared out: connection
            // threads passing by take some (see `help_deliver`) while this
            // thread delivers the rest.
            progress.ready.append(&mut waiting);
            drop(progress);
            for completion in std::mem::take(&mut blocked) {
                sort_delivery(completion, durable, &mut waiting, &mut blocked);
            }
            while let Some(chunk) = self.take_ready(DELIVERY_CHUNK) {
                for completion in chunk {
                    sort_delivery(completion, durable, &mut waiting, &mut blocked);
                }
            }
            if ended || stopping {
                // What waits now can never be covered, or the owner is
                // closing and no one will read a blocked client's answers.
                let given_up = if ended { waiting.len() } else { 0 } + blocked.len();
                if given_up > 0 {
                    for completion in waiting.drain(..).chain(blocked.drain(..)) {
                        completion.abandon();
                    }
                }
            }
            progress = lock(&self.progress);
            if !progress.handed_over.is_empty() || progress.durable > durable {
                continue;
            }
            if !waiting.is_empty() {
                // Each waits for a change appended but not yet written.
                if progress.writing.is_none() {
                    // A failure is recorded and seen on the next turn.
                    let _ = self.lead(progress, None, false);
                    progress = lock(&self.progress);
                } else {
                    let batch = progress.batch;
                    progress = self.wait_for_batch(progress, batch);
                }
                continue;
            }
            if !blocked.is_empty() {
                // Until something is handed over, or it is time to offer
                // blocked receivers their answers again.
                progress.completer_asleep = true;
                progress = self
                    .completer_wake
                    .wait_timeout(progress, RETRY_BLOCKED)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                progress.completer_asleep = false;
            }
        }
    }

    /// Tells the completer thread ([`Wal::run_completer`]) to end once it
    /// has delivered what it can. Call it after [`Wal::close`], so that
    /// everything handed over is covered.
    pub(crate) fn stop_completer(&self) {
        lock(&self.progress).completer_stopping = true;
        self.completer_wake.notify_all();
    }

    /// Waits until no batch is being written, then writes one (see `lead`).
    fn lead_when_free(&self, next_file: Option<File>, force_sync: bool) -> io::Result<()> {
        let mut progress = lock(&self.progress);
        while progress.writing.is_some() {
            let batch = progress.batch;
            progress = self.wait_for_batch(progress, batch);
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
        let (last, log_bytes) = {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut pending.buffer, &mut writer.spare);
            (self.last_appended(), self.log_bytes())
        };
        progress.batch += 1;
        progress.writing = Some(last);
        let batch = progress.batch;
        drop(progress);

        let sync = self.fsync == Fsync::Always || next_file.is_some() || force_sync;
        let written = {
            let Writer { file, spare } = &mut *writer;
            let written = write_batch(file, spare, sync).and_then(|took| {
                // Bytes written to a file that was deleted are lost with it:
                // find out before anyone is told they are durable.
                still_linked(file)?;
                Ok(took)
            });
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
            self.fail_with(error);
        }
        let mut progress = lock(&self.progress);
        progress.writing = None;
        if written.is_ok() {
            progress.durable = progress.durable.max(last);
            self.durable.store(progress.durable.0, Ordering::Release);
        }
        let wake_completer = std::mem::take(&mut progress.completer_asleep);
        let covered = (batch % 2) as usize;
        let next = ((batch + 1) % 2) as usize;
        let asleep = progress.asleep;
        drop(progress);
        if wake_completer {
            self.completer_wake.notify_one();
        }
        // Everyone this batch covered, and one thread to lead the next.
        if asleep[covered] > 0 {
            self.batch_done[covered].notify_all();
        }
        if asleep[next] > 0 {
            self.batch_done[next].notify_one();
        }
        let took = written?;
        if let Some(took) = took {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            (self.observe)(DurabilityEvent::Synced(took));
        }
        if self.compaction_due(log_bytes) {
            self.compaction.request();
        }
        Ok(())
    }

    /// Fails the log for good with `error`, and reports it if it is the
    /// first failure.
    fn fail_with(&self, error: &io::Error) {
        let first = self.fail(Failure::Io {
            kind: error.kind(),
            message: error.to_string(),
        });
        if first {
            (self.observe)(DurabilityEvent::Failed(error));
        }
    }

    /// Fails the log for good and wakes everyone waiting on it; true when
    /// this was the first failure (a later one changes nothing).
    fn fail(&self, failure: Failure) -> bool {
        let first = self.failure.set(failure).is_ok();
        // Taking the lock orders this after any waiter's check of `failure`,
        // so none misses the wake-up.
        drop(lock(&self.progress));
        for waiters in &self.batch_done {
            waiters.notify_all();
        }
        self.completer_wake.notify_all();
        first
    }

    /// Checks that the directory and the log file receiving appends are
    /// still the ones at their paths; a deleted or replaced one fails the
    /// log (and is reported) like a failed write.
    pub(crate) fn check_files(&self) -> io::Result<()> {
        self.check_alive()?;
        let checked = self.lock.check_in_place(&self.dir).and_then(|()| {
            let active = lock(&self.active);
            let path = files::path(&self.dir, Kind::Log, active.generation);
            files::check_same(&path, active.id)
        });
        if let Err(error) = &checked {
            self.fail_with(error);
        }
        checked
    }

    /// Counters for metrics.
    pub(crate) fn stats(&self) -> LogStats {
        LogStats {
            appended: self.last_appended().0,
            durable: lock(&self.progress).durable.0,
            batches_written: self.batches_written.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            log_bytes: self.log_bytes(),
        }
    }

    /// Bytes in the log file receiving appends.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Relaxed)
    }

    /// Whether the log has outgrown the snapshot ([`snapshot::should_compact`]).
    pub(crate) fn needs_compaction(&self) -> bool {
        self.compaction_due(self.log_bytes())
    }

    /// Whether the log has grown past [`snapshot::log_cap`]: writers should
    /// wait for a rotation before taking more.
    pub(crate) fn over_cap(&self) -> bool {
        let cap = snapshot::log_cap(
            self.snapshot_bytes.load(Ordering::Relaxed),
            self.compact_at_least,
        );
        self.log_bytes() > cap
    }

    fn compaction_due(&self, log_bytes: u64) -> bool {
        snapshot::should_compact(
            log_bytes,
            self.snapshot_bytes.load(Ordering::Relaxed),
            self.compact_at_least,
        )
    }

    /// Creates and syncs the next log file, ahead of [`Wal::rotate_to`], so
    /// that no file system work happens while the caller holds the index
    /// lock.
    /// The returned value holds the rotation lock until it is used, so a
    /// second rotation cannot prepare the same file meanwhile.
    pub(crate) fn prepare_rotation(&self) -> io::Result<NextWalFile<'_>> {
        let current = lock(&self.active);
        self.check_alive()?;
        let (file, header_len) = create_log_file(&self.dir, current.generation.next())?;
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
    pub(crate) fn rotate_to(&self, next: NextWalFile<'_>) -> io::Result<Generation> {
        let NextWalFile {
            mut current,
            file,
            header_len,
        } = next;
        self.check_alive()?;
        // No append can come in between: the caller holds the index read
        // lock, and appends happen under its write lock. The seal goes out
        // with the last batch of the old file, before the switch.
        let next = current.generation.next();
        {
            let mut pending = lock(&self.pending);
            record::encode_seal(&mut pending.buffer, next.value())?;
            self.log_bytes.store(header_len, Ordering::Relaxed);
        }
        let id = FileId::of(&file)?;
        self.lead_when_free(Some(file), true)?;
        *current = ActiveLog {
            generation: next,
            id,
        };
        Ok(next)
    }

    /// Writes the snapshot for `generation` (from [`Wal::rotate_to`]) from
    /// `packages`, dependencies before dependents, then deletes the files it
    /// supersedes. Readers and writers of the log carry on meanwhile.
    /// Returns the snapshot's size.
    pub(crate) fn write_snapshot<'p, D>(
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
    pub(crate) fn close(&self) -> io::Result<()> {
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

/// Offers `completion` what is durable and files it by what it did:
/// forgotten when done, in `waiting` when it waits for more, in `blocked`
/// when its receiver takes nothing now.
fn sort_delivery(
    completion: Arc<dyn Completion>,
    durable: Seq,
    waiting: &mut Vec<Arc<dyn Completion>>,
    blocked: &mut Vec<Arc<dyn Completion>>,
) {
    match completion.deliver(durable) {
        Delivery::Done => {}
        Delivery::Later => waiting.push(completion),
        Delivery::Blocked => blocked.push(completion),
    }
}

/// Up to `chunk` items from the end of `items`.
fn take_chunk<T>(items: &mut Vec<T>, chunk: usize) -> Vec<T> {
    let keep = items.len().saturating_sub(chunk);
    items.split_off(keep)
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

/// Fails when `file` has no name left in the file system.
fn still_linked(file: &File) -> io::Result<()> {
    if file.metadata()?.nlink() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the log file was deleted while in use",
        ));
    }
    Ok(())
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
