//! The null server: the real server's shape (an acceptor thread, a thread
//! per connection with a small stack, blocking reads, one write per batch of
//! input) answering `OK\n` to every line, with no parsing and no index. It
//! runs in the benchmark process, its threads named apart so that their CPU
//! time can be read. Given a [`Metrics`], it also does the server's per-line
//! metrics work, so that two of them measure what metrics cost.

use package_indexer::{Command, Metrics, Response};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

/// As in the real server.
const CONNECTION_STACK_BYTES: usize = 128 * 1024;
const READ_BUFFER: usize = 4 * 1024;

pub struct NullServer {
    pub addr: SocketAddr,
    thread_prefix: &'static str,
    /// CPU nanoseconds of connection threads that have ended, which `/proc`
    /// no longer lists.
    ended_nanos: Arc<AtomicU64>,
}

impl NullServer {
    /// Listens on an ephemeral loopback port and serves until the process
    /// ends, recording every line in `metrics` if given.
    pub fn start(metrics: Option<Arc<Metrics>>) -> io::Result<NullServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let ended_nanos = Arc::new(AtomicU64::new(0));
        let nanos = Arc::clone(&ended_nanos);
        // Each server's CPU time is read from its threads, named apart.
        let thread_prefix = metrics.as_ref().map_or("null-", |_| "nullm-");
        thread::Builder::new()
            .name(format!("{thread_prefix}accept"))
            .spawn(move || accept_loop(listener, nanos, metrics, thread_prefix))?;
        Ok(NullServer {
            addr,
            thread_prefix,
            ended_nanos,
        })
    }

    /// CPU seconds used by the null server's threads so far.
    pub fn cpu_seconds(&self) -> f64 {
        let live: u64 = fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| {
                // A thread may end between listing and reading: skip it.
                let name = fs::read_to_string(task.path().join("comm")).ok()?;
                name.starts_with(self.thread_prefix).then_some(())?;
                cpu_nanos(&task.path().join("schedstat"))
            })
            .sum();
        (live + self.ended_nanos.load(Ordering::SeqCst)) as f64 / 1e9
    }
}

/// CPU nanoseconds from a thread's `schedstat` (its first field): the
/// scheduler's exact figure, where `stat` has whole clock ticks, too coarse
/// for many short-lived threads.
fn cpu_nanos(schedstat: &Path) -> Option<u64> {
    let text = fs::read_to_string(schedstat).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn accept_loop(
    listener: TcpListener,
    ended_nanos: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
    thread_prefix: &'static str,
) {
    for stream in listener.incoming() {
        let (nanos, metrics) = (Arc::clone(&ended_nanos), metrics.clone());
        let spawned = stream.and_then(|stream| {
            let thread = thread::Builder::new().name(format!("{thread_prefix}conn"));
            thread.stack_size(CONNECTION_STACK_BYTES).spawn(move || {
                // Errors end the connection, as a client disconnecting does.
                let _ = serve(stream, metrics.as_deref());
                let own = cpu_nanos(Path::new("/proc/thread-self/schedstat"));
                nanos.fetch_add(own.unwrap_or(0), Ordering::SeqCst);
            })
        });
        if spawned.is_err() {
            // Out of descriptors or threads: the client sees it; back off a
            // little and keep serving the others.
            thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn serve(mut stream: TcpStream, metrics: Option<&Metrics>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut input = vec![0u8; READ_BUFFER];
    let mut output = Vec::with_capacity(READ_BUFFER);
    loop {
        let read = stream.read(&mut input)?;
        if read == 0 {
            return Ok(());
        }
        // A partial line has no newline yet: it is answered when it ends.
        let lines = input[..read].iter().filter(|&&b| b == b'\n').count();
        if let Some(metrics) = metrics {
            let mut clock = Instant::now();
            for _ in 0..lines {
                let now = Instant::now();
                metrics.record_request(Some(Command::Query), Response::Ok, now - clock);
                clock = now;
            }
        }
        if lines > 0 {
            output.clear();
            (0..lines).for_each(|_| output.extend_from_slice(b"OK\n"));
            stream.write_all(&output)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn answers_ok_to_every_line_including_split_ones() {
        let server = NullServer::start(Some(Arc::new(Metrics::new()))).unwrap();
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(b"QUERY|a|\nINDEX|b|a\nREM").unwrap();
        stream.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        stream.write_all(b"OVE|b|\ngarbage\n").unwrap();
        let mut reader = io::BufReader::new(stream);
        for _ in 0..4 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, "OK\n");
        }
        assert!(server.cpu_seconds() >= 0.0);
        assert!(cpu_nanos(Path::new("/proc/thread-self/schedstat")).is_some());
    }
}
