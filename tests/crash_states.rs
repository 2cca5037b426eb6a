//! Every crash state of a durable workload, built from a system-call trace
//! and recovered: the check described in
//! `docs/durability.md#crash-model-and-how-it-is-checked`.
//!
//! The test runs itself a second time as a child process, under `strace`:
//! the child serves the protocol from the library's [`Server`] over a
//! [`Store`] with `--fsync always` and a compaction minimum of a few hundred
//! bytes (the only setting the binary does not offer), so that a short
//! workload compacts dozens of times. The parent drives the workload over
//! TCP, then reads the trace: every write, truncation, sync, creation,
//! rename and unlink in the data directory, and every answer the server
//! handed to a socket. From that record it builds every state a crash could
//! leave and starts a store on each.

mod common;

use common::{external_tool, TempDir};
use package_indexer::{DurableOptions, Fsync, Metrics, RecoveryError, Server, Store};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Set in the child: the data directory it serves.
const SERVE_DIR: &str = "CRASH_STATES_SERVE_DIR";
/// The child's line on standard output with the address it serves on.
const READY: &str = "crash-states-server-ready";
const TEST_NAME: &str = "every_crash_state_recovers_a_prefix_holding_every_acknowledged_change";

/// Connections changing the index at once, each with packages of its own.
const CONNECTIONS: usize = 3;
/// Rounds of pipelined changes per connection.
const ROUNDS: usize = 450;
/// A log this small is compacted as soon as it outgrows its snapshot.
const COMPACT_AT_LEAST: u64 = 512;
/// The most crash states built at one point of the trace; more are
/// sampled evenly (see the crash model in docs/durability.md).
const MOST_STATES_PER_POINT: usize = 512;

#[test]
fn every_crash_state_recovers_a_prefix_holding_every_acknowledged_change() {
    if let Some(dir) = std::env::var_os(SERVE_DIR) {
        serve(Path::new(&dir));
        return;
    }
    let Some(strace) = external_tool("strace", "Debian's strace package") else {
        return;
    };
    let started = Instant::now();
    let root = TempDir::new("crash-states").unwrap();
    let root_path = fs::canonicalize(root.path()).unwrap();
    let data = root_path.join("data");
    let trace_path = root_path.join("trace");
    let sent = run_traced_workload(&strace, &data, &trace_path);
    let traced = started.elapsed();
    let trace = fs::read_to_string(&trace_path).unwrap();
    let recorded = Recorded::parse(&trace, &root_path, &data);
    let history = History::new(&recorded.log_changes(), &sent);
    let scratch = Scratch::new(root.path());
    let mut checker = Checker::new(&history, &scratch.0);
    replay(&recorded, &history, &mut checker);
    let Checker {
        points,
        sampled_points,
        pairs,
        outcome,
        ..
    } = checker;
    println!(
        "crash states checked: {} distinct ({pairs} at {points} crash points, {sampled_points} \
         of them sampled, of {} traced operations; {} changes, {} compactions; {} refused); \
         trace {:.1?}, total {:.1?}",
        outcome.recovered + outcome.refused.len(),
        recorded.steps.len(),
        history.changes.len(),
        recorded.compactions(),
        outcome.refused.len(),
        traced,
        started.elapsed()
    );
    assert!(
        outcome.refused.is_empty(),
        "refused crash states: {:#?}",
        outcome.refused
    );
    assert!(outcome.recovered >= 10_000, "too few crash states");
    assert!(recorded.compactions() >= 10, "too few compactions");
}

/// Where the crash states are written, removed when dropped: in a memory
/// file system when there is one, since every start syncs what it changes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(beside: &Path) -> Scratch {
        let shm = Path::new("/dev/shm");
        let name = beside.file_name().unwrap();
        let path = if fs::create_dir_all(shm.join(name)).is_ok() {
            shm.join(name)
        } else {
            beside.join("states")
        };
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The child: a server over a durable store, until its standard input ends.

fn serve(dir: &Path) {
    let options = DurableOptions {
        fsync: Fsync::Always,
        compact_at_least: COMPACT_AT_LEAST,
    };
    let (store, _) = Store::open(dir, options, Arc::default()).unwrap();
    let flags = [
        "--max-connections",
        "16",
        "--idle-timeout",
        "60s",
        "--tcp-keepalive",
        "off",
    ];
    let config = common::server_config(&flags);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = Server::start(listener, &config, None, store.clone(), metrics).unwrap();
    println!("{READY} {}", server.local_addr());
    std::io::stdout().flush().unwrap();
    std::io::stdin().read_to_end(&mut Vec::new()).unwrap();
    server.shutdown(Duration::from_secs(10), || false).unwrap();
    store.close().unwrap();
}

// ---------------------------------------------------------------------------
// The parent: the workload.

/// What one connection sent, in order: every line a change answered `OK`.
struct Sent {
    /// The connection's local port: the server's peer port in the trace.
    port: u16,
    lines: Vec<String>,
}

