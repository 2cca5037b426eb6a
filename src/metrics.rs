//! Server metrics: lock-free counters, gauges and histograms, rendered in the
//! Prometheus text exposition format 0.0.4 (the series:
//! `docs/admin-http.md#the-metrics`).
//!
//! Recording is a handful of relaxed atomic adds with no lock and no
//! allocation, so it can sit on the per-request path. Each value is read once
//! while rendering, and a histogram's `_count` is the sum of its own buckets,
//! so it always equals the `+Inf` bucket even while requests are recorded.

use crate::procfs::{self, process_cpu_seconds, process_status};
use crate::protocol::{Command, Response};
use crate::sys::OpenFilesLimit;
use std::fmt::{self, Display, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Request duration bucket bounds, in microseconds: an in-memory command
/// takes microseconds, one waiting on the index lock milliseconds.
const REQUEST_BUCKETS: [u64; 15] = [
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
];
/// Fsync duration bucket bounds, in microseconds: from a fast NVMe flush to
/// a disk in trouble.
const FSYNC_BUCKETS: [u64; 16] = [
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000,
];

/// `command` label values, in the order of [`Command`], then `invalid`.
const COMMAND_LABELS: [&str; 4] = ["index", "remove", "query", "invalid"];
/// `result` label values, in the order of [`Response`].
const RESULT_LABELS: [&str; 3] = ["ok", "fail", "error"];

fn command_slot(command: Option<Command>) -> usize {
    command.map_or(COMMAND_LABELS.len() - 1, |command| command as usize)
}

/// Why an accepted connection was closed at once instead of served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// `--max-connections` were already being served.
    Limit,
    /// The OS refused a resource for it, such as a thread.
    Resources,
    /// It would have used a descriptor kept for the admin listener and the
    /// data directory.
    Fds,
}

/// `reason` label values, in the order of [`RejectReason`].
const REASON_LABELS: [&str; 3] = ["limit", "resources", "fds"];

/// The store's figures at render time; the log's are zero without a data
/// directory (`docs/admin-http.md#durability-metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreGauges {
    pub packages: u64,
    pub dependencies: u64,
    pub log_bytes: u64,
    pub log_appends: u64,
    pub log_writes: u64,
}

/// Nanoseconds as seconds, for a sample: integer nanoseconds over 1e9
/// print as the exact decimal (`0.000025`, `2.5`, `1`).
fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// A histogram over fixed bucket bounds in microseconds. Each observation
/// increments exactly one (non-cumulative) count; rendering accumulates.
struct Histogram {
    bounds: &'static [u64],
    /// One count per bound, then one for the values above the last.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Observes `elapsed` `times` times: two atomic additions for any count.
    fn observe(&self, elapsed: Duration, times: u64) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // Prometheus buckets count values <= their bound.
        let slot = self.bounds.partition_point(|&bound| bound * 1000 < nanos);
        self.counts[slot].fetch_add(times, Relaxed);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(times), Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples; `labels` is empty
    /// or a rendered label list and its comma, such as `command="index",`.
    fn render(&self, name: &str, labels: &str, out: &mut String) -> fmt::Result {
        let bounds = self
            .bounds
            .iter()
            .map(|bound| seconds(bound * 1000).to_string());
        let mut cumulative = 0;
        for (le, count) in bounds.chain(["+Inf".to_owned()]).zip(&self.counts) {
            cumulative += count.load(Relaxed);
            writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}")?;
        }
        let sum = seconds(self.sum_nanos.load(Relaxed));
        let labels = labels.strip_suffix(',').map(|l| format!("{{{l}}}"));
        let labels = labels.unwrap_or_default();
        writeln!(out, "{name}_sum{labels} {sum}")?;
        writeln!(out, "{name}_count{labels} {cumulative}")
    }
}

/// One batch's request counts, published at once by
/// [`Metrics::record_batch`]: a few atomic additions per batch instead of
/// three per request.
#[derive(Default)]
pub(crate) struct RequestTally {
    counts: [[u32; RESULT_LABELS.len()]; COMMAND_LABELS.len()],
}

