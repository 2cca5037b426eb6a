//! `package-indexer client`, through the real binary: lines from the
//! arguments, from a pipe and from a terminal; its exit statuses.
//!
//! The rules: `docs/command-line.md#client`.

mod common;

use common::{closing_server, in_terminal, run_binary_with, ServerProcess};
use std::process::Output;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn sends_its_arguments_and_prints_each_answer_in_order() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let output = run_binary_with(
        &[
            "client",
            "--addr",
            &addr,
            "INDEX|a|",
            "QUERY|a|",
            "INDEX|b|nope",
            "QUERY|b|extra",
        ],
        b"",
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "OK\nOK\nFAIL\nERROR\n");
    assert_eq!(stderr(&output), "");
    // `--` lets a line start with a dash.
    let output = run_binary_with(&["client", "--addr", &addr, "--", "-x"], b"", &[]);
    assert_eq!(stdout(&output), "ERROR\n");
}

#[test]
fn pipes_stdin_through_as_it_is_and_waits_for_the_last_answer() {
    let server = ServerProcess::start(&["--max-line-bytes", "1024"]);
    let mut input = Vec::new();
    let mut expected = String::new();
    for i in 0..5_000 {
        input.extend_from_slice(format!("INDEX|p{i}|\nQUERY|p{i}|\n").as_bytes());
        expected.push_str("OK\nOK\n");
    }
    // A name that is not UTF-8, a line over the server's limit, a line
    // with `\r\n`, and a last line without its newline: the server judges.
    input.extend_from_slice(b"QUERY|\xff|\n");
    input.extend_from_slice(format!("QUERY|{}|\n", "x".repeat(2000)).as_bytes());
    input.extend_from_slice(b"QUERY|p1|\r\n");
    input.extend_from_slice(b"QUERY|p2|");
    expected.push_str("ERROR\nERROR\nOK\nOK\n");
    let output = run_binary_with(&["client", "--addr", &server.addr.to_string()], &input, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output) == expected, "answers differ");
    // Empty input: nothing to send, nothing to print.
    let output = run_binary_with(&["client", "--addr", &server.addr.to_string()], b"", &[]);
    assert_eq!(
        (output.status.code(), stdout(&output)),
        (Some(0), String::new())
    );
}

#[test]
fn finds_the_server_through_the_variable_the_server_reads() {
    let server = ServerProcess::start(&[]);
    // The server's own setting names all interfaces; the client connects
    // to this host.
    let listen = format!("0.0.0.0:{}", server.addr.port());
    let output = run_binary_with(
        &["client", "INDEX|a|"],
        b"",
        &[("PACKAGE_INDEXER_ADDR", &listen)],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "OK\n");
}

#[test]
fn exit_statuses_say_bad_usage_or_no_answer() {
    let usage = [
        (&["client", "--addr", "nowhere"][..], "expected HOST:PORT"),
        (&["client", "--nope"], "unknown flag '--nope'"),
        (&["client", "QUERY|a|\nQUERY|b|"], "holds no newline"),
    ];
    for (args, reason) in usage {
        let output = run_binary_with(args, b"", &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(reason), "{}", stderr(&output));
    }

    // Nothing listens on a port just freed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let output = run_binary_with(&["client", "--addr", &addr, "QUERY|a|"], b"", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!(
            "package-indexer client: cannot connect to {addr}: "
        )),
        "{}",
        stderr(&output)
    );

    let (addr, fake) = closing_server(3);
    let output = run_binary_with(
        &["client", "--addr", &addr.to_string()],
        b"QUERY|a|\nQUERY|b|\nQUERY|c|\n",
        &[],
    );
    fake.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "OK\n");
    assert_eq!(
        stderr(&output),
        "package-indexer client: the server closed the connection after answering 1 of 3 lines\n"
    );
}

#[test]
fn on_a_terminal_it_prompts_line_by_line_until_end_of_input() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let Some(output) = in_terminal(
        &["client", "--addr", &addr],
        b"INDEX|a|\n\nQUERY|a|\nREMOVE|a|x\n",
    ) else {
        return;
    };
    assert_eq!(output.status.code(), Some(0));
    // The terminal shows prompts, echoed lines (whenever the terminal
    // echoes them) and answers, with `\r\n`.
    let screen = stdout(&output).replace("\r\n", "\n");
    let prompt = format!("{addr}> ");
    let answers: Vec<String> = screen
        .lines()
        .map(|line| line.replace(&prompt, ""))
        .filter(|rest| matches!(rest.as_str(), "OK" | "FAIL" | "ERROR"))
        .collect();
    assert_eq!(answers, ["OK", "OK", "ERROR"], "{screen:?}");
    // An empty line sends nothing: four prompts with an answer or not, and
    // the last one left by Ctrl-D.
    assert_eq!(screen.matches(&prompt).count(), 5, "{screen:?}");
    let mut check = server.connect();
    assert_eq!(check.ask("QUERY|a|"), "OK");
}
