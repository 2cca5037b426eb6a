//! The system calls the standard library does not offer, declared by hand:
//! the crate's only `unsafe` code. Layouts and constants are those of Linux
//! on x86_64 and aarch64, identical in glibc and musl.
//!
//! Signals are handled without handlers: the collected ones are blocked in
//! every thread ([`block_signals`]) and one thread takes them with
//! `sigtimedwait(2)`, so no code ever runs in signal context.

use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::raw::{c_int, c_short, c_ulong};
use std::time::Duration;

#[cfg(not(target_os = "linux"))]
compile_error!("written for Linux (sigset_t, rlimit and socket option layouts and values)");

// Signals

const SIG_BLOCK: c_int = 0;

/// `sigset_t`: 1024 signal bits in both glibc and musl.
#[repr(C)]
#[derive(Clone, Copy)]
struct SigSet {
    bits: [u64; 16],
}

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    seconds: i64,
    nanoseconds: i64,
}

extern "C" {
    fn pthread_sigmask(how: c_int, set: *const SigSet, old_set: *mut SigSet) -> c_int;
    /// The `info` argument (a `siginfo_t *`) is always passed null here.
    fn sigtimedwait(set: *const SigSet, info: *mut u8, timeout: *const Timespec) -> c_int;
}

/// A signal received from outside, one of those [`block_signals`] blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    number: c_int,
}

/// Every signal [`block_signals`] takes over, with its Linux number: the two
/// that stop the server, then three that mean nothing to it.
const COLLECTED: [(c_int, &str); 5] = [
    (15, "SIGTERM"),
    (2, "SIGINT"),
    (1, "SIGHUP"),
    (10, "SIGUSR1"),
    (12, "SIGUSR2"),
];

impl Signal {
    /// True for the signals that ask the server to stop.
    pub fn stops(self) -> bool {
        matches!(self.number, 15 | 2)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = COLLECTED.iter().find(|(number, _)| *number == self.number);
        f.write_str(name.map_or("?", |(_, name)| name))
    }
}

crate::log::as_text!(Signal);

/// Proof that the collected signals are blocked; [`wait_for`](Self::wait_for)
/// takes them one at a time.
pub struct Signals {
    set: SigSet,
}

/// Blocks the collected signals in the calling thread and every thread it
/// spawns afterwards. Call it first in `main`: a signal delivered to a
/// thread created earlier would kill the process without a graceful stop.
pub fn block_signals() -> io::Result<Signals> {
    let mut set = SigSet { bits: [0; 16] };
    // Signal N is bit N - 1, as `sigaddset` sets it in glibc and musl.
    for (signum, _) in COLLECTED {
        set.bits[0] |= 1 << (signum - 1);
    }
    // SAFETY: `set` is initialised above and outlives the call; a null old
    // set tells the function not to report the previous mask.
    let status = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status));
    }
    Ok(Signals { set })
}

