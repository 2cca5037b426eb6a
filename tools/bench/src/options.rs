//! The benchmark's command line.

use crate::load::Workload;
use crate::table::SECTIONS;
use package_indexer::flags::{CommandLine, Flag, Operands, Parsed, UsageError, Values};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Run the standard table instead of one workload.
    pub table: bool,
    /// The table's sections to run, by key; empty: all of them.
    pub sections: Vec<String>,
    pub workload: Workload,
    pub connections: usize,
    /// Requests per batch; above 1 latency is per batch round trip.
    pub depth: usize,
    /// Connections opened and held without traffic during the run.
    pub idle: usize,
    pub duration: Duration,
    /// Size of the preloaded graph.
    pub packages: usize,
    /// Packages of the table's loading, memory and restart rows.
    pub load_packages: usize,
    /// Extra arguments for the real server.
    pub server_args: Vec<String>,
    /// A running server to measure instead of starting one.
    pub addr: Option<String>,
    /// The real server's binary; by default the one next to this binary.
    pub server: Option<PathBuf>,
    pub seed: u64,
    /// Measure the null server too.
    pub null: bool,
}

/// Bounds of the counts: far above what one machine can hold, low enough
/// that a slip of the finger is caught.
const MAX_CONNECTIONS: usize = 1_000_000;
const MAX_DEPTH: usize = 1_000_000;
const MAX_PACKAGES: usize = 100_000_000;

const FLAGS: &[Flag] = &[
    Flag::value("workload", "query", "query | churn | mixed"),
    Flag::value("connections", "100", "busy connections"),
    Flag::value("depth", "1", "requests per batch; latency is per batch round trip"),
    Flag::value("idle", "0", "extra connections held open without traffic"),
    Flag::value("duration", "5s", "length of each run: 500ms, 5s, 1m"),
    Flag::value("packages", "10000", "size of the preloaded graph"),
    Flag::value("load-packages", "1000000", "packages of the load, memory and restart rows"),
    Flag::value("server-args", "", "extra server arguments, e.g. \"--data-dir /tmp/x\""),
    Flag::value("addr", "", "HOST:PORT of a running server (no CPU or memory figures)"),
    Flag::value("server", "", "the server binary; none: the one next to this one"),
    Flag::value("seed", "1", "seed of the generated graphs and request mix"),
    Flag::switch("no-null", "skip the null server"),
    Flag::switch("table", "run the standard table and print it as Markdown"),
    Flag::value(
        "sections",
        "",
        "the table's sections to run, comma-separated: steady, metrics, durable, memory, load, restart, operator; none: all",
    ),
];

const COMMAND_LINE: CommandLine = CommandLine {
    flags: FLAGS,
    env_prefix: None,
    single_dash: false,
    operands: Operands::None,
};

