//! `package-indexer load FILE|-`: bulk load, and the restore step of a
//! backup. Reads a Homebrew-style list (`name: dep dep`, one package a
//! line, as `export` writes), orders it by dependencies, says by name what
//! can never be indexed before sending anything, then sends the rest as
//! pipelined `INDEX` lines on one connection.
//!
//! 1. The whole list is read and checked first ([`plan::List::read`]): a
//!    line that does not parse, or a package listed twice, is named with
//!    its line number, and nothing is sent (exit 1). Refusing a second line
//!    for a package, rather than letting the last one win, keeps a
//!    hand-edited list from silently meaning something other than it says.
//! 2. Dependencies without a line of their own must already be on the
//!    server: they are asked for with pipelined `QUERY` lines. With
//!    `--unlisted-as-leaves`, those the server lacks are indexed first as
//!    packages without dependencies, which is how the harness reads the
//!    Homebrew list (two of its dependencies have no line).
//! 3. [`plan::order`] puts each package after its dependencies. A missing
//!    dependency, a cycle (with the packages on it) and everything that
//!    depends on those are reported, and skipped.
//! 4. The rest goes out as `INDEX` lines in that order, with at most
//!    [`connection::LINES_IN_FLIGHT`] unanswered; every answer is counted.
//!
//! Exit 0 when every package of the list was answered `OK` (indexing a
//! package again with the same dependencies is `OK`, so loading a list
//! twice succeeds twice); 1 when anything was skipped, refused (`FAIL`),
//! malformed (`ERROR`), or the connection failed; 2 for bad usage.

mod plan;
mod progress;

use super::connection::{self, AnswerSink, Sender, WriteError};
use super::Subcommand;
use crate::flags::{CommandLine, Flag, Operands, Values};
use crate::protocol::Response;
use plan::{List, Order};
use progress::{Progress, Summary};
use std::io::{self, IsTerminal, Read};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Instant;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "load",
    usage: " FILE|-",
    summary: "index a Homebrew-style list (`name: dep dep`; - is stdin) in dependency order; \
              exit 0 when all of it is",
    details: "Reads a package list (`name: dep dep`, one package a line; - reads stdin),
as `export` writes it, and indexes it on the server at --addr.

The whole list is read and checked first: a line that does not parse, or a
package listed twice (refused, naming both lines), is named and nothing is
sent. The dependencies that have no line of their own are asked for
(QUERY); the list is ordered so that every package comes after its
dependencies, and what can never be indexed is named before anything is
sent: a dependency neither listed nor on the server, each dependency cycle,
and every package depending on those. The rest goes out as pipelined INDEX
lines on one connection; every package answered FAIL or ERROR is named. A
progress line on a terminal, one summary line in any case, on stderr.

Indexing a package again with the same dependencies is answered OK: loading
a list twice succeeds twice, and running it again after a failure is safe.
load never removes a package.

