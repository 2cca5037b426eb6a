//! The standard table (`--table`): one row per target, printed as Markdown for
//! BENCHMARKS.md; each run's full report goes to stderr as it finishes. Each
//! section starts its own servers, so that rows do not disturb each other.

use crate::load::{self, Measured, Steady, Workload};
use crate::null_server::NullServer;
use crate::operator;
use crate::options::Options;
use crate::report::{megabytes, millis, ratio, runs, steady_title, thousands, whole};
use crate::target::RealServer;
use crate::{flush_dirty_pages, interleave, preload, preload_graph, start_real, Subject};
use package_indexer::{Metrics, Response};
use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use workload::{Package, TempDir};

/// The crowded row: busy connections and idle ones.
const CROWD_BUSY: usize = 100;
const CROWD_IDLE: usize = 9_900;
/// Dependencies of every package in the memory and loading rows.
const LOAD_FANOUT: usize = 3;
/// Time for the server to notice closed connections, so the crowded row
/// starts with none left over (it needs all of `--max-connections`).
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Default)]
pub(crate) struct Row {
    pub(crate) measure: String,
    pub(crate) target: String,
    pub(crate) measured: String,
    pub(crate) reference: String,
    pub(crate) ratio: String,
    pub(crate) met: bool,
}

impl Row {
    fn failed(measure: &str, reason: &str) -> Row {
        let measured = format!("not measured: {reason}");
        let measure = measure.to_string();
        Row {
            measure,
            measured,
            ..Row::default()
        }
    }
}

fn steady(
    options: &Options,
    workload: Workload,
    connections: usize,
    depth: usize,
    idle: usize,
    graph: &Arc<[String]>,
) -> Steady {
    Steady {
        workload,
        connections,
        depth,
        idle,
        duration: options.duration,
        graph: Arc::clone(graph),
        seed: options.seed,
    }
}

/// Runs `shape` on the subjects, interleaved, and prints the report to stderr.
fn compare<const N: usize>(
    subjects: [&Subject; N],
    shape: &Steady,
    graph: usize,
) -> Result<[Measured; N], String> {
    let measured = interleave(&subjects, shape)?;
    let labels = subjects.iter().map(|s| s.label);
    let labelled: Vec<(&str, Measured)> = labels.zip(measured.iter().cloned()).collect();
    eprintln!("{}", runs(&steady_title(shape, graph), &labelled));
    measured
        .try_into()
        .map_err(|_| "a run is missing".to_string())
}

/// A rate against a reference rate, met at `minimum` times the reference;
/// each figure after its label (`with: `, `null: `).
fn rate_row(
    measure: String,
    target: String,
    minimum: f64,
    (label, measured): (&str, &Measured),
    (reference_label, reference): (&str, &Measured),
) -> Row {
    Row {
        measure,
        target,
        measured: format!("{label}{} req/s", whole(measured.rate())),
        reference: format!("{reference_label}{} req/s", whole(reference.rate())),
        ratio: ratio(Some(measured.rate()), Some(reference.rate())),
        met: measured.rate() >= minimum * reference.rate(),
    }
}

/// A group of rows measured together, by name.
type Section<'a> = (&'static str, &'a dyn Fn() -> Result<Vec<Row>, String>);

/// The keys `--sections` knows the sections by, in the order they run.
pub(crate) const SECTIONS: [&str; 7] = [
    "steady", "metrics", "durable", "memory", "load", "restart", "operator",
];

pub(crate) fn run(options: &Options) -> Result<(), String> {
    let null = NullServer::start(None).map_err(|e| format!("cannot start the null server: {e}"))?;
    let mut rows = Vec::new();
    // In the order of SECTIONS.
    let sections: [Section; SECTIONS.len()] = [
        ("steady workloads", &|| steady_rows(options, &null)),
        ("metrics cost", &|| metrics_cost_rows(options, &null)),
        ("durable churn", &|| durable_churn_rows(options)),
        ("memory and loading", &|| memory_rows(options, &null)),
        ("`load` command", &|| load_command_row(options)),
        ("restart", &|| restart_row(options)),
        ("the operator's reads", &|| operator::rows(options)),
    ];
    let wanted =
        |key: &&str| options.sections.is_empty() || options.sections.iter().any(|k| k == key);
    for (_, (name, section)) in SECTIONS.iter().zip(sections).filter(|(key, _)| wanted(key)) {
        eprintln!("== {name}");
        match section() {
            Ok(done) => rows.extend(done),
            Err(reason) => {
                eprintln!("{name}: {reason}");
                rows.push(Row::failed(name, &reason));
            }
        }
    }
    println!("{}", markdown(options, &rows));
    Ok(())
}

