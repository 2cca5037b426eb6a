//! The command-line parser of the server and its tools: a [`CommandLine`]
//! is a table of [`Flag`]s, read by `docs/command-line.md#how-flags-are-read`
//! and shown by `--help`. [`Values`]' typed getters word every mistake alike:
//! `invalid value 'V' for --name: expected ...`.

use std::ffi::OsString;
use std::fmt;
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// One flag of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    /// Without the leading `--`.
    pub name: &'static str,
    /// Empty for none; unused by switches.
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// False for a switch.
    pub takes_value: bool,
    /// A one-letter spelling, `-o` for `--output`; none by default.
    pub short: Option<char>,
    /// Read from its variable too (given an `env_prefix`); true by default.
    pub from_variable: bool,
}

impl Flag {
    /// A flag that takes a value.
    pub const fn value(name: &'static str, default: &'static str, help: &'static str) -> Flag {
        Flag {
            name,
            default,
            help,
            takes_value: true,
            short: None,
            from_variable: true,
        }
    }

    /// A switch: on when given, off otherwise.
    pub const fn switch(name: &'static str, help: &'static str) -> Flag {
        Flag {
            takes_value: false,
            ..Flag::value(name, "", help)
        }
    }

    /// The same flag, read from the command line alone: for a tool's flag
    /// that a variable meant for the server must not set (`--output`).
    pub const fn without_variable(self) -> Flag {
        Flag {
            from_variable: false,
            ..self
        }
    }

    /// The same flag, also spelt `-letter`.
    pub const fn short(self, letter: char) -> Flag {
        Flag {
            short: Some(letter),
            ..self
        }
    }
}

/// A program's flags and how they are read.
#[derive(Clone, Copy, Debug)]
pub struct CommandLine {
    pub flags: &'static [Flag],
    /// Each flag is also read from `<env_prefix><NAME>`.
    pub env_prefix: Option<&'static str>,
    /// Also accept `-name`, as Go's flag package (the official harness's) does.
    pub single_dash: bool,
    /// The arguments it takes besides its flags.
    pub operands: Operands,
}

/// The operands a command line takes, named as `--help` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operands {
    None,
    One(&'static str),
    /// Any number, none included.
    Any(&'static str),
}

/// What the arguments ask for: to run with the flags' [`Values`] (or a
/// program's settings read from them), or help, or the version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T = Values> {
    Run(T),
    Help,
    Version,
}

impl<T> Parsed<T> {
    /// Turns the values to run with into settings; help and version pass.
    pub fn try_map<U>(
        self,
        read: impl FnOnce(T) -> Result<U, UsageError>,
    ) -> Result<Parsed<U>, UsageError> {
        Ok(match self {
            Parsed::Run(values) => Parsed::Run(read(values)?),
            Parsed::Help => Parsed::Help,
            Parsed::Version => Parsed::Version,
        })
    }
}

/// Bad usage: the message is one line, and the program exits 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl UsageError {
    /// Prints `program: reason (see --help)` on stderr; the exit status 2.
    pub fn report(&self, program: &str) -> ExitCode {
        eprintln!("{program}: {self} (see --help)");
        ExitCode::from(2)
    }
}

/// A tool's `main`: parses the process's arguments with `parse`, then [`answer`]s.
pub fn tool_main<T>(
    program: &str,
    parse: impl FnOnce(Vec<String>) -> Result<Parsed<T>, UsageError>,
    help: impl FnOnce() -> String,
    run: impl FnOnce(T) -> ExitCode,
) -> ExitCode {
    answer(program, utf8_args().and_then(parse), help, run)
}

