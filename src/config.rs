//! Flags and `PACKAGE_INDEXER_*` variables -> [`Config`] (SPEC §3).
//!
//! Every setting is read from `--name value` (or `--name=value`), else from
//! the variable `PACKAGE_INDEXER_<NAME>`, else from its default. Parsing is
//! pure: the caller passes the arguments and an environment lookup, so tests
//! need no process state.

use crate::durability::Fsync;
use crate::log;
use crate::sys::MAX_KEEPALIVE_VALUE;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub addr: String,
    /// `None` when the admin listener is `off`.
    pub admin_addr: Option<String>,
    pub max_connections: usize,
    /// The protocol listener's backlog; `None` asks for the system's
    /// `net.core.somaxconn`, read at start.
    pub listen_backlog: Option<u32>,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    /// Idle time before TCP keepalive probes a protocol connection, in
    /// whole seconds; `None` when `off`.
    pub tcp_keepalive: Option<Duration>,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub data_dir: Option<PathBuf>,
    pub fsync: Fsync,
    pub log_format: log::Format,
    pub log_level: log::Level,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    Serve(Config),
    /// `package-indexer healthcheck [--admin-addr A]`
    Healthcheck {
        admin_addr: String,
    },
    Help,
    Version,
}

/// Bad usage: the message is one line, the process exits 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

struct Flag {
    name: &'static str,
    default: &'static str,
    help: &'static str,
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "addr",
        default: "0.0.0.0:8080",
        help: "protocol listener address",
    },
    Flag {
        name: "admin-addr",
        default: "127.0.0.1:9090",
        help: "HTTP listener for /healthz, /readyz, /metrics; `off` disables it",
    },
    Flag {
        name: "max-connections",
        default: "10000",
        help: "connections served at once; more are accepted and closed",
    },
    Flag {
        name: "listen-backlog",
        default: "somaxconn",
        help: "connections the kernel queues until they are accepted; `somaxconn` is the \
               system's net.core.somaxconn (4096 when it cannot be read), also the kernel's cap",
    },
    Flag {
        name: "max-line-bytes",
        default: "65536",
        help: "longest request line, newline included",
    },
    Flag {
        name: "idle-timeout",
        default: "300s",
        help: "close a connection with no complete line for this long",
    },
    Flag {
        name: "tcp-keepalive",
        default: "60s",
        help: "after this long without traffic, probe a protocol connection every 10s and \
               close it after 6 unanswered probes (a dead peer goes about a minute later); \
               whole seconds; `off` disables",
    },
    Flag {
        name: "write-timeout",
        default: "10s",
        help: "disconnect a client that does not read its answers for this long",
    },
    Flag {
        name: "shutdown-timeout",
        default: "30s",
        help: "how long a graceful stop waits for connections to finish",
    },
    Flag {
        name: "data-dir",
        default: "",
        help: "directory for durable state; empty means memory only",
    },
    Flag {
        name: "fsync",
        default: "always",
        help: "with --data-dir: `always` (answered means on disk) or `never`",
    },
    Flag {
        name: "log-format",
        default: "text",
        help: "`text` or `json`, one event per line on stderr",
    },
    Flag {
        name: "log-level",
        default: "info",
        help: "`error`, `warn`, `info` or `debug`",
    },
];

/// Smallest accepted `--max-line-bytes`: room for a short request.
const MIN_LINE_BYTES: usize = 16;
/// Largest accepted `--max-line-bytes`: a line is buffered whole.
const MAX_LINE_BYTES: usize = 64 << 20;

/// Longest accepted `--tcp-keepalive`: the kernel's limit for the idle time.
const MAX_KEEPALIVE_SECONDS: u64 = MAX_KEEPALIVE_VALUE as u64;
/// Largest accepted `--listen-backlog`; the kernel caps it lower anyway.
const MAX_LISTEN_BACKLOG: usize = 1 << 20;

