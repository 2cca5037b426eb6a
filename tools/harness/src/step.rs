//! The five steps and the clients that run them.

use crate::report::Failure;
use package_indexer::{connect_to, Connection, Response};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use workload::{Package, Rng};

/// A retrying step fails after this long without any client's package being
/// accepted: the server is refusing for good, not waiting on other clients.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How long a client waits to connect, or for an answer.
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// Longest pause after a round in which nothing of a segment succeeded.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// One of the five steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// 1 to 5, the order they run in.
    pub(crate) number: usize,
    pub(crate) title: &'static str,
    /// `REMOVE`, `INDEX` or `QUERY`, sent for every package.
    command: &'static str,
    /// What the step wants from each package's answer: `None`, resend
    /// until `OK` (`FAIL` means "not yet"); else one message per package,
    /// and this answer and no other.
    expect: Option<Response>,
}

impl Step {
    pub(crate) const ALL: [Step; 5] = [
        Step::new(1, "remove every package until OK", "REMOVE", None),
        Step::new(2, "index every package until OK", "INDEX", None),
        Step::new(
            3,
            "query every package, expecting OK",
            "QUERY",
            Some(Response::Ok),
        ),
        Step::new(4, "remove every package again until OK", "REMOVE", None),
        Step::new(
            5,
            "query every package, expecting FAIL",
            "QUERY",
            Some(Response::Fail),
        ),
    ];

    const fn new(
        number: usize,
        title: &'static str,
        command: &'static str,
        expect: Option<Response>,
    ) -> Step {
        Step {
            number,
            title,
            command,
            expect,
        }
    }

    /// The well-formed message this step sends for `package`.
    fn message(self, package: &Package) -> String {
        let dependencies = match self.command {
            "INDEX" => package.dependencies.join(","),
            _ => String::new(),
        };
        format!("{}|{}|{dependencies}", self.command, package.name)
    }

    /// Whether this step sometimes sends a broken message instead, as the
    /// official harness's index step does.
    fn is_unlucky(self) -> bool {
        self.command == "INDEX"
    }
}

/// Commands that look almost right; each must be answered `ERROR`.
const BROKEN_COMMANDS: [&str; 5] = ["BLINDEX", "REMOVES", "QUER", "LIZARD", "I"];

/// What the official harness puts where a `|` belongs in `INDEX|emacs=elisp`.
const BROKEN_SEPARATORS: [&str; 3] = ["=", " ", "☃"];

/// A malformed message about `package`: a misspelt command with well-formed
/// fields, or `INDEX` with only two fields (`INDEX|name=deps`).
fn broken_message(rng: &mut Rng, package: &Package) -> String {
    let dependencies = package.dependencies.join(",");
    let variant = rng.index(BROKEN_COMMANDS.len() + BROKEN_SEPARATORS.len());
    match BROKEN_COMMANDS.get(variant) {
        Some(command) => format!("{command}|{}|{dependencies}", package.name),
        None => {
            let separator = BROKEN_SEPARATORS[variant - BROKEN_COMMANDS.len()];
            format!("INDEX|{}{separator}{dependencies}", package.name)
        }
    }
}

/// What one client did in one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientStats {
    pub(crate) requests: usize,
    pub(crate) broken: usize,
    pub(crate) rounds: usize,
}

impl ClientStats {
    /// Sums counts; rounds keep the maximum, the step's critical path.
    fn add(self, other: ClientStats) -> ClientStats {
        ClientStats {
            requests: self.requests + other.requests,
            broken: self.broken + other.broken,
            rounds: self.rounds.max(other.rounds),
        }
    }
}

/// One step, shared by its clients.
pub(crate) struct StepRun<'a> {
    step: Step,
    /// The server, as given and as resolved.
    target: &'a str,
    addresses: &'a [SocketAddr],
    /// Every package of the run, to say what blocks a removal.
    packages: &'a [Package],
    unluckiness: u32,
    /// Set by the first client that fails, so the others stop early.
    abort: AtomicBool,
    /// Packages any client had accepted so far, to tell waiting from stalling.
    accepted: AtomicUsize,
}

