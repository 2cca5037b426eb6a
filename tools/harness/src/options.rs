//! The harness's command line.

use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use workload::Source;

pub(crate) const USAGE: &str = "\
Usage: package-indexer-harness [FLAGS]

Drives a package-indexer server like the challenge's official test harness:
remove all, index all (with broken messages), query all, remove all, query
all, with one client per segment of the packages. Prints `All tests passed!`
and exits 0 only when every answer was the one expected; exits 1 otherwise,
2 on bad usage.

Flags (`--name value`, `--name=value`; the official harness's `-name` works too):
  --host HOST          server host [default: localhost]
  --port PORT          server port [default: 8080]
  --concurrency N      clients, one per segment of the packages [default: 10]
  --seed N             seed for the split, the broken messages and a generated
                       graph [default: from the clock, printed]
  --unluckiness P      percent of INDEX messages replaced by a broken one,
                       0 to 99 [default: 5]
  --packages FILE      Homebrew-style list (`name: dep dep`) to use instead
                       of the embedded one (the official harness's)
  --count N            use a graph of N packages shaped like Homebrew's,
                       generated from --seed, instead of a list
  --help               this text
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) concurrency: usize,
    pub(crate) seed: u64,
    pub(crate) unluckiness: u32,
    pub(crate) source: Source,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invocation {
    Help,
    Run(Options),
}

/// Parses the flags; the error is a one-line reason.
pub(crate) fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut options = Options {
        host: "localhost".to_string(),
        port: 8080,
        concurrency: 10,
        seed: seed_from_clock(),
        unluckiness: 5,
        source: Source::Homebrew,
    };
    let mut packages = None;
    let mut count = None;
    let mut remaining = args.iter();
    while let Some(arg) = remaining.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        if flag == "help" || flag == "h" {
            return Ok(Invocation::Help);
        }
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None => {
                let value = remaining
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag, value.clone())
            }
        };
        match name {
            "host" if !value.is_empty() => options.host = value,
            "host" => return Err("--host must not be empty".to_string()),
            "port" => options.port = parse_number(name, &value, 1..=u16::MAX)?,
            "concurrency" => options.concurrency = parse_number(name, &value, 1..=100_000)?,
            "seed" => options.seed = parse_number(name, &value, 0..=u64::MAX)?,
            "unluckiness" => options.unluckiness = parse_number(name, &value, 0..=99)?,
            "packages" => packages = Some(PathBuf::from(value)),
            "count" => count = Some(parse_number(name, &value, 1..=10_000_000)?),
            _ => return Err(format!("unknown flag {arg:?}")),
        }
    }
    options.source = match (packages, count) {
        (Some(_), Some(_)) => return Err("--packages and --count exclude each other".to_string()),
        (Some(path), None) => Source::File(path),
        (None, Some(count)) => Source::Generated {
            seed: options.seed,
            count,
        },
        (None, None) => Source::Homebrew,
    };
    Ok(Invocation::Run(options))
}

fn parse_number<T>(name: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    match value.parse::<T>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(format!(
            "--{name} must be a whole number from {} to {}, not {value:?}",
            range.start(),
            range.end()
        )),
    }
}

/// A default seed that differs between runs; it is printed so that a failing
/// run can be repeated with `--seed`.
fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn options_from(list: &[&str]) -> Options {
        match parse_args(&args(list)) {
            Ok(Invocation::Run(options)) => options,
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
        assert_eq!(parse_args(&args(&["--help"])), Ok(Invocation::Help));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let cases: [(&[&str], &str); 9] = [
            (&["--colour", "red"], "unknown flag"),
            (&["--port"], "needs a value"),
            (&["--port", "0"], "--port must be"),
            (&["--port", "http"], "--port must be"),
            (&["--concurrency", "0"], "--concurrency must be"),
            (&["--unluckiness", "100"], "--unluckiness must be"),
            (&["--seed", "-1"], "--seed must be"),
            (&["--packages", "a", "--count", "3"], "exclude each other"),
            (&["stray"], "unexpected argument"),
        ];
        for (list, reason) in cases {
            match parse_args(&args(list)) {
                Err(message) => assert!(message.contains(reason), "{list:?}: {message}"),
                other => panic!("{list:?} gave {other:?}"),
            }
        }
    }
}
