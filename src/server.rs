//! The protocol listener: an acceptor thread, a thread per connection,
//! limits and graceful stop (`docs/lifecycle.md`, `docs/protocol.md`).
//!
//! With `--data-dir`, a connection's thread sends its answers only once the
//! log covers every change they could reveal
//! ([`crate::durability::Wal::wait_durable`]). A client that never reads
//! stalls only its own thread, until `--write-timeout`. An idle connection
//! costs its thread and no buffer ([`LINGER`], BENCHMARKS.md).

use crate::config::Config;
use crate::log;
use crate::metrics::{Metrics, RejectReason, RequestTally};
use crate::protocol::{self, Response};
use crate::store::{Executed, LogPosition, Store, MAX_RUN};
use crate::sys::{self, Keepalive};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A connected client as the registry sees it.
struct Peer {
    stream: TcpStream,
    addr: SocketAddr,
    /// True while the connection thread is (about to be) blocked in `read`
    /// with every complete line it received already answered.
    reading: AtomicBool,
}

/// Stack of a connection thread: the serving loop keeps its buffers on the
/// heap, so a small stack keeps ten thousand threads cheap.
const CONNECTION_STACK_BYTES: usize = 128 * 1024;
/// Read buffer a connection takes when input arrives (see
/// [`Session::keep_partial_line`] for how it grows and shrinks).
const INITIAL_READ_BUFFER: usize = 4 * 1024;
/// How long a connection with nothing to answer keeps its buffers before it
/// gives them back: freeing them after every answer would cost a system call
/// and an allocation per request to a client that sends one at a time.
const LINGER: Duration = Duration::from_secs(1);
/// The largest buffer reads grow to while they come back full (and no
/// larger than `--max-line-bytes`, so a complete line never exceeds it).
const MAX_READ_BUFFER: usize = 64 * 1024;
/// Longest wait of a graceful stop between two checks for an interruption.
pub(crate) const INTERRUPT_CHECK: Duration = Duration::from_millis(100);
/// How long a listener rests after an `accept` that failed for lack of
/// descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), so its
/// loop does not spin; the pending connection stays in the backlog.
pub(crate) const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Connections per CPU above which connection threads stop preempting one
/// another when input wakes them: with far more runnable threads than CPUs,
/// each wake-up would interrupt a thread mid request (perhaps holding the
/// index lock); waiting for its turn halves the server's CPU under the
/// official harness (BENCHMARKS.md).
const CROWDED_PER_CPU: usize = 16;
/// Answers are sent once this many bytes are waiting, even mid-batch.
pub(crate) const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// The listen backlog when `--listen-backlog` asks for the system's
/// `somaxconn` and it cannot be read: Linux's default since 5.4.
pub(crate) const FALLBACK_LISTEN_BACKLOG: u32 = 4096;

/// Keepalive probes after `--tcp-keepalive` of silence come this often, and
/// [`KEEPALIVE_PROBES`] unanswered ones close the connection: a dead peer is
/// noticed a minute after the idle time, and a live one has that to answer.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const KEEPALIVE_PROBES: u32 = 6;

/// A protocol listener and its acceptor thread.
pub struct Server {
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

/// How a graceful stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that finished on their own during the stop.
    pub drained: usize,
    /// Connections still open at the deadline, closed by force.
    pub forced: usize,
    /// Connections accepted from the listen backlog after the stop began,
    /// served (and counted above) or refused like any other.
    pub from_backlog: usize,
    pub elapsed: Duration,
}

struct Shared {
    store: Store,
    metrics: Arc<Metrics>,
    config: Config,
    /// A connection whose descriptor number is at or above this is closed
    /// at once; `None` for no such check.
    fd_ceiling: Option<u64>,
    local_addr: SocketAddr,
    /// More connections than this and connection threads stop preempting
    /// on wake-up ([`CROWDED_PER_CPU`]).
    crowded_above: usize,
    stopping: AtomicBool,
    connections: Mutex<Connections>,
    /// Signalled whenever a connection ends, and when the acceptor is done.
    changed: Condvar,
}