/// The raw string value of each flag, in `FLAGS` order.
struct Values(Vec<String>);

impl Values {
    fn defaults() -> Values {
        Values(FLAGS.iter().map(|f| f.default.to_string()).collect())
    }

    fn get(&self, name: &str) -> &str {
        FLAGS
            .iter()
            .position(|f| f.name == name)
            .and_then(|i| self.0.get(i))
            .map_or("", String::as_str)
    }
}

/// The environment variable that feeds `--name`.
pub fn env_var_name(flag: &str) -> String {
    format!(
        "PACKAGE_INDEXER_{}",
        flag.to_ascii_uppercase().replace('-', "_")
    )
}

/// Parses the arguments after the program name.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, UsageError> {
    let mut values = Values::defaults();
    for (flag, slot) in FLAGS.iter().zip(values.0.iter_mut()) {
        if let Some(value) = env(&env_var_name(flag.name)) {
            *slot = value;
        }
    }
    let mut args = args.into_iter().peekable();
    let healthcheck = args.peek().is_some_and(|a| a == "healthcheck");
    if healthcheck {
        args.next();
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "-V" | "--version" => return Ok(Invocation::Version),
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(UsageError(format!("unexpected argument '{arg}'")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let Some(index) = FLAGS.iter().position(|f| f.name == name) else {
            return Err(UsageError(format!("unknown flag '--{name}'")));
        };
        if healthcheck && name != "admin-addr" {
            return Err(UsageError(format!(
                "healthcheck takes only --admin-addr, not '--{name}'"
            )));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(UsageError(format!("flag '--{name}' needs a value"))),
        };
        values.0[index] = value;
    }
    if healthcheck {
        let admin_addr = values.get("admin-addr").to_string();
        if admin_addr == "off" {
            return Err(UsageError(
                "healthcheck needs an --admin-addr that is not 'off'".into(),
            ));
        }
        return Ok(Invocation::Healthcheck { admin_addr });
    }
    Config::from_values(&values).map(Invocation::Serve)
}

impl Config {
    fn from_values(values: &Values) -> Result<Config, UsageError> {
        let invalid = |name: &str, why: &str| {
            UsageError(format!(
                "invalid value '{}' for --{name}: {why}",
                values.get(name)
            ))
        };
        let address = |name: &str| {
            let value = values.get(name);
            if value
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            {
                Ok(value.to_string())
            } else {
                Err(invalid(name, "expected HOST:PORT"))
            }
        };
        let count = |name: &str, min: usize, max: usize| {
            values
                .get(name)
                .parse::<usize>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    invalid(
                        name,
                        &format!("expected a whole number from {min} to {max}"),
                    )
                })
        };
        let duration = |name: &str| {
            parse_duration(values.get(name)).ok_or_else(|| {
                invalid(
                    name,
                    "expected a positive duration such as 500ms, 10s or 5m",
                )
            })
        };
        let listen_backlog = match values.get("listen-backlog") {
            "somaxconn" => None,
            _ => {
                let backlog = count("listen-backlog", 1, MAX_LISTEN_BACKLOG)?;
                Some(u32::try_from(backlog).unwrap_or(u32::MAX))
            }
        };
        let tcp_keepalive = match values.get("tcp-keepalive") {
            "off" => None,
            _ => Some(
                duration("tcp-keepalive")
                    .ok()
                    .filter(|d| d.subsec_millis() == 0 && d.as_secs() <= MAX_KEEPALIVE_SECONDS)
                    .ok_or_else(|| {
                        invalid(
                            "tcp-keepalive",
                            &format!(
                                "expected 'off' or whole seconds from 1s to \
                                 {MAX_KEEPALIVE_SECONDS}s, such as 60s or 2m"
                            ),
                        )
                    })?,
            ),
        };
        let admin_addr = match values.get("admin-addr") {
            "off" => None,
            _ => Some(address("admin-addr")?),
        };
        let data_dir = Some(values.get("data-dir"))
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        Ok(Config {
            addr: address("addr")?,
            admin_addr,
            max_connections: count("max-connections", 1, 1_000_000)?,
            listen_backlog,
            max_line_bytes: count("max-line-bytes", MIN_LINE_BYTES, MAX_LINE_BYTES)?,
            idle_timeout: duration("idle-timeout")?,
            tcp_keepalive,
            write_timeout: duration("write-timeout")?,
            shutdown_timeout: duration("shutdown-timeout")?,
            data_dir,
            fsync: values
                .get("fsync")
                .parse()
                .map_err(|_| invalid("fsync", "expected 'always' or 'never'"))?,
            log_format: values
                .get("log-format")
                .parse()
                .map_err(|_| invalid("log-format", "expected 'text' or 'json'"))?,
            log_level: values
                .get("log-level")
                .parse()
                .map_err(|_| invalid("log-level", "expected error, warn, info or debug"))?,
        })
    }
}

