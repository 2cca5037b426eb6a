//! `package-indexer-harness`: drives a server the way the challenge's
//! official test harness does (SPEC §8) and says whether it held up.
//!
//! The packages (the Homebrew file given with `--packages`, or a graph of the
//! same shape generated from `--seed`) are shuffled and split into
//! `--concurrency` segments, one client per segment. Five steps run one after
//! another, each with fresh connections:
//!
//! 1. `REMOVE` every package, repeating until all answer `OK`;
//! 2. `INDEX` every package, repeating until all answer `OK`; with
//!    probability `--unluckiness` percent a broken message is sent in place
//!    of a package's command and must be answered `ERROR`;
//! 3. `QUERY` every package, expecting `OK`;
//! 4. `REMOVE` every package again, repeating until all answer `OK`;
//! 5. `QUERY` every package, expecting `FAIL`.
//!
//! "Repeating" resends, round after round, the packages of the segment not
//! yet answered `OK` (their dependencies or dependents may belong to other
//! clients). A round in which nothing of the segment succeeded is followed by
//! a short pause, and a step fails instead of spinning for ever when no
//! client had a package accepted for [`STALL_LIMIT`].
//!
//! Every message is one line followed by `\n`; every answer must be exactly
//! `OK`, `FAIL` or `ERROR` within [`ANSWER_DEADLINE`]. Any other answer, a
//! closed connection or a timeout fails the run. The first failing step stops
//! the run; its failures are printed with the step, the client, the message
//! sent and what came back.
//!
//! Defaults follow the official harness (`--concurrency 10`,
//! `--unluckiness 5`, port 8080) except `--seed`, which comes from the clock
//! and is printed, so that repeated runs cover different graphs and splits.
//!
//! Exit status: 0 after `All tests passed!`, 1 when a check failed, 2 for bad
//! usage (flags, unreadable or invalid `--packages` file).

use package_indexer::protocol::Response;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use workload::{Package, Rng};

/// How long a client waits to connect, to write a message, or for its answer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// A retrying step fails after this long without any client's package being
/// accepted: the server is refusing for good, not waiting on other clients.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Longest pause after a round in which nothing of a segment succeeded.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

/// The longest valid answer is `ERROR\n`; read a little more to show junk.
const MAX_ANSWER_BYTES: u64 = 64;

/// Generated graph size without `--count`: the size of the Homebrew dump.
const DEFAULT_COUNT: usize = 3370;

/// Failures printed in full; a broken server can produce one per client.
const MAX_PRINTED_FAILURES: usize = 20;

/// Sent messages are shown up to this many bytes.
const MAX_SHOWN_MESSAGE_BYTES: usize = 160;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Invocation::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Run(options)) => options,
        Err(reason) => return usage_error(&reason),
    };
    let (packages, origin) = match load_packages(&options) {
        Ok(loaded) => loaded,
        Err(reason) => return usage_error(&reason),
    };
    let mut out = io::stdout().lock();
    if run(&options, &packages, &origin, &mut out) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage_error(reason: &str) -> ExitCode {
    eprintln!("package-indexer-harness: {reason} (see --help)");
    ExitCode::from(2)
}

fn usage() -> String {
    format!(
        "\
Usage: package-indexer-harness [FLAGS]

Drives a package-indexer server like the challenge's official test harness:
remove all, index all (with broken messages), query all, remove all, query
all, with one client per segment of the packages. Prints `All tests passed!`
and exits 0 only when every answer was the one expected; exits 1 otherwise,
2 on bad usage.

Flags (`--name value`, `--name=value`; the official harness's `-name` works too):
  --host HOST          server host [default: localhost]
  --port PORT          server port [default: 8080]
  --concurrency N      clients, one per segment of the packages [default: 10]
  --seed N             seed for the generated graph, the split and the broken
                       messages [default: from the clock, printed]
  --unluckiness P      percent of INDEX messages replaced by a broken one,
                       0 to 99 [default: 5]
  --packages FILE      Homebrew-style list (`name: dep dep`) instead of a
                       generated graph
  --count N            size of the generated graph [default: {DEFAULT_COUNT}]
  --help               this text
"
    )
}

/// Where the packages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    Generated { count: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Options {
    host: String,
    port: u16,
    concurrency: usize,
    seed: u64,
    unluckiness: u32,
    source: Source,
}