impl Signals {
    /// Takes one collected signal, waiting at most `timeout` (a zero
    /// timeout only takes a signal already pending); `None` when none came.
    pub fn wait_for(&self, timeout: Duration) -> io::Result<Option<Signal>> {
        let timeout = Timespec {
            seconds: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: i64::from(timeout.subsec_nanos()),
        };
        loop {
            // SAFETY: `self.set` is an initialised signal set and `timeout`
            // a valid timespec that outlives the call; a null `info` asks
            // for no details, which the function allows.
            let signum = unsafe { sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
            if signum >= 0 {
                // Only the collected signals are in the set.
                return Ok(Some(Signal { number: signum }));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }
}

// Wake-up preemption

#[repr(C)]
struct SchedParam {
    priority: c_int,
}

const SCHED_OTHER: c_int = 0;
const SCHED_BATCH: c_int = 3;

extern "C" {
    fn sched_setscheduler(pid: c_int, policy: c_int, param: *const SchedParam) -> c_int;
}

/// Whether the calling thread, once woken, may preempt the thread running
/// on its CPU (`SCHED_OTHER`, the default) or waits for that thread's turn
/// to end (`SCHED_BATCH`, same share of CPU time). Needs no privilege.
pub(crate) fn set_wakeup_preemption(on: bool) -> io::Result<()> {
    let param = SchedParam { priority: 0 };
    let policy = if on { SCHED_OTHER } else { SCHED_BATCH };
    // SAFETY: `param` is a valid `struct sched_param` that outlives the
    // call; pid 0 names the calling thread.
    succeeded(unsafe { sched_setscheduler(0, policy, &param) })
}

// Clock ticks

/// `_SC_CLK_TCK`, the same in glibc and musl.
const SC_CLK_TCK: c_int = 2;

extern "C" {
    fn sysconf(name: c_int) -> std::os::raw::c_long;
}

/// The unit of the CPU times in `/proc/self/stat`, per second (`USER_HZ`);
/// `None` if the system will not say.
pub(crate) fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf takes a plain integer and reads no memory of ours.
    let ticks = unsafe { sysconf(SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&ticks| ticks > 0)
}

// Listen backlog

extern "C" {
    fn listen(fd: c_int, backlog: c_int) -> c_int;
}

/// The system's `net.core.somaxconn`: the kernel caps every listen backlog
/// at it. `None` when it cannot be read (no `/proc`).
pub(crate) fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sets how many handshaken connections the kernel queues for `listener`
/// (std listens with 128): Linux takes a second `listen(2)` as a new backlog.
pub(crate) fn set_listen_backlog(listener: &TcpListener, backlog: u32) -> io::Result<()> {
    let backlog = c_int::try_from(backlog).unwrap_or(c_int::MAX);
    // SAFETY: the descriptor belongs to `listener`, which is borrowed for the
    // whole call and so stays open; listen(2) takes no pointers.
    succeeded(unsafe { listen(listener.as_raw_fd(), backlog) })
}

// Open-files limit (RLIMIT_NOFILE)

const RLIMIT_NOFILE: c_int = 7;

/// The process's limit on open file descriptors, laid out as C's `struct
/// rlimit` (two `rlim_t`, 64 bits on these targets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OpenFilesLimit {
    /// The limit in effect: descriptors are numbered below it, and opening
    /// one more fails with `EMFILE`.
    pub soft: u64,
    /// How far an unprivileged process may raise `soft`.
    pub hard: u64,
}

extern "C" {
    fn getrlimit(resource: c_int, limit: *mut OpenFilesLimit) -> c_int;
    fn setrlimit(resource: c_int, limit: *const OpenFilesLimit) -> c_int;
}

impl OpenFilesLimit {
    pub(crate) fn current() -> io::Result<OpenFilesLimit> {
        let mut limit = OpenFilesLimit::default();
        // SAFETY: `limit` is a writable `struct rlimit` owned by this frame;
        // the call writes within it and keeps no pointer.
        succeeded(unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) })?;
        Ok(limit)
    }

    /// Raises the soft limit to the hard one, as Go's runtime does: the soft
    /// default (often 1024) is for `select(2)` users. The limit now in effect.
    pub(crate) fn raise_soft_to_hard(self) -> io::Result<OpenFilesLimit> {
        let raised = OpenFilesLimit {
            soft: self.hard,
            ..self
        };
        // Nothing to ask when it is there already, so nothing that could fail.
        if raised != self {
            // SAFETY: `raised` is an initialised `struct rlimit` that
            // outlives the call; the call only reads it.
            succeeded(unsafe { setrlimit(RLIMIT_NOFILE, &raised) })?;
        }
        Ok(raised)
    }
}

// TCP keepalive

const SOL_SOCKET: c_int = 1;
const SO_KEEPALIVE: c_int = 9;
const IPPROTO_TCP: c_int = 6;
const TCP_KEEPIDLE: c_int = 4;
const TCP_KEEPINTVL: c_int = 5;
const TCP_KEEPCNT: c_int = 6;

extern "C" {
    fn setsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        value: *const std::ffi::c_void,
        length: u32,
    ) -> c_int;
}

