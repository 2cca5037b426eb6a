//! The operator's reads at `--load-packages` packages: how long
//! a writer waits while `/v1/packages` inspections run back to back and
//! while exports copy the index, and how long an export takes over HTTP.
//!
//! The graph is the memory row's (three dependencies each on earlier
//! packages) with every tenth package also depending on `pkg0`, a hub with
//! a tenth of all packages as dependents.
//!
//! The writer's waits are measured in this process on the server's own
//! [`Store`], the code the admin routes call: a writer thread times every
//! `INDEX` and `REMOVE` it executes (the lock wait included) while this
//! thread reads, and the same writer alone gives the baseline. From each
//! time it takes away what the writer spent ready to run but not running
//! (its run-queue wait, from `/proc/thread-self/schedstat`, read around
//! every write): on two cores shared with other work, preemption alone
//! makes writes of tens of milliseconds, which no lock causes. What
//! remains is the writer's own work and its waits for the lock (including
//! while a reader holding it was itself preempted). Through a server
//! process the figure would add the network and the scheduling of its
//! other threads as well.

use crate::latency::Histogram;
use crate::load::{self, fixed_fanout_graph};
use crate::options::Options;
use crate::procfs::RunQueueWait;
use crate::report::{megabytes, millis, thousands};
use crate::start_real;
use crate::table::{verdict, Row, Verdict};
use package_indexer::{http_get, parse_line, write_request, Command, PackageName, Response, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use workload::{Package, Rng};

/// Every this many packages, one also depends on the hub.
const HUB_EVERY: usize = 10;
/// Dependencies of each package besides the hub.
const FANOUT: usize = 3;
/// Names the writer cycles through, indexing then removing each.
const WRITER_NAMES: usize = 64;
/// Exports timed over HTTP.
const EXPORT_RUNS: usize = 3;
/// Most a writer may wait for an inspection.
const STALL_TARGET: Duration = Duration::from_millis(2);

pub(crate) fn rows(options: &Options) -> Result<Vec<Row>, String> {
    let graph = hub_graph(options.load_packages, options.seed);
    let hub = graph
        .first()
        .map(|p| p.name.clone())
        .ok_or("no packages to measure with")?;
    let hub_dependents = graph
        .iter()
        .filter(|p| p.dependencies.contains(&hub))
        .count();
    let packages = thousands(graph.len() as u64);
    let store = Store::default();
    let started = Instant::now();
    for package in &graph {
        let mut line = Vec::new();
        write_request(
            &mut line,
            Command::Index,
            &package.name,
            &package.dependencies,
        );
        execute(&store, &line)?;
    }
    eprintln!(
        "operator rows: {packages} packages indexed in this process in {:.1} s; {} depend on {hub}",
        started.elapsed().as_secs_f64(),
        thousands(hub_dependents as u64)
    );
    let hub_name = PackageName::new(hub.as_bytes()).ok_or("the hub's name is invalid")?;
    let (duration, seed) = (options.duration, options.seed);
    let alone = writer_waits(&store, &graph, Writes::Anywhere, duration, seed, None)?;
    // The writer's own packages may depend on the hub too.
    let expected = hub_dependents..=hub_dependents + WRITER_NAMES;
    let inspect = || {
        let found = store.inspect(hub_name).map_or(0, |i| i.dependents.len());
        if expected.contains(&found) {
            Ok(())
        } else {
            Err(format!(
                "an inspection found {found} dependents of {hub}, not {expected:?}"
            ))
        }
    };
    let inspecting = writer_waits(
        &store,
        &graph,
        Writes::Anywhere,
        duration,
        seed,
        Some(&inspect),
    )?;
    let inspecting_hub = writer_waits(
        &store,
        &graph,
        Writes::OnTheHub,
        duration,
        seed,
        Some(&inspect),
    )?;
    let export = || {
        drop(store.export());
        Ok(())
    };
    let exporting = writer_waits(
        &store,
        &graph,
        Writes::Anywhere,
        duration,
        seed,
        Some(&export),
    )?;
    report("writer alone", &alone);
    report("inspections", &inspecting);
    report("inspections, writer on the hub", &inspecting_hub);
    report("exports", &exporting);
    drop(store);

    let http = http_export(options, &graph)?;
    let baseline = format!("writer alone: {}", write_waits(&alone));
    let dependents = thousands(hub_dependents as u64);
    Ok(vec![
        Row {
            measure: format!(
                "`/v1/packages` writer stall, {packages} packages, back-to-back inspections of a package with {dependents} dependents"
            ),
            target: "longest writer wait ≤ 2 ms".into(),
            measured: waits(&inspecting),
            reference: baseline.clone(),
            ratio: String::new(),
            verdict: verdict(inspecting.longest <= STALL_TARGET),
        },
        Row {
            measure: "the same while the writer adds and removes dependents of that package (each scan corrected at its end for the writer's changes)".to_string(),
            target: "shown".into(),
            measured: waits(&inspecting_hub),
            reference: baseline.clone(),
            ratio: String::new(),
            verdict: Verdict::Shown,
        },
        Row {
            measure: format!("`/v1/export` of {packages} packages over HTTP"),
            target: "shown".into(),
            measured: format!(
                "{:.2} s, {:.0} MB/s ({}, median of {EXPORT_RUNS})",
                http.seconds,
                http.bytes as f64 / 1e6 / http.seconds,
                megabytes(http.bytes)
            ),
            reference: http.memory,
            ratio: String::new(),
            verdict: Verdict::Shown,
        },
        Row {
            measure: format!("writer stall during exports of {packages} packages (the copy under the read lock)"),
            target: "shown".into(),
            measured: waits(&exporting),
            reference: baseline,
            ratio: String::new(),
            verdict: Verdict::Shown,
        },
    ])
}

/// The memory row's graph with a hub: package 0, which every
/// [`HUB_EVERY`]th package depends on as well.
fn hub_graph(count: usize, seed: u64) -> Vec<Package> {
    let mut graph = fixed_fanout_graph(count, FANOUT, seed);
    let hub = graph.first().map(|p| p.name.clone()).unwrap_or_default();
    for package in graph.iter_mut().skip(1).step_by(HUB_EVERY) {
        if !package.dependencies.contains(&hub) {
            package.dependencies.push(hub.clone());
        }
    }
    graph
}

/// Executes one request line (its newline included) on `store`, which
/// must answer `OK`.
fn execute(store: &Store, line: &[u8]) -> Result<(), String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let request = parse_line(line).map_err(|e| format!("{text}: {e:?}"))?;
    let executed = store
        .execute(&request)
        .map_err(|e| format!("{text}: {e}"))?;
    if executed.outcome.response() == Response::Ok {
        Ok(())
    } else {
        Err(format!("{text}: {:?}", executed.outcome))
    }
}

