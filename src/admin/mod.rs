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

mod event_loop;
mod reply;
mod request;
mod routes;
mod workers;

use crate::log;
use crate::store::Store;
use event_loop::EventLoop;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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

/// What the admin endpoints report, supplied by the server.
pub struct AdminState {
    /// Answer of `/readyz`, asked once per request on the admin thread (so
    /// it must not block): true while the server accepts connections and
    /// can take one more.
    pub ready: Box<dyn Fn() -> bool + Send + Sync>,
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
        let event_loop = EventLoop::new(listener, stop_watch, state, limits);
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

#[cfg(test)]
mod tests;
