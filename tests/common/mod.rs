//! Helpers for tests that run the real `package-indexer` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_package-indexer");

/// A running server process, killed when dropped.
pub(crate) struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The thread copying the server's stderr into `logs`; joined once the
    /// process has exited, so that the logs then hold every line.
    log_reader: Option<thread::JoinHandle<()>>,
}

// One launcher and one scratch directory for the tests and the tools.
#[allow(unreachable_pub)]
#[path = "../../tools/workload/src/launch.rs"]
mod launch;
#[allow(unused_imports)] // each test file uses its own subset
pub(crate) use launch::{log_field, start_server, TempDir};

impl ServerProcess {
    /// Starts the binary on ephemeral loopback ports (unless `args` sets
    /// them) and waits for its start line.
    pub(crate) fn start(args: &[&str]) -> ServerProcess {
        Self::try_start(args).unwrap_or_else(|(status, logs)| {
            panic!("server did not start ({status:?}):\n{}", logs.join("\n"))
        })
    }

    /// Like `start`, but returns the exit status and logs if it never
    /// reports listening.
    pub(crate) fn try_start(
        args: &[&str],
    ) -> Result<ServerProcess, (Option<ExitStatus>, Vec<String>)> {
        Self::try_start_command(binary_command(), args)
    }

    /// Like `start`, with the open-files limit (soft and hard) set to
    /// `limit` by the shell that `exec`s the server, so it keeps its pid.
    pub(crate) fn start_with_fd_limit(limit: u32, args: &[&str]) -> ServerProcess {
        let mut command = tool_command("sh");
        command.args(["-c", "ulimit -n \"$0\" && exec \"$@\""]);
        command.args([&limit.to_string(), BINARY]);
        Self::try_start_command(command, args).unwrap_or_else(|(status, logs)| {
            panic!("server did not start ({status:?}):\n{}", logs.join("\n"))
        })
    }