/// What the writer's packages depend on.
#[derive(Clone, Copy)]
enum Writes {
    /// Three random packages of the graph.
    Anywhere,
    /// The hub and two random packages: each write changes the hub's
    /// dependents.
    OnTheHub,
}

/// How long each write took while a reader ran.
struct Waits {
    writes: Histogram,
    longest: Duration,
    /// Writes that took longer than [`STALL_TARGET`].
    over_target: u64,
    /// How long each read took.
    reads: Histogram,
}

/// Runs a writer thread on `store` for `duration`, which indexes and
/// removes [`WRITER_NAMES`] packages (dependencies drawn from `seed`) in
/// turn and times each; meanwhile
/// this thread runs `read` back to back (or sleeps, without one).
fn writer_waits(
    store: &Store,
    graph: &[Package],
    writes: Writes,
    duration: Duration,
    seed: u64,
    read: Option<&dyn Fn() -> Result<(), String>>,
) -> Result<Waits, String> {
    let mut rng = Rng::new(seed);
    let hub = &graph[0].name;
    let mut lines = Vec::new();
    for k in 0..WRITER_NAMES {
        let mut dependencies: Vec<&str> = match writes {
            Writes::Anywhere => vec![],
            Writes::OnTheHub => vec![hub],
        };
        while dependencies.len() < FANOUT {
            let pick = &graph[rng.index(graph.len())].name;
            if !dependencies.contains(&pick.as_str()) {
                dependencies.push(pick);
            }
        }
        let name = format!("operator-writer-{k}");
        let (mut index, mut remove) = (Vec::new(), Vec::new());
        write_request(&mut index, Command::Index, &name, &dependencies);
        write_request::<&str>(&mut remove, Command::Remove, &name, &[]);
        lines.push(index);
        lines.push(remove);
    }
    let running = AtomicBool::new(true);
    let mut reads = Histogram::default();
    let writer = thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let queue = RunQueueWait::of_this_thread()
                .map_err(|e| format!("cannot read this thread's schedstat: {e}"))?;
            let mut writes = Histogram::default();
            let mut longest = Duration::ZERO;
            let mut over_target = 0;
            while running.load(Ordering::Relaxed) {
                for line in &lines {
                    // The protocol parser takes a line without its newline.
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    let request = parse_line(line).map_err(|e| format!("{e:?}"))?;
                    let queued_before = queue.nanos();
                    let started = Instant::now();
                    let executed = store.execute(&request);
                    let wall = started.elapsed();
                    let queued = queue.nanos().zip(queued_before).map(|(a, b)| a - b);
                    executed.map_err(|e| e.to_string())?;
                    // Time the writer was ready but not running is the
                    // scheduler's, not the lock's.
                    let took = wall.saturating_sub(Duration::from_nanos(queued.unwrap_or(0)));
                    writes.record(took);
                    longest = longest.max(took);
                    over_target += u64::from(took > STALL_TARGET);
                }
            }
            Ok::<_, String>((writes, longest, over_target))
        });
        let started = Instant::now();
        let mut read_result = Ok(());
        while started.elapsed() < duration && read_result.is_ok() {
            match read {
                Some(read) => {
                    let began = Instant::now();
                    read_result = read();
                    reads.record(began.elapsed());
                }
                None => thread::sleep(Duration::from_millis(10)),
            }
        }
        running.store(false, Ordering::Relaxed);
        (writer.join(), read_result)
    });
    let (writer, read_result) = writer;
    read_result?;
    let (writes, longest, over_target) =
        writer.map_err(|_| "the writer panicked".to_string())??;
    Ok(Waits {
        writes,
        longest,
        over_target,
        reads,
    })
}

