//! `package-indexer-bench`: measures package-indexer against a null server
//! under the same load (`docs/tools.md`, "The benchmark"; how each figure is
//! measured: BENCHMARKS.md). `--table` runs the standard table ([`table`]).

mod latency;
mod load;
mod null_server;
mod operator;
mod options;
mod report;
mod table;
mod target;

use load::{Measured, Steady};
use null_server::NullServer;
use options::Options;
use package_indexer::flags;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use target::{Meter, RealServer};
use workload::Package;

const PROGRAM: &str = "package-indexer-bench";

fn main() -> ExitCode {
    flags::tool_main(PROGRAM, options::parse, options::help, measure)
}

/// Runs the table or the one workload the options ask for.
fn measure(options: Options) -> ExitCode {
    let run = if options.table { table::run } else { run_one };
    let Err(reason) = run(&options) else {
        return ExitCode::SUCCESS;
    };
    eprintln!("{PROGRAM}: {reason}");
    ExitCode::FAILURE
}

/// A server under test.
pub struct Subject<'a> {
    pub label: &'static str,
    pub addr: SocketAddr,
    pub meter: Meter<'a>,
}

pub const REAL_LABEL: &str = "package-indexer";
pub const NULL_LABEL: &str = "null server";

impl<'a> Subject<'a> {
    pub fn real(server: &RealServer) -> Subject<'static> {
        Subject {
            label: REAL_LABEL,
            addr: server.addr,
            meter: server.meter(),
        }
    }

    pub fn null(server: &'a NullServer) -> Subject<'a> {
        Subject {
            label: NULL_LABEL,
            addr: server.addr,
            meter: Meter::Null(server),
        }
    }
}

/// Starts the real server with `args` after the options' `--server-args`.
pub fn start_real(options: &Options, args: &[String]) -> Result<RealServer, String> {
    let all: Vec<String> = options.server_args.iter().chain(args).cloned().collect();
    RealServer::spawn(&target::server_binary(options)?, &all)
}

/// The graph preloaded for the steady workloads, generated like Homebrew,
/// and its names.
pub fn preload_graph(options: &Options) -> (Vec<Package>, Arc<[String]>) {
    let packages = workload::generate(options.seed, options.packages);
    let names: Arc<[String]> = packages.iter().map(|p| p.name.clone()).collect();
    (packages, names)
}

/// Indexes `graph` into every subject.
pub fn preload(subjects: &[&Subject], graph: &[Package]) -> Result<(), String> {
    for subject in subjects {
        load::index_all(subject.addr, graph)
            .map_err(|e| format!("{}: preloading: {e}", subject.label))?;
    }
    Ok(())
}

/// Runs `shape` on every subject, half the duration each in order and half
/// in reverse order (A B B A), so that background load drifting during the
/// run weighs on all of them alike. Results are in `subjects` order.
pub fn interleave(subjects: &[&Subject], shape: &Steady) -> Result<Vec<Measured>, String> {
    let halves = if subjects.len() < 2 { 1 } else { 2 };
    let part = Steady {
        duration: shape.duration / halves,
        graph: Arc::clone(&shape.graph),
        ..*shape
    };
    let mut results: Vec<Measured> = subjects.iter().map(|_| Measured::default()).collect();
    let order = (0..subjects.len()).chain((0..subjects.len()).rev());
    for index in order.take(subjects.len() * halves as usize) {
        let subject = subjects[index];
        flush_dirty_pages();
        let measured = load::run_steady(subject.addr, &part, &subject.meter)
            .map_err(|e| format!("{}: {e}", subject.label))?;
        results[index].absorb(measured);
    }
    Ok(results)
}

/// Writes the page cache's dirty pages out (`sync(1)`), so that the
/// writeback of one server's log does not land in the next server's
/// `fdatasync`s when durable servers are measured side by side. Best effort:
/// without `sync` the rows are only noisier.
fn flush_dirty_pages() {
    let _ = std::process::Command::new("sync").status();
}

fn run_one(options: &Options) -> Result<(), String> {
    let null = options.null.then(|| NullServer::start(None)).transpose();
    let null = null.map_err(|e| format!("cannot start the null server: {e}"))?;
    let spawned;
    let real = match &options.addr {
        Some(addr) => Subject {
            label: REAL_LABEL,
            addr: package_indexer::resolve(addr)?[0],
            meter: Meter::Unknown,
        },
        None => {
            spawned = start_real(options, &[])?;
            Subject::real(&spawned)
        }
    };
    let null = null.as_ref().map(Subject::null);
    let subjects: Vec<&Subject> = [Some(&real), null.as_ref()].into_iter().flatten().collect();
    let (graph, names) = preload_graph(options);
    let shape = Steady {
        workload: options.workload,
        connections: options.connections,
        depth: options.depth,
        idle: options.idle,
        duration: options.duration,
        graph: names,
        seed: options.seed,
    };
    preload(&subjects, &graph)?;
    let measured = interleave(&subjects, &shape)?;
    let results: Vec<(&str, Measured)> = subjects.iter().map(|s| s.label).zip(measured).collect();
    println!(
        "{}",
        report::runs(&report::steady_title(&shape, graph.len()), &results)
    );
    Ok(())
}
