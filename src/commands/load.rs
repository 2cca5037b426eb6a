//! `package-indexer load FILE|-` (`docs/command-line.md#load`): the whole
//! list is read and checked, names without a line are asked for (`QUERY`),
//! and the list is ordered ([`plan::order`]), all before the first `INDEX`.

mod plan;

use super::connection::{self, AnswerSink, PipelineOutcome, Sender};
use super::Subcommand;
use crate::figures::{count, thousands};
use crate::flags::{CommandLine, Flag, Operands, Values};
use crate::protocol::{write_request, Command, Response};
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "load",
    usage: " FILE|-",
    summary: "index a Homebrew-style list (`name: dep dep`; - is stdin) in dependency order; \
              exit 0 when all of it is",
    command_line: &CommandLine {
        flags: &[
            connection::ADDR_FLAG,
            Flag::switch(
                "strict",
                "refuse a name with no line of its own that the server lacks: \
                 it is a missing dependency, and what needs it is skipped",
            )
            .without_variable(),
        ],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::One("FILE"),
    },
    run,
};

const PROGRAM: &str = "package-indexer load";

/// Request lines gathered before one write (about 40 KiB of a typical list).
const LINES_PER_WRITE: usize = 1024;

/// What an answer other than `OK` to an `INDEX` line means.
const REFUSED: &str = "refused (FAIL: a dependency is not on the server after all, \
                       or the package would close a cycle with packages already there)";
const MALFORMED: &str = "malformed (ERROR: the line is longer than the server's --max-line-bytes)";

/// Moves to the start of the line and erases it (VT100: every terminal).
const ERASE_LINE: &str = "\r\x1b[K";

fn say(message: &str) {
    eprintln!("{PROGRAM}: {message}");
}

fn run(values: &Values) -> ExitCode {
    let addr = match values.address("addr") {
        Ok(addr) => addr,
        Err(error) => return error.report(PROGRAM),
    };
    let source = values.operands().first().map_or("-", String::as_str);
    let outcome = load(source, &addr, values.switch("strict"));
    let (Ok(said) | Err(said)) = &outcome;
    say(said);
    ExitCode::from(u8::from(outcome.is_err()))
}

/// Loads the list at `source` into the server at `addr`. The summary line
/// when every package was indexed; else the summary, or why nothing was.
fn load(source: &str, addr: &str, strict: bool) -> Result<String, String> {
    let (started, mut text) = (Instant::now(), Vec::new());
    let shown = if source == "-" { "stdin" } else { source };
    match source {
        "-" => io::stdin().lock().read_to_end(&mut text),
        _ => std::fs::File::open(source).and_then(|mut file| file.read_to_end(&mut text)),
    }
    .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let list = plan::List::read(&text).map_err(|errors| {
        let lines = errors.iter().map(|error| format!("{source}: {error}"));
        for line in plan::cut(lines.collect(), "lines at fault") {
            say(&line);
        }
        let lines = count(errors.len(), "line", "lines");
        format!("{source}: {lines} at fault; nothing was sent")
    })?;
    let unlisted: Vec<u32> = list.unlisted().collect();
    let query =
        |out: &mut Vec<u8>, id| write_request::<&str>(out, Command::Query, list.name(id), &[]);
    let (answers, outcome) = exchange(addr, &unlisted, false, query)?;
    if !outcome.problems.is_empty() {
        let problems = outcome.problems.join("; ");
        return Err(format!(
            "asking for names without a line: {problems}; nothing was sent"
        ));
    }
    // Every answer but `OK` says the server lacks the name.
    let absent = answers
        .not_ok
        .iter()
        .filter_map(|&(at, _)| unlisted.get(at));
    let (leaves, missing): (Vec<u32>, Vec<u32>) = absent.partition(|_| !strict);
    let order = plan::order(&list, &missing);
    for line in &order.report {
        say(line);
    }
    let skipped = list.len() - order.send.len();
    let ids = [&leaves[..], &order.send].concat();
    let push_line = |out: &mut Vec<u8>, id| list.push_index_line(out, id);
    let (answers, outcome) = exchange(addr, &ids, io::stderr().is_terminal(), push_line)?;
    let not_ok = |answer| -> Vec<u32> {
        let at = answers.not_ok.iter().filter(|&&(_, a)| a == answer);
        at.filter_map(|&(at, _)| ids.get(at).copied()).collect()
    };
    let (refused, malformed) = (not_ok(Response::Fail), not_ok(Response::Error));
    for (ids, what) in [(&refused, REFUSED), (&malformed, MALFORMED)] {
        if !ids.is_empty() {
            say(&format!("{what}: {}", list.some_names(ids)));
        }
    }
    for problem in &outcome.problems {
        say(problem);
    }
    if !leaves.is_empty() {
        let names = list.some_names(&leaves);
        let have = count(leaves.len(), "dependency has", "dependencies have");
        say(&format!(
            "{have} no line of their own; indexed as packages without dependencies: {names}"
        ));
    }
    let (listed, elapsed) = ((leaves.len() + list.len()) as u64, started.elapsed());
    let (ok, all) = (thousands(answers.ok), thousands(listed));
    let seconds = elapsed.as_secs_f64();
    let rate = thousands(per_second(answers.ok, elapsed));
    let mut summary = format!("indexed {ok} of {all} packages in {seconds:.2} s ({rate}/s)");
    let unanswered = ids.len() as u64 - outcome.answered;
    for (count, what) in [
        (skipped as u64, "skipped (can never be indexed)"),
        (refused.len() as u64, "refused (FAIL)"),
        (malformed.len() as u64, "malformed (ERROR)"),
        (unanswered, "unanswered (connection lost)"),
    ] {
        if count > 0 {
            summary += &format!("; {} {what}", thousands(count));
        }
    }
    (answers.ok == listed)
        .then_some(summary.clone())
        .ok_or(summary)
}