/// Starts the child under strace, runs the workload against it and stops
/// it; the trace is then complete in `trace_path`.
fn run_traced_workload(strace: &Path, data: &Path, trace_path: &Path) -> Vec<Sent> {
    let mut command = Command::new(strace);
    command
        .args(["-f", "-qq", "-y", "-yy", "-xx", "-s", "16777216", "-e"])
        .arg(
            // `?`: a call this architecture lacks is no error.
            "trace=openat,?open,?creat,write,pwrite64,writev,pwritev,?pwritev2,lseek,fsync,\
             fdatasync,sync_file_range,?rename,renameat,?renameat2,?unlink,unlinkat,\
             ftruncate,truncate,fallocate,?link,linkat,?mkdir,mkdirat,close,sendto,sendmsg",
        )
        .arg("-o")
        .arg(trace_path)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(SERVE_DIR, data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("spawn strace");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the traced server ended before it was ready"
        );
        // The harness may have begun the line (`test NAME ... `).
        if let Some((_, addr)) = line.trim().split_once(READY) {
            break addr.trim().parse().unwrap();
        }
    };
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|connection| thread::spawn(move || drive(addr, connection)))
        .collect();
    let sent: Vec<Sent> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the traced server failed: {status}\n{rest}"
    );
    sent
}

/// A small deterministic generator (xorshift), so every run sends the same
/// lines.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

/// One connection's part of the workload: rounds of up to 6 pipelined
/// changes to packages of its own, each of which changes the index (a new
/// package, a new list of dependencies, or the removal of a package nothing
/// depends on), so each is logged and answered `OK`.
fn drive(addr: SocketAddr, connection: usize) -> Sent {
    let stream = TcpStream::connect(addr).unwrap();
    let port = stream.local_addr().unwrap().port();
    // An answer that never comes fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ ((connection as u64 + 1) * 0x1000_0001));
    // Package number -> its dependencies' numbers (always smaller).
    let mut packages: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut next = 0;
    let name = |n: usize| format!("c{connection}p{n}");
    let mut lines = Vec::new();
    for _ in 0..ROUNDS {
        let mut batch = String::new();
        let count = 1 + random.below(6);
        for _ in 0..count {
            let removable: Vec<usize> = packages
                .keys()
                .copied()
                .filter(|p| packages.values().all(|deps| !deps.contains(p)))
                .collect();
            let choice = random.below(10);
            let line = if packages.len() >= 12 || (choice < 3 && !removable.is_empty()) {
                let p = removable[random.below(removable.len())];
                packages.remove(&p);
                format!("REMOVE|{}|", name(p))
            } else {
                let existing: Vec<usize> = packages.keys().copied().collect();
                let target = if choice < 6 || existing.is_empty() {
                    next += 1;
                    next
                } else {
                    existing[random.below(existing.len())]
                };
                let candidates: Vec<usize> =
                    existing.iter().copied().filter(|&d| d < target).collect();
                let mut deps = BTreeSet::new();
                for _ in 0..random.below(4) {
                    if !candidates.is_empty() {
                        deps.insert(candidates[random.below(candidates.len())]);
                    }
                }
                if packages.get(&target) == Some(&deps) {
                    // Unchanged: index a new package instead.
                    next += 1;
                    deps.clear();
                    packages.insert(next, deps);
                    format!("INDEX|{}|", name(next))
                } else {
                    let list: Vec<String> = deps.iter().map(|&d| name(d)).collect();
                    packages.insert(target, deps);
                    format!("INDEX|{}|{}", name(target), list.join(","))
                }
            };
            batch.push_str(&line);
            batch.push('\n');
            lines.push(line);
        }
        writer.write_all(batch.as_bytes()).unwrap();
        for line in &lines[lines.len() - count..] {
            let mut answer = String::new();
            if let Err(error) = reader.read_line(&mut answer) {
                panic!("connection {connection}: no answer to {line}: {error}");
            }
            assert_eq!(answer, "OK\n", "{line}");
        }
    }
    Sent { port, lines }
}

// ---------------------------------------------------------------------------
// The record: the trace, parsed into the operations that matter.

/// A directory whose entries the crash model follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dir {
    /// The data directory's parent: its entry for the data directory.
    Parent,
    Data,
}

/// A change to a directory's entries.
#[derive(Clone, Debug)]
enum Entry {
    /// The data directory was made.
    MadeDataDir,
    /// `name` now names the new file `file`.
    Created {
        name: String,
        file: usize,
    },
    Renamed {
        from: String,
        to: String,
        file: usize,
    },
    Unlinked {
        name: String,
    },
}

impl Entry {
    fn dir(&self) -> Dir {
        match self {
            Entry::MadeDataDir => Dir::Parent,
            _ => Dir::Data,
        }
    }
}

/// A change to a file's bytes.
#[derive(Clone, Debug)]
enum Op {
    Write { offset: usize, bytes: Vec<u8> },
    Truncate { len: usize },
}

/// One operation of the record, in the order they took effect.
#[derive(Clone, Debug)]
enum Step {
    Op {
        file: usize,
        op: Op,
    },
    /// A sync of `file` returned: it covers the file's first `covered`
    /// operations (those done before the sync was called).
    Sync {
        file: usize,
        covered: usize,
    },
    /// A sync of a directory returned, covering its first `covered` entry
    /// changes.
    SyncDir {
        dir: Dir,
        covered: usize,
    },
    Entry(Entry),
    /// The server handed `answers` to the connection whose client port is
    /// `port`: from here on they may have reached the client.
    Answered {
        port: u16,
        answers: usize,
    },
}

