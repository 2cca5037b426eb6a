//! The system calls the standard library does not offer, and the crate's
//! only `unsafe` code: each call is declared here by hand (production code
//! uses the standard library only) and each `unsafe` block says why it is
//! sound. The layouts and constants are those of Linux on x86_64 and
//! aarch64, identical in glibc and musl.
//!
//! Signals: `SIGTERM` and `SIGINT` are handled synchronously, without
//! handlers. They are blocked in every thread (the mask is inherited, so
//! [`block_termination_signals`] runs on the main thread before any other
//! thread exists) and one thread collects them with `sigwait(3)`. No code
//! ever runs in signal context, so the shutdown logic is ordinary Rust.

use std::fmt;
use std::io;
use std::os::raw::c_int;

#[cfg(not(target_os = "linux"))]
compile_error!("signal handling is written for Linux (sigset_t layout and SIG_BLOCK value)");

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIG_BLOCK: c_int = 0;
const EINTR: c_int = 4;

/// `sigset_t`: 1024 signal bits in both glibc and musl.
#[repr(C)]
#[derive(Clone, Copy)]
struct SigSet {
    bits: [u64; 16],
}

extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signum: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, old_set: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, signum: *mut c_int) -> c_int;
}

/// A termination request received from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGTERM`, as sent by `kill`, init systems and container runtimes.
    Terminate,
    /// `SIGINT`, as sent by Ctrl-C.
    Interrupt,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        })
    }
}

/// Proof that `SIGTERM` and `SIGINT` are blocked; [`wait`](Self::wait)
/// takes them one at a time.
pub struct TerminationSignals {
    set: SigSet,
}

/// Blocks `SIGTERM` and `SIGINT` in the calling thread and, through
/// inheritance, in every thread it spawns afterwards.
///
/// Call it first thing in `main`, before any thread is spawned: a thread
/// created earlier keeps the default action and a signal delivered to it
/// would kill the process without a graceful stop.
pub fn block_termination_signals() -> io::Result<TerminationSignals> {
    let mut set = SigSet { bits: [0; 16] };
    // SAFETY: `set` is a live, writable `sigset_t`-sized value owned by this
    // frame; these functions only write within it and keep no pointer.
    let added = unsafe {
        sigemptyset(&mut set) == 0
            && sigaddset(&mut set, SIGTERM) == 0
            && sigaddset(&mut set, SIGINT) == 0
    };
    if !added {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `set` is initialised above and outlives the call; a null old
    // set tells the function not to report the previous mask.
    let status = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status));
    }
    Ok(TerminationSignals { set })
}

impl TerminationSignals {
    /// Blocks the calling thread until `SIGTERM` or `SIGINT` arrives and
    /// consumes it. Call it again to wait for the next one.
    pub fn wait(&self) -> io::Result<Signal> {
        loop {
            let mut signum: c_int = 0;
            // SAFETY: `self.set` is an initialised signal set and `signum` a
            // writable int, both alive for the whole call.
            let status = unsafe { sigwait(&self.set, &mut signum) };
            match (status, signum) {
                (0, SIGTERM) => return Ok(Signal::Terminate),
                (0, SIGINT) => return Ok(Signal::Interrupt),
                (0, other) => {
                    return Err(io::Error::other(format!(
                        "sigwait returned signal {other}, which was not requested"
                    )))
                }
                (EINTR, _) => continue,
                (error, _) => return Err(io::Error::from_raw_os_error(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_display_by_their_names() {
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
        assert_eq!(Signal::Interrupt.to_string(), "SIGINT");
    }

    #[test]
    fn sigset_has_the_size_of_the_c_type() {
        assert_eq!(std::mem::size_of::<SigSet>(), 128);
    }
}

// ---------------------------------------------------------------------------
// poll(2): readiness of many non-blocking sockets from one thread, for the
// admin listener's event loop. A module of its own, so that its imports and
// tests stay apart from the rest of the file.
// ---------------------------------------------------------------------------

pub use readiness::{poll, PollFd, POLLIN, POLLOUT};

mod readiness {
    use std::io;
    use std::os::fd::RawFd;
    use std::os::raw::{c_int, c_short, c_ulong};
    use std::time::Duration;

    /// Readable, or (on a listener) a connection is waiting to be accepted.
    pub const POLLIN: c_short = 0x001;
    /// Writable without blocking.
    pub const POLLOUT: c_short = 0x004;

    /// One entry of a `poll(2)` set: `struct pollfd`, laid out as in C.
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct PollFd {
        fd: c_int,
        events: c_short,
        revents: c_short,
    }

    impl PollFd {
        /// Watches `fd` for `events` (`POLLIN`, `POLLOUT`, or both).
        pub fn new(fd: RawFd, events: c_short) -> PollFd {
            PollFd {
                fd,
                events,
                revents: 0,
            }
        }

        /// An entry the kernel skips (its descriptor is negative): it keeps
        /// its place in the set without being watched.
        pub fn ignored() -> PollFd {
            PollFd::new(-1, 0)
        }

        /// What the last [`poll`] reported for this entry: some of the
        /// requested events, or an error, hang-up or closed descriptor,
        /// which are reported whether asked for or not: any nonzero value
        /// means the descriptor wants attention.
        pub fn revents(&self) -> c_short {
            self.revents
        }
    }

    extern "C" {
        #[link_name = "poll"]
        fn c_poll(fds: *mut PollFd, nfds: c_ulong, timeout_ms: c_int) -> c_int;
    }

    /// Waits until an entry of `fds` is ready or `timeout` passes (`None`:
    /// no limit), and returns how many entries have events. The timeout is
    /// rounded up to whole milliseconds, so the wait never ends early. A
    /// signal handled meanwhile ends it with [`io::ErrorKind::Interrupted`].
    pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
        let timeout_ms = match timeout {
            None => -1,
            Some(timeout) => {
                let millis = timeout.as_nanos().div_ceil(1_000_000);
                c_int::try_from(millis).unwrap_or(c_int::MAX)
            }
        };
        let count = c_ulong::try_from(fds.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"))?;
        // SAFETY: `fds` is an exclusively borrowed slice of `count`
        // `#[repr(C)]` `struct pollfd` values that outlives the call; the
        // kernel writes only their `revents` fields and keeps no pointer. A
        // descriptor that is not open is reported as `POLLNVAL`, never read
        // through.
        let ready = unsafe { c_poll(fds.as_mut_ptr(), count, timeout_ms) };
        // Only the error, -1, does not fit.
        usize::try_from(ready).map_err(|_| io::Error::last_os_error())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
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
            assert_eq!(fds[0].revents() & POLLIN, POLLIN);
            assert_eq!(fds[1].revents(), 0);
        }
    }
}