    /// Runs `command` (the binary, or a wrapper that ends by running it)
    /// with `args` and waits for its start line.
    fn try_start_command(
        mut command: Command,
        args: &[&str],
    ) -> Result<ServerProcess, (Option<ExitStatus>, Vec<String>)> {
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        if !args.contains(&"--admin-addr") {
            command.args(["--admin-addr", "127.0.0.1:0"]);
        }
        command.args(args);
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let on_line = move |line: &str| sink.lock().unwrap().push(line.to_string());
        match start_server(command, on_line, Duration::from_secs(30)) {
            Ok(started) => Ok(ServerProcess {
                child: started.child,
                addr: started.addr,
                admin_addr: started.admin_addr,
                logs,
                log_reader: Some(started.log_reader),
            }),
            Err(status) => {
                let logs = logs.lock().unwrap().clone();
                Err((status, logs))
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.log_reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Stops the server with `SIGTERM` and checks that it exits 0.
    pub(crate) fn stop(mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{:?}", self.logs());
    }

    /// Waits up to `timeout` for a log line containing `text`.
    pub(crate) fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().iter().any(|line| line.contains(text)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub(crate) fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `GET`s an admin path: (status, body).
    pub(crate) fn http(&self, method: &str, path: &str) -> (u16, String) {
        http(self.admin_addr.expect("admin listener"), method, path)
    }
}

impl ServerProcess {
    /// Waits until the server has executed `n` requests in all (its
    /// `/metrics`; the answers may still be on their way).
    pub(crate) fn wait_for_requests(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self.http("GET", "/metrics");
            let total: u64 = body
                .lines()
                .filter(|l| l.starts_with("package_indexer_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if total >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {total} of {n} requests seen"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer, whole.
pub(crate) struct HttpAnswer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpAnswer {
    /// The value of header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One request, one whole answer.
pub(crate) fn http_answer(addr: SocketAddr, method: &str, path: &str) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Servers that keep connections alive (Prometheus) close it only when
    // told; reading to the end needs that.
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_string(), value.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One request: (status, body).
pub(crate) fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let answer = http_answer(addr, method, path);
    (answer.status, answer.body)
}

/// Connections that each hold an unfinished request head, renewed (closed
/// and reconnected, oldest first) by a thread so that each lives about a
/// second: a client trying to keep every place an HTTP listener has, well
/// within any head deadline. The pace stays below what fills a listen
/// backlog, which would stall every client in the kernel alike.
pub(crate) struct StalledHeads {
    running: Arc<AtomicBool>,
    renewer: Option<thread::JoinHandle<usize>>,
}

impl StalledHeads {
    /// Opens `count` connections to `addr`, sends each part of a request
    /// head, and starts renewing them.
    pub(crate) fn hold(addr: SocketAddr, count: usize) -> StalledHeads {
        let open = move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"GET /healthz HTT").unwrap();
            stream
        };
        let mut held: VecDeque<TcpStream> = (0..count).map(|_| open()).collect();
        let running = Arc::new(AtomicBool::new(true));
        let renewing = Arc::clone(&running);
        let pause = Duration::from_secs(1) / u32::try_from(count).unwrap();
        let renewer = thread::spawn(move || {
            let mut renewed = 0;
            while renewing.load(Ordering::Relaxed) {
                thread::sleep(pause);
                drop(held.pop_front());
                held.push_back(open());
                renewed += 1;
            }
            renewed
        });
        StalledHeads {
            running,
            renewer: Some(renewer),
        }
    }

    /// Stops renewing, closes every connection and returns how many were
    /// renewed; panics if a renewal failed.
    pub(crate) fn stop(mut self) -> usize {
        self.running.store(false, Ordering::Relaxed);
        self.renewer.take().unwrap().join().unwrap()
    }
}

impl Drop for StalledHeads {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// A line-protocol client.
pub(crate) struct Client {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    pub(crate) fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub(crate) fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    pub(crate) fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\n").as_bytes());
        self.line().trim_end().to_string()
    }

    /// Like `ask`, but `None` once the connection is gone (a killed server).
    pub(crate) fn try_ask(&mut self, request: &str) -> Option<String> {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .ok()?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_string()),
            _ => None,
        }
    }

    /// True once the peer has closed (end of stream or reset).
    pub(crate) fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

/// Every file of a data directory but its lock, with its contents: what a
/// refused start must leave byte for byte as it was.
pub(crate) fn data_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name() != "LOCK")
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// Indexes `count` packages (`p0`, `p1`, ..., none with dependencies)
/// through a server on the data directory `dir`, then stops it gracefully;
/// returns the path of its log.
pub(crate) fn log_of_packages(dir: &Path, count: usize) -> std::path::PathBuf {
    let server = ServerProcess::start(&["--data-dir", dir.to_str().unwrap()]);
    let mut client = server.connect();
    for i in 0..count {
        assert_eq!(client.ask(&format!("INDEX|p{i}|")), "OK");
    }
    server.stop();
    dir.join("log-1.pi")
}

/// Where each record of a data file starts (the header is 12 bytes; a
/// record is an 8-byte frame header and its payload).
pub(crate) fn record_starts(file: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 12;
    while at < file.len() {
        starts.push(at);
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    starts
}

/// The server's settings for an in-process server: the defaults, with
/// `flags` parsed as the command line parses them (no environment).
pub(crate) fn server_config(flags: &[&str]) -> package_indexer::Config {
    let flags = flags.iter().map(|flag| flag.to_string());
    match package_indexer::parse_command_line(flags, |_| Ok(None)) {
        Ok(package_indexer::Invocation::Run(config)) => config,
        other => panic!("the test's flags do not parse: {other:?}"),
    }
}

/// Runs the binary with `args` (a subcommand, say) to its end, with no
/// `PACKAGE_INDEXER_*` variable of this process leaking into it.
pub(crate) fn run_binary(args: &[&str]) -> Output {
    run_binary_with(args, b"", &[])
}

/// Like [`run_binary`], with `stdin` fed to it and the variables `env` set.
pub(crate) fn run_binary_with(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut command = binary_command();
    command.args(args).envs(env.iter().copied());
    run_to_end(command, stdin)
}

/// A command for the server binary, without this process's settings (see
/// [`tool_command`]).
pub(crate) fn binary_command() -> Command {
    tool_command(BINARY)
}

/// A command for `program` without the `PACKAGE_INDEXER_*` variables of
/// this process: they would steer the tools, and the suite's own switch
/// ([`REQUIRE_TOOLS`]) would be warned about as an unknown setting.
fn tool_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PACKAGE_INDEXER_") {
            command.env_remove(name);
        }
    }
    command
}

/// Indexes every package of a list in the Homebrew format (`name: dep
/// dep`, see `package_indexer::package_list`) with `package-indexer load`,
/// which orders it; returns how many. Every dependency must be listed (or
/// already indexed).
pub(crate) fn index_list(addr: SocketAddr, list: &str) -> usize {
    let output = run_binary_with(
        &["load", "--addr", &addr.to_string(), "-"],
        list.as_bytes(),
        &[],
    );
    assert!(
        output.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    list.lines()
        .enumerate()
        .filter(|(i, line)| {
            package_indexer::package_list::parse_line(i + 1, line)
                .unwrap()
                .is_some()
        })
        .count()
}

/// Set to `1` (as `.ci/run` does) to make a test whose external tool is
/// missing fail instead of skipping.
pub(crate) const REQUIRE_TOOLS: &str = "PACKAGE_INDEXER_REQUIRE_TOOLS";

/// The external program `name` (promtool, prometheus, jq...) on PATH, for a
/// check that needs it. When it is missing, the test fails under
/// [`REQUIRE_TOOLS`]; otherwise this prints a SKIP line saying what
/// installs it and returns `None`, and the caller returns.
pub(crate) fn external_tool(name: &str, installed_by: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let why = format!("`{name}` is not on PATH ({installed_by} installs it)");
        assert!(
            std::env::var(REQUIRE_TOOLS).as_deref() != Ok("1"),
            "{REQUIRE_TOOLS}=1 and {why}"
        );
        println!("SKIP: {why}");
    }
    found
}

/// Passes a metrics exposition through `promtool check metrics`.
pub(crate) fn promtool_check(body: &str) {
    let Some(promtool) = external_tool("promtool", "Debian's prometheus package") else {
        return;
    };
    let mut command = Command::new(promtool);
    command.args(["check", "metrics"]);
    let output = run_to_end(command, body.as_bytes());
    assert!(
        output.status.success(),
        "promtool: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Homebrew list in the repository (3,368 lines; two dependencies,
/// `gpg` and `docbook2X`, have no line of their own).
pub(crate) const BREW_LIST: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/brew-dependencies.txt");

/// How long a run of the binary as a tool may take before the test fails.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `command` with `stdin` fed to it and its output collected; fails
/// the test if it is still running after [`TOOL_DEADLINE`].
pub(crate) fn run_to_end(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A child that exits early closes its stdin: that is not our failure.
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let pid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if finished.recv_timeout(TOOL_DEADLINE).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            return true;
        }
        false
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "{command:?} ran over {TOOL_DEADLINE:?}"
    );
    feeder.join().unwrap();
    output
}

/// Runs the binary with `args` inside a pseudo-terminal (util-linux's
/// `script`), typing `keys` into it: stdin, stdout and stderr are all the
/// terminal, whose output (echoed input included) comes back as stdout.
/// `None` when `script` is missing (see [`external_tool`]).
pub(crate) fn in_terminal(args: &[&str], keys: &[u8]) -> Option<Output> {
    let script = external_tool("script", "Debian's util-linux package")?;
    let mut line = shell_quote(BINARY);
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut command = tool_command(script);
    // -q: no banner; -e: its status is the command's; /dev/null: no log file.
    command.args(["-qec", &line, "/dev/null"]);
    Some(run_to_end(command, keys))
}

/// `text` quoted for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A fake protocol server that accepts one connection, reads until it has
/// `lines` complete lines, answers the first of them `OK`, and closes:
/// a server that goes away mid-conversation.
pub(crate) fn closing_server(lines: usize) -> (SocketAddr, thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = 0;
        let mut buffer = [0u8; 4096];
        while seen < lines {
            let read = stream.read(&mut buffer).unwrap();
            if read == 0 {
                break;
            }
            seen += buffer[..read].iter().filter(|&&b| b == b'\n').count();
        }
        stream.write_all(b"OK\n").unwrap();
    });
    (addr, server)
}