/// What an open descriptor refers to.
#[derive(Clone, Copy, Debug)]
enum Handle {
    File {
        file: usize,
        offset: usize,
        append: bool,
    },
    Dir(Dir),
}

#[derive(Default)]
struct Recorded {
    steps: Vec<Step>,
    /// Every name each file ever had.
    names: Vec<Vec<String>>,
}

/// A parsed system call: its name, its arguments as written, and what it
/// returned (`None` when it failed).
struct Call<'a> {
    name: &'a str,
    args: Vec<&'a str>,
    result: Option<&'a str>,
}

impl Recorded {
    fn parse(trace: &str, parent: &Path, data: &Path) -> Recorded {
        let mut parser = Parser {
            parent: parent.to_str().unwrap().to_owned(),
            data: data.to_str().unwrap().to_owned(),
            recorded: Recorded::default(),
            live: HashMap::new(),
            handles: HashMap::new(),
            ops: Vec::new(),
            lens: Vec::new(),
            entries: HashMap::new(),
            unfinished: HashMap::new(),
        };
        for line in trace.lines() {
            parser.line(line);
        }
        parser.recorded
    }

    /// The file's bytes after every operation on it.
    fn final_bytes(&self, file: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for step in &self.steps {
            if let Step::Op { file: f, op } = step {
                if *f == file {
                    apply(&mut bytes, op);
                }
            }
        }
        bytes
    }

    /// The changes in the logs, log after log, decoded from their bytes.
    fn log_changes(&self) -> Vec<String> {
        let mut logs: BTreeMap<u64, usize> = BTreeMap::new();
        for (file, names) in self.names.iter().enumerate() {
            for name in names {
                if let Some(generation) = name
                    .strip_prefix("log-")
                    .and_then(|rest| rest.strip_suffix(".pi"))
                    .and_then(|digits| digits.parse().ok())
                {
                    assert!(logs.insert(generation, file).is_none(), "{name} twice");
                }
            }
        }
        let mut changes = Vec::new();
        for (expected_generation, (generation, file)) in (1..).zip(logs) {
            assert_eq!(generation, expected_generation, "a log is missing");
            decode_log(&self.final_bytes(file), &mut changes);
        }
        changes
    }

    fn compactions(&self) -> usize {
        self.names
            .iter()
            .flatten()
            .filter(|name| name.starts_with("snapshot-") && name.ends_with(".pi"))
            .count()
            .saturating_sub(1)
    }
}

struct Parser {
    parent: String,
    data: String,
    recorded: Recorded,
    /// The data directory's entries now: name -> file.
    live: HashMap<String, usize>,
    handles: HashMap<u64, Handle>,
    /// Operations so far on each file, and its length now.
    ops: Vec<usize>,
    lens: Vec<usize>,
    /// Entry changes so far in each directory.
    entries: HashMap<Dir, usize>,
    /// Per thread: the start of a call whose end comes on a later line,
    /// and what its start recorded.
    unfinished: HashMap<String, (String, Option<usize>)>,
}