#[derive(Debug, PartialEq, Eq)]
enum Invocation {
    Help,
    Run(Options),
}

/// Parses the flags; the error is a one-line reason.
fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut options = Options {
        host: "localhost".to_string(),
        port: 8080,
        concurrency: 10,
        seed: seed_from_clock(),
        unluckiness: 5,
        source: Source::Generated {
            count: DEFAULT_COUNT,
        },
    };
    let mut packages = None;
    let mut count = None;
    let mut remaining = args.iter();
    while let Some(arg) = remaining.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        if flag == "help" || flag == "h" {
            return Ok(Invocation::Help);
        }
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None => {
                let value = remaining
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag, value.clone())
            }
        };
        match name {
            "host" if !value.is_empty() => options.host = value,
            "host" => return Err("--host must not be empty".to_string()),
            "port" => options.port = parse_number(name, &value, 1..=u16::MAX)?,
            "concurrency" => options.concurrency = parse_number(name, &value, 1..=100_000)?,
            "seed" => options.seed = parse_number(name, &value, 0..=u64::MAX)?,
            "unluckiness" => options.unluckiness = parse_number(name, &value, 0..=99)?,
            "packages" => packages = Some(PathBuf::from(value)),
            "count" => count = Some(parse_number(name, &value, 1..=10_000_000)?),
            _ => return Err(format!("unknown flag {arg:?}")),
        }
    }
    options.source = match (packages, count) {
        (Some(_), Some(_)) => return Err("--packages and --count exclude each other".to_string()),
        (Some(path), None) => Source::File(path),
        (None, count) => Source::Generated {
            count: count.unwrap_or(DEFAULT_COUNT),
        },
    };
    Ok(Invocation::Run(options))
}

fn parse_number<T>(name: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    match value.parse::<T>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(format!(
            "--{name} must be a whole number from {} to {}, not {value:?}",
            range.start(),
            range.end()
        )),
    }
}

/// A default seed that differs between runs; it is printed so that a failing
/// run can be repeated with `--seed`.
fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// The packages to use and a description of where they came from.
fn load_packages(options: &Options) -> Result<(Vec<Package>, String), String> {
    match &options.source {
        Source::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --packages {}: {e}", path.display()))?;
            let packages = workload::parse_brew(&text)
                .map_err(|e| format!("--packages {}: {e}", path.display()))?;
            Ok((packages, format!("from {}", path.display())))
        }
        Source::Generated { count } => Ok((
            workload::generate(options.seed, *count),
            format!("generated from seed {}", options.seed),
        )),
    }
}

