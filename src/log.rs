//! Interim logger (replaced by the ops branch).
use std::fmt::Display;
use std::str::FromStr;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}
impl FromStr for Format {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(()),
        }
    }
}
impl FromStr for Level {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "error" => Ok(Level::Error),
            "warn" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(()),
        }
    }
}
pub fn init(_f: Format, _l: Level) {}
pub fn enabled(l: Level) -> bool {
    l <= Level::Info
}
pub fn log(level: Level, msg: &str, fields: &[(&str, &dyn Display)]) {
    let mut s = format!("ts=0 level={level:?} msg=\"{msg}\"");
    for (k, v) in fields {
        s.push_str(&format!(" {k}={v}"));
    }
    eprintln!("{s}");
}
pub fn error(msg: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Error, msg, fields)
}
pub fn warn(msg: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Warn, msg, fields)
}
pub fn info(msg: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Info, msg, fields)
}
pub fn debug(msg: &str, fields: &[(&str, &dyn Display)]) {
    if enabled(Level::Debug) {
        log(Level::Debug, msg, fields)
    }
}
