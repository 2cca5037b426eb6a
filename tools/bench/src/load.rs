//! The workloads: the steady ones (`query`, `churn`, `mixed`: every
//! connection sends a batch of `depth` lines, waits for the answers, and
//! again until the duration is over), and pipelined loading.

use crate::latency::Latencies;
use crate::target::Meter;
use package_indexer::procfs::ProcessStatus;
use package_indexer::{
    connect_to, write_request, AnswerSink, Command, Connection, Response, Sender,
};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};
use workload::{Package, Rng};

/// How long to wait for an answer before calling the server stuck.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// A connection to `addr` for one batch at a time.
pub(crate) fn open(addr: SocketAddr) -> Result<Connection, String> {
    connect_to(&addr.to_string(), &[addr], ANSWER_DEADLINE).map(Connection::new)
}

/// A steady workload: its name, and the percent of its lines that are
/// `QUERY`s of random packages of the preloaded graph; the others churn,
/// `INDEX` then `REMOVE` of leaves of each connection's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: &'static str,
    query_percent: u32,
}

pub(crate) const QUERY: Workload = Workload::new("query", 100);
pub(crate) const CHURN: Workload = Workload::new("churn", 0);
pub(crate) const MIXED: Workload = Workload::new("mixed", 90);

impl Workload {
    const fn new(name: &'static str, query_percent: u32) -> Workload {
        Workload {
            name,
            query_percent,
        }
    }

    pub fn parse(name: &str) -> Option<Workload> {
        [QUERY, CHURN, MIXED].into_iter().find(|w| w.name == name)
    }
}

/// Leaf names each churn connection cycles through.
const CHURN_SLOTS: u64 = 64;
/// Dependencies of each churned leaf, drawn from the preloaded graph.
const CHURN_DEPENDENCIES: usize = 3;

/// The request lines of one steady-workload connection.
struct Requests {
    rng: Rng,
    graph: Arc<[String]>,
    query_percent: u32,
    connection: usize,
    churn_step: u64,
    dependencies: Vec<String>,
}

impl Requests {
    fn new(shape: &Steady, connection: usize) -> Requests {
        Requests {
            rng: Rng::new(shape.seed ^ (connection as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            graph: Arc::clone(&shape.graph),
            query_percent: shape.workload.query_percent,
            connection,
            churn_step: 0,
            dependencies: Vec::with_capacity(CHURN_DEPENDENCIES),
        }
    }

    fn push_line(&mut self, out: &mut Vec<u8>) {
        if self.rng.percent(self.query_percent) {
            let name = match self.graph.len() {
                0 => "absent",
                len => &self.graph[self.rng.index(len)],
            };
            write_request::<&str>(out, Command::Query, name, &[]);
            return;
        }
        // INDEX a leaf, then REMOVE it: both answer OK, both change the index.
        let name = format!(
            "bench-churn-{}-{}",
            self.connection,
            (self.churn_step / 2) % CHURN_SLOTS
        );
        if self.churn_step.is_multiple_of(2) {
            self.dependencies.clear();
            for _ in 0..CHURN_DEPENDENCIES.min(self.graph.len()) {
                let dependency = &self.graph[self.rng.index(self.graph.len())];
                self.dependencies.push(dependency.clone());
            }
            write_request(out, Command::Index, &name, &self.dependencies);
        } else {
            write_request::<&str>(out, Command::Remove, &name, &[]);
        }
        self.churn_step += 1;
    }
}

/// A steady workload's shape.
pub struct Steady {
    pub workload: Workload,
    pub connections: usize,
    pub depth: usize,
    pub idle: usize,
    pub duration: Duration,
    /// Names of the preloaded graph, for `QUERY` and as churn dependencies.
    pub graph: Arc<[String]>,
    pub seed: u64,
}

/// What one run measured against one server.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub requests: u64,
    pub elapsed: Duration,
    /// Per request at depth 1, per batch round trip above.
    pub latency: Latencies,
    /// Answers received: `OK`, `FAIL`, `ERROR`.
    pub answers: [u64; 3],
    pub cpu_seconds: Option<f64>,
    /// At the end of the run, connections still open.
    pub memory: ProcessStatus,
    /// Idle connections that answered a `QUERY` after the run, of those held.
    pub idle_served: Option<(usize, usize)>,
}

impl Measured {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another run of the same workload on the same server.
    pub fn absorb(&mut self, other: Measured) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latency.merge(&other.latency);
        for (mine, theirs) in self.answers.iter_mut().zip(other.answers) {
            *mine += theirs;
        }
        let cpu = [self.cpu_seconds, other.cpu_seconds].into_iter().flatten();
        self.cpu_seconds = cpu.reduce(|a, b| a + b);
        if other.memory.resident_bytes.is_some() {
            self.memory = other.memory;
        }
        let idle = [self.idle_served, other.idle_served].into_iter().flatten();
        self.idle_served = idle.reduce(|(s1, h1), (s2, h2)| (s1 + s2, h1 + h2));
    }
}