#[derive(Default)]
struct Connections {
    open: HashMap<u64, Arc<Peer>>,
    next_id: u64,
    /// Set by the acceptor once it has emptied the backlog at a stop.
    acceptor_done: bool,
    /// Connections admitted from the backlog after the stop began.
    from_backlog: usize,
    /// Set by shutdown: no connection may register after it.
    closed: bool,
}

impl Server {
    /// Starts accepting on `listener` on a thread of its own; `fd_ceiling`
    /// comes from the open-files limit in effect.
    pub fn start(
        listener: TcpListener,
        config: &Config,
        fd_ceiling: Option<u64>,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            store,
            metrics,
            config: config.clone(),
            fd_ceiling,
            local_addr,
            crowded_above: thread::available_parallelism().map_or(1, usize::from) * CROWDED_PER_CPU,
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Connections::default()),
            changed: Condvar::new(),
        });
        let acceptor = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || acceptor.accept_loop(listener))?;
        Ok(Server { shared, acceptor })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.shared.lock_connections().open.len()
    }

    /// Graceful stop (`docs/lifecycle.md#graceful-stop`), closing whatever
    /// is left after `timeout`; `None` as soon as `interrupted` (asked at
    /// least every `INTERRUPT_CHECK`) says to give up, leaving them be.
    pub fn shutdown(
        self,
        timeout: Duration,
        mut interrupted: impl FnMut() -> bool,
    ) -> Option<ShutdownReport> {
        let started = Instant::now();
        let deadline = started + timeout;
        self.shared.stopping.store(true, Ordering::SeqCst);
        let connections = self.shared.lock_connections();
        let mut connections =
            self.shared
                .wait_until(connections, |c| c.acceptor_done, deadline, &mut interrupted)?;
        connections.closed = true;
        let acceptor_done = connections.acceptor_done;
        let at_start = connections.open.len();
        for peer in connections.open.values() {
            // Only a thread waiting in `read` needs waking; a busy one sees
            // `stopping` before it reads again. (Shutting the read side of a
            // busy socket would make the kernel reset it when more data
            // arrives, losing lines already received.)
            if peer.reading.load(Ordering::SeqCst) {
                let _ = peer.stream.shutdown(Shutdown::Read);
            }
        }
        let connections = self.shared.wait_until(
            connections,
            |c| c.open.is_empty(),
            deadline,
            &mut interrupted,
        )?;
        let forced = connections.open.len();
        for peer in connections.open.values() {
            let _ = peer.stream.shutdown(Shutdown::Both);
        }
        let from_backlog = connections.from_backlog;
        drop(connections);
        if acceptor_done {
            // It has returned or is returning: the join cannot block.
            let _ = self.acceptor.join();
        }
        Some(ShutdownReport {
            drained: at_start - forced,
            forced,
            from_backlog,
            elapsed: started.elapsed(),
        })
    }
}

