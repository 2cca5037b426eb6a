//! Flags and `PACKAGE_INDEXER_*` variables -> [`Config`]
//! (`docs/command-line.md#server-flags`). Pure: the caller passes the
//! arguments and a variable lookup, so tests need no process state.

use crate::durability::Fsync;
use crate::flags::{CommandLine, Flag, Operands, Parsed, UsageError, Values};
use crate::log;
use crate::sys::MAX_KEEPALIVE_VALUE;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub addr: String,
    /// `None` when the admin listener is `off`.
    pub admin_addr: Option<String>,
    pub max_connections: usize,
    /// `None` asks for the system's `net.core.somaxconn`, read at start.
    pub listen_backlog: Option<u32>,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    /// Idle time before keepalive probes, whole seconds; `None` when `off`.
    pub tcp_keepalive: Option<Duration>,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub data_dir: Option<PathBuf>,
    pub fsync: Fsync,
    pub log_format: log::Format,
    pub log_level: log::Level,
}

/// What the server's command line asks for: to serve, help or the version.
pub type Invocation = Parsed<Config>;

/// The admin listener's default address, also the subcommands' default.
pub(crate) const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8081";

const FLAGS: &[Flag] = &[
    Flag::value("addr", "0.0.0.0:8080", "protocol listener address"),
    Flag::value(
        "admin-addr",
        DEFAULT_ADMIN_ADDR,
        "HTTP listener for /healthz, /readyz, /metrics; `off` disables it",
    ),
    Flag::value(
        "max-connections",
        "10000",
        "connections served at once; more are accepted and closed",
    ),
    Flag::value(
        "listen-backlog",
        "somaxconn",
        "connections the kernel queues until they are accepted; `somaxconn` is the \
         system's net.core.somaxconn (4096 when it cannot be read), also the kernel's cap",
    ),
    Flag::value(
        "max-line-bytes",
        "65536",
        "longest request line, newline included",
    ),
    Flag::value(
        "idle-timeout",
        "300s",
        "close a connection with no complete line for this long",
    ),
    Flag::value(
        "tcp-keepalive",
        "60s",
        "after this long without traffic, probe a protocol connection every 10s and \
         close it after 6 unanswered probes (a dead peer goes about a minute later); \
         whole seconds; `off` disables",
    ),
    Flag::value(
        "write-timeout",
        "10s",
        "disconnect a client that does not read its answers for this long",
    ),
    Flag::value(
        "shutdown-timeout",
        "30s",
        "how long a graceful stop waits for connections to finish",
    ),
    Flag::value(
        "data-dir",
        "",
        "directory for durable state; empty means memory only",
    ),
    Flag::value(
        "fsync",
        "always",
        "with --data-dir: `always` (answered means on disk) or `never`",
    ),
    Flag::value(
        "log-format",
        "text",
        "`text` or `json`, one event per line on stderr",
    ),
    Flag::value("log-level", "info", "`error`, `warn`, `info` or `debug`"),
];

/// The `PACKAGE_INDEXER_*` names among `variables` that feed no flag: a
/// misspelt one would otherwise be ignored without a word.
pub(crate) fn unknown_variables(variables: impl IntoIterator<Item = String>) -> Vec<String> {
    let known: Vec<String> = FLAGS
        .iter()
        .filter_map(|flag| COMMAND_LINE.variable_of(flag))
        .collect();
    let mut unknown: Vec<String> = variables
        .into_iter()
        .filter(|name| name.starts_with("PACKAGE_INDEXER_") && !known.contains(name))
        .collect();
    unknown.sort();
    unknown
}

/// The server's command line: every flag also comes from its variable.
const COMMAND_LINE: CommandLine = CommandLine {
    flags: FLAGS,
    env_prefix: Some("PACKAGE_INDEXER_"),
    single_dash: false,
    operands: Operands::None,
};

/// Room for a short request.
const MIN_LINE_BYTES: usize = 16;
/// A line is buffered whole.
const MAX_LINE_BYTES: usize = 64 << 20;
/// The kernel's limit for the keepalive idle time.
const MAX_KEEPALIVE_SECONDS: u64 = MAX_KEEPALIVE_VALUE as u64;
/// The kernel caps the backlog lower anyway.
const MAX_LISTEN_BACKLOG: u32 = 1 << 20;

