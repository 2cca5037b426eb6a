//! Text formatting of the measurements: per-run reports and number styles
//! shared with the Markdown table.

use crate::load::{Measured, Steady};
pub(crate) use package_indexer::thousands;
use std::fmt::Write;
use std::time::Duration;

/// A measured figure rounded to a whole number (the cast saturates), with
/// thousands separators.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn whole(value: f64) -> String {
    thousands(value.round() as u64)
}

pub(crate) fn millis(latency: Option<Duration>) -> String {
    let millis = latency.map(|d| d.as_secs_f64() * 1e3);
    millis.map_or_else(|| "n/a".into(), |ms| format!("{ms:.3} ms"))
}

/// Bytes in MB (10^6), as the targets are written.
pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `numerator / denominator` as `0.93×`; `n/a` when either is unknown or zero.
pub(crate) fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.3}×", n / d),
        _ => "n/a".into(),
    }
}

pub(crate) fn steady_title(shape: &Steady, graph: usize) -> String {
    let latency = if shape.depth > 1 {
        "latency per batch round trip"
    } else {
        "latency per request"
    };
    format!(
        "{}, {} connections, depth {}, {} idle, {:?}, graph of {} packages; {latency}",
        shape.workload.name,
        shape.connections,
        shape.depth,
        shape.idle,
        shape.duration,
        thousands(graph as u64)
    )
}

/// The report's columns, `|`-separated.
const HEADER: &str = "requests/s|p50|p99|p99.9|cpu s|rss|peak rss";

/// The latency percentiles every report gives.
const PERCENTILES: [f64; 3] = [50.0, 99.0, 99.9];

fn seconds(latency: Option<Duration>) -> Option<f64> {
    latency.map(|d| d.as_secs_f64())
}

fn columns(measured: &Measured) -> Vec<String> {
    let bytes = |b: Option<u64>| b.map_or_else(|| "n/a".into(), megabytes);
    let mut cells = vec![whole(measured.rate())];
    cells.extend(PERCENTILES.map(|p| millis(measured.latency.percentile(p))));
    cells.push(
        measured
            .cpu_seconds
            .map_or_else(|| "n/a".into(), |s| format!("{s:.2}")),
    );
    cells.push(bytes(measured.memory.resident_bytes));
    cells.push(bytes(measured.memory.peak_resident_bytes));
    cells
}

fn ratios(real: &Measured, null: &Measured) -> Vec<String> {
    let mut cells = vec![ratio(Some(real.rate()), Some(null.rate()))];
    cells.extend(PERCENTILES.map(|p| {
        ratio(
            seconds(real.latency.percentile(p)),
            seconds(null.latency.percentile(p)),
        )
    }));
    cells.push(ratio(real.cpu_seconds, null.cpu_seconds));
    cells
}

fn row(out: &mut String, label: &str, cells: &[String]) {
    let _ = write!(out, "  {label:<16}");
    for cell in cells {
        let _ = write!(out, " {cell:>12}");
    }
    out.push('\n');
}

/// One run's figures per server, and the ratio of the first to the second.
pub(crate) fn runs(title: &str, results: &[(&str, Measured)]) -> String {
    let mut out = format!("{title}\n");
    row(
        &mut out,
        "",
        &HEADER.split('|').map(String::from).collect::<Vec<_>>(),
    );
    for (label, measured) in results {
        row(&mut out, label, &columns(measured));
    }
    if let [(_, real), (_, null)] = results {
        row(&mut out, "ratio", &ratios(real, null));
    }
    for (label, measured) in results {
        let [ok, fail, error] = measured.answers.map(thousands);
        let _ = write!(
            out,
            "  {label}: {} requests in {:.2} s; answers ok {ok}, fail {fail}, error {error}",
            thousands(measured.requests),
            measured.elapsed.as_secs_f64(),
        );
        if let Some((served, held)) = measured.idle_served {
            let _ = write!(out, "; idle connections served {served} of {held}");
        }
        out.push('\n');
    }
    if results.iter().any(|(label, _)| *label == crate::NULL_LABEL) {
        out.push_str(
            "  (the null server's memory is the whole benchmark process's, clients included)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(millis(Some(Duration::from_micros(1500))), "1.500 ms");
        assert_eq!(millis(None), "n/a");
        assert_eq!(megabytes(123_456_789), "123.5 MB");
        assert_eq!(ratio(Some(9.0), Some(10.0)), "0.900×");
        assert_eq!(ratio(Some(9.0), Some(0.0)), "n/a");
        assert_eq!(ratio(None, Some(1.0)), "n/a");
    }

    #[test]
    fn a_report_has_both_servers_and_the_ratio() {
        let mut real = Measured {
            requests: 900,
            elapsed: Duration::from_secs(1),
            ..Measured::default()
        };
        real.latency.record(Duration::from_micros(110));
        let mut null = Measured {
            requests: 1000,
            elapsed: Duration::from_secs(1),
            ..Measured::default()
        };
        null.latency.record(Duration::from_micros(100));
        let text = runs("t", &[("package-indexer", real), (crate::NULL_LABEL, null)]);
        let ratio_line = text
            .lines()
            .find(|l| l.trim_start().starts_with("ratio"))
            .unwrap();
        assert!(ratio_line.contains("0.900×"), "{text}");
        // p50: 110 µs over 100 µs, each within a bucket's width.
        assert!(
            ratio_line.contains(" 1.1") || ratio_line.contains(" 1.09"),
            "{text}"
        );
        assert!(text.contains("900 requests"), "{text}");
    }
}
