//! Helpers shared by the deployment-kit tests (`deploy_manifests`,
//! `prometheus_scrape`): a server process that is killed when dropped, a
//! minimal HTTP GET, and reading the kit's files from `deploy/`.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a started process gets to print the line that names its address.
pub const STARTUP_WAIT: Duration = Duration::from_secs(20);

/// Reads a file of the deployment kit, `deploy/<relative>`.
pub fn kit_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The value of `token=` in a `key=value` log line, up to the next space.
pub fn log_token<'a>(line: &'a str, token: &str) -> Option<&'a str> {
    let start = line.find(token)? + token.len();
    let rest = &line[start..];
    Some(rest.split_whitespace().next().unwrap_or(""))
}

/// A child process killed and reaped on drop, whatever the test did.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Follows a child's stderr on a thread, so the child never blocks on a full
/// pipe, and returns the first line containing `needle`. Fails with what the
/// child printed when it exits or stays silent for `STARTUP_WAIT` first.
pub fn wait_for_stderr_line(stderr: ChildStderr, needle: &str) -> Result<String, String> {
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Once the caller has its line nobody listens; keep draining.
            let _ = line_tx.send(line);
        }
    });
    let deadline = Instant::now() + STARTUP_WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match line_rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(_) => {
                return Err(format!(
                    "no stderr line containing {needle:?}; it printed:\n{}",
                    seen.join("\n")
                ))
            }
        }
    }
}

/// A package-indexer on ephemeral loopback ports, killed when dropped.
pub struct RunningServer {
    process: KillOnDrop,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl RunningServer {
    /// Starts the binary under test with both listeners on port 0 and learns
    /// their ports from the startup log line.
    pub fn start() -> RunningServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_package-indexer"))
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--log-format", "text"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start package-indexer");
        let stderr = child.stderr.take().expect("piped stderr");
        let process = KillOnDrop(child);
        let line = wait_for_stderr_line(stderr, " admin_addr=")
            .unwrap_or_else(|e| panic!("package-indexer did not start: {e}"));
        let parse = |token| -> SocketAddr {
            let value = log_token(&line, token).unwrap_or_else(|| panic!("no {token} in {line}"));
            value
                .parse()
                .unwrap_or_else(|e| panic!("{token}{value} in {line}: {e}"))
        };
        RunningServer {
            addr: parse(" addr="),
            admin_addr: parse(" admin_addr="),
            process,
        }
    }

    /// Sends protocol lines on one connection and returns the answers.
    pub fn send_lines(&self, lines: &[&str]) -> Vec<String> {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        lines
            .iter()
            .map(|line| {
                writer.write_all(format!("{line}\n").as_bytes()).unwrap();
                let mut answer = String::new();
                reader.read_line(&mut answer).unwrap();
                answer.trim_end().to_string()
            })
            .collect()
    }
}

/// `GET path` over HTTP/1.1; returns the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_string())
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "package-indexer-{label}-{}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