impl Parser {
    fn line(&mut self, line: &str) {
        // The thread's id, padded to a width.
        let Some((pid, rest)) = line.split_once(' ') else {
            return;
        };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            return;
        }
        if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            let at_start = self.start(start);
            self.unfinished
                .insert(pid.to_owned(), (start.to_owned(), at_start));
            return;
        }
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let (_, end) = resumed.split_once(" resumed>").unwrap();
            let (start, at_start) = self
                .unfinished
                .remove(pid)
                .unwrap_or_else(|| panic!("resumed without a start: {line}"));
            let whole = format!("{start}{end}");
            self.finish(&whole, at_start);
            return;
        }
        let at_start = self.start(rest);
        self.finish(rest, at_start);
    }

    /// What a call records when it starts: an answer handed to a socket
    /// (from then on it may have been sent), or how much of a file or
    /// directory a sync covers.
    fn start(&mut self, text: &str) -> Option<usize> {
        let (name, args, _) = split_call(text);
        match name {
            // Forgotten when the close starts, not when it returns: another
            // thread may get the same number from an open in between, and
            // that handle must survive this close's return.
            "close" => {
                if let Some((fd, _)) = args.first()?.split_once('<') {
                    self.handles.remove(&fd.parse().ok()?);
                }
                None
            }
            "write" | "sendto" => {
                let fd = args.first()?;
                let port = client_port(fd)?;
                let answers = unhex(args[1].trim_matches('"'));
                assert!(!args[1].ends_with("..."), "raise strace -s");
                let text = String::from_utf8(answers).unwrap();
                assert!(
                    text.lines().all(|answer| answer == "OK"),
                    "answers: {text:?}"
                );
                let answers = text.matches('\n').count();
                self.recorded.steps.push(Step::Answered { port, answers });
                None
            }
            "sendmsg" | "writev" => {
                assert!(
                    args.first().and_then(|fd| client_port(fd)).is_none()
                        && self.handle(args.first()?).is_none(),
                    "unexpected: {text}"
                );
                None
            }
            "fsync" | "fdatasync" => match self.handle(args.first()?)? {
                Handle::File { file, .. } => Some(self.ops[file]),
                Handle::Dir(dir) => Some(self.entries.get(&dir).copied().unwrap_or(0)),
            },
            _ => None,
        }
    }

    /// The descriptor's handle, when it is one the model follows.
    fn handle(&self, arg: &str) -> Option<Handle> {
        let (fd, _) = arg.split_once('<')?;
        self.handles.get(&fd.parse().ok()?).copied()
    }

    fn finish(&mut self, text: &str, at_start: Option<usize>) {
        let call = parse_call(text);
        let Some(result) = call.result else {
            return;
        };
        match call.name {
            "openat" => {
                let (fd, path) = result.split_once('<').unwrap();
                let fd: u64 = fd.parse().unwrap();
                let path = unhex(path.strip_suffix('>').unwrap());
                let path = String::from_utf8(path).unwrap();
                self.handles.remove(&fd);
                let flags = call.args[2];
                let handle = if path == self.data {
                    Some(Handle::Dir(Dir::Data))
                } else if path == self.parent {
                    Some(Handle::Dir(Dir::Parent))
                } else if let Some(name) = self.in_data(&path) {
                    let file = match self.live.get(&name) {
                        Some(&file) => {
                            if flags.contains("O_TRUNC") {
                                self.op(file, Op::Truncate { len: 0 });
                            }
                            file
                        }
                        None => {
                            assert!(flags.contains("O_CREAT"), "{text}");
                            let file = self.ops.len();
                            self.ops.push(0);
                            self.lens.push(0);
                            self.recorded.names.push(Vec::new());
                            self.entry(Entry::Created { name, file });
                            file
                        }
                    };
                    Some(Handle::File {
                        file,
                        offset: 0,
                        append: flags.contains("O_APPEND"),
                    })
                } else {
                    None
                };
                if let Some(handle) = handle {
                    self.handles.insert(fd, handle);
                }
            }
            "write" | "pwrite64" => {
                let Some(Handle::File {
                    file,
                    offset,
                    append,
                }) = self.handle(call.args[0])
                else {
                    return;
                };
                assert!(!call.args[1].ends_with("..."), "raise strace -s");
                let mut bytes = unhex(call.args[1].trim_matches('"'));
                bytes.truncate(result.parse().unwrap());
                let at = if call.name == "pwrite64" {
                    call.args[3].parse().unwrap()
                } else if append {
                    self.lens[file]
                } else {
                    offset
                };
                if call.name == "write" {
                    let fd: u64 = call.args[0].split_once('<').unwrap().0.parse().unwrap();
                    self.handles.insert(
                        fd,
                        Handle::File {
                            file,
                            offset: at + bytes.len(),
                            append,
                        },
                    );
                }
                self.op(file, Op::Write { offset: at, bytes });
            }
            "ftruncate" => {
                if let Some(Handle::File { file, .. }) = self.handle(call.args[0]) {
                    let len = call.args[1].parse().unwrap();
                    self.op(file, Op::Truncate { len });
                }
            }
            "fsync" | "fdatasync" => match self.handle(call.args[0]) {
                Some(Handle::File { file, .. }) => self.recorded.steps.push(Step::Sync {
                    file,
                    covered: at_start.unwrap(),
                }),
                Some(Handle::Dir(dir)) => self.recorded.steps.push(Step::SyncDir {
                    dir,
                    covered: at_start.unwrap(),
                }),
                None => {}
            },
            "rename" | "renameat" | "renameat2" => {
                let (from, to) = if call.name == "rename" {
                    (call.args[0], call.args[1])
                } else {
                    (call.args[1], call.args[3])
                };
                let from = self.in_data(&string_arg(from));
                let to = self.in_data(&string_arg(to));
                match (from, to) {
                    (Some(from), Some(to)) => {
                        let file = *self
                            .live
                            .get(&from)
                            .unwrap_or_else(|| panic!("{from} is not there: {text}"));
                        self.entry(Entry::Renamed { from, to, file });
                    }
                    (None, None) => {}
                    _ => panic!("a rename into or out of the data directory: {text}"),
                }
            }
            "unlink" | "unlinkat" => {
                let path = if call.name == "unlink" {
                    call.args[0]
                } else {
                    call.args[1]
                };
                if let Some(name) = self.in_data(&string_arg(path)) {
                    self.entry(Entry::Unlinked { name });
                }
            }
            "mkdir" | "mkdirat" => {
                let path = if call.name == "mkdir" {
                    call.args[0]
                } else {
                    call.args[1]
                };
                let path = string_arg(path);
                if path == self.data {
                    self.entry(Entry::MadeDataDir);
                } else {
                    assert!(self.in_data(&path).is_none(), "{text}");
                }
            }
            // Followed when it starts (see `start`).
            "close" | "sendto" | "sendmsg" | "writev" => {}
            other => {
                // Calls the model does not follow must not touch the data.
                assert!(
                    !text.contains(&hex(&self.data)) && !text.contains("<TCP:"),
                    "{other} is not modelled: {text}"
                );
            }
        }
    }

    /// The name of `path` in the data directory, if it is in it.
    fn in_data(&self, path: &str) -> Option<String> {
        let name = path.strip_prefix(&self.data)?.strip_prefix('/')?;
        assert!(!name.contains('/'), "{path}");
        Some(name.to_owned())
    }

    fn op(&mut self, file: usize, op: Op) {
        self.ops[file] += 1;
        let len = &mut self.lens[file];
        *len = match &op {
            Op::Write { offset, bytes } => (*len).max(offset + bytes.len()),
            Op::Truncate { len } => *len,
        };
        self.recorded.steps.push(Step::Op { file, op });
    }

    fn entry(&mut self, entry: Entry) {
        match &entry {
            Entry::Created { name, file } => {
                self.live.insert(name.clone(), *file);
                self.recorded.names[*file].push(name.clone());
            }
            Entry::Renamed { from, to, file } => {
                self.live.remove(from);
                self.live.insert(to.clone(), *file);
                self.recorded.names[*file].push(to.clone());
            }
            Entry::Unlinked { name } => {
                self.live.remove(name);
            }
            Entry::MadeDataDir => {}
        }
        *self.entries.entry(entry.dir()).or_default() += 1;
        self.recorded.steps.push(Step::Entry(entry));
    }
}