/// Prints `help()` or `program VERSION` (the workspace's version) and exits
/// 0, reports a usage error and exits 2, or hands the settings to `run`.
pub fn answer<T>(
    program: &str,
    parsed: Result<Parsed<T>, UsageError>,
    help: impl FnOnce() -> String,
    run: impl FnOnce(T) -> ExitCode,
) -> ExitCode {
    match parsed {
        Ok(Parsed::Run(settings)) => run(settings),
        Ok(Parsed::Help) => {
            print!("{}", help());
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("{program} {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Err(error) => error.report(program),
    }
}

/// The process's arguments after the program name, which must be UTF-8
/// (`env::args` would panic on one that is not).
pub fn utf8_args() -> Result<Vec<String>, UsageError> {
    let refuse = |arg: OsString| UsageError(format!("argument {arg:?} is not valid UTF-8"));
    let args = std::env::args_os().skip(1);
    args.map(|arg| arg.into_string().map_err(refuse)).collect()
}

/// The process's variable `name` for [`CommandLine::parse`]: `None` when
/// unset, bad usage (not silence) when its value is not UTF-8.
pub fn process_variable(name: &str) -> Result<Option<String>, UsageError> {
    let refuse = |value| UsageError(format!("the value {value:?} of {name} is not valid UTF-8"));
    let value = std::env::var_os(name).map(OsString::into_string);
    value.transpose().map_err(refuse)
}

impl CommandLine {
    /// Parses the arguments after the program name; `env` looks up a
    /// variable ([`process_variable`] in production, a map in tests).
    pub fn parse(
        &self,
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Result<Option<String>, UsageError>,
    ) -> Result<Parsed, UsageError> {
        let mut values = Values {
            flags: self.flags,
            values: Vec::with_capacity(self.flags.len()),
            operands: Vec::new(),
        };
        for flag in self.flags {
            let variable = self.variable_of(flag);
            values
                .values
                .push(match variable.as_deref().map(&env).transpose()? {
                    Some(Some(value)) => (value, variable),
                    _ => (flag.default.to_string(), None),
                });
        }
        let mut args = args.into_iter();
        let mut only_operands = false;
        while let Some(arg) = args.next() {
            if only_operands || !arg.starts_with('-') || arg == "-" {
                let room = match self.operands {
                    Operands::None => false,
                    Operands::One(_) => values.operands.is_empty(),
                    Operands::Any(_) => true,
                };
                if !room {
                    return Err(UsageError(format!("unexpected argument '{arg}'")));
                }
                values.operands.push(arg);
                continue;
            }
            if arg == "--" {
                only_operands = true;
                continue;
            }
            // `--name`; `-x` for a one-letter form, or `-name` with `single_dash`.
            let (long, body) = match arg.strip_prefix("--") {
                Some(body) => (true, body),
                None => (false, &arg[1..]),
            };
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            let by_name = long || self.single_dash;
            let letter = |c: char| !long && name.len() == 1 && name.starts_with(c);
            if inline.is_none() && (by_name && name == "help" || letter('h')) {
                return Ok(Parsed::Help);
            }
            if inline.is_none() && (by_name && name == "version" || letter('V')) {
                return Ok(Parsed::Version);
            }
            let found = self
                .flags
                .iter()
                .position(|flag| by_name && flag.name == name || flag.short.is_some_and(letter));
            let Some(index) = found else {
                return Err(UsageError(if by_name {
                    format!("unknown flag '--{name}'")
                } else if name.len() == 1 {
                    format!("unknown flag '{arg}'")
                } else {
                    format!("unexpected argument '{arg}'")
                }));
            };
            let flag = &self.flags[index];
            let value = match (flag.takes_value, inline) {
                // Any value but the empty one says the switch is on.
                (false, None) => "on".to_string(),
                (false, Some(_)) => {
                    return Err(UsageError(format!("flag '--{}' takes no value", flag.name)));
                }
                (true, inline) => inline
                    .or_else(|| args.next())
                    .ok_or_else(|| UsageError(format!("flag '--{}' needs a value", flag.name)))?,
            };
            values.values[index] = (value, None);
        }
        match self.operands {
            Operands::One(name) if values.operands.is_empty() => {
                Err(UsageError(format!("missing {name}")))
            }
            _ => Ok(Parsed::Run(values)),
        }
    }

    /// The variable that feeds `flag`, when it is read from one.
    pub fn variable_of(&self, flag: &Flag) -> Option<String> {
        let prefix = self.env_prefix.filter(|_| flag.from_variable)?;
        Some(format!(
            "{prefix}{}",
            flag.name.to_ascii_uppercase().replace('-', "_")
        ))
    }

    /// One `--help` line a flag, with its default and variable, and a last
    /// one for `--help` and `--version`.
    pub fn help(&self) -> String {
        let mut text = String::new();
        for flag in self.flags {
            let short = flag.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            text += &format!("  {:<20} {}", format!("{short}--{}", flag.name), flag.help);
            if flag.takes_value {
                let default = Some(flag.default).filter(|d| !d.is_empty());
                let variable = self.variable_of(flag).map(|v| format!("; env {v}"));
                text += &format!(
                    " (default: {}{})",
                    default.unwrap_or("none"),
                    variable.unwrap_or_default()
                );
            }
            text.push('\n');
        }
        text + "  --help, --version\n"
    }
}

/// Each flag's value: from the arguments, else the variable, else the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Values {
    flags: &'static [Flag],
    /// Each flag's value, and the variable it came from when one did.
    values: Vec<(String, Option<String>)>,
    operands: Vec<String>,
}

impl Values {
    fn entry(&self, name: &str) -> Option<&(String, Option<String>)> {
        let index = self.flags.iter().position(|f| f.name == name)?;
        self.values.get(index)
    }

    /// The operands, in the order given.
    pub fn operands(&self) -> &[String] {
        &self.operands
    }

    /// The value of `--name` as given; empty when there is none.
    pub fn get(&self, name: &str) -> &str {
        self.entry(name).map_or("", |(value, _)| value)
    }

    /// The value of `--name`; `None` when there is none.
    pub fn optional(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|value| !value.is_empty())
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// The value of `--name` through `parse`; a refusal is a usage error
    /// saying what was `expected` and naming the variable it came from.
    pub fn parse<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, UsageError> {
        let value = self.get(name);
        parse(value).ok_or_else(|| {
            let from = match self.entry(name).and_then(|(_, variable)| variable.as_ref()) {
                Some(variable) => format!("{variable} (--{name})"),
                None => format!("--{name}"),
            };
            UsageError(format!(
                "invalid value '{value}' for {from}: expected {expected}"
            ))
        })
    }

    /// A whole number within `range`.
    pub fn count<T>(&self, name: &str, range: RangeInclusive<T>) -> Result<T, UsageError>
    where
        T: FromStr + PartialOrd + fmt::Display,
    {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        self.parse(name, &expected, |value| {
            value.parse().ok().filter(|n| range.contains(n))
        })
    }

    /// A positive duration: [`parse_duration`].
    pub fn duration(&self, name: &str) -> Result<Duration, UsageError> {
        self.parse(
            name,
            "a positive duration such as 500ms, 10s or 5m",
            parse_duration,
        )
    }

    /// A `HOST:PORT` address, not resolved here.
    pub fn address(&self, name: &str) -> Result<String, UsageError> {
        self.parse(name, "HOST:PORT", |value| {
            value
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                .then(|| value.to_string())
        })
    }
}

/// Parses `250ms`, `10s` or `5m`; zero is refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return None,
    };
    let millis = number.parse::<u64>().ok()?.checked_mul(unit_ms)?;
    (millis > 0).then(|| Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FLAGS: &[Flag] = &[
        Flag::value("addr", "127.0.0.1:1", "where to listen"),
        Flag::value("count", "10", "how many"),
        Flag::value("wait", "", "how long"),
        Flag::switch("table", "print a table"),
        Flag::value("output", "", "where to write").without_variable(),
    ];

    const TOOL: CommandLine = CommandLine {
        flags: FLAGS,
        env_prefix: None,
        single_dash: false,
        operands: Operands::None,
    };

    const SERVER: CommandLine = CommandLine {
        flags: FLAGS,
        env_prefix: Some("TEST_"),
        single_dash: false,
        operands: Operands::None,
    };

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn parse(
        line: &CommandLine,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Parsed, UsageError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        line.parse(strings(args), |k| Ok(env.get(k).cloned()))
    }

    fn values(line: &CommandLine, args: &[&str], env: &[(&str, &str)]) -> Values {
        match parse(line, args, env) {
            Ok(Parsed::Run(values)) => values,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn error(line: &CommandLine, args: &[&str]) -> String {
        parse(line, args, &[]).unwrap_err().0
    }

    #[test]
    fn both_spellings_switches_and_defaults() {
        let given = values(&TOOL, &["--count", "7", "--wait=5s", "--table"], &[]);
        assert_eq!(given.get("count"), "7");
        assert_eq!(given.duration("wait"), Ok(Duration::from_secs(5)));
        assert!(given.switch("table"));
        assert_eq!(given.get("addr"), "127.0.0.1:1");

        let defaults = values(&TOOL, &[], &[]);
        assert_eq!(defaults.count("count", 1..=10), Ok(10));
        assert_eq!(defaults.optional("wait"), None);
        assert!(!defaults.switch("table"));
        // A value may look like a flag: it is taken as the value.
        assert_eq!(values(&TOOL, &["--addr", "--x"], &[]).get("addr"), "--x");
    }

    #[test]
    fn flags_beat_variables_beat_defaults_and_tools_read_none() {
        let env = [("TEST_COUNT", "5"), ("TEST_ADDR", "10.0.0.1:2")];
        let server = values(&SERVER, &["--addr", "10.0.0.1:3"], &env);
        assert_eq!(server.get("addr"), "10.0.0.1:3");
        assert_eq!(server.get("count"), "5");
        let tool = values(&TOOL, &[], &env);
        assert_eq!(tool.get("count"), "10");
        let max_line_bytes = Flag::value("max-line-bytes", "", "");
        assert_eq!(
            SERVER.variable_of(&max_line_bytes).as_deref(),
            Some("TEST_MAX_LINE_BYTES")
        );
        assert_eq!(TOOL.variable_of(&max_line_bytes), None);
    }

    #[test]
    fn a_flag_without_variable_is_read_from_the_command_line_alone() {
        let env = [("TEST_OUTPUT", "/tmp/x")];
        assert_eq!(values(&SERVER, &[], &env).get("output"), "");
        let output = Flag::value("output", "", "").without_variable();
        assert_eq!(SERVER.variable_of(&output), None);
        assert!(!SERVER.help().contains("TEST_OUTPUT"));
        assert!(SERVER.help().contains("TEST_COUNT"));
    }

    #[test]
    fn a_variable_that_is_not_utf8_is_bad_usage() {
        let refused = SERVER
            .parse(strings(&[]), |name| {
                Err(UsageError(format!("{name} is not valid UTF-8")))
            })
            .unwrap_err();
        assert_eq!(refused.0, "TEST_ADDR is not valid UTF-8");
    }

    #[test]
    fn help_and_version_end_parsing() {
        for (args, wanted) in [
            (&["-h"][..], Parsed::Help),
            (&["--count", "1", "--help"], Parsed::Help),
            (&["-V"], Parsed::Version),
            (&["--version", "--nope"], Parsed::Version),
        ] {
            assert_eq!(parse(&TOOL, args, &[]), Ok(wanted), "{args:?}");
        }
        assert!(error(&TOOL, &["-help"]).contains("unexpected argument '-help'"));
    }

    #[test]
    fn single_dash_spellings_when_asked_for() {
        let go_style = CommandLine {
            single_dash: true,
            ..TOOL
        };
        let given = values(&go_style, &["-count", "3", "-wait=1m", "--table"], &[]);
        assert_eq!(given.get("count"), "3");
        assert_eq!(given.get("wait"), "1m");
        assert!(given.switch("table"));
        assert_eq!(parse(&go_style, &["-help"], &[]), Ok(Parsed::Help));
        assert_eq!(parse(&go_style, &["-version"], &[]), Ok(Parsed::Version));
    }

    #[test]
    fn mistakes_are_one_line_and_name_the_flag() {
        let cases = [
            (&["--nope", "1"][..], "unknown flag '--nope'"),
            (&["--count"], "flag '--count' needs a value"),
            (&["--table=yes"], "flag '--table' takes no value"),
            (&["stray"], "unexpected argument 'stray'"),
            (&["-count", "1"], "unexpected argument '-count'"),
        ];
        for (args, message) in cases {
            assert_eq!(error(&TOOL, args), message, "{args:?}");
        }
        let bad = values(
            &TOOL,
            &["--count", "11", "--wait", "10", "--addr", ":80"],
            &[],
        );
        assert_eq!(
            bad.count("count", 1..=10).unwrap_err().0,
            "invalid value '11' for --count: expected a whole number from 1 to 10"
        );
        assert_eq!(
            bad.duration("wait").unwrap_err().0,
            "invalid value '10' for --wait: expected a positive duration such as 500ms, 10s or 5m"
        );
        assert_eq!(
            bad.address("addr").unwrap_err().0,
            "invalid value ':80' for --addr: expected HOST:PORT"
        );
        assert_eq!(
            bad.parse("count", "an even number", |v| v
                .parse::<u32>()
                .ok()
                .filter(|n| n % 2 == 0))
                .unwrap_err()
                .0,
            "invalid value '11' for --count: expected an even number"
        );
    }

    #[test]
    fn help_lines_come_from_the_table() {
        assert_eq!(
            SERVER.help(),
            "  --addr               where to listen (default: 127.0.0.1:1; env TEST_ADDR)\n\
             \x20 --count              how many (default: 10; env TEST_COUNT)\n\
             \x20 --wait               how long (default: none; env TEST_WAIT)\n\
             \x20 --table              print a table\n\
             \x20 --output             where to write (default: none)\n\
             \x20 --help, --version\n"
        );
        assert!(TOOL
            .help()
            .starts_with("  --addr               where to listen (default: 127.0.0.1:1)\n"));
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
    fn short_forms_when_a_flag_has_one() {
        const FLAGS: &[Flag] = &[
            Flag::value("output", "", "where to write").short('o'),
            Flag::switch("quiet", "say less").short('q'),
            Flag::value("count", "1", "how many"),
        ];
        let line = CommandLine {
            flags: FLAGS,
            ..TOOL
        };
        let given = values(&line, &["-o", "out.txt", "-q"], &[]);
        assert_eq!(given.get("output"), "out.txt");
        assert!(given.switch("quiet"));
        assert_eq!(values(&line, &["-o=a"], &[]).get("output"), "a");
        assert_eq!(values(&line, &["--output", "b"], &[]).get("output"), "b");
        assert_eq!(error(&line, &["-c", "2"]), "unknown flag '-c'");
        assert_eq!(error(&line, &["-o"]), "flag '--output' needs a value");
        assert_eq!(error(&line, &["-q=yes"]), "flag '--quiet' takes no value");
        assert_eq!(error(&line, &["-ofile"]), "unexpected argument '-ofile'");
        assert!(line
            .help()
            .starts_with("  -o, --output         where to write (default: none)\n"));
        assert!(line.help().contains("\n  -q, --quiet          say less\n"));
    }

    #[test]
    fn operands_as_many_as_allowed() {
        let one = CommandLine {
            operands: Operands::One("NAME"),
            ..TOOL
        };
        let given = values(&one, &["--count", "2", "gmp"], &[]);
        assert_eq!(
            (given.get("count"), given.operands()),
            ("2", &["gmp".to_string()][..])
        );
        assert_eq!(values(&one, &["-"], &[]).operands(), ["-"]);
        assert_eq!(error(&one, &[]), "missing NAME");
        assert!(error(&one, &["a", "b"]).contains("unexpected argument 'b'"));
        let any = CommandLine {
            operands: Operands::Any("LINE"),
            ..TOOL
        };
        let given = values(&any, &["QUERY|a|", "--", "--table", "x"], &[]);
        assert_eq!(given.operands(), ["QUERY|a|", "--table", "x"]);
        assert!(!given.switch("table"));
        assert!(values(&any, &[], &[]).operands().is_empty());
    }
}
