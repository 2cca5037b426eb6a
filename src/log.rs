//! Structured logging to stderr, one event per line, in logfmt-style text or
//! JSON (`docs/lifecycle.md#logs`). Each event is written with one
//! `write_all`, so lines from different threads never interleave. Types that
//! log as their `Display` text say so with [`as_text!`](crate::log::as_text)
//! next to their definition.

use crate::json;
use std::fmt::{self, Display, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `key=value` pairs, values quoted when they need it.
    Text,
    /// One JSON object per line: numbers and booleans bare, other values
    /// as strings.
    Json,
}

/// How important an event is; an event is written when its level is at or
/// above the configured one (`Error` is the most important).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    /// The level `--log-level` names, if any.
    pub(crate) fn from_name(name: &str) -> Option<Level> {
        let levels = [Level::Error, Level::Warn, Level::Info, Level::Debug];
        levels.into_iter().find(|level| level.to_string() == name)
    }
}

impl Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(["error", "warn", "info", "debug"][*self as usize])
    }
}

impl Format {
    /// The format `--log-format` names, if any.
    pub(crate) fn from_name(name: &str) -> Option<Format> {
        [Format::Text, Format::Json]
            .into_iter()
            .find(|format| format.to_string() == name)
    }
}

impl Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(["text", "json"][*self as usize])
    }
}

static SETTINGS: OnceLock<(Format, Level)> = OnceLock::new();

/// Sets the process-wide format and level; only the first call counts.
pub(crate) fn init(format: Format, level: Level) {
    let _ = SETTINGS.set((format, level));
}

/// How JSON writes a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A quoted, escaped string.
    Text,
    /// Bare: a JSON number or `true`/`false`.
    Bare,
}

/// A value a log field can hold.
pub(crate) trait FieldValue {
    /// Appends the value's text to `out` and says how JSON writes it.
    fn write_to(&self, out: &mut String) -> Shape;
}

impl<T: FieldValue + ?Sized> FieldValue for &T {
    fn write_to(&self, out: &mut String) -> Shape {
        (**self).write_to(out)
    }
}

/// A value that may be unknown: JSON's `null` when it is.
impl<T: FieldValue> FieldValue for Option<T> {
    fn write_to(&self, out: &mut String) -> Shape {
        match self {
            Some(value) => value.write_to(out),
            None => {
                out.push_str("null");
                Shape::Bare
            }
        }
    }
}

/// Declares types that log as their `Display` text (a JSON string).
macro_rules! as_text {
    ($($type:ty),* $(,)?) => {
        $(impl $crate::log::FieldValue for $type {
            fn write_to(&self, out: &mut String) -> $crate::log::Shape {
                use std::fmt::Write as _;
                let _ = write!(out, "{self}");
                $crate::log::Shape::Text
            }
        })*
    };
}
pub(crate) use as_text;

/// Declares types whose `Display` text is a JSON number or boolean.
macro_rules! as_bare {
    ($($type:ty),* $(,)?) => {
        $(impl FieldValue for $type {
            fn write_to(&self, out: &mut String) -> Shape {
                let _ = write!(out, "{self}");
                Shape::Bare
            }
        })*
    };
}

as_bare!(u8, u16, u32, u64, u128, usize, i32, i64, bool);
as_text!(
    str,
    String,
    std::borrow::Cow<'_, str>,
    std::io::Error,
    std::net::SocketAddr,
    std::path::Display<'_>,
    Level,
    Format,
    DurationText
);

/// Shows a duration with the unit the flags use (`1500ms`, `30s`).
pub(crate) struct DurationText(pub(crate) Duration);

impl Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}

/// Writes one event to stderr if `level` is enabled; keys should be plain
/// identifiers.
pub(crate) fn log(level: Level, msg: &str, fields: &[(&str, &dyn FieldValue)]) {
    let (format, max_level) = *SETTINGS.get().unwrap_or(&(Format::Text, Level::Info));
    if level > max_level {
        return;
    }
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let line = format_event(format, since_epoch, level, msg, fields);
    // A closed or full stderr leaves nowhere to report the failure.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub(crate) fn error(msg: &str, fields: &[(&str, &dyn FieldValue)]) {
    log(Level::Error, msg, fields);
}

pub(crate) fn warn(msg: &str, fields: &[(&str, &dyn FieldValue)]) {
    log(Level::Warn, msg, fields);
}

pub(crate) fn info(msg: &str, fields: &[(&str, &dyn FieldValue)]) {
    log(Level::Info, msg, fields);
}

pub(crate) fn debug(msg: &str, fields: &[(&str, &dyn FieldValue)]) {
    log(Level::Debug, msg, fields);
}