/// The `--help` text.
pub(crate) fn help() -> String {
    format!(
        "\
Usage: package-indexer-bench [FLAGS]

Measures package-indexer and a null server (same thread-per-connection
design, answers OK to every line, no index) under the same load, and prints
both and their ratio. The real server is started from the binary next to
this one on an ephemeral port unless --addr names a running one.

Flags (`--name value` or `--name=value`):
{}",
        COMMAND_LINE.help()
    )
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed<Options>, UsageError> {
    COMMAND_LINE
        .parse(args, |_| Ok(None))?
        .try_map(|values| Options::from_values(&values))
}

impl Options {
    fn from_values(values: &Values) -> Result<Options, UsageError> {
        Ok(Options {
            table: values.switch("table"),
            sections: values.parse(
                "sections",
                &format!("a comma-separated list of {}", SECTIONS.join(", ")),
                |list| {
                    let keys: Vec<String> = list
                        .split(',')
                        .filter(|key| !key.is_empty())
                        .map(str::to_string)
                        .collect();
                    keys.iter()
                        .all(|key| SECTIONS.contains(&key.as_str()))
                        .then_some(keys)
                },
            )?,
            workload: values.parse("workload", "query, churn or mixed", Workload::parse)?,
            connections: values.count("connections", 1..=MAX_CONNECTIONS)?,
            depth: values.count("depth", 1..=MAX_DEPTH)?,
            idle: values.count("idle", 0..=MAX_CONNECTIONS)?,
            duration: values.duration("duration")?,
            packages: values.count("packages", 0..=MAX_PACKAGES)?,
            load_packages: values.count("load-packages", 1..=MAX_PACKAGES)?,
            server_args: values
                .get("server-args")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            addr: values
                .optional("addr")
                .map(|_| values.address("addr"))
                .transpose()?,
            server: values.optional("server").map(PathBuf::from),
            seed: values.count("seed", 0..=u64::MAX)?,
            null: !values.switch("no-null"),
        })
    }
}

/// The options `list` gives; for tests.
#[cfg(test)]
pub(crate) fn from_args(list: &[&str]) -> Options {
    match parse_list(list) {
        Ok(Parsed::Run(options)) => options,
        other => panic!("{list:?} gave {other:?}"),
    }
}

#[cfg(test)]
fn parse_list(list: &[&str]) -> Result<Parsed<Options>, UsageError> {
    parse(list.iter().map(|s| s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let defaults = from_args(&[]);
        assert_eq!(defaults.workload, crate::load::QUERY);
        assert_eq!(defaults.connections, 100);
        assert_eq!((defaults.idle, defaults.seed), (0, 1));
        assert_eq!(
            (defaults.packages, defaults.load_packages),
            (10_000, 1_000_000)
        );
        assert_eq!((defaults.addr, defaults.server), (None, None));
        assert!(defaults.server_args.is_empty());
        assert_eq!(defaults.depth, 1);
        assert_eq!(defaults.duration, Duration::from_secs(5));
        assert!(defaults.null && !defaults.table);
        assert!(defaults.sections.is_empty());
        assert_eq!(
            from_args(&["--sections", "memory,operator"]).sections,
            ["memory", "operator"]
        );
        assert!(parse_list(&["--sections", "memory,nope"])
            .unwrap_err()
            .0
            .starts_with("invalid value 'memory,nope' for --sections"));
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let parsed = from_args(&[
            "--workload=churn",
            "--connections",
            "7",
            "--depth=16",
            "--idle",
            "9900",
            "--duration",
            "500ms",
            "--packages=0",
            "--load-packages",
            "1000",
            "--server-args",
            "--data-dir /tmp/x  --fsync never",
            "--addr=localhost:8080",
            "--server",
            "/bin/x",
            "--seed",
            "42",
            "--no-null",
            "--table",
        ]);
        assert_eq!(parsed.workload, crate::load::CHURN);
        assert_eq!(
            (parsed.connections, parsed.depth, parsed.idle),
            (7, 16, 9900)
        );
        assert_eq!(parsed.duration, Duration::from_millis(500));
        assert_eq!((parsed.packages, parsed.load_packages), (0, 1000));
        assert_eq!(
            parsed.server_args,
            ["--data-dir", "/tmp/x", "--fsync", "never"]
        );
        assert_eq!(parsed.addr.as_deref(), Some("localhost:8080"));
        assert_eq!(parsed.server, Some(PathBuf::from("/bin/x")));
        assert_eq!(parsed.seed, 42);
        assert!(!parsed.null && parsed.table);
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse_list(&["--depth", "2", "--help"]), Ok(Parsed::Help));
        assert_eq!(parse_list(&["--version"]), Ok(Parsed::Version));
    }

    #[test]
    fn bad_values_say_which_flag() {
        let cases = [
            (
                &["--connections", "0"][..],
                "invalid value '0' for --connections: expected a whole number from 1 to 1000000",
            ),
            (&["--depth", "x"], "invalid value 'x' for --depth"),
            (
                &["--duration", "5"],
                "'5' for --duration: expected a positive duration",
            ),
            (
                &["--workload", "write"],
                "'write' for --workload: expected query, churn or mixed",
            ),
            (
                &["--addr", "nowhere"],
                "'nowhere' for --addr: expected HOST:PORT",
            ),
            (&["--idle"], "flag '--idle' needs a value"),
            (&["--table=yes"], "flag '--table' takes no value"),
            (&["--speed", "1"], "unknown flag '--speed'"),
            (&["extra"], "unexpected argument 'extra'"),
        ];
        for (list, reason) in cases {
            let UsageError(error) = parse_list(list).unwrap_err();
            assert!(error.contains(reason), "{list:?}: {error}");
        }
    }
}
