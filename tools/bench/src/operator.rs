//! The operator's reads: how long a writer waits while `/v1/packages`
//! inspections of a hub run back to back, measured in this process on the
//! server's own [`Store`], the code the admin routes call. BENCHMARKS.md
//! says how, and why each write's run-queue wait is taken away.

use crate::latency::Latencies;
use crate::load::fixed_fanout_graph;
use crate::options::Options;
use crate::report::{millis, thousands};
use crate::table::Row;
use package_indexer::{parse_line, write_request, Command, PackageName, Request, Response, Store};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use workload::{Package, Rng};

/// The hub: the first package of the graph, and every this many packages
/// also depends on it.
const HUB: &str = "pkg0";
const HUB_EVERY: usize = 10;
/// Dependencies of each package besides the hub.
const FANOUT: usize = 3;
/// Names the writer cycles through, indexing then removing each.
const WRITER_NAMES: usize = 64;
/// Most a writer may wait for an inspection.
const STALL_TARGET: Duration = Duration::from_millis(2);

pub(crate) fn rows(options: &Options) -> Result<Vec<Row>, String> {
    let mut graph = fixed_fanout_graph(options.load_packages, FANOUT, options.seed);
    let on_hub = |p: &Package| p.dependencies.iter().any(|d| d == HUB);
    for package in graph.iter_mut().skip(1).step_by(HUB_EVERY) {
        if !on_hub(package) {
            package.dependencies.push(HUB.into());
        }
    }
    let hub_dependents = graph.iter().filter(|p| on_hub(p)).count();
    let store = Store::default();
    let started = Instant::now();
    let mut lines = Vec::new();
    for package in &graph {
        write_request(
            &mut lines,
            Command::Index,
            &package.name,
            &package.dependencies,
        );
    }
    for request in requests(&lines)? {
        let executed = store.execute(&request).map_err(|e| e.to_string())?;
        if executed.outcome.response() != Response::Ok {
            return Err(format!("{}: {:?}", request.package, executed.outcome));
        }
    }
    let packages = thousands(graph.len() as u64);
    let dependents = thousands(hub_dependents as u64);
    eprintln!(
        "operator rows: {packages} packages indexed in this process in {:.1} s; {dependents} depend on {HUB}",
        started.elapsed().as_secs_f64(),
    );
    let hub = PackageName::new(HUB.as_bytes()).ok_or("the hub's name is invalid")?;
    // The writer's own packages may depend on the hub too.
    let expected = hub_dependents..=hub_dependents + WRITER_NAMES;
    let inspect = || {
        let found = store.inspect(hub).map_or(0, |i| i.dependents.len());
        let wrong = || format!("an inspection found {found} dependents of {HUB}, not {expected:?}");
        expected.contains(&found).then_some(()).ok_or_else(wrong)
    };
    let alone = writer_waits(&store, &graph, options, None)?;
    let inspecting = writer_waits(&store, &graph, options, Some(&inspect))?;
    eprintln!("writer alone: {}", waits(&alone));
    eprintln!("inspections: {}", waits(&inspecting));
    Ok(vec![Row {
        measure: format!(
            "`/v1/packages` writer stall, {packages} packages, back-to-back inspections of a package with {dependents} dependents"
        ),
        target: "longest writer wait ≤ 2 ms".into(),
        measured: waits(&inspecting),
        reference: format!("writer alone: {}", write_waits(&alone)),
        ratio: String::new(),
        met: inspecting.writes.count_over(STALL_TARGET) == 0,
    }])
}

/// Every request of `lines`, parsed.
fn requests(lines: &[u8]) -> Result<Vec<Request<'_>>, String> {
    let lines = lines.split(|&b| b == b'\n').filter(|line| !line.is_empty());
    let parse =
        |line| parse_line(line).map_err(|e| format!("{}: {e:?}", String::from_utf8_lossy(line)));
    lines.map(parse).collect()
}

/// How long each write and each read took while both ran.
struct Waits {
    writes: Latencies,
    reads: Latencies,
}

/// Runs a writer thread on `store` for the options' duration, which indexes
/// and removes [`WRITER_NAMES`] packages (three random dependencies each)
/// in turn and times each; meanwhile this thread runs `read` back to back
/// (or sleeps, without one).
fn writer_waits(
    store: &Store,
    graph: &[Package],
    options: &Options,
    read: Option<&dyn Fn() -> Result<(), String>>,
) -> Result<Waits, String> {
    let mut rng = Rng::new(options.seed);
    let mut lines = Vec::new();
    for k in 0..WRITER_NAMES {
        let mut dependencies: Vec<&str> = Vec::new();
        while dependencies.len() < FANOUT {
            let pick = &graph[rng.index(graph.len())].name;
            if !dependencies.contains(&pick.as_str()) {
                dependencies.push(pick);
            }
        }
        let name = format!("operator-writer-{k}");
        write_request(&mut lines, Command::Index, &name, &dependencies);
        write_request::<&str>(&mut lines, Command::Remove, &name, &[]);
    }
    let running = AtomicBool::new(true);
    let mut reads = Latencies::default();
    let (writer, read_result) = thread::scope(|scope| {
        let writer = scope.spawn(|| {
            // The thread's own figures: the thread that reads them must be
            // the one that opened them.
            let schedstat = File::open("/proc/thread-self/schedstat")
                .map_err(|e| format!("cannot read this thread's schedstat: {e}"))?;
            let requests = requests(&lines)?;
            let mut writes = Latencies::default();
            while running.load(Ordering::Relaxed) {
                for request in &requests {
                    let queued_before = run_queue_nanos(&schedstat);
                    let started = Instant::now();
                    let executed = store.execute(request);
                    let wall = started.elapsed();
                    let queued = run_queue_nanos(&schedstat)
                        .zip(queued_before)
                        .map(|(a, b)| a - b);
                    executed.map_err(|e| e.to_string())?;
                    // Time the writer was ready but not running is the
                    // scheduler's, not the lock's.
                    let took = wall.saturating_sub(Duration::from_nanos(queued.unwrap_or(0)));
                    writes.record(took);
                }
            }
            Ok::<_, String>(writes)
        });
        let started = Instant::now();
        let mut read_result = Ok(());
        while started.elapsed() < options.duration && read_result.is_ok() {
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
    read_result?;
    let writes = writer.map_err(|_| "the writer panicked".to_string())??;
    Ok(Waits { writes, reads })
}

/// Nanoseconds the thread has waited on a run queue (ready to run, not
/// running): the second field of its `schedstat`.
fn run_queue_nanos(schedstat: &File) -> Option<u64> {
    let mut buffer = [0u8; 96];
    let read = schedstat.read_at(&mut buffer, 0).ok()?;
    let text = std::str::from_utf8(&buffer[..read]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The writes' waits: the longest, how many passed the target, the
/// 99.99th percentile.
fn write_waits(waits: &Waits) -> String {
    format!(
        "longest {}, {} of {} over 2 ms, p99.99 {}",
        millis(waits.writes.percentile(100.0)),
        thousands(waits.writes.count_over(STALL_TARGET)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_queue_wait_of_this_thread_reads() {
        let schedstat = File::open("/proc/thread-self/schedstat").unwrap();
        assert!(run_queue_nanos(&schedstat).is_some());
    }
}