/// Sends a line for each of `ids`, written by `push_line`, pipelined on a
/// connection of its own, and gathers the answers, with a progress line
/// when `terminal`; no ids, no connection.
fn exchange(
    addr: &str,
    ids: &[u32],
    terminal: bool,
    push_line: impl Fn(&mut Vec<u8>, u32) + Sync,
) -> Result<(Answers, PipelineOutcome), String> {
    let progress = terminal.then(|| (ids.len() as u64, Instant::now()));
    let mut answers = Answers {
        progress,
        ..Answers::default()
    };
    if ids.is_empty() {
        return Ok((answers, PipelineOutcome::default()));
    }
    let stream = connection::connect(addr)?;
    let write = |sender: &mut Sender| -> io::Result<()> {
        let mut chunk = Vec::new();
        for lines in ids.chunks(LINES_PER_WRITE) {
            lines.iter().for_each(|&id| push_line(&mut chunk, id));
            sender.send(&chunk, lines.len() as u64)?;
            chunk.clear();
        }
        Ok(())
    };
    let outcome = connection::pipeline(&stream, connection::LINES_IN_FLIGHT, write, &mut answers);
    if answers.drawn.is_some() {
        eprint!("{ERASE_LINE}");
    }
    Ok((answers, outcome))
}

/// The answers of one exchange: `OK`s counted, the others kept by line.
#[derive(Default)]
struct Answers {
    ok: u64,
    not_ok: Vec<(usize, Response)>,
    /// On a terminal: the lines to answer, when they started, and when the
    /// progress line was last drawn.
    progress: Option<(u64, Instant)>,
    drawn: Option<Instant>,
}

impl AnswerSink for Answers {
    fn answer(&mut self, index: u64, answer: Response) -> io::Result<()> {
        match (answer, usize::try_from(index)) {
            (Response::Ok, _) => self.ok += 1,
            (_, at) => self.not_ok.push((at.unwrap_or(usize::MAX), answer)),
        }
        Ok(())
    }

    /// Redraws the progress line four times a second, and at once after the
    /// first answers: even a short load shows it is moving.
    fn after_read(&mut self, answered: u64) -> io::Result<()> {
        let now = Instant::now();
        let due = self
            .drawn
            .is_none_or(|at| now - at >= Duration::from_millis(250));
        if let Some((total, started)) = self.progress.filter(|_| due) {
            self.drawn = Some(now);
            let line = progress_line(answered, total, now - started);
            // A courtesy: a terminal that refuses it stops nothing.
            let _ = write!(io::stderr().lock(), "{ERASE_LINE}{line}");
        }
        Ok(())
    }
}

/// `indexed 512,000 of 1,000,000 (51%), 480,000/s, 1 s left`.
fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    let rate = per_second(done, elapsed);
    let remaining = total.saturating_sub(done);
    let left = match remaining.checked_div(rate) {
        Some(s @ 60..) => format!("{} min {} s left", s / 60, s % 60),
        Some(s @ 1..) => format!("{s} s left"),
        None if remaining > 0 => "time left unknown".to_string(),
        _ => "under 1 s left".to_string(),
    };
    let (done, total, rate) = (thousands(done), thousands(total), thousands(rate));
    format!("indexed {done} of {total} ({percent}%), {rate}/s, {left}")
}

/// `count` per second of `elapsed`, rounded down; 0 for no time.
fn per_second(count: u64, elapsed: Duration) -> u64 {
    let rate = (u128::from(count) * 1_000_000).checked_div(elapsed.as_micros());
    rate.map_or(0, |rate| u64::try_from(rate).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