impl RequestTally {
    /// Counts one answered request line (see [`Metrics::record_request`]).
    pub(crate) fn count(&mut self, command: Option<Command>, response: Response) {
        let cell = &mut self.counts[command_slot(command)][response as usize];
        *cell = cell.saturating_add(1);
    }
}

/// All counters of one server process. Share it as `Arc<Metrics>`.
pub struct Metrics {
    started: Duration,
    requests: [[AtomicU64; RESULT_LABELS.len()]; COMMAND_LABELS.len()],
    request_durations: [Histogram; COMMAND_LABELS.len()],
    connections_total: AtomicU64,
    // Signed so a mismatched close shows up as a negative value rather
    // than as 2^64 - 1.
    connections_active: AtomicI64,
    connections_rejected: [AtomicU64; REASON_LABELS.len()],
    durability_errors: AtomicU64,
    data_dir_rewrites: AtomicU64,
    max_connections: AtomicU64,
    max_line_bytes: AtomicU64,
    last_snapshot_seconds_bits: AtomicU64,
    fsync_durations: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Zeroed metrics; the current time becomes `process_start_time_seconds`,
    /// so create them at startup.
    pub fn new() -> Metrics {
        Metrics {
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
            requests: [const { [const { AtomicU64::new(0) }; RESULT_LABELS.len()] };
                COMMAND_LABELS.len()],
            request_durations: std::array::from_fn(|_| Histogram::new(&REQUEST_BUCKETS)),
            connections_total: AtomicU64::new(0),
            connections_active: AtomicI64::new(0),
            connections_rejected: [const { AtomicU64::new(0) }; REASON_LABELS.len()],
            durability_errors: AtomicU64::new(0),
            data_dir_rewrites: AtomicU64::new(0),
            max_connections: AtomicU64::new(0),
            max_line_bytes: AtomicU64::new(0),
            last_snapshot_seconds_bits: AtomicU64::new(0f64.to_bits()),
            fsync_durations: Histogram::new(&FSYNC_BUCKETS),
        }
    }

    /// Counts one answered request line; `command` is `None` when the line
    /// did not name a valid command (label `invalid`).
    pub fn record_request(&self, command: Option<Command>, response: Response, elapsed: Duration) {
        let command = command_slot(command);
        self.requests[command][response as usize].fetch_add(1, Relaxed);
        self.request_durations[command].observe(elapsed, 1);
    }

    /// Publishes a batch's requests, each observed as `elapsed`, and empties
    /// `tally`.
    pub(crate) fn record_batch(&self, tally: &mut RequestTally, elapsed: Duration) {
        for (command, results) in tally.counts.iter_mut().enumerate() {
            let mut requests = 0;
            for (result, count) in results.iter_mut().enumerate() {
                let count = u64::from(std::mem::take(count));
                if count > 0 {
                    self.requests[command][result].fetch_add(count, Relaxed);
                    requests += count;
                }
            }
            if requests > 0 {
                self.request_durations[command].observe(elapsed, requests);
            }
        }
    }