impl<'a> StepRun<'a> {
    pub(crate) fn new(
        step: Step,
        (target, addresses): (&'a str, &'a [SocketAddr]),
        packages: &'a [Package],
        unluckiness: u32,
    ) -> StepRun<'a> {
        StepRun {
            step,
            target,
            addresses,
            packages,
            unluckiness,
            abort: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
        }
    }

    /// Runs one client per segment, each on its own thread and connection;
    /// the clients' summed statistics, or every failure.
    pub(crate) fn run_clients(
        &self,
        segments: &[&[&Package]],
        seeds: &[u64],
    ) -> Result<ClientStats, Vec<Failure>> {
        let results: Vec<Result<ClientStats, Failure>> = thread::scope(|scope| {
            let handles: Vec<_> = segments
                .iter()
                .zip(seeds)
                .enumerate()
                .map(|(client, (segment, &seed))| {
                    thread::Builder::new()
                        .spawn_scoped(scope, move || {
                            self.run_client(client, segment, &mut Rng::new(seed))
                        })
                        .map_err(|e| {
                            self.abort.store(true, Ordering::Relaxed);
                            let problem = format!("cannot start a client thread: {e}");
                            self.failure(client, None, problem)
                        })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(client, handle)| {
                    handle?.join().unwrap_or_else(|_| {
                        Err(self.failure(client, None, "client thread panicked".to_string()))
                    })
                })
                .collect()
        });
        let (passed, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        if !failed.is_empty() {
            return Err(failed.into_iter().filter_map(Result::err).collect());
        }
        Ok(passed
            .into_iter()
            .flatten()
            .fold(ClientStats::default(), ClientStats::add))
    }

    fn run_client(
        &self,
        number: usize,
        segment: &[&Package],
        rng: &mut Rng,
    ) -> Result<ClientStats, Failure> {
        let connected = connect_to(self.target, self.addresses, ANSWER_DEADLINE);
        let result = connected
            .map_err(|problem| self.failure(number, None, problem))
            .and_then(|stream| {
                let mut client = Client {
                    run: self,
                    number,
                    connection: Connection::new(stream),
                    stats: ClientStats::default(),
                };
                match self.step.expect {
                    None => client.retry_until_ok(segment, rng)?,
                    Some(answer) => client.expect_each(segment, answer)?,
                }
                Ok(client.stats)
            });
        if result.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        result
    }

    fn failure(&self, client: usize, sent: Option<String>, problem: String) -> Failure {
        Failure {
            step: self.step,
            client,
            sent,
            problem,
        }
    }
}

/// One client of a step: its connection and what it did.
struct Client<'r, 'a> {
    run: &'r StepRun<'a>,
    number: usize,
    connection: Connection,
    stats: ClientStats,
}

impl Client<'_, '_> {
    fn retry_until_ok(&mut self, segment: &[&Package], rng: &mut Rng) -> Result<(), Failure> {
        let run = self.run;
        let mut pending: Vec<&Package> = segment.to_vec();
        // The step-wide count of accepted packages, and when it last moved.
        let mut accepted = (run.accepted.load(Ordering::Relaxed), Instant::now());
        let mut backoff = Duration::ZERO;
        while !pending.is_empty() {
            self.stats.rounds += 1;
            let before = pending.len();
            let mut refused = Vec::new();
            let mut last_refused_message = None;
            for package in pending {
                if run.abort.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if run.step.is_unlucky() && rng.percent(run.unluckiness) {
                    self.check_answer(&broken_message(rng, package), Response::Error)?;
                    self.stats.broken += 1;
                    refused.push(package);
                    continue;
                }
                let message = run.step.message(package);
                match self.send(&message)? {
                    Response::Ok => {
                        run.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Response::Fail => {
                        refused.push(package);
                        last_refused_message = Some(message);
                    }
                    Response::Error => {
                        return Err(self.fail(&message, "expected OK or FAIL, got ERROR".into()));
                    }
                }
            }
            pending = refused;
            if pending.len() < before {
                backoff = Duration::ZERO;
                continue;
            }
            let now = run.accepted.load(Ordering::Relaxed);
            if now != accepted.0 {
                accepted = (now, Instant::now());
            } else if accepted.1.elapsed() >= STALL_LIMIT {
                let mut problem = format!(
                    "FAIL, and no client had a package accepted for {}s; \
                     {} package(s) of this client still refused",
                    STALL_LIMIT.as_secs(),
                    pending.len()
                );
                if let (Some(last), "REMOVE") = (pending.last(), run.step.command) {
                    problem += &blockers(&mut self.connection, run.packages, &last.name);
                }
                return Err(run.failure(self.number, last_refused_message, problem));
            }
            // Waiting on other clients: pause rather than hammer the server.
            backoff = (backoff * 2).clamp(Duration::from_millis(1), MAX_BACKOFF);
            thread::sleep(backoff);
        }
        Ok(())
    }

    fn expect_each(&mut self, segment: &[&Package], wanted: Response) -> Result<(), Failure> {
        self.stats.rounds = 1;
        for package in segment {
            if self.run.abort.load(Ordering::Relaxed) {
                break;
            }
            self.check_answer(&self.run.step.message(package), wanted)?;
        }
        Ok(())
    }

    /// Sends `message` and fails unless the answer is `wanted`.
    fn check_answer(&mut self, message: &str, wanted: Response) -> Result<(), Failure> {
        let answer = self.send(message)?;
        if answer == wanted {
            return Ok(());
        }
        let text = |r: Response| String::from_utf8_lossy(r.as_bytes()).trim_end().to_string();
        Err(self.fail(
            message,
            format!("expected {}, got {}", text(wanted), text(answer)),
        ))
    }

    fn send(&mut self, message: &str) -> Result<Response, Failure> {
        self.stats.requests += 1;
        let answer = self.connection.ask(message.as_bytes());
        answer.map_err(|e| self.fail(message, e.to_string()))
    }

    fn fail(&self, sent: &str, problem: String) -> Failure {
        self.run
            .failure(self.number, Some(sent.to_string()), problem)
    }
}

/// What keeps `name` from being removed, found with `QUERY`s of the
/// packages the list says depend on it; empty when the connection fails.
fn blockers(connection: &mut Connection, packages: &[Package], name: &str) -> String {
    let known: Vec<&str> = packages
        .iter()
        .filter(|p| p.dependencies.iter().any(|d| d == name))
        .map(|p| p.name.as_str())
        .collect();
    let mut indexed = Vec::new();
    for dependent in &known {
        match connection.ask(format!("QUERY|{dependent}|").as_bytes()) {
            Ok(Response::Ok) => indexed.push(*dependent),
            Ok(_) => {}
            Err(_) => return String::new(),
        }
    }
    if indexed.is_empty() {
        return format!(
            "; {name} is needed by no package of this list ({} listed as depending on it, \
             none indexed): a package the list does not hold depends on it \
             (run against a fresh server)",
            known.len()
        );
    }
    let shown = indexed.len().min(10);
    let more = if indexed.len() > shown { ", ..." } else { "" };
    format!(
        "; {name} is still needed by {} indexed package(s): {}{more}",
        indexed.len(),
        indexed[..shown].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_well_formed(line: &str) -> bool {
        package_indexer::parse_line(line.as_bytes()).is_ok()
    }

    #[test]
    fn a_refused_removal_names_what_blocks_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Indexed: b and c (c is not in the list).
        let server = thread::spawn(move || {
            use std::io::{BufRead, BufReader, Write};
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            for line in BufReader::new(stream).lines() {
                let line = line.unwrap();
                let indexed = line == "QUERY|b|" || line == "QUERY|c|";
                writer
                    .write_all(Response::ok_if(indexed).as_bytes())
                    .unwrap();
            }
        });
        let package = |name: &str, dependencies: &[&str]| Package {
            name: name.to_string(),
            dependencies: dependencies.iter().map(|d| d.to_string()).collect(),
        };
        let packages = [
            package("a", &[]),
            package("b", &["a"]),
            package("d", &["a"]),
            package("e", &[]),
        ];
        let stream = connect_to("test", &[addr], ANSWER_DEADLINE).unwrap();
        let mut connection = Connection::new(stream);
        assert_eq!(
            blockers(&mut connection, &packages, "a"),
            "; a is still needed by 1 indexed package(s): b"
        );
        assert_eq!(
            blockers(&mut connection, &packages, "e"),
            "; e is needed by no package of this list (0 listed as depending on it, none indexed): \
             a package the list does not hold depends on it (run against a fresh server)"
        );
        drop(connection);
        server.join().unwrap();
    }

    #[test]
    fn broken_messages_are_malformed_and_cover_the_family() {
        let package = Package {
            name: "emacs".to_string(),
            dependencies: vec!["elisp".to_string(), "gnutls".to_string()],
        };
        assert!(is_well_formed(&Step::ALL[1].message(&package)));
        let mut rng = Rng::new(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let broken = broken_message(&mut rng, &package);
            assert!(!is_well_formed(&broken), "{broken:?}");
            seen.insert(broken);
        }
        for expected in [
            "INDEX|emacs=elisp,gnutls",
            "INDEX|emacs elisp,gnutls",
            "INDEX|emacs☃elisp,gnutls",
            "BLINDEX|emacs|elisp,gnutls",
            "REMOVES|emacs|elisp,gnutls",
            "QUER|emacs|elisp,gnutls",
            "LIZARD|emacs|elisp,gnutls",
            "I|emacs|elisp,gnutls",
        ] {
            assert!(seen.contains(expected), "{expected} never sent");
        }
        assert_eq!(seen.len(), 8);
    }
}
