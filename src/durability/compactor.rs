//! The compactor thread (`docs/durability.md`, "Compaction"): on request it
//! rotates the log and copies the index under the read lock, then writes the
//! snapshot with no lock held; every [`WATCH_INTERVAL`] it checks that the
//! files are still at their paths and writes them again when they are not.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::wal::{NextWalFile, Wal};
use super::LogPosition;
use crate::index::SharedIndex;
use crate::log::{self, DurationText};

pub(super) const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a failed compaction waits before the next attempt: the log
/// keeps every change meanwhile, so only disk use grows.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// How the log and the owner wake the compactor thread, and writers held
/// back by a full log learn it was rotated.
#[derive(Default)]
pub(crate) struct CompactionSignal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    wanted: bool,
    stopping: bool,
    /// The last compaction failed: nobody should wait for the next one.
    failing: bool,
}

/// Why the compactor woke.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Compact,
    Stop,
    /// The wait timed out: time to check the files.
    Watch,
}

impl CompactionSignal {
    /// Asks for a compaction; cheap when one is already asked for.
    pub(crate) fn request(&self) {
        let mut state = self.lock();
        if !state.wanted {
            state.wanted = true;
            self.changed.notify_all();
        }
    }

    pub(super) fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// Holds the caller while `full()`, until the compactor rotates the log.
    /// Gives up when compactions fail (a full disk must not stall every
    /// writer) or the compactor stops.
    pub(crate) fn wait_for_room(&self, full: impl Fn() -> bool) {
        if !full() {
            return;
        }
        self.request();
        let mut state = self.lock();
        while full() && !state.failing && !state.stopping {
            let waited = self.changed.wait_timeout(state, Duration::from_millis(100));
            state = waited.unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Records a rotation or a failed compaction; wakes writers waiting.
    fn note(&self, compacted: bool) {
        self.lock().failing = !compacted;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` for a request or the stop (a stop wins); with
    /// `requests` false, for the stop only.
    fn next(&self, timeout: Duration, requests: bool) -> Wake {
        let idle = |state: &mut SignalState| !(state.stopping || requests && state.wanted);
        let waited = self.changed.wait_timeout_while(self.lock(), timeout, idle);
        let mut state = waited.unwrap_or_else(PoisonError::into_inner).0;
        if state.stopping {
            Wake::Stop
        } else if requests && std::mem::take(&mut state.wanted) {
            Wake::Compact
        } else {
            Wake::Watch
        }
    }
}

/// What a compaction works on; one compaction runs at a time.
pub(crate) struct Compaction {
    pub(super) wal: Arc<Wal>,
    pub(super) index: SharedIndex,
    /// Held while compacting; true once closed.
    pub(super) closed: Mutex<bool>,
}

impl Compaction {
    /// Waits for a compaction in progress and refuses later ones.
    pub(super) fn close(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Rotates the log, copies the index and writes the snapshot; logs and
    /// counts the outcome. With `missing` ([`Wal::missing_files`]), writes
    /// the index as a fresh snapshot and log while no batch is led; a
    /// failure then fails the log.
    pub(crate) fn compact(&self, missing: Option<String>) -> io::Result<()> {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            return Err(io::Error::other("the data directory is closed"));
        }
        let started = Instant::now();
        let log_bytes = self.wal.log_bytes();
        let next = match &missing {
            Some(why) => self.wal.prepare_restore(why),
            None => self.wal.prepare_rotation(),
        };
        let written = next.and_then(|next| self.switch(next));
        match (&written, &missing) {
            (Ok((position, _, packages)), Some(why)) => {
                self.wal.restored(*position);
                // Nothing acknowledged was lost: the files now hold the index.
                self.wal.metrics.data_dir_rewritten();
                log::error(
                    "data directory files missing; wrote them again from memory",
                    &[
                        ("missing", why),
                        ("elapsed", &DurationText(started.elapsed())),
                        ("packages", packages),
                    ],
                );
            }
            (Ok((_, snapshot_bytes, packages)), None) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH);
                let now = now.map_or(0.0, |since| since.as_secs_f64());
                self.wal.metrics.snapshot_written(now);
                log::info(
                    "compacted",
                    &[
                        ("elapsed", &DurationText(started.elapsed())),
                        ("log_bytes", &log_bytes),
                        ("snapshot_bytes", snapshot_bytes),
                        ("packages", packages),
                    ],
                );
            }
            (Err(error), Some(_)) => self.wal.fail(Some(error)),
            (Err(error), None) => {
                self.wal.signal.note(false);
                // The log keeps every change, so nothing is lost; disk use
                // grows until a later attempt succeeds.
                self.wal.metrics.durability_error();
                log::error("compaction failed", &[("error", error)]);
            }
        }
        written.map(drop)
    }

    /// Switches to `next` and copies the index under one hold of the read
    /// lock ([`Wal::switch_to`]), then writes the snapshot with no lock held.
    /// Returns the position it makes durable, its size and its packages.
    fn switch(&self, next: NextWalFile<'_>) -> io::Result<(LogPosition, u64, usize)> {
        let (copy, switched) = self.index.copy_with(|_| self.wal.switch_to(next));
        let (generation, position) = switched?;
        // Writers held back by a full log go on as soon as it switched.
        self.wal.signal.note(true);
        let bytes = self.wal.write_snapshot(generation, copy.topological())?;
        Ok((position, bytes, copy.packages()))
    }
}

pub(super) fn run(compaction: &Compaction) {
    let (wal, signal) = (&compaction.wal, &compaction.wal.signal);
    loop {
        let wake = signal.next(WATCH_INTERVAL, true);
        // Before a stop too: the close then syncs files that exist.
        let missing = wal.missing_files();
        if missing.is_some() && compaction.compact(missing).is_err() {
            return;
        }
        match wake {
            Wake::Stop => return,
            Wake::Compact if wal.needs_compaction() => {
                // A compaction that found files missing is not retried:
                // the next turn writes them again.
                if compaction.compact(None).is_err() && wal.missing_files().is_none() {
                    if signal.next(RETRY_AFTER_FAILURE, false) == Wake::Stop {
                        return;
                    }
                    // The request that failed still stands.
                    signal.request();
                }
            }
            Wake::Compact | Wake::Watch => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    #[test]
    fn a_stop_wins_over_a_request_and_requests_coalesce() {
        let signal = CompactionSignal::default();
        assert_eq!(signal.next(Duration::from_millis(1), true), Wake::Watch);
        signal.request();
        signal.request();
        assert_eq!(signal.next(Duration::from_secs(5), true), Wake::Compact);
        assert_eq!(signal.next(Duration::from_millis(1), true), Wake::Watch);
        signal.request();
        signal.stop();
        assert_eq!(signal.next(Duration::from_secs(5), true), Wake::Stop);
        assert_eq!(signal.next(Duration::from_secs(5), false), Wake::Stop);
    }

    #[test]
    fn a_writer_waits_for_room_until_a_rotation_and_never_while_compactions_fail() {
        let signal = Arc::new(CompactionSignal::default());
        signal.wait_for_room(|| false);
        let full = Arc::new(AtomicBool::new(true));
        let waiter = {
            let (signal, full) = (Arc::clone(&signal), Arc::clone(&full));
            thread::spawn(move || signal.wait_for_room(|| full.load(Ordering::SeqCst)))
        };
        // The waiter asked for a compaction, and waits for the rotation.
        assert_eq!(signal.next(Duration::from_secs(5), true), Wake::Compact);
        assert!(!waiter.is_finished());
        full.store(false, Ordering::SeqCst);
        signal.note(true);
        waiter.join().unwrap();
        // With compactions failing, a full log holds nobody back.
        signal.note(false);
        signal.wait_for_room(|| true);
    }
}