/// The name of a call, its arguments, and what follows them (`= 3`; empty
/// when the line holds only the call's start).
fn split_call(text: &str) -> (&str, Vec<&str>, &str) {
    let Some((name, rest)) = text.split_once('(') else {
        return ("", Vec::new(), "");
    };
    let mut args = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut from = 0;
    let mut previous = ' ';
    for (i, c) in rest.char_indices() {
        let arrow = previous == '-';
        previous = c;
        match c {
            '"' => quoted = !quoted,
            '<' | '[' | '{' | '(' if !quoted => depth += 1,
            // `->` in a socket's addresses closes nothing.
            '>' if arrow => {}
            '>' | ']' | '}' if !quoted => depth -= 1,
            ')' if !quoted && depth == 0 => {
                args.push(rest[from..i].trim());
                return (name, args, rest[i + 1..].trim());
            }
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                args.push(rest[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    let last = rest[from..].trim();
    if !last.is_empty() {
        args.push(last);
    }
    (name, args, "")
}

fn parse_call(text: &str) -> Call<'_> {
    let (name, args, after) = split_call(text);
    let result = after
        .strip_prefix("= ")
        .filter(|result| !result.starts_with('-') && !result.starts_with('?'));
    Call { name, args, result }
}

/// The client's port of a socket argument (`5<TCP:[a:1->b:2]>`).
fn client_port(arg: &str) -> Option<u16> {
    let peer = arg.split_once("<TCP:[")?.1.split_once("->")?.1;
    peer.trim_end_matches(">")
        .trim_end_matches(']')
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

/// A quoted string argument, unescaped.
fn string_arg(arg: &str) -> String {
    String::from_utf8(unhex(arg.trim_matches('"'))).unwrap()
}

/// Decodes strace's `-xx` escapes (`\x41`).
fn unhex(text: &str) -> Vec<u8> {
    text.split("\\x")
        .skip(1)
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("\\x{b:02x}")).collect()
}

fn apply(bytes: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, bytes: new } => {
            if bytes.len() < offset + new.len() {
                bytes.resize(offset + new.len(), 0);
            }
            bytes[*offset..offset + new.len()].copy_from_slice(new);
        }
        Op::Truncate { len } => bytes.resize(*len, 0),
    }
}

/// Appends the changes of a log's records, as protocol lines, up to its
/// seal or its end (`docs/durability.md#file-format`).
fn decode_log(bytes: &[u8], changes: &mut Vec<String>) {
    assert_eq!(&bytes[..8], b"PKIXLOG\n");
    let mut at = 12;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    while at < bytes.len() {
        let len = u32_at(at);
        let payload = &bytes[at + 8..at + 8 + len];
        at += 8 + len;
        let name = |from: usize| {
            let len = usize::from(payload[from]);
            let name = String::from_utf8(payload[from + 1..from + 1 + len].to_vec()).unwrap();
            (name, from + 1 + len)
        };
        match payload[0] {
            1 => {
                let (package, mut from) = name(1);
                let count = u32::from_le_bytes(payload[from..from + 4].try_into().unwrap());
                from += 4;
                let mut deps = Vec::new();
                for _ in 0..count {
                    let (dep, next) = name(from);
                    deps.push(dep);
                    from = next;
                }
                changes.push(format!("INDEX|{package}|{}", deps.join(",")));
            }
            2 => changes.push(format!("REMOVE|{}|", name(1).0)),
            4 => return,
            kind => panic!("record kind {kind} in a log"),
        }
    }
}

// ---------------------------------------------------------------------------
// The history: every prefix of the logged changes, and where each
// connection's changes fall in it.

/// An index as the test sees it: package -> dependencies.
type State = BTreeMap<String, BTreeSet<String>>;

struct History {
    changes: Vec<String>,
    /// The fingerprint of the state after each prefix -> the prefix
    /// lengths that have it.
    prefixes: HashMap<u128, Vec<usize>>,
    /// Client port -> the prefix length that holds each of its changes.
    positions: HashMap<u16, Vec<usize>>,
}

fn fingerprint_of(package: &str, deps: &BTreeSet<String>) -> u128 {
    let mut halves = [0u64; 2];
    for (seed, half) in halves.iter_mut().enumerate() {
        let mut hasher = DefaultHasher::new();
        (seed, package, deps).hash(&mut hasher);
        *half = hasher.finish();
    }
    u128::from(halves[0]) << 64 | u128::from(halves[1])
}

/// Order-independent fingerprint of a whole state.
fn fingerprint(state: &State) -> u128 {
    state
        .iter()
        .map(|(package, deps)| fingerprint_of(package, deps))
        .fold(0, u128::wrapping_add)
}

impl History {
    /// The history the logs hold, checked against what the clients sent:
    /// each connection's changes appear in it exactly, in its order.
    fn new(changes: &[String], sent: &[Sent]) -> History {
        let mut positions: HashMap<u16, Vec<usize>> = HashMap::new();
        let mut state = State::new();
        let mut prefixes: HashMap<u128, Vec<usize>> = HashMap::new();
        let mut print = 0u128;
        prefixes.entry(print).or_default().push(0);
        for (i, change) in changes.iter().enumerate() {
            let connection: usize = change
                .split('|')
                .nth(1)
                .and_then(|name| name.strip_prefix('c'))
                .and_then(|rest| rest.split_once('p'))
                .and_then(|(c, _)| c.parse().ok())
                .unwrap();
            let by = &sent[connection];
            let mine = positions.entry(by.port).or_default();
            let expected = by.lines.get(mine.len()).map(String::as_str);
            assert_eq!(
                Some(canonical(change).as_str()),
                expected.map(canonical).as_deref()
            );
            mine.push(i + 1);
            let mut fields = change.split('|');
            let (command, package) = (fields.next().unwrap(), fields.next().unwrap());
            if let Some(old) = state.remove(package) {
                print = print.wrapping_sub(fingerprint_of(package, &old));
            }
            if command == "INDEX" {
                let deps: BTreeSet<String> = fields
                    .next()
                    .unwrap()
                    .split(',')
                    .filter(|dep| !dep.is_empty())
                    .map(str::to_owned)
                    .collect();
                print = print.wrapping_add(fingerprint_of(package, &deps));
                state.insert(package.to_owned(), deps);
            }
            prefixes.entry(print).or_default().push(i + 1);
        }
        for by in sent {
            let logged = positions.get(&by.port).map_or(0, Vec::len);
            assert_eq!(
                logged,
                by.lines.len(),
                "changes acknowledged but not logged"
            );
        }
        History {
            changes: changes.to_vec(),
            prefixes,
            positions,
        }
    }
}

/// A change line with its dependencies sorted, for comparing.
fn canonical(line: &str) -> String {
    let mut fields: Vec<&str> = line.split('|').collect();
    if let Some(deps) = fields.get_mut(2) {
        let mut list: Vec<&str> = deps.split(',').filter(|d| !d.is_empty()).collect();
        list.sort_unstable();
        return format!("{}|{}|{}", fields[0], fields[1], list.join(","));
    }
    line.to_owned()
}

// ---------------------------------------------------------------------------
// The crash states, and their recovery.

/// The model's files: each with its operations and how many are synced.
#[derive(Default)]
struct Model {
    ops: Vec<Vec<Op>>,
    synced: Vec<usize>,
    entries: Vec<(Entry, bool)>,
}

/// How a file is found in a crash state: its synced operations plus the
/// next `extra` ones, the last of which may be torn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Tear {
    Whole,
    /// Only the first half of the last write's bytes arrived.
    Half,
    /// The file grew by the last write but its bytes read as zeros.
    Zeros,
}

