//! The standard table (`--table`): one row per target, printed as Markdown for
//! BENCHMARKS.md. Each run's full report goes to stderr as it finishes.
//!
//! Every row runs on a fresh or freshly preloaded server so that rows do not
//! disturb each other: the steady rows share one memory-only server loaded
//! with the generated graph; the harness, durability, memory and restart
//! rows each start their own.

use crate::load::{self, Measured, Steady, Workload};
use crate::null_server::NullServer;
use crate::operator;
use crate::options::Options;
use crate::report::{megabytes, millis, ratio, runs, steady_title, thousands, whole};
use crate::target::RealServer;
use crate::{
    flush_dirty_pages, harness_on, harness_packages, interleave, null_fits, preload, preload_graph,
    server_binary, start_real, Subject,
};
use package_indexer::package_list::Entry;
use package_indexer::{write_request, Metrics, PackageName, Response};
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

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    Missed,
    /// Reported, no target to meet.
    Shown,
}

pub(crate) struct Row {
    pub(crate) measure: String,
    pub(crate) target: String,
    pub(crate) measured: String,
    pub(crate) reference: String,
    pub(crate) ratio: String,
    pub(crate) verdict: Verdict,
}

impl Row {
    fn failed(measure: &str, reason: &str) -> Row {
        Row {
            measure: measure.to_string(),
            target: String::new(),
            measured: format!("not measured: {reason}"),
            reference: String::new(),
            ratio: String::new(),
            verdict: Verdict::Missed,
        }
    }
}

