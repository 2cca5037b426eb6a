//! The admin HTTP listener: `/healthz`, `/readyz`, `/metrics` and the
//! operator's `/v1` API (`/v1/packages/NAME`, `/v1/export`), written on the
//! standard library alone.
//!
//! It speaks just enough HTTP/1.1 for probes and Prometheus: one `GET` or
//! `HEAD` per connection, answered with `Content-Length` and
//! `Connection: close`; 404 for an unknown path, 405 with `Allow` for any
//! other method, 400 for a malformed request line. A request head over
//! [`MAX_REQUEST_BYTES`], or not received within [`REQUEST_DEADLINE`], is
//! closed without an answer. The admin server shares nothing with the
//! protocol listener but what [`AdminState`] hands it.
//!
//! # One thread, one `poll(2)` loop: no client can starve it
//!
//! A single thread runs an event loop over non-blocking sockets: the
//! listener, every connection still sending its head or receiving its
//! answer, and one end of a socket pair whose other end
//! [`AdminServer::stop`] closes to end the loop. A stalled request head
//! therefore costs one file descriptor and a buffer of at most
//! [`MAX_REQUEST_BYTES`], not a thread, so [`MAX_CONNECTIONS`] (4,096)
//! connections may be pending at once; when that many are, the oldest is
//! closed to make room for the newcomer rather than turning the newcomer
//! away. A probe's head usually arrives right behind its connect and is
//! answered the moment it does, so to push a probe out a client would have
//! to open 4,096 connections within those few milliseconds; holding stalled
//! heads and renewing them, however many, only pushes out its own.
//!
//! Every connection has one deadline, [`REQUEST_DEADLINE`] after its accept,
//! for sending its head and receiving its answer: trickling bytes or reading
//! slowly does not extend it. Answers are written without blocking; bytes
//! the socket cannot take yet wait in the connection until it is writable.
//! When `accept` fails (out of file descriptors, say) the listener is left
//! out of the poll set for 50 ms, so the loop neither spins nor stops
//! serving the connections it has.
//!
//! The design it replaces, a thread per connection capped at 64, lost to 64
//! clients renewing stalled heads: every place costs a thread and its stack,
//! so the cap could only move, not go away. `poll` rather than `epoll`: each
//! turn passes over the whole set, about a quarter of a millisecond at the
//! 4,096 cap and a few microseconds for the usual handful, and in exchange
//! the set is rebuilt from the connections each turn with no registration
//! to keep in step with them; `epoll` would pay off only with far more
//! connections. With 4,000 stalled heads renewed 4,000 times a second,
//! `/healthz` still answers in under 2 ms.
//!
//! # Routes
//!
//! `route` maps a path to a `Reply` with a complete body, computed on the
//! loop thread; so a route must answer in microseconds without waiting on
//! anything a client controls (`/metrics` counts the index under its read
//! lock, which writers hold for microseconds, and reads `/proc`). A
//! panicking route answers 500 and the loop goes on.
//!
//! A route whose answer takes longer does not run on the loop, where many
//! such requests in one turn would hold up every probe behind them: it
//! returns a `Job`, and `Connection::advance` a `Progress::HandOff`
//! carrying it, on which the loop drops the connection from its set and
//! hands a duplicate of its socket, made blocking, with the job to a
//! worker thread. Two routes do: `/v1/packages/NAME`, whose scan of the
//! index takes milliseconds at a million packages (tens under load), and
//! `/v1/export`, a second and tens of megabytes. At most [`MAX_JOBS`]
//! workers of each kind run at once; a job beyond them is answered 503
//! with `Retry-After` on the loop. A worker produces the whole answer
//! first, so it is sent with its exact `Content-Length` like every other
//! answer, and its writes carry [`JOB_WRITE_STALL`] as their timeout: a
//! client that takes no bytes for that long is cut off (the head's
//! deadline does not apply to the answer of a job, which may take longer
//! than that to send in full).
//! [`AdminServer::stop`] shuts the workers' sockets down, which ends their
//! writes at once, and joins them.

use crate::json;
use crate::log;
use crate::name::PackageName;
use crate::store::{Inspection, Store};
use crate::sys::{self, PollFd, POLLIN, POLLOUT};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::raw::c_short;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Time a client has, from its accept, to send its whole request head and
/// receive its answer (`docs/admin-http.md#limits-and-timeouts`).
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head accepted, its closing blank line included
/// (`docs/admin-http.md#limits-and-timeouts`).
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Admin connections pending at once; a newcomer beyond it closes the
/// oldest. Each holds one file descriptor.
pub(crate) const MAX_CONNECTIONS: usize = 4096;
/// Worker threads answering jobs of one kind at once: inspections
/// (`/v1/packages/NAME`) and exports (`/v1/export`, each of which holds a
/// copy of the index and its text while it runs).
pub(crate) const MAX_JOBS: usize = 2;
/// How long a job's client may take no bytes before it is cut off.
pub(crate) const JOB_WRITE_STALL: Duration = Duration::from_secs(10);
/// What a job beyond [`MAX_JOBS`] is told: wait a second, then ask again.
const JOB_RETRY_AFTER: &str = "Retry-After: 1\r\n";

/// How long the listener rests after a failed `accept` (for example out of
/// file descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Connections accepted per turn of the loop at most, so a burst of
/// connects does not delay reading the ones already accepted.
const MAX_ACCEPTS_PER_TURN: usize = 64;
/// Bytes taken from a socket per `read`.
const READ_CHUNK_BYTES: usize = 4096;

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const JSON_CONTENT_TYPE: &str = "application/json";
/// Where the inspection route begins; the package's name follows.
const PACKAGES_PREFIX: &str = "/v1/packages/";

/// What the admin endpoints report, supplied by the server.
pub struct AdminState {
    /// Answer of `/readyz`: set once the server accepts connections, cleared
    /// when it starts to stop.
    pub ready: Arc<AtomicBool>,
    /// Appends the full Prometheus exposition to the buffer; called once
    /// per `/metrics` request on the admin thread, so it must not block.
    pub render_metrics: Box<dyn Fn(&mut String) + Send + Sync>,
    /// The index the `/v1` routes read, set once the server has loaded it;
    /// until then they answer 503.
    pub store: Arc<OnceLock<Store>>,
}

/// Bounds on what one admin client may cost. [`AdminLimits::default`] holds the
/// production values; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    pub request_deadline: Duration,
    pub max_request_bytes: usize,
    pub max_connections: usize,
    pub max_jobs: usize,
    pub job_write_stall: Duration,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            request_deadline: REQUEST_DEADLINE,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_connections: MAX_CONNECTIONS,
            max_jobs: MAX_JOBS,
            job_write_stall: JOB_WRITE_STALL,
        }
    }
}