/// The kernel's first probe comes after `idle` without traffic, then one
/// every `interval`; `probes` unanswered ones reset the connection. Each
/// field is whole seconds (or a count) from 1 to [`MAX_KEEPALIVE_VALUE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) idle: Duration,
    pub(crate) interval: Duration,
    pub(crate) probes: u32,
}

/// Largest value Linux accepts for `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and
/// `TCP_KEEPCNT`.
pub(crate) const MAX_KEEPALIVE_VALUE: u32 = 32_767;

pub(crate) fn set_tcp_keepalive(stream: &TcpStream, timing: Keepalive) -> io::Result<()> {
    let seconds = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    set_int_option(stream, SOL_SOCKET, SO_KEEPALIVE, 1)?;
    set_int_option(stream, IPPROTO_TCP, TCP_KEEPIDLE, seconds(timing.idle))?;
    set_int_option(stream, IPPROTO_TCP, TCP_KEEPINTVL, seconds(timing.interval))?;
    set_int_option(stream, IPPROTO_TCP, TCP_KEEPCNT, timing.probes)
}

/// `socklen_t` of an `int` option: 4 bytes on every Linux this builds for.
const INT_OPTION_LEN: u32 = 4;

fn set_int_option(stream: &TcpStream, level: c_int, name: c_int, value: u32) -> io::Result<()> {
    let value = c_int::try_from(value).unwrap_or(c_int::MAX);
    let (fd, pointer) = (stream.as_raw_fd(), (&value as *const c_int).cast());
    // SAFETY: the descriptor belongs to `stream`, borrowed for the call; the
    // kernel reads `INT_OPTION_LEN` bytes from `value`, a live `int` of that
    // size.
    succeeded(unsafe { setsockopt(fd, level, name, pointer, INT_OPTION_LEN) })
}

/// The outcome of a call that returns 0, or -1 with `errno` set.
fn succeeded(status: c_int) -> io::Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// poll(2), for the admin listener's loop

/// Readable, or (on a listener) a connection is waiting to be accepted.
pub(crate) const POLLIN: c_short = 0x001;
pub(crate) const POLLOUT: c_short = 0x004;

/// One entry of a `poll(2)` set: `struct pollfd`, laid out as in C.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PollFd {
    fd: c_int,
    events: c_short,
    /// What the last [`poll`] reported: nonzero for an event asked for, or
    /// an error or hang-up (reported whether asked for or not).
    pub(crate) revents: c_short,
}

impl PollFd {
    pub(crate) fn new(fd: RawFd, events: c_short) -> PollFd {
        PollFd {
            fd,
            events,
            revents: 0,
        }
    }

    /// An entry the kernel skips (a negative descriptor), keeping its place.
    pub(crate) fn ignored() -> PollFd {
        PollFd::new(-1, 0)
    }
}

extern "C" {
    #[link_name = "poll"]
    fn c_poll(fds: *mut PollFd, nfds: c_ulong, timeout_ms: c_int) -> c_int;
}

/// Waits until an entry of `fds` is ready or `timeout` (rounded up to whole
/// milliseconds; `None`: no limit) passes; how many entries have events. A
/// signal handled meanwhile ends it with [`io::ErrorKind::Interrupted`].
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout_ms = timeout.map_or(-1, |timeout| {
        c_int::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
    });
    // `unsigned long` is as wide as `usize` on Linux: nothing is lost.
    let count = fds.len() as c_ulong;
    // SAFETY: `fds` is an exclusively borrowed slice of `count`
    // `#[repr(C)]` `struct pollfd` values that outlives the call; the
    // kernel writes only their `revents` fields and keeps no pointer. A
    // descriptor that is not open is reported as `POLLNVAL`, never read
    // through.
    let ready = unsafe { c_poll(fds.as_mut_ptr(), count, timeout_ms) };
    // Only the error, -1, does not fit.
    usize::try_from(ready).map_err(|_| io::Error::last_os_error())
}

// Prefetching