/// Runs a steady workload against the server at `addr`.
pub(crate) fn run_steady(
    addr: SocketAddr,
    shape: &Steady,
    meter: &Meter,
) -> Result<Measured, String> {
    let idle = open_idle(addr, shape.idle)?;
    let wanted = shape.connections;
    let clients = (0..wanted)
        .map(|n| {
            open(addr).map_err(|e| format!("opened {n} of {wanted} connections to {addr}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Clients wait on `start` until the meter's first sample is taken.
    let (start, stop) = (RwLock::new(()), AtomicBool::new(false));
    let held = start.write().map_err(|_| "start lock poisoned")?;
    let mut measured = Measured::default();
    let mut failures = Vec::new();
    let (cpu_before, finished) = thread::scope(|scope| {
        let mut workers = Vec::with_capacity(clients.len());
        for (connection, client) in clients.into_iter().enumerate() {
            let requests = Requests::new(shape, connection);
            let (start, stop) = (&start, &stop);
            let spawned = thread::Builder::new().spawn_scoped(scope, move || {
                drop(start.read());
                drive(client, requests, shape.depth, stop)
            });
            match spawned {
                Ok(worker) => workers.push(worker),
                Err(e) => failures.push(format!("cannot start client thread {connection}: {e}")),
            }
        }
        let (cpu_before, _) = meter.sample();
        drop(held);
        let started = Instant::now();
        if failures.is_empty() {
            thread::sleep(shape.duration);
        }
        stop.store(true, Ordering::SeqCst);
        let mut finished = Vec::with_capacity(workers.len());
        for worker in workers {
            match worker.join() {
                Ok((client, stats, None)) => {
                    measured.absorb(stats);
                    finished.push(client);
                }
                Ok((_, _, Some(error))) => failures.push(error),
                Err(_) => failures.push("a client thread panicked".to_string()),
            }
        }
        measured.elapsed = started.elapsed();
        (cpu_before, finished)
    });
    // Sampled with the connections still open.
    let (cpu_after, memory) = meter.sample();
    if let Some(first) = failures.first() {
        let (failed, all) = (failures.len(), shape.connections);
        return Err(format!(
            "{failed} of {all} connections failed; first: {first}"
        ));
    }
    measured.cpu_seconds = cpu_after.zip(cpu_before).map(|(a, b)| a - b);
    measured.memory = memory;
    if shape.idle > 0 {
        measured.idle_served = Some((check_idle(idle), shape.idle));
    }
    drop(finished);
    Ok(measured)
}

/// One client thread: batches until `stop`; returns the client so its
/// connection stays open until the server has been measured.
fn drive(
    mut client: Connection,
    mut requests: Requests,
    depth: usize,
    stop: &AtomicBool,
) -> (Connection, Measured, Option<String>) {
    let mut stats = Measured::default();
    let mut batch = Vec::with_capacity(depth * 64);
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        for _ in 0..depth {
            requests.push_line(&mut batch);
        }
        let sent = Instant::now();
        let answers = &mut stats.answers;
        let exchanged = client.send(&batch);
        if let Err(e) =
            exchanged.and_then(|()| client.read_answers(depth, |a| answers[a as usize] += 1))
        {
            return (client, stats, Some(e.to_string()));
        }
        stats.latency.record(sent.elapsed());
        stats.requests += depth as u64;
    }
    (client, stats, None)
}

fn open_idle(addr: SocketAddr, count: usize) -> Result<Vec<TcpStream>, String> {
    (0..count)
        .map(|n| {
            let opened = TcpStream::connect(addr);
            opened.map_err(|e| format!("opened {n} of {count} idle connections to {addr}: {e}"))
        })
        .collect()
}

/// How many idle connections still answer: one `QUERY` on each, all sent
/// before any answer is read, all answers due within one deadline.
fn check_idle(idle: Vec<TcpStream>) -> usize {
    let query = |mut stream: TcpStream| stream.write_all(b"QUERY|bench-idle|\n").map(|()| stream);
    let mut sent: Vec<Connection> = idle
        .into_iter()
        .filter_map(|stream| query(stream).ok().map(Connection::new))
        .collect();
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let answered = |client: &mut Connection| {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Some(left.max(Duration::from_millis(1)));
        let ready = client.stream().set_read_timeout(timeout);
        ready.and_then(|()| client.read_answers(1, |_| {})).is_ok()
    };
    sent.iter_mut().map(answered).filter(|&ok| ok).count()
}

/// The answers of a pipelined pass, in order.
struct Collect(Vec<Response>);

impl AnswerSink for Collect {
    fn answer(&mut self, _index: u64, answer: Response) -> io::Result<()> {
        self.0.push(answer);
        Ok(())
    }
}

/// Indexes every package over one pipelined connection (every line written
/// while the answers are read, no bound on the lines in flight), resending
/// those refused (a dependency came later in the list) until all are in.
/// Returns the time of the first pass, which sent every package: the
/// loading rate.
pub(crate) fn index_all(addr: SocketAddr, packages: &[Package]) -> Result<Duration, String> {
    let mut remaining: Vec<&Package> = packages.iter().collect();
    let mut first_pass = None;
    while !remaining.is_empty() {
        let mut requests = Vec::with_capacity(remaining.len() * 48);
        for package in &remaining {
            write_request(
                &mut requests,
                Command::Index,
                &package.name,
                &package.dependencies,
            );
        }
        let stream = connect_to(&addr.to_string(), &[addr], ANSWER_DEADLINE)?;
        let mut answers = Collect(Vec::with_capacity(remaining.len()));
        let started = Instant::now();
        let lines = remaining.len() as u64;
        let send = |sender: &mut Sender| sender.send(&requests, lines);
        let outcome = package_indexer::pipeline(&stream, u64::MAX, send, &mut answers);
        if !outcome.problems.is_empty() {
            return Err(format!("{addr}: {}", outcome.problems.join("; ")));
        }
        first_pass.get_or_insert(started.elapsed());
        let refused: Vec<&Package> = remaining
            .iter()
            .zip(answers.0)
            .filter(|&(_, answer)| answer != Response::Ok)
            .map(|(&package, _)| package)
            .collect();
        if refused.len() == remaining.len() {
            let (count, first) = (refused.len(), &refused[0].name);
            return Err(format!(
                "the server refused all of the last {count} packages, e.g. {first}"
            ));
        }
        remaining = refused;
    }
    first_pass.ok_or_else(|| "no packages to index".to_string())
}

/// `count` packages named `pkgN`, each depending on `fanout` distinct
/// earlier ones (the first few on all there are), in dependency order.
pub(crate) fn fixed_fanout_graph(count: usize, fanout: usize, seed: u64) -> Vec<Package> {
    let mut rng = Rng::new(seed);
    let mut packages: Vec<Package> = Vec::with_capacity(count);
    for index in 0..count {
        let mut picked: Vec<usize> = Vec::with_capacity(fanout);
        while picked.len() < fanout.min(index) {
            let candidate = rng.index(index);
            if !picked.contains(&candidate) {
                picked.push(candidate);
            }
        }
        packages.push(Package {
            name: format!("pkg{index}"),
            dependencies: picked
                .into_iter()
                .map(|p| packages[p].name.clone())
                .collect(),
        });
    }
    packages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::null_server::NullServer;

    /// Two connections, depth 4, three idle, 50 ms over `graph`.
    fn shape(workload: Workload, graph: &[&str], seed: u64) -> Steady {
        Steady {
            workload,
            connections: 2,
            depth: 4,
            idle: 3,
            duration: Duration::from_millis(50),
            graph: graph.iter().map(|name| name.to_string()).collect(),
            seed,
        }
    }

    #[test]
    fn workload_names_round_trip() {
        for workload in [QUERY, CHURN, MIXED] {
            assert_eq!(Workload::parse(workload.name), Some(workload));
        }
        assert_eq!(Workload::parse("Query"), None);
    }

    #[test]
    fn churn_indexes_then_removes_its_own_leaves() {
        let mut requests = Requests::new(&shape(CHURN, &["a"], 1), 7);
        let mut out = Vec::new();
        for _ in 0..4 {
            requests.push_line(&mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "INDEX|bench-churn-7-0|a",
                "REMOVE|bench-churn-7-0|",
                "INDEX|bench-churn-7-1|a",
                "REMOVE|bench-churn-7-1|"
            ]
        );
    }

    #[test]
    fn query_lines_name_graph_packages() {
        let mut requests = Requests::new(&shape(QUERY, &["x", "y"], 3), 0);
        let mut out = Vec::new();
        for _ in 0..20 {
            requests.push_line(&mut out);
        }
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().all(|l| l == "QUERY|x|" || l == "QUERY|y|"),
            "{text}"
        );
    }

    #[test]
    fn fixed_fanout_graph_is_in_dependency_order() {
        let packages = fixed_fanout_graph(100, 3, 5);
        assert_eq!(packages[0].dependencies.len(), 0);
        assert_eq!(packages[2].dependencies.len(), 2);
        for (index, package) in packages.iter().enumerate().skip(3) {
            assert_eq!(package.dependencies.len(), 3);
            for dependency in &package.dependencies {
                let position: usize = dependency["pkg".len()..].parse().unwrap();
                assert!(position < index);
            }
        }
    }

    #[test]
    fn steady_and_pipelined_runs_against_the_null_server() {
        let server = NullServer::start(None).unwrap();
        let shape = shape(MIXED, &["a"], 9);
        let measured = run_steady(server.addr, &shape, &Meter::Null(&server)).unwrap();
        assert!(measured.requests > 0);
        assert_eq!(measured.requests % 4, 0);
        assert_eq!(measured.answers[0], measured.requests);
        assert_eq!(measured.latency.count() * 4, measured.requests);
        assert_eq!(measured.idle_served, Some((3, 3)));
        index_all(server.addr, &fixed_fanout_graph(1000, 3, 1)).unwrap();
    }

    #[test]
    fn absorbing_a_run_adds_it_up() {
        let mut first = Measured {
            requests: 10,
            elapsed: Duration::from_secs(1),
            cpu_seconds: Some(0.5),
            idle_served: Some((3, 3)),
            ..Measured::default()
        };
        first.latency.record(Duration::from_micros(5));
        let mut second = Measured {
            requests: 30,
            elapsed: Duration::from_secs(1),
            cpu_seconds: Some(1.0),
            idle_served: Some((2, 3)),
            ..Measured::default()
        };
        second.latency.record(Duration::from_micros(5));
        first.absorb(second);
        assert_eq!(first.requests, 40);
        assert_eq!(first.rate(), 20.0);
        assert_eq!(first.cpu_seconds, Some(1.5));
        assert_eq!(first.idle_served, Some((5, 6)));
        assert_eq!(first.latency.count(), 2);
    }

    #[test]
    fn loading_reports_a_server_that_hangs_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let closer = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            drop(stream);
        });
        let error = index_all(addr, &fixed_fanout_graph(1, 0, 1)).unwrap_err();
        assert!(error.contains(&addr.to_string()), "{error}");
        closer.join().unwrap();
    }
}
