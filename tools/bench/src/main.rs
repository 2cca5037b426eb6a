//! `package-indexer-bench`: measures package-indexer against a null server
//! (`docs/tools.md#the-benchmark`).
//!
//! The null server has the real server's thread-per-connection design but
//! answers `OK\n` to every line without parsing or indexing: the most this
//! design can do on this machine. Both get the same workload in one run, and
//! the report gives both figures and their ratio: requests/s, latency
//! percentiles measured by the clients, the server's CPU seconds and memory.
//!
//! `--table` runs the standard table of targets and prints it as
//! Markdown for BENCHMARKS.md; see [`table`].

mod latency;
mod load;
mod null_server;
mod operator;
mod options;
mod procfs;
mod report;
mod table;
mod target;

use load::{Measured, Steady, Workload};
use null_server::NullServer;
use options::Options;
use package_indexer::flags;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use target::{Meter, RealServer};
use workload::{Package, Source};

/// Descriptors a process needs beyond one per connection (listeners, pipes,
/// files, the loader's connection).
const SPARE_FILES: u64 = 64;

const PROGRAM: &str = "package-indexer-bench";

fn main() -> ExitCode {
    flags::tool_main(PROGRAM, options::parse, options::help, measure)
}

/// Runs the table or the one workload the options ask for.
fn measure(options: Options) -> ExitCode {
    let result = if options.table {
        table::run(&options)
    } else {
        run_one(&options)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{PROGRAM}: {reason}");
            ExitCode::FAILURE
        }
    }
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
            addr: server.addr(),
            meter: server.meter(),
        }
    }

    pub fn null(server: &'a NullServer) -> Subject<'a> {
        Subject {
            label: NULL_LABEL,
            addr: server.addr(),
            meter: Meter::Null(server),
        }
    }
}

/// The `package-indexer` binary: `--server`, or the one next to this one.
pub fn server_binary(options: &Options) -> Result<std::path::PathBuf, String> {
    match &options.server {
        Some(binary) => Ok(binary.clone()),
        None => target::default_server_binary(),
    }
}

/// Starts the real server with `args` after the options' `--server-args`.
pub fn start_real(options: &Options, args: &[String]) -> Result<RealServer, String> {
    let all: Vec<String> = options.server_args.iter().chain(args).cloned().collect();
    RealServer::spawn(&server_binary(options)?, &all)
}

/// Whether the open-files limit lets this process hold `connections` client
/// sockets, plus the null server's side of them when `with_null`; and the
/// server its side. Err names the limit when even the real server cannot run.
pub fn null_fits(connections: usize, with_null: bool) -> Result<bool, String> {
    let Some(limit) = procfs::open_files_limit() else {
        return Ok(with_null);
    };
    let one_side = connections as u64 + SPARE_FILES;
    if one_side > limit {
        return Err(format!(
            "{connections} connections need about {one_side} open files in this process and \
             as many in the server, but the limit is {limit} (raise it with ulimit -n)"
        ));
    }
    if with_null && 2 * connections as u64 + SPARE_FILES > limit {
        eprintln!(
            "note: null server skipped: it runs in this process, and {connections} connections \
             would need about {} open files here (both ends), over the limit of {limit}",
            2 * connections as u64 + SPARE_FILES
        );
        return Ok(false);
    }
    Ok(with_null)
}

/// The graph preloaded for the steady workloads: generated like Homebrew.
pub fn preload_graph(options: &Options) -> (Vec<Package>, Arc<[String]>) {
    let packages = workload::generate(options.seed, options.packages);
    let names: Arc<[String]> = packages.iter().map(|p| p.name.clone()).collect();
    (packages, names)
}

/// The harness workload's packages: the `--brew` list, by default the
/// embedded Homebrew list; and where they came from.
pub fn harness_packages(options: &Options) -> Result<(Vec<Package>, String), String> {
    let source = options.brew.clone().map_or(Source::Homebrew, Source::File);
    let packages = source.load()?;
    let origin = format!("{source} ({} packages)", packages.len());
    Ok((packages, origin))
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
    if subjects.len() < 2 {
        let mut results = Vec::new();
        for subject in subjects {
            results.push(
                load::run_steady(subject.addr, shape, &subject.meter)
                    .map_err(|e| format!("{}: {e}", subject.label))?,
            );
        }
        return Ok(results);
    }
    let half = Steady {
        duration: shape.duration / 2,
        graph: Arc::clone(&shape.graph),
        ..*shape
    };
    let mut results: Vec<Measured> = subjects.iter().map(|_| Measured::default()).collect();
    let order = (0..subjects.len()).chain((0..subjects.len()).rev());
    for index in order {
        let subject = subjects[index];
        flush_dirty_pages();
        let measured = load::run_steady(subject.addr, &half, &subject.meter)
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

/// Runs the harness workload on each subject in turn: (label, figures).
pub fn harness_on(
    subjects: &[Subject],
    packages: &[Package],
    concurrency: usize,
    options: &Options,
) -> Result<Vec<(&'static str, Measured)>, String> {
    subjects
        .iter()
        .map(|subject| {
            load::run_harness(
                subject.addr,
                packages,
                concurrency,
                options.duration,
                options.seed,
                &subject.meter,
            )
            .map(|measured| (subject.label, measured))
            .map_err(|e| format!("{}: {e}", subject.label))
        })
        .collect()
}

fn run_one(options: &Options) -> Result<(), String> {
    let connections = options.connections + options.idle;
    let with_null = null_fits(connections, options.null)?;
    let null = if with_null {
        Some(NullServer::start(None).map_err(|e| format!("cannot start the null server: {e}"))?)
    } else {
        None
    };
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
    let mut subjects = vec![real];
    subjects.extend(null.as_ref().map(Subject::null));

    let mut results = Vec::new();
    let title = match options.workload {
        Workload::Harness => {
            let (packages, origin) = harness_packages(options)?;
            results = harness_on(&subjects, &packages, options.connections, options)?;
            format!(
                "harness, concurrency {}, {origin}, repeated for {:?}; latency per request",
                options.connections, options.duration
            )
        }
        workload => {
            let (graph, names) = preload_graph(options);
            let shape = Steady {
                workload,
                connections: options.connections,
                depth: options.depth,
                idle: options.idle,
                duration: options.duration,
                graph: names,
                seed: options.seed,
            };
            let subjects: Vec<&Subject> = subjects.iter().collect();
            preload(&subjects, &graph)?;
            let measured = interleave(&subjects, &shape)?;
            results.extend(subjects.iter().map(|s| s.label).zip(measured));
            report::steady_title(&shape, graph.len())
        }
    };
    println!("{}", report::runs(&title, &results));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_packages_are_the_embedded_list_unless_brew_names_one() {
        let (packages, origin) = harness_packages(&options::from_args(&[])).unwrap();
        assert_eq!(packages.len(), 3370);
        assert_eq!(origin, "the embedded Homebrew list (3370 packages)");
        let missing = options::from_args(&["--brew", "/nonexistent/brew.txt"]);
        let error = harness_packages(&missing).unwrap_err();
        assert!(error.contains("/nonexistent/brew.txt"), "{error}");
    }

    #[test]
    fn an_impossible_connection_count_is_a_clear_error() {
        let error = null_fits(usize::MAX / 4, true).unwrap_err();
        assert!(error.contains("open files"), "{error}");
        assert_eq!(null_fits(10, false), Ok(false));
    }
}