pub(crate) fn verdict(met: bool) -> Verdict {
    if met {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

fn rate(measured: &Measured) -> f64 {
    measured.requests_per_second()
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
fn compare(subjects: &[&Subject], shape: &Steady, title: &str) -> Result<Vec<Measured>, String> {
    let measured = interleave(subjects, shape)?;
    let labelled: Vec<(&str, Measured)> = subjects
        .iter()
        .map(|s| s.label)
        .zip(measured.iter().cloned())
        .collect();
    eprintln!("{}", runs(title, &labelled));
    Ok(measured)
}

fn throughput_row(
    measure: &str,
    target: &str,
    minimum: f64,
    real: &Measured,
    null: &Measured,
) -> Row {
    Row {
        measure: measure.to_string(),
        target: target.to_string(),
        measured: format!("{} req/s", whole(rate(real))),
        reference: format!("null: {} req/s", whole(rate(null))),
        ratio: ratio(Some(rate(real)), Some(rate(null))),
        verdict: verdict(rate(real) >= minimum * rate(null)),
    }
}

/// A group of rows measured together, by name.
type Section<'a> = (&'static str, &'a dyn Fn() -> Result<Vec<Row>, String>);

/// The keys `--sections` knows the sections by, in the order they run.
pub(crate) const SECTIONS: [&str; 8] = [
    "steady", "metrics", "harness", "durable", "memory", "load", "restart", "operator",
];

pub(crate) fn run(options: &Options) -> Result<(), String> {
    let null = NullServer::start(None).map_err(|e| format!("cannot start the null server: {e}"))?;
    let mut rows = Vec::new();
    // In the order of SECTIONS.
    let sections: [Section; SECTIONS.len()] = [
        ("steady workloads", &|| steady_rows(options, &null)),
        ("metrics cost", &|| metrics_cost_rows(options, &null)),
        ("harness", &|| harness_row(options, &null)),
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
    let mut rows = Vec::new();
    // Workload, connections, depth, least share of the null server's rate.
    let cases = [
        (Workload::Query, 1, 1, 0.90),
        (Workload::Query, 100, 1, 0.95),
        (Workload::Query, 100, 16, 0.92),
        (Workload::Churn, 100, 1, 0.95),
    ];
    let mut query_100 = None;
    for (workload, connections, depth, minimum) in cases {
        let plural = if connections == 1 { "" } else { "s" };
        let measure = format!(
            "`{}`, {connections} connection{plural}, depth {depth}",
            workload.name()
        );
        let target = format!("≥ {minimum:.2} × null");
        let shape = steady(options, workload, connections, depth, 0, &names);
        let [real_run, null_run]: [Measured; 2] =
            compare(&both, &shape, &steady_title(&shape, graph.len()))?
                .try_into()
                .map_err(|_| "expected two runs".to_string())?;
        rows.push(throughput_row(
            &measure, &target, minimum, &real_run, &null_run,
        ));
        if workload == Workload::Query && connections == 100 && depth == 1 {
            query_100 = Some((real_run, null_run));
        }
    }
    let Some((real_100, null_100)) = query_100 else {
        return Err("the 100-connection query run is missing".into());
    };
    let real_p99 = real_100.latency.percentile(99.0);
    let null_p99 = null_100.latency.percentile(99.0);
    let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    rows.push(Row {
        measure: "p99 latency, 100 connections, depth 1".into(),
        target: "≤ 1.2 × null p99".into(),
        measured: millis(real_p99),
        reference: format!("null: {}", millis(null_p99)),
        ratio: ratio(seconds(real_p99), seconds(null_p99)),
        verdict: verdict(matches!((real_p99, null_p99), (Some(r), Some(n)) if r.as_secs_f64() <= 1.2 * n.as_secs_f64())),
    });
    rows.push(
        crowd_row(options, &real, &names, graph.len(), &real_100).unwrap_or_else(|reason| {
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
        let shape = steady(options, Workload::Query, 100, depth, 0, &names);
        let [with, without]: [Measured; 2] = compare(
            &[&metered, &plain],
            &shape,
            &steady_title(&shape, graph.len()),
        )?
        .try_into()
        .map_err(|_| "expected two runs".to_string())?;
        rows.push(Row {
            measure: format!("metrics cost, `query`, 100 connections, depth {depth}"),
            target: "≥ 0.97 × without (under 3%)".into(),
            measured: format!("with: {} req/s", whole(rate(&with))),
            reference: format!("without: {} req/s", whole(rate(&without))),
            ratio: ratio(Some(rate(&with)), Some(rate(&without))),
            verdict: verdict(rate(&with) >= 0.97 * rate(&without)),
        });
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
    null_fits(CROWD_BUSY + CROWD_IDLE, false)?;
    thread::sleep(SETTLE);
    let shape = steady(options, Workload::Query, CROWD_BUSY, 1, CROWD_IDLE, names);
    let crowded = compare(&[real], &shape, &steady_title(&shape, graph_size))?
        .pop()
        .ok_or_else(|| "no run".to_string())?;
    let (served, held) = crowded.idle_served.unwrap_or((0, CROWD_IDLE));
    let rss = crowded.memory.map(|m| m.rss);
    let ratio_value = rate(&crowded) / rate(without_idle).max(1e-9);
    Ok(Row {
        measure: "10,000 connections at once (9,900 idle, 100 busy)".into(),
        target: "all served, RSS ≤ 100 MB, busy ≥ 0.9 × without idle".into(),
        measured: format!(
            "{} of {} idle served, RSS {}, {} req/s",
            thousands(served as u64),
            thousands(held as u64),
            rss.map_or_else(|| "n/a".into(), megabytes),
            whole(rate(&crowded))
        ),
        reference: format!("without idle: {} req/s", whole(rate(without_idle))),
        ratio: ratio(Some(rate(&crowded)), Some(rate(without_idle))),
        verdict: verdict(
            served == held && rss.is_some_and(|r| r <= 100_000_000) && ratio_value >= 0.9,
        ),
    })
}

fn harness_row(options: &Options, null_server: &NullServer) -> Result<Vec<Row>, String> {
    let (packages, origin) = harness_packages(options)?;
    let server = start_real(options, &[])?;
    let concurrency = 100;
    let subjects = [Subject::real(&server), Subject::null(null_server)];
    let results = harness_on(&subjects, &packages, concurrency, options)?;
    eprintln!(
        "{}",
        runs(
            &format!("harness, concurrency {concurrency}, {origin}; latency per request"),
            &results
        )
    );
    let per_run = |m: &Measured| m.cpu_seconds.map(|cpu| cpu / m.harness_runs.max(1) as f64);
    let describe = |m: &Measured| {
        format!(
            "{} CPU s per run ({} runs, {} req/s)",
            per_run(m).map_or_else(|| "n/a".into(), |s| format!("{s:.3}")),
            m.harness_runs,
            whole(rate(m))
        )
    };
    let (real, null) = (&results[0].1, &results[1].1);
    Ok(vec![Row {
        measure: "harness, concurrency 100, brew data".into(),
        target: "server CPU seconds next to the null server's".into(),
        measured: describe(real),
        reference: format!("null: {}", describe(null)),
        ratio: ratio(per_run(real), per_run(null)),
        verdict: Verdict::Shown,
    }])
}

/// `churn` at 100 connections with a data directory, against the same
/// memory only: three servers, preloaded alike, measured interleaved.
fn durable_churn_rows(options: &Options) -> Result<Vec<Row>, String> {
    let (graph, names) = preload_graph(options);
    let shape = steady(options, Workload::Churn, 100, 1, 0, &names);
    let never_dir = scratch("churn-never")?;
    let always_dir = scratch("churn-always")?;
    let servers = [
        start_real(options, &[])?,
        start_real(options, &data_dir_args(&never_dir, "never"))?,
        start_real(options, &data_dir_args(&always_dir, "always"))?,
    ];
    let labels = ["memory only", "--fsync never", "--fsync always"];
    let subjects: Vec<Subject> = servers
        .iter()
        .zip(labels)
        .map(|(server, label)| Subject {
            label,
            ..Subject::real(server)
        })
        .collect();
    let subjects: Vec<&Subject> = subjects.iter().collect();
    preload(&subjects, &graph)?;
    let measured = compare(&subjects, &shape, &steady_title(&shape, graph.len()))?;
    let memory_only = &measured[0];
    let cases = [
        ("never", "≥ 0.95 × memory only", 0.95, &measured[1]),
        ("always", "≥ 0.80 × memory only", 0.80, &measured[2]),
    ];
    Ok(cases
        .into_iter()
        .map(|(fsync, target, minimum, durable)| Row {
            measure: format!("`churn`, 100 connections, `--fsync {fsync}`"),
            target: target.to_string(),
            measured: format!("{} req/s", whole(rate(durable))),
            reference: format!("memory only: {} req/s", whole(rate(memory_only))),
            ratio: ratio(Some(rate(durable)), Some(rate(memory_only))),
            verdict: verdict(rate(durable) >= minimum * rate(memory_only)),
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

/// The big graph's `INDEX` lines, built once for every loading run.
struct BigLoad {
    requests: Vec<u8>,
    packages: Vec<Package>,
}

impl BigLoad {
    fn new(options: &Options) -> BigLoad {
        let packages = load::fixed_fanout_graph(options.load_packages, LOAD_FANOUT, options.seed);
        let mut requests = Vec::with_capacity(packages.len() * 40);
        for package in &packages {
            write_request(
                &mut requests,
                package_indexer::Command::Index,
                &package.name,
                &package.dependencies,
            );
        }
        BigLoad { requests, packages }
    }

    /// Loads everything over one pipelined connection; INDEX/s, or why not.
    fn load(&self, subject: &Subject) -> Result<f64, String> {
        let loaded = load::pipeline(subject.addr, self.requests.clone(), self.packages.len())
            .map_err(|e| format!("{}: loading: {e}", subject.label))?;
        let refused = loaded
            .answers
            .iter()
            .filter(|&&a| a != Response::Ok)
            .count();
        if refused > 0 {
            return Err(format!(
                "{}: {refused} INDEX lines not answered OK",
                subject.label
            ));
        }
        let per_second = self.packages.len() as f64 / loaded.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "{}: loaded {} packages in {:.2} s: {} INDEX/s",
            subject.label,
            thousands(self.packages.len() as u64),
            loaded.elapsed.as_secs_f64(),
            whole(per_second)
        );
        Ok(per_second)
    }
}

/// Memory per package and the loading rate, on a fresh memory-only server.
fn memory_rows(options: &Options, null_server: &NullServer) -> Result<Vec<Row>, String> {
    let big = BigLoad::new(options);
    let count = big.packages.len();
    let server = start_real(options, &[])?;
    let real = Subject::real(&server);
    let rss = |subject: &Subject| {
        subject
            .meter
            .sample()
            .memory
            .map(|m| m.rss)
            .ok_or_else(|| "cannot read the server's memory".to_string())
    };
    let empty = rss(&real)?;
    let real_rate = big.load(&real)?;
    let loaded = rss(&real)?;
    let per_package = loaded.saturating_sub(empty) as f64 / count as f64;
    let null_rate = big.load(&Subject::null(null_server))?;
    let packages = thousands(count as u64);
    Ok(vec![
        Row {
            measure: format!("memory for {packages} packages with {LOAD_FANOUT} dependencies each"),
            target: "≤ 64 bytes per package".into(),
            measured: format!("{per_package:.0} bytes per package"),
            reference: format!(
                "RSS {} empty, {} loaded",
                megabytes(empty),
                megabytes(loaded)
            ),
            ratio: String::new(),
            verdict: verdict(per_package <= 64.0),
        },
        Row {
            measure: format!("loading {packages} packages over one pipelined connection"),
            target: "≥ 1,200,000 INDEX/s".into(),
            measured: format!("{} INDEX/s", whole(real_rate)),
            reference: format!("null: {} lines/s", whole(null_rate)),
            ratio: ratio(Some(real_rate), Some(null_rate)),
            verdict: verdict(real_rate >= 1_200_000.0),
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
    let big = BigLoad::new(options);
    let dir = scratch("load-list")?;
    let list = dir.path().join("list.txt");
    let mut order: Vec<&Package> = big.packages.iter().collect();
    workload::Rng::new(options.seed).shuffle(&mut order);
    let mut text = String::with_capacity(big.requests.len());
    for package in order {
        text.push_str(&homebrew_line(package)?);
        text.push('\n');
    }
    std::fs::write(&list, text).map_err(|e| format!("cannot write {}: {e}", list.display()))?;
    let binary = server_binary(options)?;
    let (mut bulk, mut command) = (Vec::new(), Vec::new());
    for with_command in [false, true, true, false, false, true] {
        flush_dirty_pages();
        let server = start_real(options, &[])?;
        if with_command {
            command.push(run_load_command(
                &binary,
                &list,
                &server,
                big.packages.len(),
            )?);
        } else {
            bulk.push(big.load(&Subject::real(&server))?);
        }
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let (bulk, command) = (best(&bulk), best(&command));
    Ok(vec![Row {
        measure: format!(
            "`package-indexer load` of {} packages ({LOAD_FANOUT} dependencies each, shuffled list file)",
            thousands(big.packages.len() as u64)
        ),
        target: "≥ 0.50 × bulk INDEX (at most twice its time)".into(),
        measured: format!("{} packages/s, spawn to exit (best of 3)", whole(command)),
        reference: format!("bulk: {} INDEX/s (best of 3)", whole(bulk)),
        ratio: ratio(Some(command), Some(bulk)),
        verdict: verdict(command >= 0.5 * bulk),
    }])
}

/// `name: dep dep`, as the Homebrew-style list format writes a package.
fn homebrew_line(package: &Package) -> Result<String, String> {
    fn valid(name: &str) -> Result<PackageName<'_>, String> {
        PackageName::new(name.as_bytes()).ok_or_else(|| format!("invalid package name {name:?}"))
    }
    let entry = Entry {
        name: valid(&package.name)?,
        dependencies: package
            .dependencies
            .iter()
            .map(|d| valid(d))
            .collect::<Result<_, _>>()?,
    };
    Ok(entry.to_string())
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
        .args(["--addr", &server.addr().to_string()])
        .output()
        .map_err(|e| format!("cannot run {} load: {e}", binary.display()))?;
    let elapsed = started.elapsed();
    let said = String::from_utf8_lossy(&output.stderr);
    eprintln!("{}", said.trim_end());
    if !output.status.success() {
        return Err(format!(
            "package-indexer load exited with {}",
            output.status
        ));
    }
    let per_second = packages as f64 / elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "package-indexer load: {} packages in {:.2} s from spawn to exit: {} packages/s",
        thousands(packages as u64),
        elapsed.as_secs_f64(),
        whole(per_second)
    );
    Ok(per_second)
}

/// Loads the big graph into a data directory, stops the server gracefully
/// and times a new one from spawn to its start line.
fn restart_row(options: &Options) -> Result<Vec<Row>, String> {
    let big = BigLoad::new(options);
    let dir = scratch("restart")?;
    let args = data_dir_args(&dir, "never");
    let first = start_real(options, &args)?;
    big.load(&Subject::real(&first))?;
    first.stop()?;
    let second = start_real(options, &args)?;
    let last = big
        .packages
        .last()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let mut check = Vec::new();
    write_request::<&str>(&mut check, package_indexer::Command::Query, &last, &[]);
    let answers = load::pipeline(second.addr(), check, 1)?.answers;
    if answers != [Response::Ok] {
        return Err(format!(
            "after the restart, QUERY {last} answered {answers:?}, not OK"
        ));
    }
    let startup = second.startup;
    eprintln!(
        "restart with {} packages: {:.3} s to the start line",
        big.packages.len(),
        startup.as_secs_f64()
    );
    Ok(vec![Row {
        measure: format!(
            "restart with {} packages (`--fsync never` data directory)",
            thousands(big.packages.len() as u64)
        ),
        target: "< 1 s".into(),
        measured: format!(
            "{:.2} s from spawn to the start line",
            startup.as_secs_f64()
        ),
        reference: String::new(),
        ratio: String::new(),
        verdict: verdict(startup < Duration::from_secs(1)),
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
        let met = match row.verdict {
            Verdict::Met => "yes",
            Verdict::Missed => "**no**",
            Verdict::Shown => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {met} |",
            row.measure, row.target, row.measured, row.reference, row.ratio
        );
    }
    out
}
