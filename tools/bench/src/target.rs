//! The servers under test: the real `package-indexer` started as a child
//! process (or one already running at `--addr`), and the in-process null
//! server; plus how to read their CPU time and memory.

use crate::null_server::NullServer;
use crate::procfs::{self, Memory};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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

/// A server's resource use at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_seconds: Option<f64>,
    pub memory: Option<Memory>,
}

impl Meter<'_> {
    pub fn sample(&self) -> Usage {
        match self {
            Meter::Process(pid) => {
                let pid = pid.to_string();
                Usage {
                    cpu_seconds: package_indexer::procfs::process_cpu_seconds(&pid),
                    memory: procfs::process_memory(&pid),
                }
            }
            Meter::Null(server) => Usage {
                cpu_seconds: Some(server.cpu_seconds()),
                memory: procfs::process_memory("self"),
            },
            Meter::Unknown => Usage::default(),
        }
    }
}

/// The real server, started by us.
pub struct RealServer {
    child: Child,
    addr: SocketAddr,
    /// Its admin listener, when `--admin-addr` turned one on.
    admin_addr: Option<SocketAddr>,
    /// From spawn to the start line on stderr.
    pub startup: Duration,
}

/// The `package-indexer` binary next to this one (both are built together).
pub(crate) fn default_server_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let binary = exe.with_file_name("package-indexer");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release)",
            binary.display()
        ))
    }
}

/// The address in the server's start line (` addr=HOST:PORT` in text logs).
pub(crate) fn parse_start_addr(line: &str) -> Option<SocketAddr> {
    start_line_address(line, "addr")
}

/// The address after ` key=` in a start line.
fn start_line_address(line: &str, key: &str) -> Option<SocketAddr> {
    let tag = format!(" {key}=");
    let start = line.find(&tag)? + tag.len();
    let token = line[start..].split_whitespace().next()?;
    token.trim_matches('"').parse().ok()
}

impl RealServer {
    /// Starts the server on an ephemeral loopback port, without an admin
    /// listener unless `extra_args` asks for one, and waits for its start
    /// line; its later log lines are copied to our stderr.
    pub fn spawn(binary: &Path, extra_args: &[String]) -> Result<RealServer, String> {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "off"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err("the server's stderr is not a pipe".into());
        };
        let mut lines = BufReader::new(stderr);
        let mut last = String::new();
        let (addr, admin_addr) = loop {
            let mut line = String::new();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the server exited before listening; last words: {}",
                        last.trim()
                    ));
                }
                Ok(_) => {}
            }
            if let Some(addr) = parse_start_addr(&line) {
                break (addr, start_line_address(&line, "admin_addr"));
            }
            last = line;
        };
        let startup = started.elapsed();
        forward_logs(lines);
        Ok(RealServer {
            child,
            addr,
            admin_addr,
            startup,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn meter(&self) -> Meter<'static> {
        Meter::Process(self.child.id())
    }

    /// Graceful stop with SIGTERM (the data directory is flushed), so a
    /// restart measures loading, not crash recovery of a half-written log.
    pub fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !signalled.success() {
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

/// Copies the server's log lines to our stderr, so warnings are seen.
fn forward_logs(lines: BufReader<ChildStderr>) {
    let spawned = thread::Builder::new()
        .name("server-log".into())
        .spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                eprintln!("  server: {line}");
            }
        });
    if let Err(e) = spawned {
        eprintln!("warning: cannot forward the server's logs: {e}");
    }
}

/// Creates an empty scratch directory for a server's `--data-dir`; removed
/// when dropped.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(crate) fn new(label: &str) -> Result<ScratchDir, String> {
        let path = std::env::temp_dir().join(format!(
            "package-indexer-bench-{}-{label}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(ScratchDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_addr_comes_from_the_addr_token_only() {
        let line = "ts=2026-11-23T02:30:00.123Z level=info msg=\"listening\" \
                    addr=127.0.0.1:40123 admin_addr=127.0.0.1:40124 version=0.1.0";
        assert_eq!(parse_start_addr(line), "127.0.0.1:40123".parse().ok());
        let admin_only = "level=info msg=x admin_addr=127.0.0.1:1 version=1";
        assert_eq!(parse_start_addr(admin_only), None);
        assert_eq!(
            parse_start_addr("level=info addr=[::1]:80\n"),
            "[::1]:80".parse().ok()
        );
        assert_eq!(parse_start_addr("level=info addr=nonsense"), None);
        assert_eq!(
            start_line_address(line, "admin_addr"),
            "127.0.0.1:40124".parse().ok()
        );
    }
}