/// Parses `250ms`, `10s` or `5m`; zero is refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        return None;
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = number.parse::<u64>().ok()?.checked_mul(unit_ms)?;
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// The `--help` text.
pub fn help() -> String {
    let mut text = format!(
        "package-indexer {}: a TCP server that keeps a consistent index of packages\n\n\
         Usage:\n  package-indexer [FLAGS]\n  package-indexer healthcheck [--admin-addr HOST:PORT]\n\n\
         Flags (each also read from PACKAGE_INDEXER_<NAME>; a flag beats its variable):\n",
        env!("CARGO_PKG_VERSION")
    );
    for flag in FLAGS {
        let default = if flag.default.is_empty() {
            "none"
        } else {
            flag.default
        };
        text.push_str(&format!(
            "  --{:<18} {} (default: {default}; env {})\n",
            flag.name,
            flag.help,
            env_var_name(flag.name)
        ));
    }
    text.push_str(
        "  --help, --version\n\n\
         Signals: SIGTERM or SIGINT stops gracefully (a second one exits at once);\n\
         SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored.\n",
    );
    text
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
        parse(args.iter().map(|a| a.to_string()), |k| env.get(k).cloned())
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse_with(args, env).unwrap() {
            Invocation::Serve(config) => config,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = config(&[], &[]);
        assert_eq!(c.addr, "0.0.0.0:8080");
        assert_eq!(c.admin_addr.as_deref(), Some("127.0.0.1:9090"));
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
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        for bad in [
            "",
            "10",
            "0s",
            "s",
            "-1s",
            "1.5s",
            "1h",
            "99999999999999999999m",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
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
            &["healthcheck", "--addr", "x:1"],
        ] {
            let err = parse_with(args, &[]).unwrap_err();
            assert!(
                !err.0.contains('\n') && !err.0.is_empty(),
                "{args:?}: {err}"
            );
        }
        let err = parse_with(&[], &[("PACKAGE_INDEXER_WRITE_TIMEOUT", "soon")]).unwrap_err();
        assert!(err.0.contains("--write-timeout"), "{err}");
    }

    #[test]
    fn help_version_and_healthcheck() {
        assert_eq!(parse_with(&["--help"], &[]).unwrap(), Invocation::Help);
        assert_eq!(
            parse_with(&["--version"], &[]).unwrap(),
            Invocation::Version
        );
        assert_eq!(
            parse_with(&["healthcheck"], &[]).unwrap(),
            Invocation::Healthcheck {
                admin_addr: "127.0.0.1:9090".into()
            }
        );
        assert_eq!(
            parse_with(&["healthcheck", "--admin-addr", "10.0.0.1:1"], &[]).unwrap(),
            Invocation::Healthcheck {
                admin_addr: "10.0.0.1:1".into()
            }
        );
        let help = help();
        for flag in FLAGS {
            assert!(help.contains(&format!("--{}", flag.name)));
            assert!(help.contains(&env_var_name(flag.name)));
        }
    }
}