/// The running admin listener: one thread, named `admin`, serving until
/// [`stop`](Self::stop) (or drop) ends it.
pub struct AdminServer {
    local_addr: SocketAddr,
    /// Closing it makes the loop's end of the pair readable, which ends
    /// the loop.
    stop_signal: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves admin requests on `listener` with the default [`AdminLimits`].
    pub fn start(listener: TcpListener, state: AdminState) -> io::Result<AdminServer> {
        AdminServer::start_with_limits(listener, state, AdminLimits::default())
    }

    /// [`start`](Self::start) with explicit limits.
    pub fn start_with_limits(
        listener: TcpListener,
        state: AdminState,
        limits: AdminLimits,
    ) -> io::Result<AdminServer> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let (stop_signal, stop_watch) = UnixStream::pair()?;
        let event_loop = EventLoop {
            listener,
            stop_watch,
            state,
            limits,
            connections: VecDeque::new(),
            workers: Workers::default(),
            accept_paused_until: None,
            failed_accepts: 0,
        };
        let thread = thread::Builder::new()
            .name("admin".to_owned())
            .spawn(move || event_loop.run())?;
        Ok(AdminServer {
            local_addr,
            stop_signal: Some(stop_signal),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Ends the loop, which closes the listener and every pending
    /// connection, and waits for the thread to finish.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        drop(self.stop_signal.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error("the admin thread panicked", &[]);
            }
        }
    }
}

impl Drop for AdminServer {
    /// An owner that returns early (a failed start) still stops the thread.
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Places in the poll set before the connections'.
const STOP_SLOT: usize = 0;
const LISTENER_SLOT: usize = 1;
const FIRST_CONNECTION_SLOT: usize = 2;

struct EventLoop {
    listener: TcpListener,
    stop_watch: UnixStream,
    state: AdminState,
    limits: AdminLimits,
    /// In accept order, which is also deadline order: the front is the
    /// oldest, first to expire and first to be evicted.
    connections: VecDeque<Connection>,
    /// The threads answering jobs.
    workers: Workers,
    /// While set, the listener is left out of the poll set.
    accept_paused_until: Option<Instant>,
    /// Accepts failed in a row; the first is logged as a warning, the end
    /// of the run once.
    failed_accepts: u64,
}

impl EventLoop {
    fn run(mut self) {
        let mut poll_set = Vec::new();
        loop {
            let now = Instant::now();
            self.expire(now);
            if self.accept_paused_until.is_some_and(|until| until <= now) {
                self.accept_paused_until = None;
            }
            poll_set.clear();
            poll_set.push(PollFd::new(self.stop_watch.as_raw_fd(), POLLIN));
            poll_set.push(match self.accept_paused_until {
                None => PollFd::new(self.listener.as_raw_fd(), POLLIN),
                Some(_) => PollFd::ignored(),
            });
            poll_set.extend(self.connections.iter().map(|connection| {
                PollFd::new(connection.stream.as_raw_fd(), connection.waits_for())
            }));
            match sys::poll(&mut poll_set, self.next_timer(now)) {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Only a lack of kernel memory is expected here; wait
                    // for it to pass rather than spin.
                    log::warn("admin poll failed", &[("error", &error)]);
                    thread::sleep(ACCEPT_RETRY_PAUSE);
                    continue;
                }
            }
            if poll_set[STOP_SLOT].revents() != 0 {
                self.workers.stop();
                return;
            }
            self.serve_ready(&poll_set[FIRST_CONNECTION_SLOT..]);
            if poll_set[LISTENER_SLOT].revents() != 0 {
                self.accept_waiting();
            }
        }
    }

    /// Closes every connection whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        while self
            .connections
            .front()
            .is_some_and(|oldest| oldest.deadline <= now)
        {
            self.connections.pop_front();
            log::debug(
                "admin connection dropped",
                &[("reason", &"deadline passed")],
            );
        }
    }

    /// How long `poll` may wait: until the oldest connection's deadline or
    /// the end of an accept pause, whichever comes first.
    fn next_timer(&self, now: Instant) -> Option<Duration> {
        let deadline = self.connections.front().map(|oldest| oldest.deadline);
        [deadline, self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Advances every connection `poll` reported on (`ready` holds their
    /// entries, in order) and forgets those that are done.
    fn serve_ready(&mut self, ready: &[PollFd]) {
        let (state, limits, workers) = (&self.state, &self.limits, &mut self.workers);
        let mut ready = ready.iter();
        self.connections.retain_mut(|connection| {
            if ready.next().map_or(0, PollFd::revents) == 0 {
                return true;
            }
            match connection.advance(state, limits) {
                Progress::Pending => true,
                Progress::Answered => false,
                Progress::HandOff(job) => match workers.start(&connection.stream, job, limits) {
                    // The worker has a socket of its own.
                    Ok(()) => false,
                    Err(refusal) => {
                        connection.stage = Stage::Sending {
                            answer: refusal,
                            sent: 0,
                        };
                        true
                    }
                },
                Progress::Dropped(reason) => {
                    log::debug("admin connection dropped", &[("reason", &reason)]);
                    false
                }
            }
        });
    }

    fn accept_waiting(&mut self) {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.failed_accepts > 0 {
                        log::info(
                            "admin accepts resumed",
                            &[("failed_accepts", &self.failed_accepts)],
                        );
                        self.failed_accepts = 0;
                    }
                    self.admit(stream);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                // Interrupted, or the client gave up before it was accepted.
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(error) => {
                    if self.failed_accepts == 0 {
                        log::warn(
                            "admin accept failed; pausing accepts",
                            &[
                                ("error", &error),
                                ("pause_ms", &ACCEPT_RETRY_PAUSE.as_millis()),
                            ],
                        );
                    }
                    self.failed_accepts += 1;
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_RETRY_PAUSE);
                    return;
                }
            }
        }
    }

    /// Adds a new connection, closing the oldest pending one when all
    /// places are taken.
    fn admit(&mut self, stream: TcpStream) {
        if let Err(error) = stream.set_nonblocking(true) {
            log::debug("admin connection dropped", &[("reason", &error)]);
            return;
        }
        if self.connections.len() >= self.limits.max_connections
            && self.connections.pop_front().is_some()
        {
            log::debug(
                "admin connection evicted",
                &[("limit", &self.limits.max_connections)],
            );
        }
        self.connections.push_back(Connection {
            stream,
            deadline: Instant::now() + self.limits.request_deadline,
            stage: Stage::Receiving { head: Vec::new() },
        });
    }
}

