//! Starting a `package-indexer` server process and reading its start line,
//! and a scratch directory: for the bench and the tests alike (the tests
//! include this file; it needs only std).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Value of a ` key=value` token in a text log line, or of `"key":value`
/// in a JSON one (a string's contents, or a bare number or boolean).
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let text = format!(" {key}=");
    if let Some(at) = line.find(&text) {
        let rest = &line[at + text.len()..];
        let value = rest.split(' ').next().unwrap_or_default();
        return Some(value.trim_matches('"').to_string());
    }
    let json = format!("\"{key}\":");
    let rest = &line[line.find(&json)? + json.len()..];
    Some(
        match rest.strip_prefix('"') {
            Some(string) => string.split('"').next().unwrap_or_default(),
            None => rest.split([',', '}']).next().unwrap_or_default(),
        }
        .to_string(),
    )
}

/// A server that has written its start line.
pub struct Started {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its admin listener, unless `--admin-addr off`.
    pub admin_addr: Option<SocketAddr>,
    /// The thread handing the server's stderr lines on; it ends with them.
    pub log_reader: JoinHandle<()>,
}

/// Spawns `command` (a server and its flags; stdin and stdout null, stderr
/// piped), hands each line of its stderr to `on_line` on a thread, and
/// waits up to `deadline` for its start line (`msg="listening" addr=...`,
/// text or JSON). Err: how it exited first, after its last line reached
/// `on_line`; `None` when it was killed at the deadline.
pub fn start_server(
    mut command: Command,
    mut on_line: impl FnMut(&str) + Send + 'static,
    deadline: Duration,
) -> Result<Started, Option<ExitStatus>> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| None)?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        return Err(child.wait().ok());
    };
    let (started, start_line) = mpsc::channel();
    let log_reader = thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            on_line(&line);
            if line.contains("listening") {
                let _ = started.send(line);
            }
        }
    });
    let received = start_line.recv_timeout(deadline);
    let addresses = received.as_ref().ok().and_then(|line| {
        let addr = log_field(line, "addr")?.parse().ok()?;
        Some((
            addr,
            log_field(line, "admin_addr").and_then(|a| a.parse().ok()),
        ))
    });
    if let Some((addr, admin_addr)) = addresses {
        return Ok(Started {
            child,
            addr,
            admin_addr,
            log_reader,
        });
    }
    if matches!(received, Err(mpsc::RecvTimeoutError::Disconnected)) {
        // Its stderr is closed: it has exited, or is about to.
        let _ = log_reader.join();
        return Err(child.wait().ok());
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = log_reader.join();
    Err(None)
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("package-indexer-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
