//! What the benchmark reads from `/proc`: CPU time and memory of a process,
//! CPU time of some of our own threads, and the open-files limit.

use std::fs;
use std::io;

/// `USER_HZ`, the unit of the CPU times in `/proc/*/stat`: 100 on every Linux
/// architecture the server targets (the standard library has no `sysconf`).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time, in clock ticks, from a `/proc/*/stat` line.
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields from the last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 14 (utime) and 15 (stime); `fields` starts at field 3.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/*/status` (`VmRSS`, `VmHWM`), in bytes.
pub(crate) fn parse_status_bytes(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// The soft `Max open files` limit from `/proc/*/limits`.
pub(crate) fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    // "unlimited" reads as no limit at all.
    Some(soft.parse().unwrap_or(u64::MAX))
}

fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / TICKS_PER_SECOND
}

fn unreadable(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}"))
}

/// CPU seconds a process (all its threads, live and ended) has used.
pub(crate) fn process_cpu_seconds(pid: &str) -> io::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let ticks =
        parse_stat_cpu_ticks(&fs::read_to_string(&path)?).ok_or_else(|| unreadable(&path))?;
    Ok(ticks_to_seconds(ticks))
}

/// Resident memory now and at its peak, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    pub peak_rss: u64,
}

pub(crate) fn process_memory(pid: &str) -> io::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path)?;
    let field = |key| parse_status_bytes(&status, key).ok_or_else(|| unreadable(&path));
    Ok(Memory {
        rss: field("VmRSS")?,
        peak_rss: field("VmHWM")?,
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
    fn stat_cpu_ticks_skip_a_tricky_command_name() {
        let stat = "4242 (conn) 1) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn own_stat_parses() {
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat_cpu_ticks(&stat).is_some());
        assert!(process_cpu_seconds("self").is_ok());
    }

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
    fn status_fields_are_bytes() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t    1024 kB\nThreads:\t3\n";
        assert_eq!(parse_status_bytes(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_bytes(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_bytes(status, "VmSwap"), None);
        assert_eq!(parse_status_bytes(status, "Threads"), None);
        let own = process_memory("self").unwrap();
        assert!(own.rss > 0 && own.peak_rss >= own.rss);
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