/// One admin client, from its accept until its answer is sent.
struct Connection {
    stream: TcpStream,
    deadline: Instant,
    stage: Stage,
}

enum Stage {
    /// The request head so far, without its blank line yet.
    Receiving { head: Vec<u8> },
    /// The complete answer and how much of it the socket has taken.
    Sending { answer: Vec<u8>, sent: usize },
}

/// What the loop does with a connection after [`Connection::advance`].
enum Progress {
    /// Keep it and wait for the socket to be ready again.
    Pending,
    /// The whole answer is sent: close it.
    Answered,
    /// Close it without a complete answer, for the reason given.
    Dropped(Cow<'static, str>),
    /// Its answer is a job: hand its socket to a worker.
    HandOff(Job),
}

impl Connection {
    fn waits_for(&self) -> c_short {
        match self.stage {
            Stage::Receiving { .. } => POLLIN,
            Stage::Sending { .. } => POLLOUT,
        }
    }

    /// Does what the socket allows now: reads more of the head and, once it
    /// is complete, answers; or sends more of the answer.
    fn advance(&mut self, state: &AdminState, limits: &AdminLimits) -> Progress {
        if let Stage::Receiving { head } = &mut self.stage {
            match receive_head(&mut self.stream, head, limits.max_request_bytes) {
                Ok(Some(head_end)) => match respond(&head[..head_end], state) {
                    Answer::Now(answer) => self.stage = Stage::Sending { answer, sent: 0 },
                    Answer::Later(job) => return Progress::HandOff(job),
                },
                Ok(None) => return Progress::Pending,
                Err(reason) => return Progress::Dropped(reason),
            }
        }
        match &mut self.stage {
            Stage::Sending { answer, sent } => send_answer(&mut self.stream, answer, sent),
            Stage::Receiving { .. } => Progress::Pending,
        }
    }
}

/// Reads what the socket holds into `head`, and returns where the head
/// ends (just past its blank line) once it has. Fails, naming why, when the
/// client closes, the read fails or the head cannot fit in `max_bytes`.
fn receive_head(
    stream: &mut TcpStream,
    head: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<Option<usize>, Cow<'static, str>> {
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        // Never more than the cap: a stalled head holds at most that much.
        let room = (max_bytes - head.len()).min(chunk.len());
        let read = match stream.read(&mut chunk[..room]) {
            Ok(0) => return Err("closed before the request ended".into()),
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("read failed: {error}").into()),
        };
        // Only the new bytes and the three before them can complete the
        // blank line, so earlier bytes are not searched again.
        let search_from = head.len().saturating_sub(3);
        head.reserve_exact(read);
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = find_head_end(&head[search_from..]) {
            return Ok(Some(search_from + end));
        }
        if head.len() >= max_bytes {
            return Err("request too large".into());
        }
    }
}

/// Just past the blank line ending a head: `\r\n\r\n`, or `\n\n` from
/// clients that end lines with a bare `\n`.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|at| {
        let rest = &bytes[at..];
        if rest.starts_with(b"\r\n\r\n") {
            Some(at + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(at + 2)
        } else {
            None
        }
    })
}

/// Writes what the socket takes now; once all is sent, ends the stream.
fn send_answer(stream: &mut TcpStream, answer: &[u8], sent: &mut usize) -> Progress {
    while *sent < answer.len() {
        match stream.write(&answer[*sent..]) {
            Ok(0) => return Progress::Dropped("the client stopped receiving".into()),
            Ok(written) => *sent += written,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Progress::Pending,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Progress::Dropped(format!("write failed: {error}").into()),
        }
    }
    // The client may be gone already; there is no one to tell.
    let _ = stream.shutdown(Shutdown::Write);
    Progress::Answered
}

/// An answer with a complete body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    /// Header lines beyond the usual ones, each ending in `\r\n`.
    extra_headers: &'static str,
    body: String,
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT_CONTENT_TYPE,
            extra_headers: "",
            body: body.to_owned(),
        }
    }

    fn json(status: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type: JSON_CONTENT_TYPE,
            extra_headers: "",
            body,
        }
    }

    /// A JSON error: `{"error": what, "name": name}`, the name only when
    /// there is one.
    fn json_error(status: &'static str, what: &str, name: Option<&str>) -> Reply {
        let mut body = String::from("{\"error\":");
        json::write_string(&mut body, what);
        if let Some(name) = name {
            body.push_str(",\"name\":");
            json::write_string(&mut body, name);
        }
        body.push_str("}\n");
        Reply::json(status, body)
    }
}

/// A reply produced on a worker thread rather than on the loop.
struct Job {
    kind: JobKind,
    produce: Box<dyn FnOnce() -> Reply + Send>,
    /// A `HEAD` request: send the headers only.
    head_only: bool,
}

/// What a job does; each kind has its own [`AdminLimits::max_jobs`]
/// workers, so exports cannot keep inspections out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    /// `/v1/packages/NAME`.
    Inspect,
    /// `/v1/export`.
    Export,
}

/// What a request head gets: its answer's bytes, or a job to produce them.
enum Answer {
    Now(Vec<u8>),
    Later(Job),
}

/// What a route gives.
enum Routed {
    Now(Reply),
    Later(JobKind, Box<dyn FnOnce() -> Reply + Send>),
}

/// Answers one request head.
fn respond(head: &[u8], state: &AdminState) -> Answer {
    let request_line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let reply = match parse_request_line(request_line) {
        RequestLine::Malformed => Reply::text("400 Bad Request", "bad request\n"),
        RequestLine::OtherMethod => Reply {
            extra_headers: "Allow: GET, HEAD\r\n",
            ..Reply::text("405 Method Not Allowed", "method not allowed\n")
        },
        RequestLine::Get { path, head_only } => match guarded(path, || route(path, state)) {
            Some(Routed::Now(reply)) => return Answer::Now(encode(&reply, head_only)),
            Some(Routed::Later(kind, produce)) => {
                return Answer::Later(Job {
                    kind,
                    produce,
                    head_only,
                })
            }
            None => internal_error(),
        },
    };
    Answer::Now(encode(&reply, false))
}

/// Runs `answer` for `path`; `None` when it panicked (and was logged).
fn guarded<T>(path: &str, answer: impl FnOnce() -> T) -> Option<T> {
    let answered = panic::catch_unwind(AssertUnwindSafe(answer));
    if answered.is_err() {
        log::error("admin route panicked", &[("path", &path)]);
    }
    answered.ok()
}

fn internal_error() -> Reply {
    Reply::text("500 Internal Server Error", "internal error\n")
}