/// Runs the five steps, printing progress and failures to `out`; true when
/// every check held.
fn run(options: &Options, packages: &[Package], origin: &str, out: &mut impl Write) -> bool {
    let target = format!("{}:{}", options.host, options.port);
    // Progress output is best effort: a closed stdout must not fail the run.
    let _ = writeln!(
        out,
        "{} packages ({origin}), server {target}, concurrency {}, unluckiness {}%, seed {}",
        packages.len(),
        options.concurrency,
        options.unluckiness,
        options.seed
    );
    let addresses = match resolve(&options.host, options.port) {
        Ok(addresses) => addresses,
        Err(reason) => {
            let _ = writeln!(out, "FAILED: {reason}");
            return false;
        }
    };

    let mut rng = Rng::new(options.seed);
    let mut order: Vec<&Package> = packages.iter().collect();
    rng.shuffle(&mut order);
    let segments = split(&order, options.concurrency);

    let started = Instant::now();
    for step in Step::ALL {
        let step_run = StepRun {
            step,
            addresses: &addresses,
            unluckiness: options.unluckiness,
            abort: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
        };
        let client_seeds: Vec<u64> = segments.iter().map(|_| rng.next_u64()).collect();
        let step_started = Instant::now();
        match step_run.run_clients(&segments, &client_seeds) {
            Ok(totals) => {
                let _ = writeln!(
                    out,
                    "step {}/5 {}: {} requests ({} broken), at most {} rounds, {:.2}s",
                    step.number(),
                    step.title(),
                    totals.requests,
                    totals.broken,
                    totals.rounds,
                    step_started.elapsed().as_secs_f64()
                );
            }
            Err(failures) => {
                report_failures(out, step, &failures, options.seed);
                return false;
            }
        }
    }
    let _ = writeln!(out, "finished in {:.2}s", started.elapsed().as_secs_f64());
    let _ = writeln!(out, "All tests passed!");
    true
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("{host}:{port} resolves to no address"));
    }
    Ok(addresses)
}

fn report_failures(out: &mut impl Write, step: Step, failures: &[Failure], seed: u64) {
    for failure in failures.iter().take(MAX_PRINTED_FAILURES) {
        let _ = writeln!(out, "FAIL {failure}");
    }
    if failures.len() > MAX_PRINTED_FAILURES {
        let _ = writeln!(
            out,
            "... and {} more",
            failures.len() - MAX_PRINTED_FAILURES
        );
    }
    let _ = writeln!(
        out,
        "FAILED at step {}/5 ({}): {} client(s) failed; repeat with --seed {seed}",
        step.number(),
        step.title(),
        failures.len()
    );
}

/// Splits `items` into `parts` contiguous segments whose sizes differ by at
/// most one (some are empty when there are fewer items than parts).
fn split<T>(items: &[T], parts: usize) -> Vec<&[T]> {
    (0..parts)
        .map(|i| &items[i * items.len() / parts..(i + 1) * items.len() / parts])
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    RemoveBefore,
    Index,
    QueryIndexed,
    RemoveAfter,
    QueryRemoved,
}

/// What a step wants from each package's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// Resend until `OK`; `FAIL` means "not yet".
    RetryUntilOk,
    /// One message per package; this answer and no other.
    Expect(Response),
}

impl Step {
    const ALL: [Step; 5] = [
        Step::RemoveBefore,
        Step::Index,
        Step::QueryIndexed,
        Step::RemoveAfter,
        Step::QueryRemoved,
    ];

    fn number(self) -> usize {
        match self {
            Step::RemoveBefore => 1,
            Step::Index => 2,
            Step::QueryIndexed => 3,
            Step::RemoveAfter => 4,
            Step::QueryRemoved => 5,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Step::RemoveBefore => "remove every package until OK",
            Step::Index => "index every package until OK",
            Step::QueryIndexed => "query every package, expecting OK",
            Step::RemoveAfter => "remove every package again until OK",
            Step::QueryRemoved => "query every package, expecting FAIL",
        }
    }

    fn goal(self) -> Goal {
        match self {
            Step::RemoveBefore | Step::Index | Step::RemoveAfter => Goal::RetryUntilOk,
            Step::QueryIndexed => Goal::Expect(Response::Ok),
            Step::QueryRemoved => Goal::Expect(Response::Fail),
        }
    }

    /// The well-formed message this step sends for `package`.
    fn message(self, package: &Package) -> String {
        match self {
            Step::Index => format!("INDEX|{}|{}", package.name, package.dependencies.join(",")),
            Step::RemoveBefore | Step::RemoveAfter => format!("REMOVE|{}|", package.name),
            Step::QueryIndexed | Step::QueryRemoved => format!("QUERY|{}|", package.name),
        }
    }