    /// A connection was accepted and will be served.
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
    }

    /// Connections being served now.
    pub fn connections_active(&self) -> usize {
        usize::try_from(self.connections_active.load(Relaxed)).unwrap_or(0)
    }

    /// A connection counted by [`connection_opened`](Self::connection_opened) ended.
    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Relaxed);
    }

    /// A connection was accepted and closed at once without being served.
    pub fn connection_rejected(&self, reason: RejectReason) {
        self.connections_rejected[reason as usize].fetch_add(1, Relaxed);
    }

    /// A write, fsync or compaction of durable state failed.
    pub fn durability_error(&self) {
        self.durability_errors.fetch_add(1, Relaxed);
    }

    /// Files of the data directory were found gone and written again.
    pub fn data_dir_rewritten(&self) {
        self.data_dir_rewrites.fetch_add(1, Relaxed);
    }

    /// The limits the server runs with, for alerts to compare against
    /// (`docs/admin-http.md#connection-metrics`).
    pub fn set_limits(&self, max_connections: u64, max_line_bytes: u64) {
        self.max_connections.store(max_connections, Relaxed);
        self.max_line_bytes.store(max_line_bytes, Relaxed);
    }

    /// Whether fewer connections are active than
    /// [`set_limits`](Self::set_limits) allows.
    pub(crate) fn has_room(&self) -> bool {
        (self.connections_active() as u64) < self.max_connections.load(Relaxed)
    }

    /// A snapshot was completed at `unix_seconds`.
    pub fn snapshot_written(&self, unix_seconds: f64) {
        self.last_snapshot_seconds_bits
            .store(unix_seconds.to_bits(), Relaxed);
    }

    /// One fsync (or fdatasync) took `elapsed`.
    pub fn record_fsync(&self, elapsed: Duration) {
        self.fsync_durations.observe(elapsed, 1);
    }

    /// Appends the whole exposition to `out`. Process metrics that
    /// `/proc/self` cannot provide are left out rather than failing the scrape.
    pub fn render(&self, store: StoreGauges, out: &mut String) {
        // Formatting into a String cannot fail.
        let _ = self.write_exposition(store, out);
    }

    fn write_exposition(&self, store: StoreGauges, out: &mut String) -> fmt::Result {
        const REQUESTS: &str = "package_indexer_requests_total";
        let help = "Request lines answered, by command and answer.";
        family(out, REQUESTS, "counter", help)?;
        for (command, results) in COMMAND_LABELS.iter().zip(&self.requests) {
            for (result, count) in RESULT_LABELS.iter().zip(results) {
                let labels = format!("command=\"{command}\",result=\"{result}\"");
                writeln!(out, "{REQUESTS}{{{labels}}} {}", count.load(Relaxed))?;
            }
        }
        const DURATION: &str = "package_indexer_request_duration_seconds";
        let help = "Time from the start of a request's batch to its answers being ready.";
        family(out, DURATION, "histogram", help)?;
        for (command, histogram) in COMMAND_LABELS.iter().zip(&self.request_durations) {
            histogram.render(DURATION, &format!("command=\"{command}\","), out)?;
        }
        const REJECTED: &str = "package_indexer_connections_rejected_total";
        let help = "Connections closed at once without being served, by reason.";
        family(out, REJECTED, "counter", help)?;
        for (reason, count) in REASON_LABELS.iter().zip(&self.connections_rejected) {
            let count = count.load(Relaxed);
            writeln!(out, "{REJECTED}{{reason=\"{reason}\"}} {count}")?;
        }
        const FSYNC: &str = "package_indexer_fsync_duration_seconds";
        let help = "Time taken by each fsync of durable state.";
        family(out, FSYNC, "histogram", help)?;
        self.fsync_durations.render(FSYNC, "", out)?;
        const BUILD_INFO: &str = "package_indexer_build_info";
        let help = "Always 1; the version and the git commit built are in the labels.";
        family(out, BUILD_INFO, "gauge", help)?;
        let (version, commit) = (env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_COMMIT"));
        writeln!(
            out,
            "{BUILD_INFO}{{version=\"{version}\",commit=\"{commit}\"}} 1"
        )?;

        let load = |value: &AtomicU64| value.load(Relaxed);
        let (cpu, status) = (process_cpu_seconds("self"), process_status("self"));
        let fds = procfs::open_fds().map(|open| open.len() as u64);
        let max_fds = OpenFilesLimit::current().ok().map(|limit| limit.soft);
        // Each row: the name, type and HELP text, then the value, which is
        // left out when `/proc` cannot give it.
        let series: [(&str, Option<&dyn Display>); 19] = [
            (
                "package_indexer_connections_total counter Connections accepted and served.",
                Some(&load(&self.connections_total)),
            ),
            (
                "package_indexer_durability_errors_total counter Failed writes, syncs or compactions of durable state.",
                Some(&load(&self.durability_errors)),
            ),
            (
                "package_indexer_data_dir_rewrites_total counter Times files of the data directory were found missing and written again from memory.",
                Some(&load(&self.data_dir_rewrites)),
            ),
            (
                "package_indexer_log_appends_total counter Changes appended to the durable log.",
                Some(&store.log_appends),
            ),
            (
                "package_indexer_log_writes_total counter write(2) batches that carried the appended changes to the log.",
                Some(&store.log_writes),
            ),
            (
                "process_cpu_seconds_total counter User and system CPU time spent, in seconds.",
                cpu.as_ref().map(|seconds| seconds as &dyn Display),
            ),
            (
                "package_indexer_connections_active gauge Connections being served now.",
                Some(&self.connections_active.load(Relaxed)),
            ),
            (
                "package_indexer_packages gauge Packages in the index.",
                Some(&store.packages),
            ),
            (
                "package_indexer_dependencies gauge Dependency edges in the index.",
                Some(&store.dependencies),
            ),
            (
                "package_indexer_log_bytes gauge Size of the durable log on disk.",
                Some(&store.log_bytes),
            ),
            (
                "package_indexer_max_connections gauge Connections served at once at most: --max-connections, or fewer if the open-files limit leaves less.",
                Some(&load(&self.max_connections)),
            ),
            (
                "package_indexer_max_line_bytes gauge Longest request line accepted, newline included (--max-line-bytes).",
                Some(&load(&self.max_line_bytes)),
            ),
            (
                "package_indexer_last_snapshot_timestamp_seconds gauge Unix time of the last completed snapshot; 0 if none.",
                Some(&f64::from_bits(load(&self.last_snapshot_seconds_bits))),
            ),
            (
                "process_start_time_seconds gauge Start time of the process since the Unix epoch.",
                Some(&(self.started.as_millis() as f64 / 1000.0)),
            ),
            (
                "process_virtual_memory_bytes gauge Virtual memory size.",
                shown(&status.virtual_bytes),
            ),
            (
                "process_resident_memory_bytes gauge Resident memory size.",
                shown(&status.resident_bytes),
            ),
            (
                "process_open_fds gauge Open file descriptors.",
                shown(&fds),
            ),
            (
                "process_max_fds gauge Most file descriptors the process may open.",
                shown(&max_fds),
            ),
            (
                "process_threads gauge OS threads in the process.",
                shown(&status.threads),
            ),
        ];
        for (spec, value) in series {
            let mut spec = spec.splitn(3, ' ');
            let (Some(name), Some(kind), Some(help), Some(value)) =
                (spec.next(), spec.next(), spec.next(), value)
            else {
                continue;
            };
            family(out, name, kind, help)?;
            writeln!(out, "{name} {value}")?;
        }
        Ok(())
    }
}

