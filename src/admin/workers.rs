//! The threads that answer jobs, so a slow answer holds up no probe.

use super::routes::{guarded, internal_error, Job, Reply};
use super::AdminLimits;
use crate::log;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// The threads answering jobs, each with a duplicate of its client's
/// socket through which [`Workers::stop`] cuts it off.
#[derive(Default)]
pub(super) struct Workers {
    running: Vec<(JoinHandle<()>, TcpStream)>,
    /// Answers being sent, by [`JobKind`](super::routes::JobKind); a place
    /// is given back once the answer is sent, before the thread ends.
    sending: [Arc<AtomicUsize>; 2],
}

impl Workers {
    /// Starts a worker for `job` on a duplicate of `stream`, or gives back
    /// the 503 to send instead (`max_jobs` busy, no thread or descriptor).
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
        let ended = self
            .running
            .extract_if(.., |(thread, _)| thread.is_finished());
        stop_workers(ended.collect());
        let sending = Arc::clone(&self.sending[job.kind as usize]);
        if sending.fetch_add(1, Ordering::AcqRel) >= limits.max_jobs {
            sending.fetch_sub(1, Ordering::AcqRel);
            log::debug("admin job refused", &[("reason", &"busy")]);
            return Err(busy);
        }
        let worker = || -> io::Result<_> {
            let (worker_side, stop_side) = (stream.try_clone()?, stream.try_clone()?);
            worker_side.set_nonblocking(false)?;
            worker_side.set_write_timeout(Some(limits.job_write_stall))?;
            let sending = Arc::clone(&sending);
            let thread = thread::Builder::new()
                .name("admin-job".to_owned())
                .spawn(move || answer_job(worker_side, job, &sending))?;
            Ok((thread, stop_side))
        };
        match worker() {
            Ok(worker) => {
                self.running.push(worker);
                Ok(())
            }
            Err(error) => {
                sending.fetch_sub(1, Ordering::AcqRel);
                log::warn("cannot start an admin job", &[("error", &error)]);
                Err(busy)
            }
        }
    }

    /// Cuts every worker's client off, ending its writes, and joins each.
    pub(super) fn stop(&mut self) {
        stop_workers(std::mem::take(&mut self.running));
    }
}

fn stop_workers(workers: Vec<(JoinHandle<()>, TcpStream)>) {
    for (thread, stream) in workers {
        // The client may be gone already.
        let _ = stream.shutdown(Shutdown::Both);
        if thread.join().is_err() {
            log::error("an admin job thread panicked", &[]);
        }
    }
}

/// A worker's life: produce the reply, send it, close.
fn answer_job(mut stream: TcpStream, job: Job, sending: &AtomicUsize) {
    let reply = guarded("job", job.produce).unwrap_or_else(internal_error);
    // Head and body apart: an export's body is not copied again.
    let body = if job.head_only { "" } else { &reply.body };
    let sent = stream
        .write_all(reply.head().as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
    // Before the client can see the end of its answer, so that its next
    // request finds this worker's place free.
    sending.fetch_sub(1, Ordering::AcqRel);
    // The connection ends here, whatever other descriptors of it remain;
    // the client may be gone already, with no one to tell.
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