    /// Whether this step sometimes sends a broken message instead (SPEC §8).
    fn is_unlucky(self) -> bool {
        self == Step::Index
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
struct ClientStats {
    requests: usize,
    broken: usize,
    rounds: usize,
}

impl ClientStats {
    /// Sums counts; rounds keep the maximum, the step's critical path.
    fn add(&mut self, other: &ClientStats) {
        self.requests += other.requests;
        self.broken += other.broken;
        self.rounds = self.rounds.max(other.rounds);
    }
}

/// One check that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Failure {
    step: Step,
    client: usize,
    /// The message whose answer was wrong; `None` before anything was sent.
    sent: Option<String>,
    problem: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}/5, client {}: ", self.step.number(), self.client)?;
        if let Some(sent) = &self.sent {
            write!(f, "sent {:?}: ", shorten(sent))?;
        }
        f.write_str(&self.problem)
    }
}

/// `message` cut to a printable length, saying how long it was.
fn shorten(message: &str) -> String {
    if message.len() <= MAX_SHOWN_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_SHOWN_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &message[..end], message.len())
}

fn answer_text(answer: Response) -> &'static str {
    match answer {
        Response::Ok => "OK",
        Response::Fail => "FAIL",
        Response::Error => "ERROR",
    }
}

/// One client connection: a message out, one answer line back.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to the first of `addresses` that accepts (`localhost` may
    /// resolve to `::1` before `127.0.0.1`).
    fn open(addresses: &[SocketAddr]) -> Result<Connection, String> {
        let mut last_error = String::from("no address to try");
        for address in addresses {
            match TcpStream::connect_timeout(address, ANSWER_DEADLINE) {
                Ok(stream) => {
                    let configured = stream
                        .set_read_timeout(Some(ANSWER_DEADLINE))
                        .and_then(|()| stream.set_write_timeout(Some(ANSWER_DEADLINE)))
                        .and_then(|()| stream.set_nodelay(true));
                    return match configured {
                        Ok(()) => Ok(Connection {
                            reader: BufReader::new(stream),
                        }),
                        Err(e) => Err(format!("cannot configure connection to {address}: {e}")),
                    };
                }
                Err(e) => last_error = format!("cannot connect to {address}: {e}"),
            }
        }
        Err(last_error)
    }

    /// Sends `message` and a newline, then reads one answer; the error says
    /// what happened instead of a valid answer.
    fn exchange(&mut self, message: &str) -> Result<Response, String> {
        let mut line = Vec::with_capacity(message.len() + 1);
        line.extend_from_slice(message.as_bytes());
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(|e| describe_io("sending", &e))?;

        let mut answer = Vec::new();
        (&mut self.reader)
            .take(MAX_ANSWER_BYTES)
            .read_until(b'\n', &mut answer)
            .map_err(|e| describe_io("waiting for the answer", &e))?;
        let valid = [Response::Ok, Response::Fail, Response::Error];
        match valid
            .into_iter()
            .find(|r| r.as_bytes() == answer.as_slice())
        {
            Some(response) => Ok(response),
            None if answer.is_empty() => Err("server closed the connection".to_string()),
            None if !answer.ends_with(b"\n") && answer.len() < MAX_ANSWER_BYTES as usize => {
                Err(format!(
                    "server closed the connection after a partial answer {:?}",
                    String::from_utf8_lossy(&answer)
                ))
            }
            None => Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&answer)
            )),
        }
    }
}

fn describe_io(doing: &str, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "timed out {doing} (deadline {}s)",
            ANSWER_DEADLINE.as_secs()
        ),
        _ => format!("connection error {doing}: {error}"),
    }
}

/// One step, shared by its clients.
struct StepRun<'a> {
    step: Step,
    addresses: &'a [SocketAddr],
    unluckiness: u32,
    /// Set by the first client that fails, so the others stop early.
    abort: AtomicBool,
    /// Packages any client had accepted so far, to tell waiting from stalling.
    accepted: AtomicUsize,
}