/// The answer to a `GET` of `path` (a `HEAD` sends its headers).
fn route(path: &str, state: &AdminState) -> Routed {
    let reply = match path {
        "/healthz" => Reply::text("200 OK", "ok\n"),
        "/readyz" if state.ready.load(Ordering::Acquire) => Reply::text("200 OK", "ready\n"),
        "/readyz" => Reply::text("503 Service Unavailable", "not ready\n"),
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            (state.render_metrics)(&mut body);
            Reply {
                status: "200 OK",
                content_type: METRICS_CONTENT_TYPE,
                extra_headers: "",
                body,
            }
        }
        "/v1/export" => match state.store.get() {
            Some(store) => {
                let store = store.clone();
                return Routed::Later(JobKind::Export, Box::new(move || export(&store)));
            }
            None => loading(),
        },
        _ => match path.strip_prefix(PACKAGES_PREFIX) {
            Some(segment) => match (state.store.get(), package_name(segment)) {
                (None, _) => loading(),
                (Some(_), None) => {
                    Reply::json_error("400 Bad Request", "invalid package name", Some(segment))
                }
                (Some(store), Some(name)) => {
                    let store = store.clone();
                    return Routed::Later(
                        JobKind::Inspect,
                        Box::new(move || inspect(&store, &name)),
                    );
                }
            },
            None => Reply::text("404 Not Found", "not found\n"),
        },
    };
    Routed::Now(reply)
}

/// The package name a `/v1/packages/` path names: the rest of the path
/// (names may hold `/`), percent-decoded; `None` when it is not one.
fn package_name(segment: &str) -> Option<String> {
    let decoded = percent_decode(segment)?;
    PackageName::new(&decoded).map(|name| name.as_str().to_string())
}

/// The `/v1` answer while the data directory is still loading.
fn loading() -> Reply {
    Reply::json_error("503 Service Unavailable", "loading", None)
}

/// `/v1/packages/NAME`, on a worker: the package's dependencies and
/// dependents; `name` was validated on the loop.
fn inspect(store: &Store, name: &str) -> Reply {
    let Some(name) = PackageName::new(name.as_bytes()) else {
        return Reply::json_error("400 Bad Request", "invalid package name", Some(name));
    };
    match store.inspect(name) {
        Some(inspection) => Reply::json("200 OK", inspection_json(&inspection)),
        None => Reply::json_error("404 Not Found", "not indexed", Some(name.as_str())),
    }
}

/// `{"name": ..., "dependencies": [...], "dependents": [...]}` and a newline.
fn inspection_json(inspection: &Inspection) -> String {
    let names = inspection.dependencies.len() + inspection.dependents.len();
    let mut body = String::with_capacity(64 + names * 16);
    body.push_str("{\"name\":");
    json::write_string(&mut body, &inspection.name);
    body.push_str(",\"dependencies\":");
    json::write_strings(
        &mut body,
        inspection.dependencies.iter().map(String::as_str),
    );
    body.push_str(",\"dependents\":");
    json::write_strings(&mut body, inspection.dependents.iter().map(String::as_str));
    body.push_str("}\n");
    body
}

/// `/v1/export`, on a worker: the whole index as a package list.
fn export(store: &Store) -> Reply {
    Reply {
        body: store.export(),
        ..Reply::text("200 OK", "")
    }
}

/// `%XX` escapes decoded (RFC 3986 §2.1); `None` for a malformed one.
/// Other bytes stay as they are (`+` is a plus, not a space, in a path).
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            decoded.push(byte);
            continue;
        }
        let hex = [bytes.next()?, bytes.next()?];
        let hex = std::str::from_utf8(&hex).ok()?;
        // from_str_radix would take a sign: only hex digits will do.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        decoded.push(u8::from_str_radix(hex, 16).ok()?);
    }
    Some(decoded)
}

/// A request line as far as routing needs it.
#[derive(Debug, PartialEq, Eq)]
enum RequestLine<'a> {
    /// `GET` (or `HEAD`, which wants the headers only) of a path, its query
    /// dropped.
    Get {
        path: &'a str,
        head_only: bool,
    },
    /// A well-formed request with a method this server does not serve.
    OtherMethod,
    Malformed,
}

/// Reads `METHOD TARGET HTTP/1.x`. The target may be in origin-form
/// (`/path?query`) or absolute-form (`http://host:port/path?query`, also
/// `https`), whose host is ignored as RFC 9112 §3.2.2 asks; asterisk-form
/// (`*`) and authority-form (`host:port`) are well-formed only with the
/// methods they belong to, `OPTIONS` and `CONNECT`, which get 405 like any
/// other method; with `GET` or `HEAD` they are malformed.
fn parse_request_line(line: &[u8]) -> RequestLine<'_> {
    let Ok(line) = std::str::from_utf8(line) else {
        return RequestLine::Malformed;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return RequestLine::Malformed;
    };
    let method_is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let version_is_known = version == "HTTP/1.1" || version == "HTTP/1.0";
    if !method_is_token || !version_is_known {
        return RequestLine::Malformed;
    }
    match (method, Target::parse(target)) {
        ("GET" | "HEAD", Some(Target::Path(path))) => RequestLine::Get {
            path,
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", _) | (_, None) => RequestLine::Malformed,
        (_, Some(Target::Path(_)))
        | ("OPTIONS", Some(Target::Asterisk))
        | ("CONNECT", Some(Target::Authority)) => RequestLine::OtherMethod,
        (_, Some(Target::Asterisk | Target::Authority)) => RequestLine::Malformed,
    }
}

/// The request-target forms of RFC 9112 §3.2.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// Origin-form or absolute-form: the path, without its query.
    Path(&'a str),
    /// `*`.
    Asterisk,
    /// `host:port`.
    Authority,
}

impl Target<'_> {
    fn parse(target: &str) -> Option<Target<'_>> {
        if target.starts_with('/') {
            return Some(Target::Path(without_query(target)));
        }
        if target == "*" {
            return Some(Target::Asterisk);
        }
        if let Some(rest) = strip_web_scheme(target) {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path_and_query) = rest.split_at(authority_end);
            parse_authority(authority)?;
            let path = without_query(path_and_query);
            // `http://host` and `http://host?query` ask for the root.
            return Some(Target::Path(if path.is_empty() { "/" } else { path }));
        }
        // Authority-form needs the port; without one it is no form at all.
        parse_authority(target)?.map(|_port| Target::Authority)
    }
}

fn without_query(path_and_query: &str) -> &str {
    let end = path_and_query.find('?').unwrap_or(path_and_query.len());
    &path_and_query[..end]
}

