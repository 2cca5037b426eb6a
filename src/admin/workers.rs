//! The threads that answer jobs, so a slow answer holds up no probe.

use super::routes::{guarded, internal_error, Job, JobKind, Reply};
use super::AdminLimits;
use crate::log;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// The threads answering jobs, each with a duplicate of its client's
/// socket through which [`Workers::stop`] cuts it off.
#[derive(Default)]
pub(super) struct Workers {
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
    pub(super) fn start(
        &mut self,
        stream: &TcpStream,
        job: Job,
        limits: &AdminLimits,
    ) -> Result<(), Vec<u8>> {
        let busy = Reply {
            extra_headers: "Retry-After: 1\r\n",
            ..Reply::text(
                "503 Service Unavailable",
                "busy: too many answers in progress\n".into(),
            )
        }
        .encode(job.head_only);
        // Threads that ended are joined here, when a new one may start.
        let (ended, running): (Vec<Worker>, _) = self
            .running
            .drain(..)
            .partition(|worker| worker.thread.is_finished());
        self.running = running;
        for worker in ended {
            join_worker(worker.thread);
        }
        let same_kind = self
            .running
            .iter()
            .filter(|w| w.kind == job.kind && !w.done.load(Ordering::Acquire))
            .count();
        if same_kind >= limits.max_jobs {
            log::debug("admin job refused", &[("reason", &"busy")]);
            return Err(busy);
        }
        match spawn_worker(stream, job, limits) {
            Ok(worker) => {
                self.running.push(worker);
                Ok(())
            }
            Err(error) => {
                log::warn("cannot start an admin job", &[("error", &error)]);
                Err(busy)
            }
        }
    }

    /// Cuts every worker's client off, which ends its writes at once, and
    /// waits for each to finish.
    pub(super) fn stop(&mut self) {
        for worker in self.running.drain(..) {
            // The client may be gone already.
            let _ = worker.stream.shutdown(Shutdown::Both);
            join_worker(worker.thread);
        }
    }
}

fn spawn_worker(stream: &TcpStream, job: Job, limits: &AdminLimits) -> io::Result<Worker> {
    let (worker_side, stop_side) = (stream.try_clone()?, stream.try_clone()?);
    worker_side.set_nonblocking(false)?;
    worker_side.set_write_timeout(Some(limits.job_write_stall))?;
    let done = Arc::new(AtomicBool::new(false));
    let (finished, kind) = (Arc::clone(&done), job.kind);
    let thread = thread::Builder::new()
        .name("admin-job".to_owned())
        .spawn(move || answer_job(worker_side, job, &finished))?;
    Ok(Worker {
        thread,
        stream: stop_side,
        kind,
        done,
    })
}

fn join_worker(thread: JoinHandle<()>) {
    if thread.join().is_err() {
        log::error("an admin job thread panicked", &[]);
    }
}

/// A worker's life: produce the reply, send it, close.
fn answer_job(mut stream: TcpStream, job: Job, done: &AtomicBool) {
    let reply = guarded("job", job.produce).unwrap_or_else(internal_error);
    // Head and body apart: an export's body is not copied again.
    let sent = stream.write_all(reply.head().as_bytes()).and_then(|()| {
        if job.head_only {
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
