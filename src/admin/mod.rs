//! The admin HTTP listener: `/healthz`, `/readyz`, `/metrics` and the
//! operator's `/v1` API (`docs/admin-http.md`).
//!
//! One thread polls the listener, every pending connection and a stop
//! signal: a stalled client costs a descriptor and a small buffer, never a
//! thread, so none can starve a probe. `poll` rather than `epoll`: no
//! registration to keep in step, and a turn over the full set costs about a
//! quarter of a millisecond. Slow routes are answered by worker threads.

mod event_loop;
mod request;
mod routes;
mod workers;

use crate::log;
use crate::store::Store;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the admin endpoints report, supplied by the server.
pub struct AdminState {
    /// `/readyz`: true while the server accepts connections and can take
    /// one more. Called on the admin thread, so it must not block.
    pub ready: Box<dyn Fn() -> bool + Send + Sync>,
    /// Appends the Prometheus exposition; must not block either.
    pub render_metrics: Box<dyn Fn(&mut String) + Send + Sync>,
    /// The index the `/v1` routes read, set once the server has loaded it;
    /// until then they answer 503.
    pub store: Arc<OnceLock<Store>>,
}

/// Bounds on what admin clients may cost
/// (`docs/admin-http.md#limits-and-timeouts`). [`AdminLimits::default`]
/// holds the production values; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// From the accept to the last byte of an answer made on the loop.
    pub request_deadline: Duration,
    /// Connections on the loop at once; a newcomer closes the oldest.
    pub max_connections: usize,
    /// Workers of one kind (inspections, exports) at once.
    pub max_jobs: usize,
    /// How long a job's client may take no bytes before it is cut off.
    pub job_write_stall: Duration,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            request_deadline: Duration::from_secs(5),
            max_connections: 4096,
            max_jobs: 2,
            job_write_stall: Duration::from_secs(10),
        }
    }
}

/// The running admin listener: one thread, named `admin`, serving until
/// [`stop`](Self::stop) (or drop) ends it.
pub struct AdminServer {
    local_addr: SocketAddr,
    /// The stop signal (closing it ends the loop) and the loop's thread.
    running: Option<(UnixStream, JoinHandle<()>)>,
}

impl AdminServer {
    /// Serves admin requests on `listener` within `limits`.
    pub fn start(
        listener: TcpListener,
        state: AdminState,
        limits: AdminLimits,
    ) -> io::Result<AdminServer> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let (stop_signal, stop_watch) = UnixStream::pair()?;
        let thread = thread::Builder::new()
            .name("admin".to_owned())
            .spawn(move || event_loop::serve(listener, stop_watch, state, limits))?;
        Ok(AdminServer {
            local_addr,
            running: Some((stop_signal, thread)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Ends the loop, closing the listener and every pending connection,
    /// and joins its thread (as dropping does).
    pub fn stop(self) {}
}

impl Drop for AdminServer {
    /// An owner that returns early (a failed start) still stops the thread.
    fn drop(&mut self) {
        if let Some((stop_signal, thread)) = self.running.take() {
            drop(stop_signal);
            if thread.join().is_err() {
                log::error("the admin thread panicked", &[]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