/// The query and churn rows, the p99 row, the crowded row and the
/// memory-only churn figure the durable rows compare with.
fn steady_rows(options: &Options, null_server: &NullServer) -> Result<Vec<Row>, String> {
    let (graph, names) = preload_graph(options);
    let server = start_real(options, &[])?;
    let real = Subject::real(&server);
    let null = Subject::null(null_server);
    let both = [&real, &null];
    preload(&both, &graph)?;
    let (mut rows, mut runs) = (Vec::new(), Vec::new());
    // Workload, connections, depth, least share of the null server's rate;
    // the second, 100 connections at depth 1, is the p99 and crowd rows' too.
    let cases = [
        (load::QUERY, 1, 1, 0.90),
        (load::QUERY, 100, 1, 0.95),
        (load::QUERY, 100, 16, 0.92),
        (load::CHURN, 100, 1, 0.95),
    ];
    for (workload, connections, depth, minimum) in cases {
        let plural = if connections == 1 { "" } else { "s" };
        let measure = format!(
            "`{}`, {connections} connection{plural}, depth {depth}",
            workload.name
        );
        let target = format!("≥ {minimum:.2} × null");
        let shape = steady(options, workload, connections, depth, 0, &names);
        let [real_run, null_run] = compare(both, &shape, graph.len())?;
        rows.push(rate_row(
            measure,
            target,
            minimum,
            ("", &real_run),
            ("null: ", &null_run),
        ));
        runs.push((real_run, null_run));
    }
    let (real_100, null_100) = &runs[1];
    let real_p99 = real_100.latency.percentile(99.0);
    let null_p99 = null_100.latency.percentile(99.0);
    let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    rows.push(Row {
        measure: "p99 latency, 100 connections, depth 1".into(),
        target: "≤ 1.2 × null p99".into(),
        measured: millis(real_p99),
        reference: format!("null: {}", millis(null_p99)),
        ratio: ratio(seconds(real_p99), seconds(null_p99)),
        met: matches!((real_p99, null_p99), (Some(r), Some(n)) if r.as_secs_f64() <= 1.2 * n.as_secs_f64()),
    });
    rows.push(
        crowd_row(options, &real, &names, graph.len(), real_100).unwrap_or_else(|reason| {
            Row::failed("10,000 connections at once (9,900 idle, 100 busy)", &reason)
        }),
    );
    Ok(rows)
}

/// What the server's per-line metrics cost: the null server with and
/// without them, interleaved, on the query shapes where per-line work
/// weighs most.
fn metrics_cost_rows(options: &Options, null_server: &NullServer) -> Result<Vec<Row>, String> {
    let (graph, names) = preload_graph(options);
    let metered_server = NullServer::start(Some(Arc::new(Metrics::new())))
        .map_err(|e| format!("cannot start the null server with metrics: {e}"))?;
    let plain = Subject::null(null_server);
    let metered = Subject {
        label: "null server + metrics",
        ..Subject::null(&metered_server)
    };
    let mut rows = Vec::new();
    for depth in [1, 16] {
        let shape = steady(options, load::QUERY, 100, depth, 0, &names);
        let [with, without] = compare([&metered, &plain], &shape, graph.len())?;
        rows.push(rate_row(
            format!("metrics cost, `query`, 100 connections, depth {depth}"),
            "≥ 0.97 × without (under 3%)".into(),
            0.97,
            ("with: ", &with),
            ("without: ", &without),
        ));
    }
    Ok(rows)
}

fn crowd_row(
    options: &Options,
    real: &Subject,
    names: &Arc<[String]>,
    graph_size: usize,
    without_idle: &Measured,
) -> Result<Row, String> {
    thread::sleep(SETTLE);
    let shape = steady(options, load::QUERY, CROWD_BUSY, 1, CROWD_IDLE, names);
    let [crowded] = compare([real], &shape, graph_size)?;
    let (served, held) = crowded.idle_served.unwrap_or((0, CROWD_IDLE));
    let rss = crowded.memory.resident_bytes;
    let ratio_value = crowded.rate() / without_idle.rate().max(1e-9);
    Ok(Row {
        measure: "10,000 connections at once (9,900 idle, 100 busy)".into(),
        target: "all served, RSS ≤ 100 MB, busy ≥ 0.9 × without idle".into(),
        measured: format!(
            "{} of {} idle served, RSS {}, {} req/s",
            thousands(served as u64),
            thousands(held as u64),
            rss.map_or_else(|| "n/a".into(), megabytes),
            whole(crowded.rate())
        ),
        reference: format!("without idle: {} req/s", whole(without_idle.rate())),
        ratio: ratio(Some(crowded.rate()), Some(without_idle.rate())),
        met: served == held && rss.is_some_and(|r| r <= 100_000_000) && ratio_value >= 0.9,
    })
}

