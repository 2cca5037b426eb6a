//! The admin thread's loop: one `poll(2)` over the stop signal, the
//! listener and every pending connection; the parent module says why.

use super::routes::{respond, RouteAnswer};
use super::workers::Workers;
use super::{AdminLimits, AdminState};
use crate::log;
use crate::server;
use crate::sys::{self, PollFd, POLLIN, POLLOUT};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

/// Connections accepted per turn of the loop at most, so a burst of
/// connects does not delay reading the ones already accepted.
const MAX_ACCEPTS_PER_TURN: usize = 64;
/// The longest request head, its closing blank line included.
pub(super) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Bytes taken from a socket per `read`.
const READ_CHUNK_BYTES: usize = 4096;

struct EventLoop {
    listener: TcpListener,
    /// Readable once [`AdminServer`](super::AdminServer) closes its other end.
    stop_watch: UnixStream,
    state: AdminState,
    limits: AdminLimits,
    /// In accept order, which is also deadline order: the front is the
    /// oldest, first to expire and first to be evicted.
    connections: VecDeque<AdminConnection>,
    workers: Workers,
    /// While set, the listener is left out of the poll set.
    accept_paused_until: Option<Instant>,
    /// Accepts failed in a row: the first and the end of the run are logged.
    failed_accepts: u64,
}

/// Serves `listener` until `stop_watch` turns readable.
pub(super) fn serve(
    listener: TcpListener,
    stop_watch: UnixStream,
    state: AdminState,
    limits: AdminLimits,
) {
    EventLoop {
        listener,
        stop_watch,
        state,
        limits,
        connections: VecDeque::new(),
        workers: Workers::default(),
        accept_paused_until: None,
        failed_accepts: 0,
    }
    .run();
}

impl EventLoop {
    fn run(mut self) {
        let mut poll_set = Vec::new();
        loop {
            let now = Instant::now();
            self.expire(now);
            self.accept_paused_until = self.accept_paused_until.filter(|&until| until > now);
            poll_set.clear();
            poll_set.push(PollFd::new(self.stop_watch.as_raw_fd(), POLLIN));
            poll_set.push(match self.accept_paused_until {
                None => PollFd::new(self.listener.as_raw_fd(), POLLIN),
                Some(_) => PollFd::ignored(),
            });
            poll_set.extend(self.connections.iter().map(|connection| {
                let events = match connection.stage {
                    Stage::Receiving { .. } => POLLIN,
                    Stage::Sending { .. } => POLLOUT,
                };
                PollFd::new(connection.stream.as_raw_fd(), events)
            }));
            match sys::poll(&mut poll_set, self.next_timer(now)) {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Only a lack of kernel memory is expected here; wait
                    // for it to pass rather than spin.
                    log::warn("admin poll failed", &[("error", &error)]);
                    thread::sleep(server::ACCEPT_RETRY_PAUSE);
                    continue;
                }
            }
            // The stop signal's entry is first, the listener's second.
            if poll_set[0].revents != 0 {
                self.workers.stop();
                return;
            }
            self.serve_ready(&poll_set[2..]);
            if poll_set[1].revents != 0 {
                self.accept_waiting();
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired = self
            .connections
            .partition_point(|connection| connection.deadline <= now);
        for _ in self.connections.drain(..expired) {
            dropped("deadline passed");
        }
    }

    /// How long `poll` may wait: until the next deadline or pause end.
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
            let reported = ready.next().is_some_and(|entry| entry.revents != 0);
            !reported || connection.advance(state, limits, workers)
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
                Err(error) if server::is_passing_accept_error(&error) => {}
                Err(error) => {
                    if self.failed_accepts == 0 {
                        log::warn(
                            "admin accept failed; pausing accepts",
                            &[
                                ("error", &error),
                                ("pause_ms", &server::ACCEPT_RETRY_PAUSE.as_millis()),
                            ],
                        );
                    }
                    self.failed_accepts += 1;
                    self.accept_paused_until = Some(Instant::now() + server::ACCEPT_RETRY_PAUSE);
                    return;
                }
            }
        }
    }

    /// Adds a connection, closing the oldest when all places are taken.
    fn admit(&mut self, stream: TcpStream) {
        if let Err(error) = stream.set_nonblocking(true) {
            dropped(format!("{error}"));
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
        self.connections.push_back(AdminConnection {
            stream,
            deadline: Instant::now() + self.limits.request_deadline,
            stage: Stage::Receiving { head: Vec::new() },
        });
    }
}

/// One admin client, from its accept until its answer is sent.
struct AdminConnection {
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

impl AdminConnection {
    /// Reads more of the head and, once it is complete, answers or hands a
    /// job to a worker; or sends more of the answer. Returns whether the loop
    /// keeps the connection (not once it is done, dropped or handed off).
    fn advance(&mut self, state: &AdminState, limits: &AdminLimits, workers: &mut Workers) -> bool {
        if let Stage::Receiving { head } = &mut self.stage {
            let answer = match receive_head(&mut self.stream, head, MAX_REQUEST_BYTES) {
                Ok(None) => return true,
                Err(reason) => return dropped(reason),
                Ok(Some(head_end)) => match respond(&head[..head_end], state) {
                    RouteAnswer::Now(answer) => answer,
                    RouteAnswer::Later(job) => match workers.start(&self.stream, job, limits) {
                        // The worker has a socket of its own.
                        Ok(()) => return false,
                        Err(refusal) => refusal,
                    },
                },
            };
            self.stage = Stage::Sending { answer, sent: 0 };
        }
        match &mut self.stage {
            Stage::Sending { answer, sent } => send_answer(&mut self.stream, answer, sent),
            Stage::Receiving { .. } => true,
        }
    }
}

/// Reads what the socket holds into `head`; where the head ends (just past
/// its blank line) once it has. Fails, naming why, on a close, a failed
/// read or a head past `max_bytes`.
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
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|at| at + 2);
    crlf.into_iter().chain(lf).min()
}

/// Writes what the socket takes now, ending the stream once all is sent;
/// whether there is more to send.
fn send_answer(stream: &mut TcpStream, answer: &[u8], sent: &mut usize) -> bool {
    while *sent < answer.len() {
        match stream.write(&answer[*sent..]) {
            Ok(0) => return dropped("the client stopped receiving"),
            Ok(written) => *sent += written,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return dropped(format!("write failed: {error}")),
        }
    }
    // The client may be gone already; there is no one to tell.
    let _ = stream.shutdown(Shutdown::Write);
    false
}

/// Logs why a connection is closed without its whole answer; false.
fn dropped(reason: impl Into<Cow<'static, str>>) -> bool {
    log::debug("admin connection dropped", &[("reason", &reason.into())]);
    false
}
