//! The servers under test: the real `package-indexer` started as a child
//! process (or one already running at `--addr`), and the in-process null
//! server; plus how to read their CPU time and memory.

use crate::null_server::NullServer;
use crate::options::Options;
use package_indexer::procfs::{process_cpu_seconds, process_status, ProcessStatus};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// How long a start may take before the child is killed.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a graceful stop may take before the child is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a server's resource use can be read.
pub enum Meter<'a> {
    /// A child process: `/proc/PID`.
    Process(u32),
    /// Our null server's threads (its memory is the benchmark process's).
    Null(&'a NullServer),
    /// A server at `--addr` we know nothing about.
    Unknown,
}

impl Meter<'_> {
    /// The server's CPU seconds so far and its memory now.
    pub fn sample(&self) -> (Option<f64>, ProcessStatus) {
        match self {
            Meter::Process(pid) => {
                let pid = pid.to_string();
                (process_cpu_seconds(&pid), process_status(&pid))
            }
            Meter::Null(server) => (Some(server.cpu_seconds()), process_status("self")),
            Meter::Unknown => (None, ProcessStatus::default()),
        }
    }
}

/// The real server, started by us.
pub struct RealServer {
    child: Child,
    pub addr: SocketAddr,
    /// From spawn to the start line on stderr.
    pub startup: Duration,
}

/// The `package-indexer` binary: `--server`, or the one next to this one
/// (both are built together).
pub(crate) fn server_binary(options: &Options) -> Result<PathBuf, String> {
    if let Some(binary) = &options.server {
        return Ok(binary.clone());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let binary = exe.with_file_name("package-indexer");
    match binary.is_file() {
        true => Ok(binary),
        false => Err(format!(
            "{} not found: build it first (make build)",
            binary.display()
        )),
    }
}

impl RealServer {
    /// Starts the server on an ephemeral loopback port, without an admin
    /// listener, and waits for its start line; its log lines are copied to
    /// our stderr.
    pub fn spawn(binary: &Path, extra_args: &[String]) -> Result<RealServer, String> {
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "off"])
            .args(extra_args);
        let started = Instant::now();
        let on_line = |line: &str| eprintln!("  server: {line}");
        let server = workload::start_server(command, on_line, START_TIMEOUT).map_err(|status| {
            let binary = binary.display();
            match status {
                Some(status) => format!("{binary} exited with {status} before listening"),
                None => format!("{binary} did not listen within {START_TIMEOUT:?}"),
            }
        })?;
        Ok(RealServer {
            child: server.child,
            addr: server.addr,
            startup: started.elapsed(),
        })
    }

    pub fn meter(&self) -> Meter<'static> {
        Meter::Process(self.child.id())
    }

    /// Graceful stop with SIGTERM (the data directory is flushed), so a
    /// restart measures loading, not crash recovery of a half-written log.
    pub fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        if !signalled.is_ok_and(|status| status.success()) {
            return Err(format!("kill -TERM {pid} failed"));
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the server stopped with {status}")),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("cannot wait for the server: {e}")),
            }
        }
        Err(format!("the server did not stop within {STOP_TIMEOUT:?}"))
    }
}

impl Drop for RealServer {
    /// Never leave a server behind, whatever went wrong.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