impl Shared {
    fn lock_connections(&self) -> MutexGuard<'_, Connections> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds or `deadline` passes; `None` once
    /// `interrupted` (asked every [`INTERRUPT_CHECK`]) says to give up.
    fn wait_until<'a>(
        &self,
        mut connections: MutexGuard<'a, Connections>,
        done: fn(&Connections) -> bool,
        deadline: Instant,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Option<MutexGuard<'a, Connections>> {
        while !done(&connections) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            connections = self
                .changed
                .wait_timeout(connections, left.min(INTERRUPT_CHECK))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if interrupted() {
                return None;
            }
        }
        Some(connections)
    }

    /// Accepts until the stop, then admits every connection already waiting
    /// in the backlog (its client may have sent lines: closing the listener
    /// would reset it). Polls at most [`INTERRUPT_CHECK`] between accepts.
    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut from_backlog = 0;
        let mut watched = [sys::PollFd::new(listener.as_raw_fd(), sys::POLLIN)];
        loop {
            // Read before `accept`: what it finds after the flag was set
            // was already waiting.
            let stopping = self.stopping.load(Ordering::SeqCst);
            match listener.accept() {
                // Linux does not pass the listener's O_NONBLOCK on to an
                // accepted socket: it is blocking, like every other.
                Ok((stream, addr)) => {
                    self.admit(stream, addr);
                    from_backlog += usize::from(stopping);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    if stopping {
                        break;
                    }
                    if let Err(err) = sys::poll(&mut watched, Some(INTERRUPT_CHECK)) {
                        log::warn("accept poll failed", &[("error", &err)]);
                        thread::sleep(INTERRUPT_CHECK);
                    }
                }
                Err(err) if is_passing_accept_error(&err) => {}
                Err(err) if stopping => {
                    log::warn("cannot empty the listen backlog", &[("error", &err)]);
                    break;
                }
                // EMFILE, ENFILE, ENOBUFS, ENOMEM.
                Err(err) if matches!(err.raw_os_error(), Some(24 | 23 | 105 | 12)) => {
                    log::warn("accept failed", &[("error", &err)]);
                    thread::sleep(ACCEPT_RETRY_PAUSE);
                }
                Err(err) => log::debug("accept failed", &[("error", &err)]),
            }
        }
        // Closing the listener now resets only connections that complete
        // their handshake after the backlog was found empty.
        drop(listener);
        let mut connections = self.lock_connections();
        connections.acceptor_done = true;
        connections.from_backlog = from_backlog;
        drop(connections);
        self.changed.notify_all();
    }

    /// Serves `stream` on a thread of its own, or refuses it (the limit,
    /// the descriptor reserve, no thread).
    fn admit(self: &Arc<Self>, stream: TcpStream, addr: SocketAddr) {
        if self
            .fd_ceiling
            .is_some_and(|ceiling| u64::try_from(stream.as_raw_fd()).unwrap_or(0) >= ceiling)
        {
            drop(stream);
            self.metrics.connection_rejected(RejectReason::Fds);
            log::debug(
                "connection refused: file descriptors reserved",
                &[("peer", &addr)],
            );
            return;
        }
        let peer = Arc::new(Peer {
            stream,
            addr,
            reading: AtomicBool::new(false),
        });
        let id = {
            let mut connections = self.lock_connections();
            if connections.closed {
                return;
            }
            if connections.open.len() >= self.config.max_connections {
                drop(connections);
                self.metrics.connection_rejected(RejectReason::Limit);
                log::debug("connection refused: limit reached", &[("peer", &addr)]);
                return;
            }
            let id = connections.next_id;
            connections.next_id += 1;
            connections.open.insert(id, Arc::clone(&peer));
            id
        };
        self.metrics.connection_opened();
        let shared = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name(format!("conn-{id}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let ended = Session::new(&shared, &peer).and_then(|mut c| c.serve());
                match ended {
                    Ok(()) => log::debug("connection closed", &[("peer", &peer.addr)]),
                    Err(err) => log::debug(
                        "connection dropped",
                        &[("peer", &peer.addr), ("reason", &err)],
                    ),
                }
                shared.end(id);
            });
        if let Err(err) = spawned {
            log::warn("cannot start a connection thread", &[("error", &err)]);
            self.end(id);
            self.metrics.connection_rejected(RejectReason::Resources);
        }
    }

    fn end(&self, id: u64) {
        self.lock_connections().open.remove(&id);
        self.metrics.connection_closed();
        self.changed.notify_all();
    }
}

/// An `accept` error that needs no report: a signal interrupted it, or
/// the client gave up before it was accepted. Try the next one.
pub(crate) fn is_passing_accept_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
    )
}

