//! What the benchmark reads from `/proc` besides a process's CPU time
//! and memory ([`package_indexer::procfs`]): the CPU time of some of our
//! own threads, and the open-files limit.

use std::fs;
use std::io;

/// The soft `Max open files` limit from `/proc/*/limits`.
pub(crate) fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    // "unlimited" reads as no limit at all.
    Some(soft.parse().unwrap_or(u64::MAX))
}

/// Resident memory now and at its peak, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub peak_rss: u64,
}

pub(crate) fn process_memory(pid: &str) -> Option<Memory> {
    let status = package_indexer::procfs::process_status(pid);
    Some(Memory {
        rss: status.resident_bytes?,
        peak_rss: status.peak_resident_bytes?,
    })
}

/// Nanoseconds on the CPU from a `/proc/*/schedstat` line (its first field).
pub(crate) fn parse_schedstat_nanos(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds spent waiting on a run queue (ready to run, not running)
/// from a `/proc/*/schedstat` line (its second field).
pub(crate) fn parse_schedstat_wait_nanos(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// The calling thread's `schedstat`, kept open so it can be read around
/// every operation: how long the thread has waited to be scheduled, which
/// an operation's wall time includes but its locks do not cause.
pub(crate) struct RunQueueWait(fs::File);

impl RunQueueWait {
    /// Opens the calling thread's own figures (the thread that reads them
    /// must be the one that opened them).
    pub(crate) fn of_this_thread() -> io::Result<RunQueueWait> {
        fs::File::open("/proc/thread-self/schedstat").map(RunQueueWait)
    }

    /// Nanoseconds waited on a run queue so far.
    pub(crate) fn nanos(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buffer = [0u8; 96];
        let read = self.0.read_at(&mut buffer, 0).ok()?;
        parse_schedstat_wait_nanos(std::str::from_utf8(&buffer[..read]).ok()?)
    }
}

/// CPU time of the calling thread, in nanoseconds. Per-thread times in
/// `stat` are whole clock ticks, too coarse for many short-lived threads;
/// `schedstat` has the scheduler's exact figure.
pub(crate) fn current_thread_cpu_nanos() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| parse_schedstat_nanos(&text))
        .unwrap_or(0)
}

/// CPU nanoseconds of this process's live threads whose name starts with
/// `prefix`.
pub(crate) fn own_threads_cpu_nanos(prefix: &str) -> u64 {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let path = task.path();
            // A thread may end between listing and reading: skip it.
            let name = fs::read_to_string(path.join("comm")).ok()?;
            if !name.starts_with(prefix) {
                return None;
            }
            parse_schedstat_nanos(&fs::read_to_string(path.join("schedstat")).ok()?)
        })
        .sum()
}

/// The soft limit on open files of this process (children inherit it).
pub(crate) fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&fs::read_to_string("/proc/self/limits").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_gives_nanoseconds() {
        assert_eq!(parse_schedstat_nanos("108112 48592 2\n"), Some(108_112));
        assert_eq!(parse_schedstat_nanos(""), None);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(5) {}
        assert!(current_thread_cpu_nanos() > 0);
        assert_eq!(parse_schedstat_wait_nanos("108112 48592 2\n"), Some(48_592));
        assert!(RunQueueWait::of_this_thread().unwrap().nanos().is_some());
    }

    #[test]
    fn open_files_limit_reads_the_soft_column() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             96364                96364                processes \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), Some(u64::MAX));
        assert_eq!(parse_open_files_limit("Max processes 1 1\n"), None);
        assert!(open_files_limit().is_some());
    }
}
