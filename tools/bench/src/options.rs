//! The benchmark's command line.

use crate::load::Workload;
use package_indexer::config::parse_duration;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Run the standard table instead of one workload.
    pub table: bool,
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
    /// Homebrew-style list for the harness workload instead of the
    /// embedded one.
    pub brew: Option<PathBuf>,
    pub seed: u64,
    /// Measure the null server too.
    pub null: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            table: false,
            workload: Workload::Query,
            connections: 100,
            depth: 1,
            idle: 0,
            duration: Duration::from_secs(5),
            packages: 10_000,
            load_packages: 1_000_000,
            server_args: Vec::new(),
            addr: None,
            server: None,
            brew: None,
            seed: 1,
            null: true,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Invocation {
    Run(Options),
    Help,
}

pub const USAGE: &str = "\
Usage: package-indexer-bench [FLAGS]

Measures package-indexer and a null server (same thread-per-connection
design, answers OK to every line, no index) under the same load, and prints
both and their ratio. The real server is started from the binary next to
this one on an ephemeral port unless --addr names a running one.

Flags (`--name value` or `--name=value`):
  --workload NAME      query | churn | mixed | harness [default: query]
  --connections N      busy connections (harness: concurrency) [default: 100]
  --depth N            requests per batch (pipelining); latency is then per
                       batch round trip [default: 1]
  --idle N             extra connections held open without traffic [default: 0]
  --duration D         length of each run: 500ms, 5s, 1m [default: 5s]
  --packages N         size of the preloaded graph [default: 10000]
  --load-packages N    packages of the table's load, memory and restart rows
                       [default: 1000000]
  --server-args ARGS   extra arguments for the real server, space-separated,
                       e.g. \"--data-dir /tmp/x --fsync never\"
  --addr HOST:PORT     measure a running server (no CPU or memory figures)
  --server PATH        the server binary [default: package-indexer next to this]
  --brew FILE          Homebrew-style list for the harness workload
                       [default: the embedded one, as the official harness's]
  --seed N             seed of the generated graphs and request mix [default: 1]
  --no-null            skip the null server
  --table              run the standard table and print it as Markdown
  --help               this text
";

fn number<T>(flag: &str, value: &str, min: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + std::fmt::Display,
{
    let parsed: T = value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
    if parsed < min {
        return Err(format!("{flag}: must be at least {min}"));
    }
    Ok(parsed)
}

pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut options = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--help" | "-h" => return Ok(Invocation::Help),
            "--table" => options.table = true,
            "--no-null" => options.null = false,
            _ if !flag.starts_with("--") => return Err(format!("unexpected argument {arg:?}")),
            _ => {
                let value = match inline {
                    Some(value) => value,
                    None => rest
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{flag} needs a value"))?,
                };
                set(&mut options, flag, &value)?;
            }
        }
    }
    Ok(Invocation::Run(options))
}

fn set(options: &mut Options, flag: &str, value: &str) -> Result<(), String> {
    match flag {
        "--workload" => {
            options.workload = Workload::parse(value).ok_or_else(|| {
                format!("--workload: {value:?} is not query, churn, mixed or harness")
            })?
        }
        "--connections" => options.connections = number(flag, value, 1)?,
        "--depth" => options.depth = number(flag, value, 1)?,
        "--idle" => options.idle = number(flag, value, 0)?,
        "--duration" => {
            options.duration = parse_duration(value)
                .ok_or_else(|| format!("--duration: {value:?} is not like 500ms, 5s or 1m"))?
        }
        "--packages" => options.packages = number(flag, value, 0)?,
        "--load-packages" => options.load_packages = number(flag, value, 1)?,
        "--server-args" => {
            options.server_args = value.split_whitespace().map(str::to_string).collect()
        }
        "--addr" => options.addr = Some(value.to_string()),
        "--server" => options.server = Some(PathBuf::from(value)),
        "--brew" => options.brew = Some(PathBuf::from(value)),
        "--seed" => options.seed = number(flag, value, 0)?,
        _ => return Err(format!("unknown flag {flag}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_list(list: &[&str]) -> Result<Invocation, String> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn options(list: &[&str]) -> Options {
        match parse_list(list).unwrap() {
            Invocation::Run(options) => options,
            Invocation::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults() {
        let defaults = options(&[]);
        assert_eq!(defaults, Options::default());
        assert_eq!(defaults.connections, 100);
        assert_eq!(defaults.depth, 1);
        assert_eq!(defaults.duration, Duration::from_secs(5));
        assert!(defaults.null && !defaults.table);
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let parsed = options(&[
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
            "--brew=b.txt",
            "--seed",
            "42",
            "--no-null",
            "--table",
        ]);
        assert_eq!(parsed.workload, Workload::Churn);
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
        assert_eq!(parsed.brew, Some(PathBuf::from("b.txt")));
        assert_eq!(parsed.seed, 42);
        assert!(!parsed.null && parsed.table);
    }

    #[test]
    fn help_wins() {
        assert_eq!(
            parse_list(&["--depth", "2", "--help"]),
            Ok(Invocation::Help)
        );
    }

    #[test]
    fn bad_values_say_which_flag() {
        let cases = [
            (
                &["--connections", "0"][..],
                "--connections: must be at least 1",
            ),
            (&["--depth", "x"], "--depth: \"x\" is not a number"),
            (&["--duration", "5"], "--duration"),
            (&["--workload", "write"], "--workload"),
            (&["--idle"], "--idle needs a value"),
            (&["--speed", "1"], "unknown flag --speed"),
            (&["extra"], "unexpected argument \"extra\""),
        ];
        for (list, reason) in cases {
            let error = parse_list(list).unwrap_err();
            assert!(error.contains(reason), "{list:?}: {error}");
        }
    }
}