impl StepRun<'_> {
    /// Runs one client per segment, each on its own thread and connection;
    /// the clients' summed statistics, or every failure.
    fn run_clients(
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
        let mut totals = ClientStats::default();
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(stats) => totals.add(&stats),
                Err(failure) => failures.push(failure),
            }
        }
        if failures.is_empty() {
            Ok(totals)
        } else {
            Err(failures)
        }
    }

    fn run_client(
        &self,
        client: usize,
        segment: &[&Package],
        rng: &mut Rng,
    ) -> Result<ClientStats, Failure> {
        let result = Connection::open(self.addresses)
            .map_err(|problem| self.failure(client, None, problem))
            .and_then(|mut connection| match self.step.goal() {
                Goal::RetryUntilOk => self.retry_until_ok(&mut connection, client, segment, rng),
                Goal::Expect(answer) => self.expect_each(&mut connection, client, segment, answer),
            });
        if result.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        result
    }

    fn retry_until_ok(
        &self,
        connection: &mut Connection,
        client: usize,
        segment: &[&Package],
        rng: &mut Rng,
    ) -> Result<ClientStats, Failure> {
        let mut stats = ClientStats::default();
        let mut pending: Vec<&Package> = segment.to_vec();
        let mut stall = StallWatch::new(self.accepted.load(Ordering::Relaxed));
        let mut backoff = Duration::ZERO;
        while !pending.is_empty() {
            stats.rounds += 1;
            let before = pending.len();
            let mut refused = Vec::new();
            let mut last_refused_message = None;
            for package in pending {
                if self.abort.load(Ordering::Relaxed) {
                    return Ok(stats);
                }
                if self.step.is_unlucky() && rng.percent(self.unluckiness) {
                    let broken = broken_message(rng, package);
                    self.check_answer(connection, client, &broken, Response::Error, &mut stats)?;
                    stats.broken += 1;
                    refused.push(package);
                    continue;
                }
                let message = self.step.message(package);
                match self.send(connection, client, &message, &mut stats)? {
                    Response::Ok => {
                        self.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Response::Fail => {
                        refused.push(package);
                        last_refused_message = Some(message);
                    }
                    Response::Error => {
                        let problem = "expected OK or FAIL, got ERROR".to_string();
                        return Err(self.failure(client, Some(message), problem));
                    }
                }
            }
            pending = refused;
            if pending.len() < before {
                backoff = Duration::ZERO;
                continue;
            }
            if stall.stalled(self.accepted.load(Ordering::Relaxed)) {
                let problem = format!(
                    "FAIL, and no client had a package accepted for {}s; \
                     {} package(s) of this client still refused",
                    STALL_LIMIT.as_secs(),
                    pending.len()
                );
                return Err(self.failure(client, last_refused_message, problem));
            }
            // Waiting on other clients: pause rather than hammer the server.
            backoff = (backoff * 2).clamp(Duration::from_millis(1), MAX_BACKOFF);
            thread::sleep(backoff);
        }
        Ok(stats)
    }

    fn expect_each(
        &self,
        connection: &mut Connection,
        client: usize,
        segment: &[&Package],
        wanted: Response,
    ) -> Result<ClientStats, Failure> {
        let mut stats = ClientStats {
            rounds: 1,
            ..ClientStats::default()
        };
        for package in segment {
            if self.abort.load(Ordering::Relaxed) {
                break;
            }
            let message = self.step.message(package);
            self.check_answer(connection, client, &message, wanted, &mut stats)?;
        }
        Ok(stats)
    }

    /// Sends `message` and fails unless the answer is `wanted`.
    fn check_answer(
        &self,
        connection: &mut Connection,
        client: usize,
        message: &str,
        wanted: Response,
        stats: &mut ClientStats,
    ) -> Result<(), Failure> {
        let answer = self.send(connection, client, message, stats)?;
        if answer == wanted {
            return Ok(());
        }
        let problem = format!(
            "expected {}, got {}",
            answer_text(wanted),
            answer_text(answer)
        );
        Err(self.failure(client, Some(message.to_string()), problem))
    }

    fn send(
        &self,
        connection: &mut Connection,
        client: usize,
        message: &str,
        stats: &mut ClientStats,
    ) -> Result<Response, Failure> {
        stats.requests += 1;
        connection
            .exchange(message)
            .map_err(|problem| self.failure(client, Some(message.to_string()), problem))
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

/// Notices when the step-wide count of accepted packages stops moving.
struct StallWatch {
    seen: usize,
    since: Instant,
}

impl StallWatch {
    fn new(accepted: usize) -> StallWatch {
        StallWatch {
            seen: accepted,
            since: Instant::now(),
        }
    }

    /// True once `accepted` has not changed for [`STALL_LIMIT`].
    fn stalled(&mut self, accepted: usize) -> bool {
        if accepted != self.seen {
            self.seen = accepted;
            self.since = Instant::now();
            return false;
        }
        self.since.elapsed() >= STALL_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use package_indexer::protocol::{self, Command};
    use std::collections::HashMap;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn options_from(list: &[&str]) -> Options {
        match parse_args(&args(list)) {
            Ok(Invocation::Run(options)) => options,
            other => panic!("{list:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_official_harness() {
        let options = options_from(&[]);
        assert_eq!(options.host, "localhost");
        assert_eq!(options.port, 8080);
        assert_eq!(options.concurrency, 10);
        assert_eq!(options.unluckiness, 5);
        assert_eq!(options.source, Source::Generated { count: 3370 });
    }

    #[test]
    fn flags_take_every_spelling() {
        let options = options_from(&[
            "--host",
            "127.0.0.1",
            "--port=9000",
            "-concurrency",
            "25",
            "-seed=42",
            "--unluckiness",
            "0",
            "--count",
            "100",
        ]);
        assert_eq!(options.host, "127.0.0.1");
        assert_eq!(options.port, 9000);
        assert_eq!(options.concurrency, 25);
        assert_eq!(options.seed, 42);
        assert_eq!(options.unluckiness, 0);
        assert_eq!(options.source, Source::Generated { count: 100 });
        let options = options_from(&["--packages", "brew.txt"]);
        assert_eq!(options.source, Source::File(PathBuf::from("brew.txt")));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Invocation::Help));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let cases: [(&[&str], &str); 9] = [
            (&["--colour", "red"], "unknown flag"),
            (&["--port"], "needs a value"),
            (&["--port", "0"], "--port must be"),
            (&["--port", "http"], "--port must be"),
            (&["--concurrency", "0"], "--concurrency must be"),
            (&["--unluckiness", "100"], "--unluckiness must be"),
            (&["--seed", "-1"], "--seed must be"),
            (&["--packages", "a", "--count", "3"], "exclude each other"),
            (&["stray"], "unexpected argument"),
        ];
        for (list, reason) in cases {
            match parse_args(&args(list)) {
                Err(message) => assert!(message.contains(reason), "{list:?}: {message}"),
                other => panic!("{list:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn split_covers_everything_in_near_equal_parts() {
        let items: Vec<u32> = (0..10).collect();
        let parts = split(&items, 3);
        assert_eq!(parts, [&items[0..3], &items[3..6], &items[6..10]]);
        let parts = split(&items[..2], 4);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 2);
        assert_eq!(parts.len(), 4);
    }

    fn is_well_formed(line: &str) -> bool {
        protocol::parse_line(line.as_bytes()).is_ok()
    }

    #[test]
    fn broken_messages_are_malformed_and_cover_the_family() {
        let package = Package {
            name: "emacs".to_string(),
            dependencies: vec!["elisp".to_string(), "gnutls".to_string()],
        };
        assert!(is_well_formed(&Step::Index.message(&package)));
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

    #[test]
    fn long_messages_are_shortened_on_a_char_boundary() {
        assert_eq!(shorten("QUERY|a|"), "QUERY|a|");
        let long = format!("INDEX|{}|", "☃".repeat(100));
        let shown = shorten(&long);
        assert!(shown.ends_with(&format!("... ({} bytes)", long.len())));
        assert!(shown.len() < long.len());
    }

    type Index = Mutex<HashMap<String, Vec<String>>>;

    /// A small correct indexer: the reference the harness must pass.
    fn reference_answer(index: &Index, line: &str) -> Option<Response> {
        let Ok(request) = protocol::parse_line(line.as_bytes()) else {
            return Some(Response::Error);
        };
        let name = request.package;
        let mut index = index.lock().unwrap();
        let accepted = match request.command {
            Command::Index => {
                let dependencies: Vec<String> =
                    request.dependencies.iter().map(str::to_string).collect();
                let known = dependencies.iter().all(|d| index.contains_key(d));
                if known {
                    index.insert(name.to_string(), dependencies);
                }
                known
            }
            Command::Remove => {
                let needed = index.values().any(|deps| deps.iter().any(|d| d == name));
                if !needed {
                    index.remove(name);
                }
                !needed
            }
            Command::Query => index.contains_key(name),
        };
        Some(Response::ok_if(accepted))
    }

    fn always_ok(_: &Index, _: &str) -> Option<Response> {
        Some(Response::Ok)
    }

    /// `None`: close the connection instead of answering.
    fn hang_up(_: &Index, _: &str) -> Option<Response> {
        None
    }

    /// Serves `answer` on an ephemeral port, a thread per connection, for the
    /// rest of the test process; returns the port.
    fn spawn_server(answer: fn(&Index, &str) -> Option<Response>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let index = Arc::new(Index::default());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let index = Arc::clone(&index);
                thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        let Some(response) = answer(&index, &line) else {
                            return;
                        };
                        if writer.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// Runs the harness on a generated graph; returns success and output.
    fn run_against(port: u16, concurrency: usize, unluckiness: u32) -> (bool, String) {
        let options = Options {
            host: "127.0.0.1".to_string(),
            port,
            concurrency,
            seed: 11,
            unluckiness,
            source: Source::Generated { count: 300 },
        };
        let (packages, origin) = load_packages(&options).unwrap();
        let mut out = Vec::new();
        let passed = run(&options, &packages, &origin, &mut out);
        (passed, String::from_utf8(out).unwrap())
    }

    #[test]
    fn passes_a_correct_server() {
        let port = spawn_server(reference_answer);
        for (concurrency, unluckiness) in [(1, 0), (7, 20), (400, 5)] {
            let (passed, output) = run_against(port, concurrency, unluckiness);
            assert!(passed, "{output}");
            assert!(output.ends_with("All tests passed!\n"), "{output}");
            assert_eq!(output.matches("step ").count(), 5, "{output}");
        }
    }

    #[test]
    fn fails_a_server_that_accepts_everything() {
        let port = spawn_server(always_ok);
        let (passed, output) = run_against(port, 3, 0);
        assert!(!passed);
        assert!(output.contains("FAILED at step 5/5"), "{output}");
        assert!(output.contains(": expected FAIL, got OK"), "{output}");
        assert!(!output.contains("All tests passed!"), "{output}");

        let (passed, output) = run_against(port, 3, 50);
        assert!(!passed);
        assert!(output.contains("FAILED at step 2/5"), "{output}");
        assert!(output.contains("expected ERROR, got OK"), "{output}");
    }

    #[test]
    fn fails_a_server_that_hangs_up() {
        let port = spawn_server(hang_up);
        let (passed, output) = run_against(port, 2, 5);
        assert!(!passed);
        assert!(
            output.contains("FAIL step 1/5, client 0: sent \"REMOVE|"),
            "{output}"
        );
        assert!(output.contains("server closed the connection"), "{output}");
    }

    #[test]
    fn fails_when_nothing_listens() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (passed, output) = run_against(port, 2, 5);
        assert!(!passed);
        assert!(output.contains("cannot connect to 127.0.0.1:"), "{output}");
    }
}