/// `churn` at 100 connections with a data directory, against the same
/// memory only: three servers, preloaded alike, measured interleaved.
fn durable_churn_rows(options: &Options) -> Result<Vec<Row>, String> {
    let (graph, names) = preload_graph(options);
    let shape = steady(options, load::CHURN, 100, 1, 0, &names);
    let (never_dir, always_dir) = (scratch("churn-never")?, scratch("churn-always")?);
    let servers = [
        start_real(options, &[])?,
        start_real(options, &data_dir_args(&never_dir, "never"))?,
        start_real(options, &data_dir_args(&always_dir, "always"))?,
    ];
    let labels = ["memory only", "--fsync never", "--fsync always"];
    let subjects = [0, 1, 2].map(|i| Subject {
        label: labels[i],
        ..Subject::real(&servers[i])
    });
    let subjects = [&subjects[0], &subjects[1], &subjects[2]];
    preload(&subjects, &graph)?;
    let [memory_only, never, always] = compare(subjects, &shape, graph.len())?;
    let memory_only = &memory_only;
    let cases = [
        ("never", "≥ 0.95 × memory only", 0.95, &never),
        ("always", "≥ 0.80 × memory only", 0.80, &always),
    ];
    Ok(cases
        .into_iter()
        .map(|(fsync, target, minimum, durable)| {
            rate_row(
                format!("`churn`, 100 connections, `--fsync {fsync}`"),
                target.into(),
                minimum,
                ("", durable),
                ("memory only: ", memory_only),
            )
        })
        .collect())
}

fn data_dir_args(dir: &TempDir, fsync: &str) -> [String; 4] {
    [
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--fsync".into(),
        fsync.into(),
    ]
}

/// An empty directory for a server's `--data-dir` or a list file.
fn scratch(label: &str) -> Result<TempDir, String> {
    TempDir::new(&format!("bench-{label}"))
        .map_err(|e| format!("cannot create a scratch directory: {e}"))
}

/// The graph of the memory, loading and restart rows.
fn big_graph(options: &Options) -> Vec<Package> {
    load::fixed_fanout_graph(options.load_packages, LOAD_FANOUT, options.seed)
}

/// Loads `graph` over one pipelined connection; INDEX/s of the first pass.
fn bulk_load(subject: &Subject, graph: &[Package]) -> Result<f64, String> {
    let elapsed = load::index_all(subject.addr, graph)
        .map_err(|e| format!("{}: loading: {e}", subject.label))?;
    let per_second = graph.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let (label, count) = (subject.label, thousands(graph.len() as u64));
    eprintln!(
        "{label}: loaded {count} packages: {} INDEX/s",
        whole(per_second)
    );
    Ok(per_second)
}

/// Memory per package and the loading rate, on a fresh memory-only server.
fn memory_rows(options: &Options, null_server: &NullServer) -> Result<Vec<Row>, String> {
    let graph = big_graph(options);
    let server = start_real(options, &[])?;
    let real = Subject::real(&server);
    let rss = || {
        let (_, memory) = real.meter.sample();
        memory
            .resident_bytes
            .ok_or("cannot read the server's memory")
    };
    let empty = rss()?;
    let real_rate = bulk_load(&real, &graph)?;
    let loaded = rss()?;
    let per_package = loaded.saturating_sub(empty) as f64 / graph.len() as f64;
    let null_rate = bulk_load(&Subject::null(null_server), &graph)?;
    let packages = thousands(graph.len() as u64);
    let (empty, loaded) = (megabytes(empty), megabytes(loaded));
    Ok(vec![
        Row {
            measure: format!("memory for {packages} packages with {LOAD_FANOUT} dependencies each"),
            target: "≤ 64 bytes per package".into(),
            measured: format!("{per_package:.0} bytes per package"),
            reference: format!("RSS {empty} empty, {loaded} loaded"),
            ratio: String::new(),
            met: per_package <= 64.0,
        },
        Row {
            measure: format!("loading {packages} packages over one pipelined connection"),
            target: "≥ 1,200,000 INDEX/s".into(),
            measured: format!("{} INDEX/s", whole(real_rate)),
            reference: format!("null: {} lines/s", whole(null_rate)),
            ratio: ratio(Some(real_rate), Some(null_rate)),
            met: real_rate >= 1_200_000.0,
        },
    ])
}