/// `target` after `http://` or `https://` (the scheme in any case).
fn strip_web_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// Checks `host[:port]` (RFC 3986 §3.2.2-3, without user information, which
/// RFC 9110 §4.2.4 says to treat as an error) and returns its port, if any.
/// The host is a name or IPv4 address of URI characters, or a bracketed IP
/// literal; it must not be empty (RFC 9110 §4.2.1).
fn parse_authority(authority: &str) -> Option<Option<&str>> {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(literal) => {
            let (address, after) = literal.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            let address_ok = address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (!address.is_empty() && address_ok, port)
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let name_ok = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
            (!host.is_empty() && name_ok, port)
        }
    };
    let port_ok = port.is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some(port)
}

/// The status line and headers of a reply, up to its blank line.
fn head(reply: &Reply) -> String {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.extra_headers
    )
}

/// Serialises a reply; `head_only` (a `HEAD` request) keeps the headers,
/// `Content-Length` included, and drops the body.
fn encode(reply: &Reply, head_only: bool) -> Vec<u8> {
    let mut bytes = head(reply).into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    bytes
}

/// The threads answering jobs, each with a duplicate of its client's
/// socket through which [`Workers::stop`] cuts it off.
#[derive(Default)]
struct Workers {
    running: Vec<Worker>,
}

struct Worker {
    thread: JoinHandle<()>,
    /// A duplicate of the client's socket.
    stream: TcpStream,
    kind: JobKind,
    /// Set once the answer is sent (or failed): the place is free, though
    /// the thread may still be ending.
    done: Arc<AtomicBool>,
}

impl Workers {
    /// Starts a worker for `job` on a duplicate of `stream`; when
    /// `limits.max_jobs` already run, or no thread or descriptor is to be
    /// had, gives back the answer to send instead (503).
    fn start(&mut self, stream: &TcpStream, job: Job, limits: &AdminLimits) -> Result<(), Vec<u8>> {
        self.join_finished();
        let busy = || {
            let reply = Reply {
                extra_headers: JOB_RETRY_AFTER,
                ..Reply::text(
                    "503 Service Unavailable",
                    "busy: too many answers in progress\n",
                )
            };
            encode(&reply, job.head_only)
        };
        let same_kind = self
            .running
            .iter()
            .filter(|w| w.kind == job.kind && !w.done.load(Ordering::Acquire))
            .count();
        if same_kind >= limits.max_jobs {
            log::debug("admin job refused", &[("reason", &"busy")]);
            return Err(busy());
        }
        let started = stream
            .try_clone()
            .and_then(|worker_side| Ok((worker_side, stream.try_clone()?)))
            .and_then(|(worker_side, stop_side)| {
                worker_side.set_nonblocking(false)?;
                worker_side.set_write_timeout(Some(limits.job_write_stall))?;
                let (head_only, produce) = (job.head_only, job.produce);
                let done = Arc::new(AtomicBool::new(false));
                let finished = Arc::clone(&done);
                let thread = thread::Builder::new()
                    .name("admin-job".to_owned())
                    .spawn(move || answer_job(worker_side, produce, head_only, &finished))?;
                Ok(Worker {
                    thread,
                    stream: stop_side,
                    kind: job.kind,
                    done,
                })
            });
        match started {
            Ok(worker) => {
                self.running.push(worker);
                Ok(())
            }
            Err(error) => {
                log::warn("cannot start an admin job", &[("error", &error)]);
                Err(busy())
            }
        }
    }

    fn join_finished(&mut self) {
        let mut index = 0;
        while index < self.running.len() {
            if self.running[index].thread.is_finished() {
                join_worker(self.running.swap_remove(index).thread);
            } else {
                index += 1;
            }
        }
    }

    /// Cuts every worker's client off, which ends its writes at once, and
    /// waits for each to finish.
    fn stop(&mut self) {
        for worker in self.running.drain(..) {
            // The client may be gone already.
            let _ = worker.stream.shutdown(Shutdown::Both);
            join_worker(worker.thread);
        }
    }
}

fn join_worker(thread: JoinHandle<()>) {
    if thread.join().is_err() {
        log::error("an admin job thread panicked", &[]);
    }
}

