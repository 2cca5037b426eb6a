//! The threads that answer jobs, so a slow answer holds up no probe.

use super::reply::{encode, head, Reply};
use super::routes::{guarded, internal_error, Job, JobKind};
use super::AdminLimits;
use crate::log;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// What a job beyond [`AdminLimits::max_jobs`] is told: wait a second, then ask again.
const JOB_RETRY_AFTER: &str = "Retry-After: 1\r\n";

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
    pub(super) fn stop(&mut self) {
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