/// Asks the CPU to start loading the cache line that holds `value`, and
/// returns at once: the index's staged lookups and `load` issue these
/// ahead, so their misses overlap. A no-op on other architectures.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads nothing into the program's state and never
    // faults, whatever the address (here that of a live reference); it
    // writes nothing.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
extern "C" {
    fn getsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        value: *mut std::ffi::c_void,
        length: *mut u32,
    ) -> c_int;
}

/// Reads an `int` socket option back, for the tests of this module.
#[cfg(test)]
fn int_option(stream: &TcpStream, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut length = INT_OPTION_LEN;
    // SAFETY: the descriptor belongs to `stream`, borrowed for the call; the
    // kernel writes at most `length` bytes into `value`, a live `int` of
    // that size, and the new length into `length`.
    let status = unsafe {
        getsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (&mut value as *mut c_int).cast(),
            &mut length,
        )
    };
    if status == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn clock_ticks_are_known() {
        // USER_HZ is 100 on every Linux this builds for.
        assert_eq!(clock_ticks_per_second(), Some(100));
    }
    use super::*;

    #[test]
    fn signals_display_by_their_names() {
        let signals = COLLECTED.map(|(number, _)| Signal { number });
        let names = signals.map(|signal| signal.to_string());
        assert_eq!(names, ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"]);
        let stopping = signals.map(Signal::stops);
        assert_eq!(stopping, [true, true, false, false, false]);
    }

    #[test]
    fn sigset_has_the_size_of_the_c_type() {
        assert_eq!(std::mem::size_of::<SigSet>(), 128);
    }

    #[test]
    fn rlimit_has_the_size_of_the_c_type() {
        assert_eq!(std::mem::size_of::<OpenFilesLimit>(), 16);
    }

    #[test]
    fn somaxconn_is_read_from_proc() {
        let value = somaxconn().expect("/proc/sys/net/core/somaxconn");
        assert!(value > 0);
    }

    #[test]
    fn a_second_listen_sets_the_backlog() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_listen_backlog(&listener, 4096).unwrap();
        set_listen_backlog(&listener, u32::MAX).unwrap();
        // Still listening: a connection completes and is accepted.
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
    }

    #[test]
    fn the_open_files_limit_reads_and_raising_keeps_the_hard_limit() {
        let limit = OpenFilesLimit::current().unwrap();
        assert!(limit.soft <= limit.hard, "{limit:?}");
        let raised = limit.raise_soft_to_hard().unwrap();
        assert_eq!(raised.soft, limit.hard);
        assert_eq!(OpenFilesLimit::current().unwrap(), raised);
    }

    #[test]
    fn keepalive_options_read_back_as_set() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(int_option(&server, SOL_SOCKET, SO_KEEPALIVE).unwrap(), 0);
        let timing = Keepalive {
            idle: Duration::from_secs(42),
            interval: Duration::from_secs(7),
            probes: 5,
        };
        set_tcp_keepalive(&server, timing).unwrap();
        let read = |level, name| int_option(&server, level, name).unwrap();
        assert_eq!(read(SOL_SOCKET, SO_KEEPALIVE), 1);
        assert_eq!(read(IPPROTO_TCP, TCP_KEEPIDLE), 42);
        assert_eq!(read(IPPROTO_TCP, TCP_KEEPINTVL), 7);
        assert_eq!(read(IPPROTO_TCP, TCP_KEEPCNT), 5);
        drop(client);
    }
}

#[cfg(test)]
mod readiness_tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    use std::time::Instant;

    #[test]
    fn pollfd_has_the_size_of_the_c_type() {
        assert_eq!(std::mem::size_of::<PollFd>(), 8);
    }

    #[test]
    fn poll_times_out_on_a_quiet_socket_and_reports_a_readable_one() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let mut fds = [PollFd::new(reader.as_raw_fd(), POLLIN), PollFd::ignored()];
        let started = Instant::now();
        assert_eq!(poll(&mut fds, Some(Duration::from_millis(30))).unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(30));
        writer.write_all(b"x").unwrap();
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
        assert_eq!(fds[0].revents & POLLIN, POLLIN);
        assert_eq!(fds[1].revents, 0);
    }
}