/// Parses the arguments after the program name.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Result<Option<String>, UsageError>,
) -> Result<Invocation, UsageError> {
    COMMAND_LINE
        .parse(args, env)?
        .try_map(|values| Config::from_values(&values))
}

impl Config {
    fn from_values(values: &Values) -> Result<Config, UsageError> {
        let admin_addr = match values.get("admin-addr") {
            "off" => None,
            _ => Some(values.address("admin-addr")?),
        };
        let data_dir = values.optional("data-dir").map(PathBuf::from);
        let listen_backlog = match values.get("listen-backlog") {
            "somaxconn" => None,
            _ => Some(values.count("listen-backlog", 1..=MAX_LISTEN_BACKLOG)?),
        };
        let tcp_keepalive = match values.get("tcp-keepalive") {
            "off" => None,
            _ => Some(values.parse(
                "tcp-keepalive",
                &format!(
                    "'off' or whole seconds from 1s to {MAX_KEEPALIVE_SECONDS}s, such as 60s or 2m"
                ),
                |value| {
                    crate::flags::parse_duration(value)
                        .filter(|d| d.subsec_millis() == 0 && d.as_secs() <= MAX_KEEPALIVE_SECONDS)
                },
            )?),
        };
        Ok(Config {
            addr: values.address("addr")?,
            admin_addr,
            max_connections: values.count("max-connections", 1..=1_000_000)?,
            listen_backlog,
            max_line_bytes: values.count("max-line-bytes", MIN_LINE_BYTES..=MAX_LINE_BYTES)?,
            idle_timeout: values.duration("idle-timeout")?,
            tcp_keepalive,
            write_timeout: values.duration("write-timeout")?,
            shutdown_timeout: values.duration("shutdown-timeout")?,
            data_dir,
            fsync: values.parse("fsync", "'always' or 'never'", |v| v.parse().ok())?,
            log_format: values.parse("log-format", "'text' or 'json'", log::Format::from_name)?,
            log_level: values.parse(
                "log-level",
                "error, warn, info or debug",
                log::Level::from_name,
            )?,
        })
    }
}