/// A crash state: each name present, the file it names, how many of its
/// operations it holds, and whether the last one is torn.
type CrashState = Vec<(String, usize, usize, Tear)>;

/// Replays the record, checking every crash state before each operation
/// and at the end.
fn replay(recorded: &Recorded, history: &History, checker: &mut Checker<'_>) {
    let mut model = Model::default();
    let mut answered: HashMap<u16, usize> = HashMap::new();
    let mut required = 0;
    let mut changed = true;
    for step in &recorded.steps {
        if let Step::Answered { port, answers } = step {
            let count = answered.entry(*port).or_default();
            *count += answers;
            if *count > 0 {
                required = required.max(history.positions[port][*count - 1]);
            }
            changed = true;
            continue;
        }
        if changed {
            checker.point(&model, required);
        }
        changed = true;
        match step {
            Step::Op { file, op } => {
                if model.ops.len() <= *file {
                    model.ops.resize_with(file + 1, Vec::new);
                    model.synced.resize(file + 1, 0);
                }
                model.ops[*file].push(op.clone());
            }
            Step::Sync { file, covered } => {
                if model.synced.len() <= *file {
                    model.ops.resize_with(file + 1, Vec::new);
                    model.synced.resize(file + 1, 0);
                }
                model.synced[*file] = model.synced[*file].max(*covered);
            }
            Step::SyncDir { dir, covered } => {
                let mut seen = 0;
                for (entry, synced) in &mut model.entries {
                    if entry.dir() == *dir {
                        if seen < *covered {
                            *synced = true;
                        }
                        seen += 1;
                    }
                }
            }
            Step::Entry(entry) => {
                if let Entry::Created { file, .. } = entry {
                    if model.ops.len() <= *file {
                        model.ops.resize_with(file + 1, Vec::new);
                        model.synced.resize(file + 1, 0);
                    }
                }
                model.entries.push((entry.clone(), false));
            }
            Step::Answered { .. } => unreachable!(),
        }
    }
    checker.point(&model, required);
    checker.flush();
    for (port, answers) in answered {
        assert_eq!(answers, history.positions[&port].len(), "answers traced");
    }
}

