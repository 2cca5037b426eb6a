//! A process's CPU time, memory and open descriptors from `/proc`, for the
//! server's metrics, its start and the bench.

use crate::sys::clock_ticks_per_second;
use std::fs;

/// The fields of `/proc/PID/status` read here, each `None` when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStatus {
    pub virtual_bytes: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub peak_resident_bytes: Option<u64>,
    pub threads: Option<u64>,
}

/// `/proc/PID/status` of `pid` (a number, or `self`); all `None` when it
/// cannot be read.
pub fn process_status(pid: &str) -> ProcessStatus {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
}

fn parse_status(text: &str) -> ProcessStatus {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
    };
    // The kernel states sizes in kB (KiB).
    let bytes = |name: &str| field(name).map(|kib| kib * 1024);
    ProcessStatus {
        virtual_bytes: bytes("VmSize"),
        resident_bytes: bytes("VmRSS"),
        peak_resident_bytes: bytes("VmHWM"),
        threads: field("Threads"),
    }
}

/// User plus system CPU seconds of `pid`, all its threads, live and ended.
pub fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let ticks = stat_cpu_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(ticks as f64 / clock_ticks_per_second()? as f64)
}

/// utime plus stime, in clock ticks, from a `stat` line.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, in parentheses, may hold spaces and parentheses:
    // count fields from after the last `)`. The third field (state) comes
    // first there; utime and stime are the 14th and 15th.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The descriptors this process has open, by number (the listing's own
/// descriptor, closed by the time this returns, left out); `None` when
/// `/proc` cannot be read.
pub(crate) fn open_fds() -> Option<Vec<u64>> {
    let listing = fs::read_dir("/proc/self/fd").ok()?;
    let numbers: Vec<u64> = listing
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let still_open = |fd: &&u64| fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok();
    Some(numbers.iter().filter(still_open).copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_skip_a_tricky_command_name() {
        let stat = "4242 (conn) 1) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
        assert!(process_cpu_seconds("self").is_some());
    }

    #[test]
    fn status_fields_are_bytes_or_counts() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t    1024 kB\nThreads:\t3\n";
        let parsed = parse_status(status);
        assert_eq!(parsed.resident_bytes, Some(1024 * 1024));
        assert_eq!(parsed.peak_resident_bytes, Some(2048 * 1024));
        assert_eq!((parsed.virtual_bytes, parsed.threads), (None, Some(3)));
        let own = process_status("self");
        assert!(own.resident_bytes > Some(0) && own.peak_resident_bytes >= own.resident_bytes);
    }
}
