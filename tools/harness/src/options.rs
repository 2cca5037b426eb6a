//! The harness's command line.

use package_indexer::flags::{CommandLine, Flag, Operands, Parsed, UsageError, Values};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use workload::Source;

const FLAGS: &[Flag] = &[
    Flag::value("host", "localhost", "server host"),
    Flag::value("port", "8080", "server port"),
    Flag::value(
        "concurrency",
        "10",
        "clients, one per segment of the packages",
    ),
    Flag::value(
        "seed",
        "",
        "seeds the split, the broken messages, --count; none: the clock",
    ),
    Flag::value(
        "unluckiness",
        "5",
        "percent of INDEX messages sent broken, 0 to 99",
    ),
    Flag::value(
        "packages",
        "",
        "Homebrew-style list (`name: dep dep`); none: the embedded one",
    ),
    Flag::value(
        "count",
        "",
        "instead of a list, a generated graph of this many packages",
    ),
];

/// The official harness is a Go program, so its `-name` spelling works too.
const COMMAND_LINE: CommandLine = CommandLine {
    flags: FLAGS,
    env_prefix: None,
    single_dash: true,
    operands: Operands::None,
};

/// The `--help` text.
pub(crate) fn help() -> String {
    format!(
        "\
Usage: package-indexer-harness [FLAGS]

Drives a package-indexer server like the challenge's official test harness:
remove all, index all (with broken messages), query all, remove all, query
all, with one client per segment of the packages. Prints `All tests passed!`
and exits 0 only when every answer was the one expected; exits 1 otherwise,
2 on bad usage.

Flags (`--name value` or `--name=value`; the official harness's `-name` too):
{}",
        COMMAND_LINE.help()
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) concurrency: usize,
    pub(crate) seed: u64,
    pub(crate) unluckiness: u32,
    pub(crate) source: Source,
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed<Options>, UsageError> {
    COMMAND_LINE
        .parse(args, |_| Ok(None))?
        .try_map(|values| Options::from_values(&values))
}

impl Options {
    fn from_values(values: &Values) -> Result<Options, UsageError> {
        let seed = match values.optional("seed") {
            Some(_) => values.count("seed", 0..=u64::MAX)?,
            None => seed_from_clock(),
        };
        let source = match (values.optional("packages"), values.optional("count")) {
            (Some(_), Some(_)) => {
                return Err(UsageError(
                    "--packages and --count exclude each other".to_string(),
                ))
            }
            (Some(path), None) => Source::File(PathBuf::from(path)),
            (None, Some(_)) => Source::Generated {
                seed,
                count: values.count("count", 1..=10_000_000)?,
            },
            (None, None) => Source::Homebrew,
        };
        Ok(Options {
            host: values.parse("host", "a host name or address", |host| {
                Some(host.to_string()).filter(|host| !host.is_empty())
            })?,
            port: values.count("port", 1..=u16::MAX)?,
            concurrency: values.count("concurrency", 1..=100_000)?,
            seed,
            unluckiness: values.count("unluckiness", 0..=99)?,
            source,
        })
    }
}

/// A default seed that differs between runs; it is printed so that a failing
/// run can be repeated with `--seed`.
fn seed_from_clock() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Seconds and nanoseconds together make a seed that changes fast.
    elapsed.as_secs().wrapping_mul(1_000_000_000) ^ u64::from(elapsed.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn options_from(list: &[&str]) -> Options {
        match parse(args(list)) {
            Ok(Parsed::Run(options)) => options,
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
        assert_eq!(options.source, Source::Homebrew);
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
        assert_eq!(
            options.source,
            Source::Generated {
                seed: 42,
                count: 100
            }
        );
        let options = options_from(&["--packages", "brew.txt"]);
        assert_eq!(options.source, Source::File(PathBuf::from("brew.txt")));
        assert_eq!(parse(args(&["-help"])), Ok(Parsed::Help));
        assert_eq!(parse(args(&["--version"])), Ok(Parsed::Version));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let cases: [(&[&str], &str); 11] = [
            (&["--colour", "red"], "unknown flag '--colour'"),
            (&["--port"], "flag '--port' needs a value"),
            (
                &["--port", "0"],
                "'0' for --port: expected a whole number from 1 to 65535",
            ),
            (&["--port", "http"], "'http' for --port"),
            (&["--host="], "'' for --host: expected a host name"),
            (&["--concurrency", "0"], "'0' for --concurrency"),
            (&["--unluckiness", "100"], "'100' for --unluckiness"),
            (&["--seed", "-1"], "'-1' for --seed"),
            (&["--count", "0"], "'0' for --count"),
            (&["--packages", "a", "--count", "3"], "exclude each other"),
            (&["stray"], "unexpected argument 'stray'"),
        ];
        for (list, reason) in cases {
            match parse(args(list)) {
                Err(UsageError(message)) => {
                    assert!(message.contains(reason), "{list:?}: {message}")
                }
                other => panic!("{list:?} gave {other:?}"),
            }
        }
    }
}