/// Writes the `# HELP` and `# TYPE` lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A process figure, if `/proc` gave it.
fn shown(value: &Option<u64>) -> Option<&dyn Display> {
    value.as_ref().map(|value| value as &dyn Display)
}

#[cfg(test)]
// `promtool check metrics` runs on a real scrape in tests/metrics_format.rs.
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__")
    }

    fn parse_value(text: &str) -> Result<f64, String> {
        match text {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            // Rust also accepts `inf` and `infinity`; the format does not.
            _ if text
                .chars()
                .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
            {
                Err(format!("bad value {text:?}"))
            }
            _ => text.parse().map_err(|_| format!("bad value {text:?}")),
        }
    }

    /// Splits `name{a="x",b="y"} value` into its parts, checking the label
    /// syntax and escapes strictly.
    type Labels = Vec<(String, String)>;

    fn parse_sample(line: &str) -> Result<(&str, Labels, f64), String> {
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(after_brace) = rest.strip_prefix('{') {
            let mut chars = after_brace.char_indices();
            loop {
                let label_start = chars.clone().next().map(|(at, _)| at).ok_or("cut off")?;
                let equals = after_brace[label_start..]
                    .find('=')
                    .ok_or("label without =")?;
                let label = &after_brace[label_start..label_start + equals];
                if !is_label_name(label) {
                    return Err(format!("bad label name {label:?}"));
                }
                for _ in 0..=label.len() {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err("label value not quoted".to_owned());
                }
                let mut value = String::new();
                loop {
                    match chars.next().ok_or("unterminated label value")?.1 {
                        '"' => break,
                        '\\' => match chars.next().ok_or("cut escape")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => return Err(format!("bad escape \\{other}")),
                        },
                        '\n' => return Err("raw newline in label value".to_owned()),
                        c => value.push(c),
                    }
                }
                if labels.iter().any(|(existing, _)| existing == label) {
                    return Err(format!("label {label} repeated"));
                }
                labels.push((label.to_owned(), value));
                match chars.next().ok_or("cut off after label")? {
                    (_, ',') => continue,
                    (at, '}') => {
                        rest = &after_brace[at + 1..];
                        break;
                    }
                    (_, other) => return Err(format!("unexpected {other:?} after label")),
                }
            }
        }
        let value_text = rest.strip_prefix(' ').ok_or("no space before value")?;
        if value_text.contains(' ') {
            return Err("timestamps or extra fields are not expected".to_owned());
        }
        Ok((name, labels, parse_value(value_text)?))
    }

    #[derive(Default)]
    struct HistogramSeries {
        buckets: Vec<(f64, f64)>,
        sum: Option<f64>,
        count: Option<f64>,
    }

    /// A strict checker for the text exposition format 0.0.4, stricter than
    /// the format where our output has a fixed shape (no blank lines, no
    /// other comments, HELP before TYPE, no empty families).
    fn check_exposition(text: &str) -> Result<(), String> {
        if !text.ends_with('\n') {
            return Err("no trailing newline".to_owned());
        }
        let mut helped = HashSet::new();
        let mut types: HashMap<String, String> = HashMap::new();
        let mut families_with_samples = HashSet::new();
        let mut current: Option<(String, String)> = None;
        let mut series = HashSet::new();
        let mut histograms: HashMap<(String, Labels), HistogramSeries> = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let fail = |reason: String| format!("line {}: {reason}: {line:?}", number + 1);
            if let Some(comment) = line.strip_prefix("# ") {
                let mut parts = comment.splitn(3, ' ');
                let keyword = parts.next().unwrap_or_default();
                let name = parts.next().unwrap_or_default().to_owned();
                let detail = parts.next().unwrap_or_default();
                if !is_metric_name(&name) {
                    return Err(fail("bad family name".to_owned()));
                }
                match keyword {
                    "HELP" => {
                        if detail.is_empty() || !helped.insert(name) {
                            return Err(fail("empty or repeated HELP".to_owned()));
                        }
                    }
                    "TYPE" => {
                        if !helped.contains(&name) {
                            return Err(fail("TYPE without HELP before it".to_owned()));
                        }
                        if !["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&detail)
                        {
                            return Err(fail("unknown type".to_owned()));
                        }
                        if types.insert(name.clone(), detail.to_owned()).is_some() {
                            return Err(fail("repeated TYPE".to_owned()));
                        }
                        current = Some((name, detail.to_owned()));
                    }
                    _ => return Err(fail("unexpected comment".to_owned())),
                }
                continue;
            }
            let (name, labels, value) = parse_sample(line).map_err(fail)?;
            let (family, kind) = current
                .as_ref()
                .ok_or_else(|| fail("sample before any TYPE".to_owned()))?;
            let suffix = name
                .strip_prefix(family.as_str())
                .ok_or_else(|| fail(format!("sample outside family {family}")))?;
            let mut key_labels = labels.clone();
            key_labels.sort();
            if !series.insert((name.to_owned(), key_labels)) {
                return Err(fail("duplicate series".to_owned()));
            }
            families_with_samples.insert(family.clone());
            if kind == "counter" && (value.is_nan() || value < 0.0) {
                return Err(fail("counter not a non-negative number".to_owned()));
            }
            if kind != "histogram" {
                if !suffix.is_empty() {
                    return Err(fail(format!("sample outside family {family}")));
                }
                if labels.iter().any(|(label, _)| label == "le") {
                    return Err(fail("le label outside a histogram".to_owned()));
                }
                continue;
            }
            let mut without_le: Vec<_> = labels
                .iter()
                .filter(|(label, _)| label != "le")
                .cloned()
                .collect();
            without_le.sort();
            let le = labels.iter().find(|(label, _)| label == "le");
            let entry = histograms.entry((family.clone(), without_le)).or_default();
            match (suffix, le) {
                ("_bucket", Some((_, bound))) => entry
                    .buckets
                    .push((parse_value(bound).map_err(fail)?, value)),
                ("_sum", None) => entry.sum = Some(value),
                ("_count", None) => entry.count = Some(value),
                _ => return Err(fail("not a histogram sample".to_owned())),
            }
        }
        if let Some(empty) = types
            .keys()
            .find(|name| !families_with_samples.contains(*name))
        {
            return Err(format!("family {empty} has no samples"));
        }
        for ((family, labels), histogram) in &histograms {
            let at = format!("histogram {family} {labels:?}");
            let last = histogram
                .buckets
                .last()
                .ok_or(format!("{at}: no buckets"))?;
            if last.0 != f64::INFINITY {
                return Err(format!("{at}: last bucket is not +Inf"));
            }
            for pair in histogram.buckets.windows(2) {
                if pair[0].0 >= pair[1].0 || pair[0].1 > pair[1].1 {
                    return Err(format!("{at}: buckets not increasing and cumulative"));
                }
            }
            if histogram.count != Some(last.1) {
                return Err(format!("{at}: _count missing or not the +Inf bucket"));
            }
            if histogram.sum.is_none() {
                return Err(format!("{at}: _sum missing"));
            }
        }
        Ok(())
    }

    fn value<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    }

    fn populated() -> Metrics {
        let metrics = Metrics::new();
        let us = Duration::from_micros;
        metrics.record_request(Some(Command::Index), Response::Ok, us(30));
        metrics.record_request(Some(Command::Index), Response::Ok, us(30));
        // Exactly on a bound: counted in that bucket.
        metrics.record_request(Some(Command::Query), Response::Fail, us(1_000));
        metrics.record_request(Some(Command::Remove), Response::Ok, Duration::from_secs(5));
        metrics.record_request(None, Response::Error, Duration::ZERO);
        for _ in 0..3 {
            metrics.connection_opened();
        }
        metrics.connection_closed();
        metrics.connection_rejected(RejectReason::Limit);
        metrics.connection_rejected(RejectReason::Limit);
        metrics.connection_rejected(RejectReason::Resources);
        metrics.connection_rejected(RejectReason::Fds);
        metrics.durability_error();
        metrics.snapshot_written(1_795_401_000.5);
        metrics.record_fsync(us(3_000));
        metrics
    }

    fn rendered(metrics: &Metrics) -> String {
        let mut text = String::new();
        metrics.render(
            StoreGauges {
                packages: 3,
                dependencies: 2,
                log_bytes: 4096,
                log_appends: 30,
                log_writes: 7,
            },
            &mut text,
        );
        text
    }

    #[test]
    fn populated_metrics_are_well_formed_and_exact() {
        let text = rendered(&populated());
        check_exposition(&text).unwrap();

        let requests = "package_indexer_requests_total";
        assert_eq!(
            value(
                &text,
                &format!("{requests}{{command=\"index\",result=\"ok\"}}")
            ),
            "2"
        );
        assert_eq!(
            value(
                &text,
                &format!("{requests}{{command=\"query\",result=\"fail\"}}")
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                &format!("{requests}{{command=\"invalid\",result=\"error\"}}")
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                &format!("{requests}{{command=\"remove\",result=\"fail\"}}")
            ),
            "0"
        );

        let duration = "package_indexer_request_duration_seconds";
        let bucket = |command: &str, le: &str| {
            value(
                &text,
                &format!("{duration}_bucket{{command=\"{command}\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("index", "0.000025"), "0");
        assert_eq!(bucket("index", "0.00005"), "2");
        assert_eq!(
            value(&text, &format!("{duration}_sum{{command=\"index\"}}")),
            "0.00006"
        );
        assert_eq!(
            value(&text, &format!("{duration}_count{{command=\"index\"}}")),
            "2"
        );
        assert_eq!(bucket("query", "0.0005"), "0");
        assert_eq!(bucket("query", "0.001"), "1");
        assert_eq!(bucket("remove", "1"), "0");
        assert_eq!(bucket("remove", "+Inf"), "1");
        assert_eq!(
            value(&text, &format!("{duration}_sum{{command=\"remove\"}}")),
            "5"
        );
        assert_eq!(bucket("invalid", "0.000025"), "1");

        assert_eq!(value(&text, "package_indexer_connections_total"), "3");
        assert_eq!(value(&text, "package_indexer_connections_active"), "2");
        let rejected = "package_indexer_connections_rejected_total";
        assert_eq!(
            value(&text, &format!("{rejected}{{reason=\"limit\"}}")),
            "2"
        );
        assert_eq!(
            value(&text, &format!("{rejected}{{reason=\"resources\"}}")),
            "1"
        );
        assert_eq!(value(&text, &format!("{rejected}{{reason=\"fds\"}}")), "1");
        assert_eq!(value(&text, "package_indexer_packages"), "3");
        assert_eq!(value(&text, "package_indexer_dependencies"), "2");

        assert_eq!(value(&text, "package_indexer_durability_errors_total"), "1");
        assert_eq!(value(&text, "package_indexer_log_bytes"), "4096");
        assert_eq!(value(&text, "package_indexer_log_appends_total"), "30");
        assert_eq!(value(&text, "package_indexer_log_writes_total"), "7");
        assert_eq!(
            value(&text, "package_indexer_last_snapshot_timestamp_seconds"),
            "1795401000.5"
        );
        let fsync = "package_indexer_fsync_duration_seconds";
        assert_eq!(
            value(&text, &format!("{fsync}_bucket{{le=\"0.0025\"}}")),
            "0"
        );
        assert_eq!(
            value(&text, &format!("{fsync}_bucket{{le=\"0.005\"}}")),
            "1"
        );
        assert_eq!(value(&text, &format!("{fsync}_sum")), "0.003");
        assert_eq!(value(&text, &format!("{fsync}_count")), "1");

        let version = env!("CARGO_PKG_VERSION");
        let commit = env!("BUILD_GIT_COMMIT");
        let build_info =
            format!("package_indexer_build_info{{version=\"{version}\",commit=\"{commit}\"}}");
        assert_eq!(value(&text, &build_info), "1");
        for name in [
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_threads",
        ] {
            let reading: f64 = value(&text, name).parse().unwrap();
            assert!(reading > 0.0, "{name} = {reading}");
        }
    }

    #[test]
    fn fresh_metrics_render_every_family_at_zero() {
        let metrics = Metrics::new();
        let text = rendered(&metrics);
        check_exposition(&text).unwrap();
        assert_eq!(value(&text, "package_indexer_durability_errors_total"), "0");
        assert_eq!(
            value(&text, "package_indexer_last_snapshot_timestamp_seconds"),
            "0"
        );
        assert_eq!(
            value(&text, "package_indexer_fsync_duration_seconds_count"),
            "0"
        );
        assert_eq!(
            value(&text, "package_indexer_fsync_duration_seconds_sum"),
            "0"
        );
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let metrics = Arc::new(Metrics::new());
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        metrics.record_request(
                            Some(Command::Query),
                            Response::Ok,
                            Duration::from_micros(1),
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let text = rendered(&metrics);
        let requests = "package_indexer_requests_total{command=\"query\",result=\"ok\"}";
        assert_eq!(value(&text, requests), "4000");
        let count = "package_indexer_request_duration_seconds_count{command=\"query\"}";
        assert_eq!(value(&text, count), "4000");
        let sum = "package_indexer_request_duration_seconds_sum{command=\"query\"}";
        assert_eq!(value(&text, sum), "0.004");
    }

    #[test]
    fn a_batch_counts_like_its_requests_one_by_one() {
        let answered = [
            (Some(Command::Index), Response::Ok),
            (Some(Command::Index), Response::Fail),
            (Some(Command::Query), Response::Ok),
            (Some(Command::Query), Response::Ok),
            (None, Response::Error),
        ];
        let elapsed = Duration::from_micros(40);
        let one_by_one = Metrics::new();
        let batched = Metrics::new();
        let mut tally = RequestTally::default();
        for (command, response) in answered {
            one_by_one.record_request(command, response, elapsed);
            tally.count(command, response);
        }
        batched.record_batch(&mut tally, elapsed);
        // Without the process gauges, which differ from one rendering to the next.
        let requests = |metrics: &Metrics| {
            rendered(metrics)
                .lines()
                .filter(|l| l.starts_with("package_indexer_request"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(requests(&batched), requests(&one_by_one));
        // The tally is empty again: publishing it twice counts nothing more.
        batched.record_batch(&mut tally, elapsed);
        assert_eq!(requests(&batched), requests(&one_by_one));
    }

    #[test]
    fn seconds_are_spelled_exactly() {
        assert_eq!(seconds(0).to_string(), "0");
        assert_eq!(seconds(25_000).to_string(), "0.000025");
        assert_eq!(seconds(2_500_000_000).to_string(), "2.5");
        assert_eq!(seconds(1).to_string(), "0.000000001");
        assert_eq!(seconds(123_456_789_012_345).to_string(), "123456.789012345");
    }

    #[test]
    fn checker_rejects_malformed_expositions() {
        let head = "# HELP m_total Help.\n# TYPE m_total counter\n";
        let histogram = "# HELP h Help.\n# TYPE h histogram\n";
        let broken = [
            ("no trailing newline", format!("{head}m_total 1")),
            ("sample without TYPE", "m_total 1\n".to_owned()),
            (
                "TYPE without HELP",
                "# TYPE m_total counter\nm_total 1\n".to_owned(),
            ),
            ("bad metric name", format!("{head}m_total 1\n1m 2\n")),
            ("bad label name", format!("{head}m_total{{1a=\"x\"}} 1\n")),
            ("unquoted label", format!("{head}m_total{{a=x}} 1\n")),
            ("bad escape", format!("{head}m_total{{a=\"\\t\"}} 1\n")),
            ("trailing comma", format!("{head}m_total{{a=\"x\",}} 1\n")),
            (
                "duplicate series",
                format!("{head}m_total{{a=\"x\"}} 1\nm_total{{a=\"x\"}} 2\n"),
            ),
            (
                "repeated label",
                format!("{head}m_total{{a=\"x\",a=\"y\"}} 1\n"),
            ),
            ("lowercase inf", format!("{head}m_total inf\n")),
            ("negative counter", format!("{head}m_total -1\n")),
            ("timestamp", format!("{head}m_total 1 1000\n")),
            ("outside family", format!("{head}other 1\n")),
            ("empty family", head.to_owned()),
            ("blank line", format!("{head}\nm_total 1\n")),
            (
                "no +Inf",
                format!("{histogram}h_bucket{{le=\"1\"}} 1\nh_sum 1\nh_count 1\n"),
            ),
            (
                "not cumulative",
                format!(
                    "{histogram}h_bucket{{le=\"1\"}} 2\nh_bucket{{le=\"+Inf\"}} 1\n\
                     h_sum 1\nh_count 1\n"
                ),
            ),
            (
                "count differs",
                format!("{histogram}h_bucket{{le=\"+Inf\"}} 1\nh_sum 1\nh_count 2\n"),
            ),
            (
                "no sum",
                format!("{histogram}h_bucket{{le=\"+Inf\"}} 1\nh_count 1\n"),
            ),
        ];
        for (what, text) in broken {
            assert!(check_exposition(&text).is_err(), "accepted: {what}");
        }
        let good = format!(
            "{head}m_total{{a=\"x \\\"y\\\" \\\\ \\n\"}} 1\n{histogram}\
             h_bucket{{le=\"1\"}} 1\nh_bucket{{le=\"+Inf\"}} 1\nh_sum 0.5\nh_count 1\n"
        );
        check_exposition(&good).unwrap();
    }
}