/// Builds one complete line, newline included.
fn format_event(
    format: Format,
    since_epoch: Duration,
    level: Level,
    msg: &str,
    fields: &[(&str, &dyn FieldValue)],
) -> String {
    let json = format == Format::Json;
    let mut line = String::with_capacity(128);
    line.push_str(if json { "{\"ts\":\"" } else { "ts=" });
    write_timestamp(since_epoch, &mut line);
    let _ = match format {
        Format::Text => write!(line, " level={level} msg="),
        Format::Json => write!(line, "\",\"level\":\"{level}\",\"msg\":"),
    };
    json::write_string(&mut line, msg);
    // Rendered apart first: it must be inspected (text) or escaped (JSON).
    let mut value = String::new();
    for (key, field) in fields {
        value.clear();
        let shape = field.write_to(&mut value);
        let quoted = if json {
            line.push(',');
            json::write_string(&mut line, key);
            line.push(':');
            shape == Shape::Text
        } else {
            let _ = write!(line, " {key}=");
            // Only when needed, and with JSON's escapes, which read well in
            // logfmt too: a value can never break the line or the
            // key=value structure.
            value.is_empty()
                || value
                    .chars()
                    .any(|c| matches!(c, ' ' | '"' | '=' | '\\') || c.is_control())
        };
        if quoted {
            json::write_string(&mut line, &value);
        } else {
            line.push_str(&value);
        }
    }
    line.push_str(if json { "}\n" } else { "\n" });
    line
}

const SECONDS_PER_DAY: u64 = 86_400;

/// Converts days since 1970-01-01 to a (year, month, day) civil date. The
/// years counted here start on 1 March, so a leap day ends its year, and
/// come in eras of 400 years, after which the calendar repeats.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 0000-03-01 is day 0; 1970-01-01 is 719,468 days later.
    let days = days + 719_468;
    let (era, day_of_era) = (days / 146_097, days % 146_097);
    // Each 4th year has one more day, but not each 100th, save each 400th.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March have 31, 30, 31, 30, 31 days, twice over, then
    // January and February: 153 days in each five.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = (month_from_march + 2) % 12 + 1;
    (era * 400 + year_of_era + u64::from(month <= 2), month, day)
}

/// Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the Unix epoch.
fn write_timestamp(since_epoch: Duration, out: &mut String) {
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / SECONDS_PER_DAY);
    let second_of_day = seconds % SECONDS_PER_DAY;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_leap_year(year: u64) -> bool {
        (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
    }

    fn timestamp(seconds: u64, millis: u64) -> String {
        let mut out = String::new();
        write_timestamp(
            Duration::from_secs(seconds) + Duration::from_millis(millis),
            &mut out,
        );
        out
    }

    #[test]
    fn timestamps_for_known_epochs() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_709_214_307, 42), "2024-02-29T13:45:07.042Z");
        assert_eq!(timestamp(1_795_401_000, 123), "2026-11-23T02:30:00.123Z");
        assert_eq!(timestamp(946_684_799, 999), "1999-12-31T23:59:59.999Z");
        assert_eq!(timestamp(951_868_800, 0), "2000-03-01T00:00:00.000Z");
        // 2100 is not a leap year, so March 1st follows February 28th.
        assert_eq!(timestamp(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn civil_dates_advance_one_day_at_a_time() {
        // Walks 1970..2500 day by day and checks each date follows the last,
        // covering every month end and leap rule, including the 400-year skip.
        let mut previous = civil_from_days(0);
        assert_eq!(previous, (1970, 1, 1));
        for days in 1..(530 * 366) {
            let (year, month, day) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (year, month, day) == (py, pm, pd + 1);
            let next_month = (year, month, day) == (py, pm + 1, 1);
            let next_year = (pm, pd) == (12, 31) && (year, month, day) == (py + 1, 1, 1);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {:?}",
                (year, month, day)
            );
            if next_month || next_year {
                let expected_last = match pm {
                    2 if is_leap_year(py) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(pd, expected_last, "month {pm} of {py}");
            }
            previous = (year, month, day);
        }
    }

    fn event(format: Format, msg: &str, fields: &[(&str, &dyn FieldValue)]) -> String {
        format_event(
            format,
            Duration::from_millis(1_500),
            Level::Warn,
            msg,
            fields,
        )
    }

    #[test]
    fn text_quotes_only_values_that_need_it() {
        let line = event(
            Format::Text,
            "listening",
            &[
                ("addr", &"127.0.0.1:8080"),
                ("count", &42),
                ("empty", &""),
                ("spaced", &"a b"),
                ("equals", &"a=b"),
                ("quoted", &"say \"hi\""),
                ("multi", &"one\ntwo\\three\u{1}"),
            ],
        );
        assert_eq!(
            line,
            "ts=1970-01-01T00:00:01.500Z level=warn msg=\"listening\" addr=127.0.0.1:8080 \
             count=42 empty=\"\" spaced=\"a b\" equals=\"a=b\" quoted=\"say \\\"hi\\\"\" \
             multi=\"one\\ntwo\\\\three\\u0001\"\n"
        );
    }

    #[test]
    fn text_escapes_the_message() {
        let line = event(Format::Text, "bad \"line\"\r\n", &[]);
        assert!(
            line.ends_with(" msg=\"bad \\\"line\\\"\\r\\n\"\n"),
            "{line}"
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let line = event(Format::Json, "listening", &[("addr", &"127.0.0.1:8080")]);
        assert_eq!(
            line,
            "{\"ts\":\"1970-01-01T00:00:01.500Z\",\"level\":\"warn\",\"msg\":\"listening\",\
             \"addr\":\"127.0.0.1:8080\"}\n"
        );
    }

    #[test]
    fn json_writes_numbers_and_booleans_bare_and_text_quoted() {
        let line = event(
            Format::Json,
            "m",
            &[("count", &42u64), ("ok", &true), ("digits", &"42")],
        );
        assert!(
            line.ends_with(",\"count\":42,\"ok\":true,\"digits\":\"42\"}\n"),
            "{line}"
        );
        let text = event(Format::Text, "m", &[("count", &42u64), ("ok", &true)]);
        assert!(text.ends_with(" count=42 ok=true\n"), "{text}");
    }

    /// The members of a JSON object whose values are strings, numbers or
    /// booleans, each as its text, as `jq` reads them; `None` without `jq`.
    fn parse_flat_json_object(line: &str) -> Option<Vec<(String, String)>> {
        let separator = json::tests::SEPARATOR;
        let filter =
            format!("to_entries[] | .key, \"{separator}\", (.value | tostring), \"{separator}\"");
        let read = json::tests::jq(&filter, line)?;
        let mut fields = read.split(separator);
        let mut members = Vec::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            members.push((name.to_string(), value.to_string()));
        }
        Some(members)
    }

    #[test]
    fn json_round_trips_tricky_strings() {
        let tricky = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "newline\n return\r tab\t",
            "controls \u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "unicode ☃ é 𝄞",
            "}{\",:",
        ];
        for text in tricky {
            let line = event(Format::Json, text, &[("field", &text), (text, &1)]);
            let body = line.strip_suffix('\n').unwrap();
            assert!(!body.contains('\n'), "{line:?}");
            let Some(members) = parse_flat_json_object(body) else {
                return;
            };
            let expected: Vec<(String, String)> = [
                ("ts", "1970-01-01T00:00:01.500Z"),
                ("level", "warn"),
                ("msg", text),
                ("field", text),
                (text, "1"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            assert_eq!(members, expected);
        }
    }

    #[test]
    fn parses_levels_and_formats() {
        assert_eq!(Level::from_name("error"), Some(Level::Error));
        assert_eq!(Level::from_name("warn"), Some(Level::Warn));
        assert_eq!(Level::from_name("info"), Some(Level::Info));
        assert_eq!(Level::from_name("debug"), Some(Level::Debug));
        assert_eq!(Format::from_name("text"), Some(Format::Text));
        assert_eq!(Format::from_name("json"), Some(Format::Json));
        assert_eq!(Level::from_name("INFO"), None);
        assert_eq!(Format::from_name("xml"), None);
        assert_eq!(Level::Debug.to_string(), "debug");
        assert_eq!(Format::Json.to_string(), "json");
    }

    #[test]
    fn durations_show_the_unit_the_flags_use() {
        assert_eq!(DurationText(Duration::from_secs(30)).to_string(), "30s");
        assert_eq!(
            DurationText(Duration::from_millis(1_500)).to_string(),
            "1500ms"
        );
        assert_eq!(DurationText(Duration::ZERO).to_string(), "0s");
        let line = event(
            Format::Json,
            "m",
            &[("elapsed", &DurationText(Duration::from_millis(7)))],
        );
        assert!(line.ends_with(",\"elapsed\":\"7ms\"}\n"), "{line}");
    }

    #[test]
    fn levels_order_from_most_to_least_important() {
        assert!(Level::Error < Level::Warn);
        assert!(Level::Warn < Level::Info);
        assert!(Level::Info < Level::Debug);
    }
}