struct Session<'a> {
    shared: &'a Shared,
    peer: &'a Arc<Peer>,
    input: Vec<u8>,
    /// Unprocessed input is `input[start..end]`.
    start: usize,
    end: usize,
    /// The last read filled the buffer: more is probably waiting.
    filled: bool,
    /// True while dropping the rest of an oversized line.
    discarding: bool,
    tally: RequestTally,
    /// What each request of the batch did; kept, so a batch allocates no
    /// room for its results.
    executed: Vec<Executed>,
    output: Vec<u8>,
    /// Log position the answers in `output` must wait for before sending.
    wait_for: LogPosition,
    last_line: Instant,
    /// The read timeout currently set on the socket.
    read_timeout: Duration,
    /// Whether this thread waits for its turn when woken ([`CROWDED_PER_CPU`]).
    crowded: bool,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, peer: &'a Arc<Peer>) -> io::Result<Session<'a>> {
        let config = &shared.config;
        let stream = &peer.stream;
        stream.set_nodelay(true)?;
        if let Some(idle) = config.tcp_keepalive {
            let keepalive = Keepalive {
                idle,
                interval: KEEPALIVE_INTERVAL,
                probes: KEEPALIVE_PROBES,
            };
            sys::set_tcp_keepalive(stream, keepalive)?;
        }
        stream.set_read_timeout(Some(config.idle_timeout))?;
        stream.set_write_timeout(Some(config.write_timeout))?;
        Ok(Session {
            shared,
            peer,
            input: Vec::new(),
            start: 0,
            end: 0,
            filled: false,
            discarding: false,
            tally: RequestTally::default(),
            executed: Vec::new(),
            output: Vec::new(),
            wait_for: LogPosition::default(),
            last_line: Instant::now(),
            read_timeout: config.idle_timeout,
            crowded: false,
        })
    }

    /// Serves until the client closes, a timeout passes or the server stops.
    fn serve(&mut self) -> io::Result<()> {
        loop {
            let last_line = self.answer_complete_lines()?;
            self.flush()?;
            // Without its newline, a partial line of `--max-line-bytes`
            // is already at least one byte too long.
            if self.discarding || self.end - self.start >= self.shared.config.max_line_bytes {
                self.refuse_long_line()?;
            } else {
                self.keep_partial_line();
            }
            self.arm_idle_timeout(last_line)?;
            self.follow_crowding();
            let Some(read) = self.read()? else {
                return Ok(());
            };
            self.end += read;
        }
    }

    /// Answers every complete line in the buffer; returns when the last one
    /// was done, if there was one.
    fn answer_complete_lines(&mut self) -> io::Result<Option<Instant>> {
        let mut last_line = None;
        if self.discarding {
            // The rest of a line already refused as too long.
            let Some(newline) = self.input[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            else {
                return Ok(None);
            };
            self.start += newline + 1;
            self.discarding = false;
            last_line = Some(Instant::now());
        }
        while self.input[self.start..self.end].contains(&b'\n') {
            last_line = Some(self.answer_batch()?);
            if self.output.len() >= MAX_PENDING_OUTPUT {
                self.flush()?;
            }
        }
        Ok(last_line)
    }

    /// Answers up to [`MAX_RUN`] complete lines into `output`, or one that
    /// does not parse (`ERROR`); returns when the last answer was ready.
    fn answer_batch(&mut self) -> io::Result<Instant> {
        let started = Instant::now();
        let input = &self.input[..self.end];
        let mut requests = Vec::new();
        let mut at = self.start;
        while requests.len() < MAX_RUN {
            let Some(newline) = input[at..].iter().position(|&b| b == b'\n') else {
                break;
            };
            match protocol::parse_line(&input[at..at + newline]) {
                Ok(request) => requests.push(request),
                // Answered as a batch of its own, after these.
                Err(_) if !requests.is_empty() => break,
                Err(err) => {
                    log::debug(
                        "malformed request",
                        &[("peer", &self.peer.addr), ("reason", &err)],
                    );
                    self.output.extend_from_slice(Response::Error.as_bytes());
                    self.tally.count(err.command, Response::Error);
                    at += newline + 1;
                    break;
                }
            }
            at += newline + 1;
        }
        self.shared
            .store
            .execute_all(&requests, &mut self.executed)?;
        for (request, executed) in requests.iter().zip(&self.executed) {
            let response = executed.outcome.response();
            self.output.extend_from_slice(response.as_bytes());
            self.tally.count(Some(request.command), response);
            self.wait_for = self.wait_for.max(executed.wait_for);
        }
        let finished = Instant::now();
        self.shared
            .metrics
            .record_batch(&mut self.tally, finished - started);
        self.executed.clear();
        self.start = at;
        Ok(finished)
    }

    /// Sends `output` once the log covers every change it could reveal.
    fn flush(&mut self) -> io::Result<()> {
        let wait_for = std::mem::take(&mut self.wait_for);
        if self.output.is_empty() {
            return Ok(());
        }
        self.shared.store.wait_durable(wait_for)?;
        self.send(&self.output)?;
        self.output.clear();
        Ok(())
    }

    /// Writes all of `bytes` within one `--write-timeout`: a client that
    /// reads a trickle cannot stretch the deadline write by write. The
    /// socket's timeout is touched only after a partial write (a failed send
    /// ends the connection, so only a successful one restores it).
    fn send(&self, mut bytes: &[u8]) -> io::Result<()> {
        let timeout = self.shared.config.write_timeout;
        let started = Instant::now();
        let mut shortened = false;
        let mut stream = &self.peer.stream;
        loop {
            match stream.write(bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(written) if written == bytes.len() => break,
                Ok(written) => bytes = &bytes[written..],
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(io::Error::new(ErrorKind::TimedOut, "write timeout"));
            }
            stream.set_write_timeout(Some(left))?;
            shortened = true;
        }
        if shortened {
            stream.set_write_timeout(Some(timeout))?;
        }
        Ok(())
    }

    /// Switches this thread's wake-up preemption when the number of
    /// connections crosses [`CROWDED_PER_CPU`] per CPU; best effort.
    fn follow_crowding(&mut self) {
        let crowded = self.shared.metrics.connections_active() > self.shared.crowded_above;
        if crowded != self.crowded && sys::set_wakeup_preemption(!crowded).is_ok() {
            self.crowded = crowded;
        }
    }

    /// Answers `ERROR` for a line past the limit, once, and drops its bytes:
    /// the rest of the line is dropped as it arrives, up to its newline.
    fn refuse_long_line(&mut self) -> io::Result<()> {
        if !self.discarding {
            self.discarding = true;
            self.shared
                .metrics
                .record_request(None, Response::Error, Duration::ZERO);
            let limit = self.shared.config.max_line_bytes;
            log::debug(
                "line too long",
                &[("peer", &self.peer.addr), ("limit", &limit)],
            );
            self.output.extend_from_slice(Response::Error.as_bytes());
            self.flush()?;
        }
        self.start = 0;
        self.end = 0;
        Ok(())
    }

    /// Moves an incomplete line to the front of the buffer and sizes it for
    /// the next read: larger for a long line or while reads come back full
    /// (fewer reads for a pipeline), back to the initial size when not.
    fn keep_partial_line(&mut self) {
        let partial = self.end - self.start;
        self.input.copy_within(self.start..self.end, 0);
        self.start = 0;
        self.end = partial;
        if self.input.is_empty() {
            return;
        }
        let len = self.input.len();
        let limit = self.shared.config.max_line_bytes;
        let wanted = if partial == len {
            // Below the limit, or refused already: room to grow.
            (len * 2).min(limit)
        } else if self.filled {
            (len * 2).min(MAX_READ_BUFFER.max(len)).min(limit)
        } else if partial < INITIAL_READ_BUFFER {
            INITIAL_READ_BUFFER.min(limit)
        } else {
            len
        };
        if wanted > len {
            self.input.resize(wanted, 0);
        } else if wanted < len {
            self.input.truncate(wanted);
            self.input.shrink_to_fit();
        }
    }

    /// Gives the buffers back ([`Session::wait_for_input`] needs none).
    fn release_buffers(&mut self) {
        self.input = Vec::new();
        self.output = Vec::new();
        self.executed = Vec::new();
        self.start = 0;
        self.end = 0;
        self.filled = false;
    }

    /// Sets the read timeout to what is left of `--idle-timeout` since the
    /// last complete line, at most [`LINGER`] while buffers are held; the
    /// socket is touched only when that changes.
    fn arm_idle_timeout(&mut self, last_line: Option<Instant>) -> io::Result<()> {
        let idle = self.shared.config.idle_timeout;
        let left = if let Some(at) = last_line {
            self.last_line = at;
            idle
        } else {
            idle.saturating_sub(self.last_line.elapsed())
        };
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "idle timeout"));
        }
        let wanted = if self.input.is_empty() {
            left
        } else {
            left.min(LINGER)
        };
        if wanted != self.read_timeout {
            self.peer.stream.set_read_timeout(Some(wanted))?;
            self.read_timeout = wanted;
        }
        Ok(())
    }

    /// Reads more input; `None` at end of stream, or once the server is
    /// stopping and no more input is waiting.
    fn read(&mut self) -> io::Result<Option<usize>> {
        loop {
            // Announce the wait before checking the flag; `shutdown` sets the
            // flag before looking at `reading`, so one of us sees the other.
            self.peer.reading.store(true, Ordering::SeqCst);
            let result = if self.shared.stopping.load(Ordering::SeqCst) {
                self.read_waiting_input()
            } else if self.input.is_empty() {
                self.wait_for_input()
            } else {
                (&self.peer.stream).read(&mut self.input[self.end..])
            };
            self.peer.reading.store(false, Ordering::SeqCst);
            match result {
                Ok(0) => return Ok(None),
                Ok(read) => {
                    self.filled = self.end + read == self.input.len();
                    return Ok(Some(read));
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.end == 0 {
                        // Idle for `LINGER` at least, with nothing partial.
                        self.release_buffers();
                    }
                    self.arm_idle_timeout(None)?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Waits for input with no buffer (the stack holds the one byte peeked
    /// at), then takes a buffer and reads what arrived; 0 at end of stream.
    fn wait_for_input(&mut self) -> io::Result<usize> {
        let mut probe = [0u8; 1];
        if self.peer.stream.peek(&mut probe)? == 0 {
            return Ok(0);
        }
        self.take_buffer();
        (&self.peer.stream).read(&mut self.input)
    }

    /// A buffer of the initial size for a connection that has none.
    fn take_buffer(&mut self) {
        if self.input.is_empty() {
            let len = INITIAL_READ_BUFFER.min(self.shared.config.max_line_bytes);
            self.input = vec![0; len];
        }
    }

    /// Reads what has already arrived; 0 when nothing is waiting.
    fn read_waiting_input(&mut self) -> io::Result<usize> {
        self.take_buffer();
        self.peer.stream.set_nonblocking(true)?;
        let result = (&self.peer.stream).read(&mut self.input[self.end..]);
        self.peer.stream.set_nonblocking(false)?;
        match result {
            Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection thread's state, driven by hand: the server side of a
    /// connection from `client`, with an idle timeout of `idle`.
    fn connection_parts(idle: Duration) -> (Shared, Arc<Peer>, TcpStream) {
        let args = ["--write-timeout", "5s", "--tcp-keepalive", "off"];
        let args = args.map(String::from);
        let Ok(crate::config::Invocation::Run(config)) = crate::config::parse(args, |_| Ok(None))
        else {
            panic!("the test's flags do not parse");
        };
        let config = Config {
            idle_timeout: idle,
            ..config
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local_addr = listener.local_addr().unwrap();
        let shared = Shared {
            store: Store::default(),
            metrics: Arc::new(Metrics::new()),
            config,
            fd_ceiling: None,
            local_addr,
            crowded_above: 1,
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Connections::default()),
            changed: Condvar::new(),
        };
        let client = TcpStream::connect(local_addr).unwrap();
        let (stream, addr) = listener.accept().unwrap();
        let peer = Arc::new(Peer {
            stream,
            addr,
            reading: AtomicBool::new(false),
        });
        (shared, peer, client)
    }

    /// One turn of `Session::serve`'s loop from a read; the bytes read.
    fn answer(connection: &mut Session<'_>) -> usize {
        let read = connection.read().unwrap().unwrap();
        connection.end += read;
        let last_line = connection.answer_complete_lines().unwrap();
        connection.flush().unwrap();
        connection.keep_partial_line();
        connection.arm_idle_timeout(last_line).unwrap();
        read
    }

    fn holds_buffers(connection: &Session<'_>) -> bool {
        connection.input.capacity() + connection.output.capacity() + connection.executed.capacity()
            > 0
    }

    #[test]
    fn an_idle_connection_holds_no_buffer() {
        let (server, peer, mut client) = connection_parts(Duration::from_millis(300));
        let mut connection = Session::new(&server, &peer).unwrap();
        assert!(!holds_buffers(&connection), "a new connection");

        client.write_all(b"INDEX|a|\nQUERY|a|\n").unwrap();
        answer(&mut connection);
        let mut answers = [0; 6];
        client.read_exact(&mut answers).unwrap();
        assert_eq!(&answers, b"OK\nOK\n");
        assert_eq!(connection.input.len(), INITIAL_READ_BUFFER);

        // Nothing more arrives: the wait ends (here with the idle timeout,
        // shorter than `LINGER`), and the buffers are gone first.
        let ended = connection.read().unwrap_err();
        assert_eq!(ended.kind(), ErrorKind::TimedOut);
        assert!(!holds_buffers(&connection), "after the wait");
    }

    #[test]
    fn reads_grow_while_they_come_back_full_and_shrink_after() {
        const LINES: usize = 20_000;
        let (server, peer, client) = connection_parts(Duration::from_secs(30));
        let mut connection = Session::new(&server, &peer).unwrap();
        let pipeline = "QUERY|some-package|\n".repeat(LINES);
        let sent = pipeline.len();
        let writer = {
            let mut client = client.try_clone().unwrap();
            std::thread::spawn(move || client.write_all(pipeline.as_bytes()).unwrap())
        };
        let reader = {
            let mut client = client.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut answers = vec![0; (LINES + 1) * 5];
                client.read_exact(&mut answers).unwrap();
                answers
            })
        };
        // Reads come back full only if enough is waiting for the buffer to
        // grow from 4 KiB to 64 KiB in steps (124 KiB).
        let mut waiting = vec![0; (4 + 8 + 16 + 32 + 64) << 10];
        let since = Instant::now();
        while peer.stream.peek(&mut waiting).unwrap() < waiting.len() {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "the pipeline stalled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut largest = 0;
        let mut read = 0;
        while read < sent {
            read += answer(&mut connection);
            largest = largest.max(connection.input.len());
        }
        writer.join().unwrap();
        assert_eq!(largest, MAX_READ_BUFFER);
        (&client).write_all(b"QUERY|x|\n").unwrap();
        answer(&mut connection);
        assert_eq!(connection.input.len(), INITIAL_READ_BUFFER);
        let answers = reader.join().unwrap();
        assert!(answers.iter().all(|&b| b"FAIL\n".contains(&b)));
    }

    /// The scheduling policy of the calling thread (field 41 of its stat).
    fn own_policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(38).unwrap().parse().unwrap()
    }

    #[test]
    fn threads_stop_preempting_while_connections_crowd_the_cpus() {
        let (shared, peer, _client) = connection_parts(Duration::from_secs(5));
        let mut connection = Session::new(&shared, &peer).unwrap();
        connection.follow_crowding();
        assert_eq!(own_policy(), 0, "one connection is not a crowd");
        shared.metrics.connection_opened();
        shared.metrics.connection_opened();
        connection.follow_crowding();
        assert_eq!(own_policy(), 3, "SCHED_BATCH above the threshold");
        shared.metrics.connection_closed();
        connection.follow_crowding();
        assert_eq!(own_policy(), 0, "back to SCHED_OTHER at the threshold");
    }
}