/// A worker's life: produce the reply, send it, close.
fn answer_job(
    mut stream: TcpStream,
    produce: Box<dyn FnOnce() -> Reply + Send>,
    head_only: bool,
    done: &AtomicBool,
) {
    let reply = guarded("job", produce).unwrap_or_else(internal_error);
    let sent = stream.write_all(head(&reply).as_bytes()).and_then(|()| {
        if head_only {
            Ok(())
        } else {
            stream.write_all(reply.body.as_bytes())
        }
    });
    // Before the client can see the end of its answer, so that its next
    // request finds this worker's place free.
    done.store(true, Ordering::Release);
    // Either way the connection ends here, whatever other descriptors of
    // it remain; the client may be gone already, with no one to tell.
    match sent {
        Ok(()) => drop(stream.shutdown(Shutdown::Write)),
        Err(error) => {
            drop(stream.shutdown(Shutdown::Both));
            log::debug(
                "admin connection dropped",
                &[("reason", &format!("write failed: {error}"))],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
    const METRICS_BODY: &str = "# TYPE up gauge\nup 1\n";

    /// A server whose `/metrics` answers `render`'s text.
    fn start_rendering(
        limits: AdminLimits,
        render: impl Fn(&mut String) + Send + Sync + 'static,
    ) -> (AdminServer, Arc<AtomicBool>) {
        start_serving(limits, render, Arc::default())
    }

    /// A server whose `/v1` routes read `store` once it is set.
    fn start_serving(
        limits: AdminLimits,
        render: impl Fn(&mut String) + Send + Sync + 'static,
        store: Arc<OnceLock<Store>>,
    ) -> (AdminServer, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let state = AdminState {
            ready: Arc::clone(&ready),
            render_metrics: Box::new(render),
            store,
        };
        let server = AdminServer::start_with_limits(listener, state, limits).unwrap();
        (server, ready)
    }

    /// A server over a store holding `packages` (`name: dep dep` lines).
    fn start_with_index(limits: AdminLimits, packages: &str) -> AdminServer {
        let store = Store::default();
        for line in packages.lines() {
            let entry = crate::package_list::parse_line(1, line).unwrap().unwrap();
            let deps: Vec<&str> = entry.dependencies.iter().map(|d| d.as_str()).collect();
            let request = format!("INDEX|{}|{}", entry.name, deps.join(","));
            let request = crate::protocol::parse_line(request.as_bytes()).unwrap();
            assert!(store.execute(&request).unwrap().outcome.changed(), "{line}");
        }
        let loaded = Arc::new(OnceLock::new());
        assert!(loaded.set(store).is_ok());
        start_serving(limits, |out| out.push_str(METRICS_BODY), loaded).0
    }

    /// Lines for a chain of packages with long names, each depending on
    /// the one before: an export of 24 MB, far more than socket buffers
    /// hold.
    fn long_chain() -> String {
        let name = |i: usize| format!("{i:0>240}");
        let mut text = format!("{}:\n", name(0));
        for i in 1..50_000 {
            text.push_str(&format!("{}: {}\n", name(i), name(i - 1)));
        }
        text
    }

    fn start(limits: AdminLimits) -> (AdminServer, Arc<AtomicBool>) {
        start_rendering(limits, |out| out.push_str(METRICS_BODY))
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream
    }

    struct Answer {
        status_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    fn read_answer(mut stream: TcpStream) -> Answer {
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        Answer {
            status_line,
            headers,
            body: body.to_owned(),
        }
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
        let mut stream = connect(addr);
        stream.write_all(request).unwrap();
        read_answer(stream)
    }

    fn get(addr: SocketAddr, target: &str) -> Answer {
        exchange(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        )
    }

    /// Every answer closes the connection and states its exact length.
    fn assert_framed(answer: &Answer, status: &str, body: &str) {
        assert_eq!(answer.status_line, format!("HTTP/1.1 {status}"));
        assert_eq!(answer.body, body);
        assert_eq!(
            answer.header("Content-Length"),
            Some(&*body.len().to_string())
        );
        assert_eq!(answer.header("Connection"), Some("close"));
    }

    fn assert_closed_without_answer(mut stream: TcpStream) {
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw) {
            Ok(_) => assert!(
                raw.is_empty(),
                "answered: {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}"),
        }
    }

    #[test]
    fn healthz_answers_ok() {
        let (server, _) = start(AdminLimits::default());
        let answer = get(server.local_addr(), "/healthz");
        assert_framed(&answer, "200 OK", "ok\n");
        assert_eq!(answer.header("Content-Type"), Some(TEXT_CONTENT_TYPE));
    }

    #[test]
    fn readyz_follows_the_flag() {
        let (server, ready) = start(AdminLimits::default());
        let addr = server.local_addr();
        assert_framed(
            &get(addr, "/readyz"),
            "503 Service Unavailable",
            "not ready\n",
        );
        ready.store(true, Ordering::Release);
        assert_framed(&get(addr, "/readyz"), "200 OK", "ready\n");
        ready.store(false, Ordering::Release);
        assert_framed(
            &get(addr, "/readyz"),
            "503 Service Unavailable",
            "not ready\n",
        );
    }

    #[test]
    fn metrics_are_rendered_with_the_prometheus_content_type() {
        let (server, _) = start(AdminLimits::default());
        let answer = get(server.local_addr(), "/metrics");
        assert_framed(&answer, "200 OK", METRICS_BODY);
        assert_eq!(
            answer.header("Content-Type"),
            Some("text/plain; version=0.0.4")
        );
    }

    #[test]
    fn head_sends_the_headers_of_get_without_the_body() {
        let (server, _) = start(AdminLimits::default());
        let addr = server.local_addr();
        let answer = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
        assert_eq!(answer.body, "");
        let get_length = METRICS_BODY.len().to_string();
        assert_eq!(answer.header("Content-Length"), Some(&*get_length));
        let answer = exchange(addr, b"HEAD /missing HTTP/1.1\r\n\r\n");
        assert_eq!(answer.status_line, "HTTP/1.1 404 Not Found");
        assert_eq!(answer.body, "");
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let (server, _) = start(AdminLimits::default());
        let requests = [
            "POST /healthz",
            "PUT /healthz",
            "DELETE /healthz",
            "OPTIONS /healthz",
            "get /healthz",
            "POST http://localhost/healthz",
            // Asterisk-form and authority-form with their own methods.
            "OPTIONS *",
            "CONNECT localhost:9090",
            "CONNECT [::1]:9090",
        ];
        for request_line in requests {
            let request = format!("{request_line} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
            let answer = exchange(server.local_addr(), request.as_bytes());
            assert_framed(&answer, "405 Method Not Allowed", "method not allowed\n");
            assert_eq!(answer.header("Allow"), Some("GET, HEAD"), "{request_line}");
        }
    }

    #[test]
    fn unknown_paths_get_404_and_queries_are_ignored() {
        let (server, _) = start(AdminLimits::default());
        let addr = server.local_addr();
        assert_framed(&get(addr, "/"), "404 Not Found", "not found\n");
        assert_framed(&get(addr, "/healthz/"), "404 Not Found", "not found\n");
        assert_framed(&get(addr, "/nope?healthz"), "404 Not Found", "not found\n");
        assert_framed(&get(addr, "/healthz?verbose=1"), "200 OK", "ok\n");
    }

    #[test]
    fn absolute_form_targets_are_routed_by_their_path() {
        let (server, ready) = start(AdminLimits::default());
        ready.store(true, Ordering::Release);
        let addr = server.local_addr();
        for target in [
            "http://localhost/healthz",
            "http://127.0.0.1:9090/healthz?verbose=1",
            "https://admin.example:443/healthz",
            "HTTP://LOCALHOST/healthz",
            "http://[::1]:9090/healthz",
            "http://a.b-c_d~e%41/healthz",
        ] {
            assert_framed(&get(addr, target), "200 OK", "ok\n");
        }
        assert_framed(&get(addr, "http://h/readyz"), "200 OK", "ready\n");
        for root in ["http://localhost", "http://localhost:9090?healthz"] {
            assert_framed(&get(addr, root), "404 Not Found", "not found\n");
        }
        let answer = exchange(addr, b"HEAD http://localhost/metrics HTTP/1.1\r\n\r\n");
        assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
        assert_eq!(answer.body, "");
    }

    #[test]
    fn tolerated_request_variants() {
        let (server, _) = start(AdminLimits::default());
        let variants: [&[u8]; 3] = [
            b"GET /healthz HTTP/1.0\r\n\r\n",
            b"GET /healthz HTTP/1.1\n\n",
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nignored body",
        ];
        for request in variants {
            assert_framed(&exchange(server.local_addr(), request), "200 OK", "ok\n");
        }
    }

    #[test]
    fn malformed_request_lines_get_400() {
        let (server, _) = start(AdminLimits::default());
        let malformed: [&[u8]; 22] = [
            b"garbage\r\n\r\n",
            b"GET /healthz\r\n\r\n",
            b"GET healthz HTTP/1.1\r\n\r\n",
            b"GET  /healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\n\r\n",
            b"GET /healthz HTTP/2.0\r\n\r\n",
            b"G(T /healthz HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            // Asterisk-form and authority-form belong to other methods.
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET localhost:9090 HTTP/1.1\r\n\r\n",
            b"HEAD localhost:9090 HTTP/1.1\r\n\r\n",
            b"POST * HTTP/1.1\r\n\r\n",
            b"OPTIONS localhost:9090 HTTP/1.1\r\n\r\n",
            b"CONNECT localhost HTTP/1.1\r\n\r\n",
            // Absolute-form: only http(s), with a host and no user.
            b"GET http:///healthz HTTP/1.1\r\n\r\n",
            b"GET http://user@localhost/healthz HTTP/1.1\r\n\r\n",
            b"GET http://localhost:port/healthz HTTP/1.1\r\n\r\n",
            b"GET http://[::1/healthz HTTP/1.1\r\n\r\n",
            b"GET ftp://localhost/healthz HTTP/1.1\r\n\r\n",
            b"GET http:/localhost/healthz HTTP/1.1\r\n\r\n",
            b"GET localhost:9090/healthz HTTP/1.1\r\n\r\n",
            b"POST healthz HTTP/1.1\r\n\r\n",
        ];
        for request in malformed {
            let answer = exchange(server.local_addr(), request);
            assert_framed(&answer, "400 Bad Request", "bad request\n");
        }
    }

    /// A request for `/healthz` of exactly `len` bytes, blank line included.
    fn request_of_length(len: usize) -> String {
        let bare = "GET /healthz HTTP/1.1\r\nX-Pad: \r\n\r\n";
        let request = format!(
            "GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(len - bare.len())
        );
        assert_eq!(request.len(), len);
        request
    }

    #[test]
    fn a_head_of_exactly_the_size_cap_is_served() {
        let (server, _) = start(AdminLimits::default());
        let request = request_of_length(MAX_REQUEST_BYTES);
        assert_framed(
            &exchange(server.local_addr(), request.as_bytes()),
            "200 OK",
            "ok\n",
        );
    }

    #[test]
    fn a_head_over_the_size_cap_is_closed_without_an_answer() {
        let (server, _) = start(AdminLimits::default());
        for len in [MAX_REQUEST_BYTES + 1, 4 * MAX_REQUEST_BYTES] {
            let mut stream = connect(server.local_addr());
            // The server may close while the request is still being written.
            let _ = stream.write_all(request_of_length(len).as_bytes());
            assert_closed_without_answer(stream);
        }
    }

    #[test]
    fn a_stalled_request_does_not_block_others_and_is_closed() {
        let (server, _) = start(AdminLimits {
            request_deadline: Duration::from_millis(300),
            ..AdminLimits::default()
        });
        let mut stalled = connect(server.local_addr());
        stalled.write_all(b"GET /hea").unwrap();
        let started = Instant::now();
        assert_framed(&get(server.local_addr(), "/healthz"), "200 OK", "ok\n");
        assert_closed_without_answer(stalled);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[test]
    fn the_deadline_covers_the_whole_head_not_each_read() {
        let (server, _) = start(AdminLimits {
            request_deadline: Duration::from_millis(200),
            ..AdminLimits::default()
        });
        let mut trickle = connect(server.local_addr());
        // 400 bytes at one per 10 ms would take over 4 s, far past the
        // deadline; the server must cut the connection before they are all
        // sent even though every single read makes progress.
        let request = format!("GET /healthz HTTP/1.1\r\nX-Pad: {}", "a".repeat(400));
        let cut_off = request.as_bytes().iter().any(|byte| {
            thread::sleep(Duration::from_millis(10));
            trickle.write_all(&[*byte]).is_err()
        });
        assert!(cut_off, "a trickling client outlived the deadline");
    }

    #[test]
    fn a_newcomer_beyond_the_limit_evicts_the_oldest() {
        let (server, _) = start(AdminLimits {
            max_connections: 2,
            ..AdminLimits::default()
        });
        let addr = server.local_addr();
        let mut oldest = connect(addr);
        oldest.write_all(b"GET /heal").unwrap();
        // A round trip through the server: the oldest is accepted first.
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
        let mut younger = connect(addr);
        younger.write_all(b"GET /heal").unwrap();
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
        assert_closed_without_answer(oldest);
        younger.write_all(b"thz HTTP/1.1\r\n\r\n").unwrap();
        assert_framed(&read_answer(younger), "200 OK", "ok\n");
    }

    #[test]
    fn a_slow_reader_gets_the_whole_answer_and_delays_no_one() {
        // Far more than the socket buffers hold, so the answer must wait
        // in the server for the client to read.
        let body = "x".repeat(16 << 20);
        let expected = body.clone();
        let (server, _) = start_rendering(AdminLimits::default(), move |out| out.push_str(&body));
        let addr = server.local_addr();
        let mut slow = connect(addr);
        slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        thread::sleep(Duration::from_millis(200));
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
        let answer = read_answer(slow);
        assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
        assert!(answer.body == expected, "the body arrived incomplete");
    }

    #[test]
    fn an_answer_unread_past_the_deadline_is_cut_off() {
        let body_len = 16 << 20;
        let (server, _) = start_rendering(
            AdminLimits {
                request_deadline: Duration::from_millis(300),
                ..AdminLimits::default()
            },
            move |out| out.push_str(&"x".repeat(body_len)),
        );
        let mut slow = connect(server.local_addr());
        slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        thread::sleep(Duration::from_millis(800));
        let mut received = 0;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match slow.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => received += read,
                Err(error) => {
                    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
                    break;
                }
            }
        }
        assert!(received < body_len, "all {received} bytes arrived");
    }

    #[test]
    fn a_panicking_route_answers_500_and_the_loop_goes_on() {
        let (server, _) = start_rendering(AdminLimits::default(), |_| panic!("render failed"));
        let addr = server.local_addr();
        assert_framed(
            &get(addr, "/metrics"),
            "500 Internal Server Error",
            "internal error\n",
        );
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
    }

    #[test]
    fn stop_closes_the_listener_and_every_connection_and_joins() {
        let (server, _) = start(AdminLimits::default());
        let addr = server.local_addr();
        let mut stalled = connect(addr);
        stalled.write_all(b"GET /hea").unwrap();
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
        let started = Instant::now();
        server.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_closed_without_answer(stalled);
        let refused = TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    }

    const SMALL_INDEX: &str = "z:\nb:\ny: z b\na: y z\nc: y\nhomebrew/x@2: a\n";

    #[test]
    fn packages_answer_json_with_both_directions() {
        let server = start_with_index(AdminLimits::default(), SMALL_INDEX);
        let addr = server.local_addr();
        let answer = get(addr, "/v1/packages/y");
        assert_framed(
            &answer,
            "200 OK",
            "{\"name\":\"y\",\"dependencies\":[\"b\",\"z\"],\"dependents\":[\"a\",\"c\"]}\n",
        );
        assert_eq!(answer.header("Content-Type"), Some("application/json"));
        // Names may hold `/`, written as is or percent-encoded.
        let whole = "{\"name\":\"homebrew/x@2\",\"dependencies\":[\"a\"],\"dependents\":[]}\n";
        for target in [
            "/v1/packages/homebrew/x@2",
            "/v1/packages/homebrew%2fx%402?q=1",
        ] {
            assert_framed(&get(addr, target), "200 OK", whole);
        }
        assert_framed(
            &get(addr, "/v1/packages/nope"),
            "404 Not Found",
            "{\"error\":\"not indexed\",\"name\":\"nope\"}\n",
        );
        for (segment, shown) in [
            ("", ""),
            ("a%20b", "a%20b"),
            ("%zz", "%zz"),
            ("a%2", "a%2"),
            ("%2Ba,b", "%2Ba,b"),
        ] {
            let answer = get(addr, &format!("/v1/packages/{segment}"));
            let body = format!("{{\"error\":\"invalid package name\",\"name\":\"{shown}\"}}\n");
            assert_framed(&answer, "400 Bad Request", &body);
        }
        assert_framed(&get(addr, "/v1/packages"), "404 Not Found", "not found\n");
        let head = exchange(addr, b"HEAD /v1/packages/y HTTP/1.1\r\n\r\n");
        assert_eq!(head.status_line, "HTTP/1.1 200 OK");
        assert_eq!(head.body, "");
        assert_eq!(
            head.header("Content-Length"),
            answer_length(&get(addr, "/v1/packages/y"))
        );
    }

    fn answer_length(answer: &Answer) -> Option<&str> {
        answer.header("Content-Length")
    }

    #[test]
    fn v1_routes_answer_503_until_the_store_is_loaded() {
        let (server, _) = start(AdminLimits::default());
        for target in ["/v1/packages/a", "/v1/export"] {
            let answer = get(server.local_addr(), target);
            assert_framed(
                &answer,
                "503 Service Unavailable",
                "{\"error\":\"loading\"}\n",
            );
        }
    }

    #[test]
    fn export_lists_the_index_on_a_worker() {
        let server = start_with_index(AdminLimits::default(), SMALL_INDEX);
        let addr = server.local_addr();
        let listed = "b:\nz:\ny: b z\na: y z\nc: y\nhomebrew/x@2: a\n";
        let answer = get(addr, "/v1/export");
        assert_framed(&answer, "200 OK", listed);
        assert_eq!(answer.header("Content-Type"), Some(TEXT_CONTENT_TYPE));
        let head = exchange(addr, b"HEAD /v1/export HTTP/1.1\r\n\r\n");
        assert_eq!(head.body, "");
        assert_eq!(
            head.header("Content-Length"),
            Some(&*listed.len().to_string())
        );
    }

    #[test]
    fn a_client_asking_again_at_once_finds_its_worker_free() {
        let server = start_with_index(
            AdminLimits {
                max_jobs: 1,
                ..AdminLimits::default()
            },
            SMALL_INDEX,
        );
        for _ in 0..200 {
            let answer = get(server.local_addr(), "/v1/packages/y");
            assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
        }
    }

    #[test]
    fn jobs_beyond_the_limit_get_503_with_retry_after() {
        let server = start_with_index(
            AdminLimits {
                max_jobs: 0,
                ..AdminLimits::default()
            },
            SMALL_INDEX,
        );
        for target in ["/v1/export", "/v1/packages/y"] {
            let answer = get(server.local_addr(), target);
            assert_framed(
                &answer,
                "503 Service Unavailable",
                "busy: too many answers in progress\n",
            );
            assert_eq!(answer.header("Retry-After"), Some("1"));
        }
    }

    #[test]
    fn a_slow_export_reader_delays_no_probe_and_stop_cuts_it_off() {
        let server = start_with_index(
            AdminLimits {
                max_jobs: 1,
                ..AdminLimits::default()
            },
            &long_chain(),
        );
        let addr = server.local_addr();
        let mut slow = connect(addr);
        slow.write_all(b"GET /v1/export HTTP/1.1\r\n\r\n").unwrap();
        // The worker starts sending: the status line arrives.
        let mut first = [0u8; 12];
        slow.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
        // The one worker is taken.
        let busy = get(addr, "/v1/export");
        assert_eq!(busy.status_line, "HTTP/1.1 503 Service Unavailable");
        let started = Instant::now();
        server.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut rest = Vec::new();
        let cut = slow.read_to_end(&mut rest).map(|_| rest.len());
        let whole = long_chain().len();
        assert!(
            !matches!(cut, Ok(n) if n >= whole),
            "the whole export arrived"
        );
    }

    #[test]
    fn a_worker_cuts_off_a_client_that_stops_reading() {
        let server = start_with_index(
            AdminLimits {
                max_jobs: 1,
                job_write_stall: Duration::from_millis(200),
                ..AdminLimits::default()
            },
            &long_chain(),
        );
        let addr = server.local_addr();
        let mut stalled = connect(addr);
        stalled
            .write_all(b"GET /v1/export HTTP/1.1\r\n\r\n")
            .unwrap();
        // Once the worker has given up on it, the place is free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = get(addr, "/v1/export");
            if answer.status_line == "HTTP/1.1 200 OK" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stalled client kept the worker"
            );
            thread::sleep(Duration::from_millis(100));
        }
        drop(stalled);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40%2b+"), Some(b"a/b@++".to_vec()));
        assert_eq!(percent_decode(""), Some(vec![]));
        for bad in ["%", "%2", "%g0", "%+1", "a%-1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_targets_parse_into_their_forms() {
        assert_eq!(Target::parse("/a?b"), Some(Target::Path("/a")));
        assert_eq!(
            Target::parse("http://h:1/a/b?c"),
            Some(Target::Path("/a/b"))
        );
        assert_eq!(Target::parse("https://h"), Some(Target::Path("/")));
        assert_eq!(Target::parse("*"), Some(Target::Asterisk));
        assert_eq!(Target::parse("h:1"), Some(Target::Authority));
        assert_eq!(Target::parse("[::1]:1"), Some(Target::Authority));
        for invalid in [
            "",
            "h",
            "h:x",
            "http://",
            "http://u@h/",
            "[::1",
            "[]:1",
            "ftp://h/",
        ] {
            assert_eq!(Target::parse(invalid), None, "{invalid}");
        }
    }
}