/// The `--help` text.
pub(crate) fn help() -> String {
    format!(
        "package-indexer {}: a TCP server that keeps a consistent index of packages\n\n\
         Usage:\n  package-indexer [FLAGS]          serve\n  package-indexer COMMAND [ARGS]   \
         an operator's tool; `package-indexer COMMAND --help` says more\n\n\
         Commands:\n{}\n\
         Flags (each also read from PACKAGE_INDEXER_<NAME>; a flag beats its variable):\n{}",
        env!("CARGO_PKG_VERSION"),
        crate::commands::summary(),
        COMMAND_LINE.help()
    ) + "\nSignals: SIGTERM or SIGINT stops gracefully (a second one exits at once);\n\
           SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored.\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{FALLBACK_LISTEN_BACKLOG, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES};
    use std::collections::HashMap;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, UsageError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(|a| a.to_string()), |k| {
            Ok(env.get(k).cloned())
        })
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse_with(args, env).unwrap() {
            Invocation::Run(config) => config,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = config(&[], &[]);
        assert_eq!(c.addr, "0.0.0.0:8080");
        assert_eq!(c.admin_addr.as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.listen_backlog, None);
        assert_eq!(c.max_line_bytes, 65_536);
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(60)));
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.data_dir, None);
        assert_eq!(c.fsync, Fsync::Always);
        assert_eq!(c.log_format, log::Format::Text);
        assert_eq!(c.log_level, log::Level::Info);
    }

    #[test]
    fn flags_beat_variables_beat_defaults() {
        let env = [
            ("PACKAGE_INDEXER_ADDR", "127.0.0.1:1"),
            ("PACKAGE_INDEXER_MAX_CONNECTIONS", "5"),
        ];
        let c = config(&["--addr", "127.0.0.1:2"], &env);
        assert_eq!(c.addr, "127.0.0.1:2");
        assert_eq!(c.max_connections, 5);
        let c = config(&["--admin-addr=off", "--data-dir", "/tmp/x"], &[]);
        assert_eq!(c.admin_addr, None);
        assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/x")));
    }

    #[test]
    fn misspelt_variables_are_found() {
        let unknown = unknown_variables(
            [
                "PACKAGE_INDEXER_MAX_CONECTIONS",
                "PACKAGE_INDEXER_ADDR",
                "HOME",
                "PACKAGE_INDEXER_LOGLEVEL",
            ]
            .map(String::from),
        );
        assert_eq!(
            unknown,
            ["PACKAGE_INDEXER_LOGLEVEL", "PACKAGE_INDEXER_MAX_CONECTIONS"]
        );
    }

    #[test]
    fn listen_backlog_and_tcp_keepalive() {
        let c = config(&["--listen-backlog", "512", "--tcp-keepalive", "off"], &[]);
        assert_eq!(c.listen_backlog, Some(512));
        assert_eq!(c.tcp_keepalive, None);
        let c = config(
            &["--tcp-keepalive=2m"],
            &[("PACKAGE_INDEXER_LISTEN_BACKLOG", "somaxconn")],
        );
        assert_eq!(c.listen_backlog, None);
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(120)));
        let c = config(&["--tcp-keepalive", "32767s"], &[]);
        assert_eq!(c.tcp_keepalive, Some(Duration::from_secs(32_767)));
    }

    #[test]
    fn help_states_the_keepalive_probing() {
        let help = help();
        let interval = format!("every {}s", KEEPALIVE_INTERVAL.as_secs());
        let probes = format!("after {} unanswered probes", KEEPALIVE_PROBES);
        assert!(help.contains(&interval), "{help}");
        assert!(help.contains(&probes), "{help}");
        let fallback = format!("{FALLBACK_LISTEN_BACKLOG} when it cannot be read");
        assert!(help.contains(&fallback), "{help}");
    }

    #[test]
    fn bad_usage_is_one_line() {
        for args in [
            &["--nope", "1"][..],
            &["--addr"],
            &["--addr", "nonsense"],
            &["--max-connections", "0"],
            &["--max-line-bytes", "8"],
            &["--listen-backlog", "0"],
            &["--listen-backlog", "max"],
            &["--tcp-keepalive", "1500ms"],
            &["--tcp-keepalive", "32768s"],
            &["--tcp-keepalive", "0s"],
            &["--tcp-keepalive", "no"],
            &["--idle-timeout", "10"],
            &["--fsync", "sometimes"],
            &["--log-format", "xml"],
            &["--log-level", "trace"],
            &["stray"],
        ] {
            let err = parse_with(args, &[]).unwrap_err();
            assert!(
                !err.0.contains('\n') && !err.0.is_empty(),
                "{args:?}: {err}"
            );
        }
        let err = parse_with(&[], &[("PACKAGE_INDEXER_WRITE_TIMEOUT", "soon")]).unwrap_err();
        assert!(
            err.0
                .contains("PACKAGE_INDEXER_WRITE_TIMEOUT (--write-timeout)"),
            "{err}"
        );
        let err = parse_with(&[], &[("PACKAGE_INDEXER_LOG_LEVEL", "trace")]).unwrap_err();
        assert!(err.0.contains("PACKAGE_INDEXER_LOG_LEVEL"), "{err}");
        // The flag beats the variable, and then it is the flag that is wrong.
        let err = parse_with(
            &["--log-level", "loud"],
            &[("PACKAGE_INDEXER_LOG_LEVEL", "info")],
        )
        .unwrap_err();
        assert!(err.0.contains("'loud' for --log-level"), "{err}");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_with(&["--help"], &[]).unwrap(), Invocation::Help);
        assert_eq!(
            parse_with(&["--version"], &[]).unwrap(),
            Invocation::Version
        );
        let help = help();
        assert!(help.contains("  healthcheck "), "{help}");
        for flag in FLAGS {
            assert!(help.contains(&format!("--{}", flag.name)));
            let var = COMMAND_LINE.variable_of(flag).unwrap();
            assert!(help.contains(&var));
        }
    }
}