/// `package-indexer load` of the big graph, written as a Homebrew-style
/// list in shuffled order (so `load` must order it), timed from spawn to
/// exit, against the bulk `INDEX` rate of the same graph over one
/// pipelined connection. Each run gets a fresh server; the two are
/// measured three times each, in the order A B B A A B, and each keeps its
/// best: on a machine shared with other work a moment's load only ever
/// slows a run, and it should not decide the row.
fn load_command_row(options: &Options) -> Result<Vec<Row>, String> {
    let graph = big_graph(options);
    let dir = scratch("load-list")?;
    let list = dir.path().join("list.txt");
    let mut order: Vec<&Package> = graph.iter().collect();
    workload::Rng::new(options.seed).shuffle(&mut order);
    // `name: dep dep`, the list format.
    let lines: Vec<String> = order
        .iter()
        .map(|p| format!("{}: {}\n", p.name, p.dependencies.join(" ")))
        .collect();
    std::fs::write(&list, lines.concat())
        .map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    let binary = crate::target::server_binary(options)?;
    let (mut bulk, mut command) = (Vec::new(), Vec::new());
    for with_command in [false, true, true, false, false, true] {
        flush_dirty_pages();
        let server = start_real(options, &[])?;
        if with_command {
            command.push(run_load_command(&binary, &list, &server, graph.len())?);
        } else {
            bulk.push(bulk_load(&Subject::real(&server), &graph)?);
        }
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let (bulk, command) = (best(&bulk), best(&command));
    let packages = thousands(graph.len() as u64);
    Ok(vec![Row {
        measure: format!(
            "`package-indexer load` of {packages} packages ({LOAD_FANOUT} dependencies each, shuffled list file)"
        ),
        target: "≥ 0.50 × bulk INDEX (at most twice its time)".into(),
        measured: format!("{} packages/s, spawn to exit (best of 3)", whole(command)),
        reference: format!("bulk: {} INDEX/s (best of 3)", whole(bulk)),
        ratio: ratio(Some(command), Some(bulk)),
        met: command >= 0.5 * bulk,
    }])
}

/// Runs `package-indexer load LIST` against `server`; packages per second
/// from spawn to exit, or why it failed.
fn run_load_command(
    binary: &Path,
    list: &Path,
    server: &RealServer,
    packages: usize,
) -> Result<f64, String> {
    let started = Instant::now();
    let output = Command::new(binary)
        .arg("load")
        .arg(list)
        .args(["--addr", &server.addr.to_string()])
        .output()
        .map_err(|e| format!("cannot run {} load: {e}", binary.display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr).trim_end());
    if !output.status.success() {
        return Err(format!(
            "package-indexer load exited with {}",
            output.status
        ));
    }
    let per_second = packages as f64 / elapsed.max(1e-9);
    eprintln!(
        "package-indexer load: {elapsed:.2} s from spawn to exit: {} packages/s",
        whole(per_second)
    );
    Ok(per_second)
}

/// Loads the big graph into a data directory, stops the server gracefully
/// and times a new one from spawn to its start line.
fn restart_row(options: &Options) -> Result<Vec<Row>, String> {
    let graph = big_graph(options);
    let dir = scratch("restart")?;
    let args = data_dir_args(&dir, "never");
    let first = start_real(options, &args)?;
    bulk_load(&Subject::real(&first), &graph)?;
    first.stop()?;
    let second = start_real(options, &args)?;
    let last = graph.last().map_or("", |p| p.name.as_str());
    let answer = load::open(second.addr)?.ask(format!("QUERY|{last}|").as_bytes());
    if !matches!(answer, Ok(Response::Ok)) {
        return Err(format!(
            "after the restart, QUERY {last} answered {answer:?}, not OK"
        ));
    }
    let startup = second.startup.as_secs_f64();
    eprintln!(
        "restart with {} packages: {startup:.3} s to the start line",
        graph.len()
    );
    Ok(vec![Row {
        measure: format!(
            "restart with {} packages (`--fsync never` data directory)",
            thousands(graph.len() as u64)
        ),
        target: "< 1 s".into(),
        measured: format!("{startup:.2} s from spawn to the start line"),
        met: startup < 1.0,
        ..Row::default()
    }])
}

/// Machine facts for the table's caption.
fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
        })
        .map_or("unknown", |(_, model)| model.trim());
    format!("{cores} cores ({model}), Linux {}", kernel.trim())
}

fn markdown(options: &Options, rows: &[Row]) -> String {
    let mut out = String::new();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let _ = writeln!(out, "Command: `package-indexer-bench {}`", args.join(" "));
    let _ = writeln!(
        out,
        "Machine: {}; each run {:?}; load generator and servers share the cores.\n",
        machine(),
        options.duration
    );
    out.push_str("| measure | target | package-indexer | reference | ratio | met |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        let met = if row.met { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {met} |",
            row.measure, row.target, row.measured, row.reference, row.ratio
        );
    }
    out
}
