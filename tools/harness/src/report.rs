//! What a failing run prints.

use crate::step::Step;
use std::fmt;
use std::io::Write;

/// Failures printed in full; a broken server can produce one per client.
const MAX_PRINTED_FAILURES: usize = 20;

/// Sent messages are shown up to this many bytes.
const MAX_SHOWN_MESSAGE_BYTES: usize = 160;

/// Prints a failed step's failures (the first few in full) and how to
/// repeat the run.
pub(crate) fn report_failures(out: &mut impl Write, step: Step, failures: &[Failure], seed: u64) {
    for failure in failures.iter().take(MAX_PRINTED_FAILURES) {
        let _ = writeln!(out, "FAIL {failure}");
    }
    let more = failures.len().saturating_sub(MAX_PRINTED_FAILURES);
    if more > 0 {
        let _ = writeln!(out, "... and {more} more");
    }
    let _ = writeln!(
        out,
        "FAILED at step {}/5 ({}): {} client(s) failed; repeat with --seed {seed}",
        step.number,
        step.title,
        failures.len()
    );
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) step: Step,
    pub(crate) client: usize,
    /// The message whose answer was wrong; `None` before anything was sent.
    pub(crate) sent: Option<String>,
    pub(crate) problem: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}/5, client {}: ", self.step.number, self.client)?;
        if let Some(sent) = &self.sent {
            write!(f, "sent {:?}: ", shorten(sent))?;
        }
        f.write_str(&self.problem)
    }
}

/// `message` cut to a printable length, saying how long it was.
fn shorten(message: &str) -> String {
    if message.len() <= MAX_SHOWN_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_SHOWN_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &message[..end], message.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_shortened_on_a_char_boundary() {
        assert_eq!(shorten("QUERY|a|"), "QUERY|a|");
        let long = format!("INDEX|{}|", "☃".repeat(100));
        let shown = shorten(&long);
        assert!(shown.ends_with(&format!("... ({} bytes)", long.len())));
        assert!(shown.len() < long.len());
    }
}