/// The writes' waits: the longest, how many passed the target, the
/// 99.99th percentile.
fn write_waits(waits: &Waits) -> String {
    format!(
        "longest {}, {} of {} over 2 ms, p99.99 {}",
        millis(Some(waits.longest)),
        thousands(waits.over_target),
        thousands(waits.writes.count()),
        millis(waits.writes.percentile(99.99)),
    )
}

/// [`write_waits`] and the reads that ran meanwhile.
fn waits(waits: &Waits) -> String {
    format!(
        "writes: {}; {} reads, median {} each",
        write_waits(waits),
        thousands(waits.reads.count()),
        millis(waits.reads.percentile(50.0))
    )
}

fn report(label: &str, measured: &Waits) {
    eprintln!("{label}: {}", waits(measured));
}

/// An export over HTTP: the median time to its last byte, its size, and
/// the server's memory around it.
struct HttpExport {
    seconds: f64,
    bytes: u64,
    memory: String,
}

/// Loads `graph` into a real server with an admin listener and times
/// [`EXPORT_RUNS`] exports, each checked against its `Content-Length` and
/// the number of packages.
fn http_export(options: &Options, graph: &[Package]) -> Result<HttpExport, String> {
    let server = start_real(options, &["--admin-addr".into(), "127.0.0.1:0".into()])?;
    let admin = server
        .admin_addr()
        .ok_or("the server did not report its admin listener")?;
    load::index_all(server.addr(), graph)?;
    let before = server.meter().sample().memory;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..EXPORT_RUNS {
        let started = Instant::now();
        let fail = |e: &dyn std::fmt::Display| format!("GET /v1/export: {e}");
        let answer = http_get(&admin.to_string(), "/v1/export", Duration::from_secs(120))
            .map_err(|e| fail(&e))?;
        if answer.status != 200 {
            return Err(fail(&answer.status_line));
        }
        let body = answer.body;
        times.push(started.elapsed().as_secs_f64());
        let lines = body.iter().filter(|&&b| b == b'\n').count();
        if lines != graph.len() {
            return Err(format!("the export has {lines} lines, not {}", graph.len()));
        }
        bytes = body.len() as u64;
    }
    times.sort_by(f64::total_cmp);
    let after = server.meter().sample().memory;
    let memory = match (before, after) {
        (Some(before), Some(after)) => format!(
            "server RSS {} before, peak {} ",
            megabytes(before.rss),
            megabytes(after.peak_rss)
        ),
        _ => "server memory unknown".into(),
    };
    eprintln!("export over HTTP: {times:?} s, {bytes} bytes; {memory}");
    Ok(HttpExport {
        seconds: times[times.len() / 2],
        bytes,
        memory,
    })
}