/// Distinct crash states waiting to be recovered, at most.
const BATCH: usize = 2_000;

/// A crash state waiting to be recovered: the state, its files' names
/// and bytes, and the most changes acknowledged at a point where it occurs.
type Waiting = (CrashState, Vec<(String, Vec<u8>)>, usize);

/// What became of a distinct crash state.
#[derive(Clone, Copy)]
enum Status {
    /// Waiting in the batch, at this place.
    Waiting(usize),
    /// Recovered: the longest prefix of the history it holds, or `None`
    /// when the start refused it.
    Recovered(Option<usize>),
}

/// The crash states met while replaying the record, each recovered once,
/// a batch at a time on a few threads, and judged at every point where it
/// can occur against the changes acknowledged by then.
struct Checker<'h> {
    history: &'h History,
    scratch: PathBuf,
    seen: HashMap<CrashState, Status>,
    /// The batch: each state, its files' bytes, and the most changes
    /// acknowledged at a point where it occurs.
    batch: Vec<Waiting>,
    points: usize,
    /// Points with more crash states than are built at one point.
    sampled_points: usize,
    pairs: usize,
    outcome: Outcome,
}

impl<'h> Checker<'h> {
    fn new(history: &'h History, scratch: &Path) -> Checker<'h> {
        Checker {
            history,
            scratch: scratch.to_owned(),
            seen: HashMap::new(),
            batch: Vec::new(),
            points: 0,
            sampled_points: 0,
            pairs: 0,
            outcome: Outcome::default(),
        }
    }

    /// Every crash state of `model`, which must hold the first `required`
    /// changes.
    fn point(&mut self, model: &Model, required: usize) {
        self.points += 1;
        let (states, sampled) = crash_states(model);
        self.sampled_points += usize::from(sampled);
        for state in states {
            self.pairs += 1;
            match self.seen.get(&state).copied() {
                Some(Status::Waiting(at)) => {
                    let must = &mut self.batch[at].2;
                    *must = (*must).max(required);
                }
                Some(Status::Recovered(kept)) => judge(&state, kept, required, &mut self.outcome),
                None => {
                    let files = state
                        .iter()
                        .map(|(name, file, held, tear)| {
                            (name.clone(), contents(model, *file, *held, *tear))
                        })
                        .collect();
                    self.seen
                        .insert(state.clone(), Status::Waiting(self.batch.len()));
                    self.batch.push((state, files, required));
                }
            }
        }
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Recovers the batch; fails the test at once on anything wrong.
    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let threads = thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let (history, scratch) = (self.history, &self.scratch);
        let results: Vec<Vec<(usize, Result<usize, String>)>> = thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|worker| {
                    let dir = scratch.join(worker.to_string());
                    let batch = &batch;
                    scope.spawn(move || {
                        let mine = batch.iter().enumerate().skip(worker).step_by(threads);
                        mine.map(|(at, (state, files, _))| {
                            (at, recover(&dir, state, files, history))
                        })
                        .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for (at, result) in results.into_iter().flatten() {
            let (state, _, required) = &batch[at];
            let kept = match result {
                Ok(kept) => {
                    self.outcome.recovered += 1;
                    Some(kept)
                }
                Err(refusal) => {
                    self.outcome.refused.push(refusal);
                    None
                }
            };
            self.seen.insert(state.clone(), Status::Recovered(kept));
            judge(state, kept, *required, &mut self.outcome);
        }
        let wrong = &self.outcome.wrong;
        assert!(
            wrong.is_empty(),
            "{} crash states recovered wrong, the first: {:#?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}

/// Notes a state that recovered fewer than `required` changes.
fn judge(state: &CrashState, kept: Option<usize>, required: usize, outcome: &mut Outcome) {
    if let Some(kept) = kept.filter(|&kept| kept < required) {
        outcome.wrong.push(format!(
            "holds the first {kept} changes, but {required} were acknowledged: {}",
            describe(state)
        ));
    }
}

/// How the starts on the crash states went.
#[derive(Default)]
struct Outcome {
    recovered: usize,
    /// Each refusal's line, with the state refused.
    refused: Vec<String>,
    /// Each state that lost an acknowledged change, recovered something
    /// that is not a prefix of the history, or was refused without naming
    /// a file in one line.
    wrong: Vec<String>,
}

/// Starts a store on one crash state, in `dir`: returns the longest
/// prefix of the history it holds, or the refusal's line. Fails the test
/// when it recovers something that is not a prefix of the history, or
/// refuses without one line naming a file.
fn recover(
    dir: &Path,
    state: &CrashState,
    files: &[(String, Vec<u8>)],
    history: &History,
) -> Result<usize, String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
    let options = DurableOptions {
        fsync: Fsync::Never,
        compact_at_least: u64::MAX,
    };
    match Store::open(dir, options, Arc::default()) {
        Ok((store, _)) => {
            let recovered: State = store
                .read()
                .topological()
                .map(|(name, deps)| (name.to_owned(), deps.map(str::to_owned).collect()))
                .collect();
            store.close().unwrap();
            drop(store);
            let kept = history
                .prefixes
                .get(&fingerprint(&recovered))
                .and_then(|lengths| lengths.iter().max().copied());
            Ok(kept.unwrap_or_else(|| {
                panic!(
                    "recovered an index that no prefix of the history holds: {}",
                    describe(state)
                )
            }))
        }
        Err(error) => {
            let line = error.to_string();
            let names_a_file = matches!(error, RecoveryError::Refused(_))
                && line.starts_with(dir.to_str().unwrap());
            assert!(
                names_a_file && !line.contains('\n'),
                "refused without one line naming a file: {line}"
            );
            Err(format!("{line}: {}", describe(state)))
        }
    }
}

fn describe(state: &CrashState) -> String {
    let files: Vec<String> = state
        .iter()
        .map(|(name, file, held, tear)| format!("{name} (file {file}, {held} ops, {tear:?})"))
        .collect();
    files.join(", ")
}

/// The bytes of `file` holding its first `held` operations, the last torn
/// as `tear` says.
fn contents(model: &Model, file: usize, held: usize, tear: Tear) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, op) in model.ops[file][..held].iter().enumerate() {
        match (op, tear) {
            (Op::Write { offset, bytes: new }, Tear::Half) if i + 1 == held => {
                let half = Op::Write {
                    offset: *offset,
                    bytes: new[..new.len() / 2].to_vec(),
                };
                apply(&mut bytes, &half);
            }
            (Op::Write { offset, bytes: new }, Tear::Zeros) if i + 1 == held => {
                let zeros = Op::Write {
                    offset: *offset,
                    bytes: vec![0; new.len()],
                };
                apply(&mut bytes, &zeros);
            }
            _ => apply(&mut bytes, op),
        }
    }
    bytes
}

/// Every state a crash at this point could leave (sampled evenly beyond
/// [`MOST_STATES_PER_POINT`]): each directory change not yet synced may or
/// may not have happened; each file holds its synced operations plus any
/// in-order prefix of the later ones, whose last write may be torn.
fn crash_states(model: &Model) -> (Vec<CrashState>, bool) {
    let pending: Vec<usize> = (0..model.entries.len())
        .filter(|&i| !model.entries[i].1)
        .collect();
    assert!(
        pending.len() < 16,
        "{} directory changes pending",
        pending.len()
    );
    let mut states = Vec::new();
    let mut sampled = false;
    for subset in 0u32..1 << pending.len() {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut data_dir = false;
        let mut chosen = pending
            .iter()
            .map(|&i| (i, false))
            .collect::<HashMap<_, _>>();
        for (bit, i) in pending.iter().enumerate() {
            chosen.insert(*i, subset & (1 << bit) != 0);
        }
        for (i, (entry, synced)) in model.entries.iter().enumerate() {
            if !synced && !chosen[&i] {
                continue;
            }
            match entry {
                Entry::MadeDataDir => data_dir = true,
                Entry::Created { name, file } => {
                    names.insert(name.clone(), *file);
                }
                Entry::Renamed { from, to, file } => {
                    names.remove(from);
                    names.insert(to.clone(), *file);
                }
                Entry::Unlinked { name } => {
                    names.remove(name);
                }
            }
        }
        if !data_dir {
            names.clear();
        }
        // Each file named: the choices of what it holds.
        let mut choices: Vec<Vec<(usize, Tear)>> = Vec::new();
        let files: Vec<(String, usize)> = names.into_iter().collect();
        for (_, file) in &files {
            let ops = &model.ops[*file];
            let synced = model.synced[*file];
            let mut options = vec![(synced, Tear::Whole)];
            for held in synced + 1..=ops.len() {
                options.push((held, Tear::Whole));
                if let Op::Write { offset, bytes } = &ops[held - 1] {
                    let before = contents(model, *file, held - 1, Tear::Whole).len();
                    if bytes.len() >= 2 {
                        options.push((held, Tear::Half));
                    }
                    if *offset >= before && !bytes.is_empty() {
                        options.push((held, Tear::Zeros));
                    }
                }
            }
            choices.push(options);
        }
        let total: usize = choices.iter().map(Vec::len).product();
        let stride = total.div_ceil(MOST_STATES_PER_POINT).max(1);
        sampled |= stride > 1;
        let mut n = 0;
        while n < total {
            let mut rest = n;
            let state: CrashState = files
                .iter()
                .zip(&choices)
                .map(|((name, file), options)| {
                    let (held, tear) = options[rest % options.len()];
                    rest /= options.len();
                    (name.clone(), *file, held, tear)
                })
                .collect();
            states.push(state);
            n += stride;
        }
    }
    (states, sampled)
}