Exit status: 0 when every package of the list was answered OK; 1 when not
(a line at fault, packages skipped, refused or malformed, the server
unreachable or gone midway); 2 for bad usage.
",
    command_line: &CommandLine {
        flags: &[
            connection::ADDR_FLAG,
            Flag::switch(
                "unlisted-as-leaves",
                "index a dependency that has no line and is not on the server as a package \
                 without dependencies (as the harness reads the Homebrew list), instead of \
                 skipping what needs it",
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

/// Bytes of `INDEX` lines gathered before one write.
const SEND_CHUNK: usize = 64 * 1024;

fn say(message: &str) {
    eprintln!("{PROGRAM}: {message}");
}

fn run(values: &Values) -> ExitCode {
    let addr = match values.address("addr") {
        Ok(addr) => addr,
        Err(error) => return error.report(PROGRAM),
    };
    let source = values.operands().first().map_or("-", String::as_str);
    match load(source, &addr, values.switch("unlisted-as-leaves")) {
        Ok(summary) => {
            say(&summary.to_string());
            if summary.all_indexed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(reason) => {
            say(&reason);
            ExitCode::FAILURE
        }
    }
}

/// Loads the list at `source` into the server at `addr`; the error is why
/// nothing was sent.
fn load(source: &str, addr: &str, unlisted_as_leaves: bool) -> Result<Summary, String> {
    let started = Instant::now();
    let text = read_source(source)?;
    let list = List::read(&text).map_err(|errors| {
        for error in &errors.first {
            say(&format!("{source}: {error}"));
        }
        let more = errors.total - errors.first.len();
        let more = if more > 0 {
            format!(" ({more} more not shown)")
        } else {
            String::new()
        };
        format!(
            "{source}: {} at fault{more}; nothing was sent",
            plan::count(errors.total, "line", "lines")
        )
    })?;
    let missing = missing_from_server(addr, &list)?;
    let (leaves, missing) = if unlisted_as_leaves {
        (missing, Vec::new())
    } else {
        (Vec::new(), missing)
    };
    let order = plan::order(&list, &missing);
    if !leaves.is_empty() {
        say(&format!(
            "indexing first, as packages without dependencies: {}",
            plan::some_names(leaves.len(), leaves.iter().map(|&id| list.name(id)))
        ));
    }
    for line in order.report(&list) {
        say(&line);
    }
    let stream = connection::connect(addr)?;
    let mut summary = send(&stream, &list, &leaves, &order);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The whole list: a file, or stdin for `-`.
fn read_source(source: &str) -> Result<Vec<u8>, String> {
    if source == "-" {
        let mut text = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(text)
    } else {
        let fail = |e: io::Error| format!("cannot read {source}: {e}");
        let mut file = std::fs::File::open(source).map_err(fail)?;
        let size = file.metadata().map_err(fail)?.len();
        // One more byte, so that reading to the end needs no second buffer.
        let mut text = plan::huge(usize::try_from(size).unwrap_or(0).saturating_add(1));
        file.read_to_end(&mut text).map_err(fail)?;
        Ok(text)
    }
}

/// Of the dependencies without a line in the list, those the server does
/// not hold either, asked with `QUERY` on a connection of its own (a
/// pipeline ends its connection).
fn missing_from_server(addr: &str, list: &List) -> Result<Vec<u32>, String> {
    let unlisted = list.unlisted();
    if unlisted.is_empty() {
        return Ok(unlisted);
    }
    let stream = connection::connect(addr)?;
    let mut answers = Answers::default();
    let outcome = connection::pipeline(
        &stream,
        connection::LINES_IN_FLIGHT,
        |sender| {
            send_lines(sender, &unlisted, |out, id| {
                out.extend_from_slice(b"QUERY|");
                out.extend_from_slice(list.name(id).as_bytes());
                out.extend_from_slice(b"|\n");
            })
        },
        &mut answers,
    );
    if !outcome.complete() {
        return Err(format!(
            "asking the server for the dependencies the list does not hold: {}; nothing was indexed",
            outcome.problems.join("; ")
        ));
    }
    let on_server = answers.ok_at(unlisted.len());
    Ok(unlisted
        .into_iter()
        .zip(on_server)
        .filter(|&(_, present)| !present)
        .map(|(id, _)| id)
        .collect())
}

/// Formats `ids` with `push_line` into chunks of about [`SEND_CHUNK`]
/// bytes and sends them.
fn send_lines(
    sender: &mut Sender,
    ids: &[u32],
    push_line: impl Fn(&mut Vec<u8>, u32),
) -> Result<(), WriteError> {
    let mut chunk = Vec::with_capacity(SEND_CHUNK + 1024);
    let mut lines = 0;
    for &id in ids {
        push_line(&mut chunk, id);
        lines += 1;
        if chunk.len() >= SEND_CHUNK {
            sender.send(&chunk, lines)?;
            chunk.clear();
            lines = 0;
        }
    }
    if lines > 0 {
        sender.send(&chunk, lines)?;
    }
    Ok(())
}

/// Sends `leaves` (ids of names to index without dependencies), then
/// `order`'s packages, as `INDEX` lines, and counts the answers.
fn send(stream: &TcpStream, list: &List, leaves: &[u32], order: &Order) -> Summary {
    let total = (leaves.len() + order.send.len()) as u64;
    let mut answers = Answers {
        progress: Some(Progress::new(total, io::stderr().is_terminal())),
        ..Answers::default()
    };
    let outcome = connection::pipeline(
        stream,
        connection::LINES_IN_FLIGHT,
        |sender| {
            send_lines(sender, leaves, |out, id| {
                out.extend_from_slice(b"INDEX|");
                out.extend_from_slice(list.name(id).as_bytes());
                out.extend_from_slice(b"|\n");
            })?;
            send_lines(sender, &order.send, |out, package| {
                list.push_index_line(out, package)
            })
        },
        &mut answers,
    );
    if let Some(progress) = &mut answers.progress {
        progress.clear();
    }
    // The name on line `index` of what was sent.
    let sent_name = |index: u64| {
        let index = usize::try_from(index).ok()?;
        match index.checked_sub(leaves.len()) {
            None => leaves.get(index).map(|&id| list.name(id)),
            Some(at) => order.send.get(at).map(|&p| list.package_name(p)),
        }
    };
    for (answer, meaning) in [
        (
            Response::Fail,
            "refused (FAIL: a dependency is not on the server after all, \
             or the package would close a cycle with packages already there)",
        ),
        (
            Response::Error,
            "malformed (ERROR: the line is longer than the server's --max-line-bytes)",
        ),
    ] {
        let names: Vec<&str> = answers
            .not_ok
            .iter()
            .filter(|&&(_, a)| a == answer)
            .filter_map(|&(index, _)| sent_name(index))
            .collect();
        if !names.is_empty() {
            say(&format!(
                "{meaning}: {}",
                plan::some_names(names.len(), names.into_iter())
            ));
        }
    }
    for problem in &outcome.problems {
        say(problem);
    }
    let count = |answer| answers.not_ok.iter().filter(|&&(_, a)| a == answer).count() as u64;
    Summary {
        listed: (leaves.len() + list.len()) as u64,
        indexed: answers.ok,
        skipped: order.skipped() as u64,
        refused: count(Response::Fail),
        malformed: count(Response::Error),
        unanswered: total - outcome.answered,
        elapsed: std::time::Duration::ZERO,
    }
}

/// The answers of one exchange: `OK`s counted, the others kept by line.
#[derive(Default)]
struct Answers {
    ok: u64,
    not_ok: Vec<(u64, Response)>,
    progress: Option<Progress>,
}

impl Answers {
    /// For each of `lines` lines, whether it was answered `OK`.
    fn ok_at(&self, lines: usize) -> Vec<bool> {
        let mut ok = vec![true; lines];
        for &(index, _) in &self.not_ok {
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| ok.get_mut(i)) {
                *slot = false;
            }
        }
        ok
    }
}

impl AnswerSink for Answers {
    fn answer(&mut self, index: u64, answer: Response) -> io::Result<()> {
        if answer == Response::Ok {
            self.ok += 1;
        } else {
            self.not_ok.push((index, answer));
        }
        Ok(())
    }

    fn after_read(&mut self, answered: u64) -> io::Result<()> {
        if let Some(progress) = &mut self.progress {
            progress.update(answered);
        }
        Ok(())
    }
}
