//! `package-indexer client [LINE ...]`: talks the line protocol, so that
//! neither a person nor a script needs `nc` (`docs/command-line.md#client`).

use super::connection::{self, AnswerSink, Connection, Sender};
use super::Subcommand;
use crate::flags::{CommandLine, Operands, UsageError, Values};
use crate::protocol::Response;
use std::io::{self, BufRead, BufWriter, ErrorKind, IsTerminal, Read, StdoutLock, Write};
use std::net::TcpStream;
use std::process::ExitCode;

pub(super) const SUBCOMMAND: Subcommand = Subcommand {
    name: "client",
    usage: " [LINE ...]",
    summary: "send request lines (the arguments, else stdin's) and print each answer; a prompt on a terminal",
    command_line: &CommandLine {
        flags: &[connection::ADDR_FLAG],
        env_prefix: Some("PACKAGE_INDEXER_"),
        single_dash: false,
        operands: Operands::Any("LINE"),
    },
    run,
};

const PROGRAM: &str = "package-indexer client";

const CHUNK: usize = 64 * 1024;

fn run(values: &Values) -> ExitCode {
    let addr = match values.address("addr") {
        Ok(addr) => addr,
        Err(error) => return error.report(PROGRAM),
    };
    let lines = values.operands();
    if lines.iter().any(|line| line.contains('\n')) {
        let error = UsageError(
            "a LINE holds no newline: give each request line as its own argument".into(),
        );
        return error.report(PROGRAM);
    }
    let stream = match connection::connect(&addr) {
        Ok(stream) => stream,
        Err(reason) => return super::fail(PROGRAM, reason),
    };
    let problems = if lines.is_empty() && io::stdin().is_terminal() {
        prompt(Connection::new(stream), &addr)
            .err()
            .into_iter()
            .collect()
    } else {
        pipelined(&stream, lines)
    };
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    super::fail(PROGRAM, problems.join(&format!("\n{PROGRAM}: ")))
}

/// Sends `lines`, or stdin when there are none, and prints the answers;
/// the problems, if any.
fn pipelined(stream: &TcpStream, lines: &[String]) -> Vec<String> {
    let operands: Vec<u8> = lines
        .iter()
        .flat_map(|line| line.bytes().chain([b'\n']))
        .collect();
    let mut printer = Printer(BufWriter::new(io::stdout().lock()));
    let outcome = connection::pipeline(
        stream,
        connection::LINES_IN_FLIGHT,
        |sender| match lines.is_empty() {
            true => copy(io::stdin().lock(), sender),
            false => copy(&operands[..], sender),
        },
        &mut printer,
    );
    let mut problems = outcome.problems;
    if let Err(error) = printer.0.flush() {
        problems.push(format!("writing the answers: {error}"));
    }
    problems
}

/// Sends `input` as it comes, counting its lines; a last line without its
/// newline gets one.
fn copy(mut input: impl Read, sender: &mut Sender) -> io::Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    let mut ends_a_line = true;
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(io::Error::other(format!("reading stdin: {error}"))),
        };
        let bytes = &buffer[..read];
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        sender.send(bytes, lines)?;
        ends_a_line = bytes.ends_with(b"\n");
    }
    if !ends_a_line {
        sender.send(b"\n", 1)?;
    }
    Ok(())
}

/// Prints answers to stdout, flushing after each read from the server so
/// a long-running pipe shows them as they come.
struct Printer<'a>(BufWriter<StdoutLock<'a>>);

impl AnswerSink for Printer<'_> {
    fn answer(&mut self, _index: u64, answer: Response) -> io::Result<()> {
        self.0.write_all(answer.as_bytes())
    }

    fn after_read(&mut self, _answered: u64) -> io::Result<()> {
        self.0.flush()
    }
}

/// The interactive prompt (`ADDR> ` on stderr): one line, one answer,
/// until the end of input.
fn prompt(mut connection: Connection, addr: &str) -> Result<(), String> {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout();
    let mut line = Vec::new();
    loop {
        eprint!("{addr}> ");
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => {
                // Ctrl-D: leave the shell's prompt on a line of its own.
                eprintln!();
                return Ok(());
            }
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("reading the terminal: {error}")),
        }
        let request = line.strip_suffix(b"\n").unwrap_or(&line);
        if request.is_empty() {
            continue;
        }
        let answer = connection.ask(request).map_err(|e| e.to_string())?;
        stdout
            .write_all(answer.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("writing the answer: {e}"))?;
    }
}
