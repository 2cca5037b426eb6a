//! The real binary as an operator runs it: start line, signals (stopping
//! and stray ones), exit statuses, admin endpoints, log formats and the
//! healthcheck subcommand.
//!
//! The rules: `docs/lifecycle.md` and `docs/command-line.md#exit-statuses`.

mod common;

use common::{Client, ServerProcess, TempDir};
use std::io::{Read, Write};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// Blocks the server's writes to one client: it sends without ever reading
/// until the server stops reading from it.
fn stall_a_writer(server: &ServerProcess) -> Client {
    let client = server.connect();
    let mut writer = client.writer.try_clone().unwrap();
    thread::spawn(move || {
        let flood = b"QUERY|a|\n".repeat(10_000);
        while writer.write_all(&flood).is_ok() {}
    });
    client
}

#[test]
fn start_line_names_address_version_and_settings() {
    let server = ServerProcess::start(&[]);
    let logs = server.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    for field in [
        "level=info",
        "msg=\"listening\"",
        "version=",
        "max_connections=10000",
    ] {
        assert!(logs[0].contains(field), "{field} missing: {}", logs[0]);
    }
    assert_eq!(server.connect().ask("INDEX|a|"), "OK");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = ServerProcess::start(&["--log-format", "json"]);
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).unwrap().success());
    thread::sleep(Duration::from_millis(50));
    let logs = server.logs();
    assert!(logs.len() >= 3, "{logs:?}");
    for line in &logs {
        assert!(
            line.starts_with("{\"ts\":\"") && line.ends_with('}'),
            "{line}"
        );
        assert!(
            line.contains("\"level\":\"info\"") && line.contains("\"msg\":\""),
            "{line}"
        );
        assert_eq!(line.matches('{').count(), 1, "{line}");
    }
    // Numbers are JSON numbers, not strings.
    assert!(
        logs[0].contains("\"max_connections\":10000,"),
        "{}",
        logs[0]
    );
    let stopped = logs
        .iter()
        .find(|l| l.contains("\"msg\":\"stopped\""))
        .unwrap();
    assert!(stopped.contains("\"drained\":0,"), "{stopped}");
}

#[test]
fn a_misspelt_variable_is_warned_about_and_a_bad_one_named() {
    let mut child = common::binary_command()
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "off"])
        .env("PACKAGE_INDEXER_MAX_CONECTIONS", "5")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().unwrap().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.contains("level=warn")
            && first.contains("unknown variable ignored")
            && first.contains("variable=PACKAGE_INDEXER_MAX_CONECTIONS"),
        "{first}"
    );

    let out = common::binary_command()
        .env("PACKAGE_INDEXER_LOG_LEVEL", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("'trace' for PACKAGE_INDEXER_LOG_LEVEL (--log-level)"),
        "{stderr}"
    );
}

#[test]
fn debug_lines_name_the_client_of_a_refused_connection_and_a_malformed_line() {
    let server = ServerProcess::start(&["--log-level", "debug", "--max-connections", "1"]);
    let mut client = server.connect();
    assert_eq!(client.ask("LIZARD|a|"), "ERROR");
    let mine = client.writer.local_addr().unwrap().to_string();
    let refused = std::net::TcpStream::connect(server.addr).unwrap();
    let theirs = refused.local_addr().unwrap().to_string();
    let seen = |what: &str, peer: &str| {
        server
            .logs()
            .iter()
            .any(|l| l.contains(what) && l.contains(&format!("peer={peer}")))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen("connection refused: limit reached", &theirs) {
        assert!(Instant::now() < deadline, "{:?}", server.logs());
        thread::sleep(Duration::from_millis(10));
    }
    assert!(seen("malformed request", &mine), "{:?}", server.logs());
}

#[test]
fn sigterm_answers_every_received_line_and_exits_0() {
    let mut server = ServerProcess::start(&[]);
    let mut client = server.connect();
    let lines = 20_000;
    client.send("INDEX|p|\nQUERY|p|\n".repeat(lines / 2).as_bytes());
    // Answers wait unread in the socket while the server is told to stop.
    server.wait_for_requests(lines as u64);
    server.signal("TERM");
    for i in 0..lines {
        assert_eq!(client.line(), "OK\n", "answer {i}");
    }
    assert!(client.closed());
    let status = server.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
    let logs = server.logs();
    assert!(logs
        .iter()
        .any(|l| l.contains("msg=\"stopping\"") && l.contains("SIGTERM")));
    assert!(
        logs.iter().any(|l| l.contains("msg=\"stopped\"")),
        "{logs:?}"
    );
}

#[test]
fn sigterm_while_pipelining_gives_an_in_order_prefix_of_answers() {
    let mut server = ServerProcess::start(&[]);
    let mut client = server.connect();
    let mut writer = client.writer.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let batch = b"INDEX|q|\n".repeat(10_000);
        for _ in 0..100 {
            if writer.write_all(&batch).is_err() {
                break;
            }
        }
    });
    server.wait_for_requests(10_000);
    server.signal("INT");
    let mut answered = 0;
    loop {
        let line = {
            let mut line = String::new();
            match std::io::BufRead::read_line(&mut client.reader, &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => line,
            }
        };
        assert_eq!(line, "OK\n", "answer {answered}");
        answered += 1;
    }
    assert!(answered >= 10_000, "{answered}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    drop(sender);
}

#[test]
fn stop_is_bounded_by_the_shutdown_timeout() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "1s"]);
    let mut half = server.connect();
    half.send(b"INDEX|half");
    let _stalled = stall_a_writer(&server);
    server.wait_for_requests(10_000);
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(half.closed());
    let logs = server.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("msg=\"stopped\"") && l.contains("forced=1")),
        "{logs:?}"
    );
}

#[test]
fn readyz_turns_503_while_stopping_and_a_second_signal_exits_at_once() {
    let mut server = ServerProcess::start(&["--shutdown-timeout", "60s"]);
    assert_eq!(server.http("GET", "/readyz"), (200, "ready\n".into()));
    let _stalled = stall_a_writer(&server);
    server.wait_for_requests(10_000);
    thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.http("GET", "/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "never turned not-ready");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.http("GET", "/healthz").0, 200);
    // New connections are no longer served: refused once the listener is
    // closed; one that slipped into the backlog before is closed, after at
    // most the answer to the line that had already arrived.
    if let Ok(stream) = std::net::TcpStream::connect(server.addr) {
        let mut late = Client::from_stream(stream);
        if late.writer.write_all(b"QUERY|a|\n").is_ok() {
            let mut rest = String::new();
            let _ = late.reader.read_to_string(&mut rest);
            assert!(rest.is_empty() || rest == "FAIL\n", "{rest:?}");
        }
    }
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn stray_signals_are_logged_and_ignored() {
    let mut server = ServerProcess::start(&[]);
    let mut client = server.connect();
    assert_eq!(client.ask("INDEX|a|"), "OK");
    for name in ["HUP", "USR1", "USR2"] {
        server.signal(name);
        let logged = format!("msg=\"ignoring signal\" signal=SIG{name}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.logs().iter().any(|l| l.contains(&logged)) {
            assert!(
                Instant::now() < deadline,
                "no {logged}: {:?}",
                server.logs()
            );
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(client.ask("QUERY|a|"), "OK", "after SIG{name}");
        assert_eq!(server.connect().ask("QUERY|a|"), "OK", "after SIG{name}");
        assert_eq!(server.http("GET", "/readyz"), (200, "ready\n".into()));
    }
    assert!(server
        .logs()
        .iter()
        .all(|l| !l.contains("msg=\"stopping\"")));
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_taken_port_exits_1_with_one_line() {
    let first = ServerProcess::start(&[]);
    let addr = first.addr.to_string();
    let Err((status, logs)) = ServerProcess::try_start(&["--addr", &addr]) else {
        panic!("second server started on a taken port");
    };
    assert_eq!(status.unwrap().code(), Some(1));
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].contains("level=error") && logs[0].contains("cannot listen"),
        "{logs:?}"
    );
}

#[test]
fn a_data_dir_that_is_a_file_or_in_use_exits_1_saying_so() {
    let dir = TempDir::new("data-dir-errors").unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let file_arg = file.to_str().unwrap();
    let Err((status, logs)) = ServerProcess::try_start(&["--data-dir", file_arg]) else {
        panic!("started on a regular file");
    };
    assert_eq!(status.unwrap().code(), Some(1));
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].contains(&format!("{file_arg}: not a directory")),
        "{logs:?}"
    );

    let data_dir = dir.path().join("data");
    let data_arg = data_dir.to_str().unwrap();
    let first = ServerProcess::start(&["--data-dir", data_arg]);
    let Err((status, logs)) = ServerProcess::try_start(&["--data-dir", data_arg]) else {
        panic!("a second server started on a directory in use");
    };
    assert_eq!(status.unwrap().code(), Some(1));
    let last = logs.last().unwrap();
    assert!(
        last.contains(
            "data directory is in use by another process: stop the server that holds it first"
        ),
        "{logs:?}"
    );
    first.stop();
}

#[test]
fn a_mistyped_command_is_named_and_the_commands_listed() {
    let out = common::binary_command()
        .arg("clinet")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "package-indexer: unknown command 'clinet'; the commands are healthcheck, client, \
         show, export, load, check, repair (see --help)\n"
    );
    let help = String::from_utf8(common::run_binary(&["--help"]).stdout).unwrap();
    for command in [
        "healthcheck",
        "client",
        "show",
        "export",
        "load",
        "check",
        "repair",
    ] {
        assert!(help.contains(&format!("  {command} ")), "{command}: {help}");
    }
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    for args in [
        &["--max-connections", "none"][..],
        &["--bogus"],
        &["--addr"],
    ] {
        let out = common::binary_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
    let out = common::binary_command()
        .env("PACKAGE_INDEXER_IDLE_TIMEOUT", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn arguments_and_variables_that_are_not_utf8_are_bad_usage() {
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"127.0.0.1:\xff");
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["--addr"], None),
        (&["client", "--addr"], None),
        (&[], Some("PACKAGE_INDEXER_ADDR")),
        (&["client"], Some("PACKAGE_INDEXER_ADDR")),
    ];
    for (args, variable) in cases {
        let mut command = common::binary_command();
        command.args(args).stdin(Stdio::null());
        match variable {
            Some(name) => command.env(name, not_utf8),
            None => command.arg(not_utf8),
        };
        let out = command.output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {variable:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    }
}

#[test]
fn help_and_version() {
    let out = common::binary_command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--admin-addr",
        "--max-connections",
        "--data-dir",
        "--fsync",
        "--log-level",
    ] {
        assert!(help.contains(flag), "{flag}");
    }
    // 8081: no Prometheus server or common exporter takes it (9090 is
    // Prometheus' own).
    assert!(help.contains("(default: 127.0.0.1:8081;"), "{help}");
    let out = common::binary_command().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("package-indexer {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn flags_read_their_environment_variables() {
    let mut command = common::binary_command();
    command
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "off"])
        .env("PACKAGE_INDEXER_MAX_LINE_BYTES", "32")
        .env("PACKAGE_INDEXER_ADDR", "127.0.0.1:1")
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let start = lines.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = common::log_field(&start, "addr").unwrap().parse().unwrap();
    assert_ne!(addr.port(), 1, "the flag must beat the variable");
    assert!(start.contains("admin_addr=off"));
    let mut client = Client::connect(addr);
    assert_eq!(client.ask(&format!("INDEX|{}|", "a".repeat(40))), "ERROR");
    assert_eq!(client.ask("INDEX|a|"), "OK");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn admin_paths_and_statuses() {
    let server = ServerProcess::start(&[]);
    assert_eq!(server.http("GET", "/healthz"), (200, "ok\n".into()));
    assert_eq!(server.http("GET", "/readyz"), (200, "ready\n".into()));
    assert_eq!(server.http("GET", "/nope").0, 404);
    assert_eq!(server.http("POST", "/healthz").0, 405);
    assert_eq!(server.http("HEAD", "/healthz"), (200, String::new()));
    let mut client = server.connect();
    assert_eq!(client.ask("INDEX|a|"), "OK");
    assert_eq!(client.ask("INDEX|b|a"), "OK");
    assert_eq!(client.ask("LIZARD|b|"), "ERROR");
    let (status, body) = server.http("GET", "/metrics");
    assert_eq!(status, 200);
    for sample in [
        "package_indexer_packages 2",
        "package_indexer_dependencies 1",
        "package_indexer_requests_total{command=\"index\",result=\"ok\"} 2",
        "package_indexer_requests_total{command=\"invalid\",result=\"error\"} 1",
        "package_indexer_connections_active 1",
        "package_indexer_build_info{version=\"",
        "package_indexer_max_connections 10000\n",
        "package_indexer_max_line_bytes 65536\n",
        "process_cpu_seconds_total ",
        "process_virtual_memory_bytes ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_threads ",
    ] {
        assert!(body.contains(sample), "{sample} missing");
    }
    // The build knows its commit in a checkout.
    let commit = body
        .split("commit=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{commit}"
    );
    common::promtool_check(&body);
}

#[test]
fn healthcheck_exits_0_when_ready_1_otherwise_and_2_on_bad_usage() {
    let server = ServerProcess::start(&[]);
    let admin = server.admin_addr.unwrap().to_string();
    let status = common::binary_command()
        .args(["healthcheck", "--admin-addr", &admin])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    drop(server);
    let out = common::binary_command()
        .args(["healthcheck", "--admin-addr", &admin])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
    let out = common::binary_command()
        .args(["healthcheck", "--admin-addr", "no-port"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad usage, not a failed probe");
}

/// The README's quick-start demo: the `client` arguments and the answers
/// it shows.
fn readme_demo() -> (Vec<String>, Vec<String>) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut lines = readme.lines();
    let command = lines
        .find_map(|line| line.strip_prefix("$ target/release/package-indexer client "))
        .expect("the README's demo");
    let args = command
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    let answers = lines
        .take_while(|line| !line.starts_with('$'))
        .map(str::to_string)
        .collect();
    (args, answers)
}

#[test]
fn the_readme_demo_answers_as_shown_and_leaves_the_harness_list_removable() {
    let (args, answers) = readme_demo();
    assert_eq!(args.len(), 4, "{args:?}");
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let mut command = vec!["client", "--addr", &addr];
    command.extend(args.iter().map(String::as_str));
    let output = common::run_binary(&command);
    assert!(output.status.success(), "{output:?}");
    let printed: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(printed, answers);

    // The harness begins by removing every package of its list, until OK:
    // nothing the demo left may depend on one of them.
    let list = std::fs::read_to_string(common::BREW_LIST).unwrap();
    let mut names: Vec<&str> = list
        .lines()
        .flat_map(|line| line.split([':', ' ']))
        .filter(|name| !name.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() > 3000, "{} names", names.len());
    let mut client = server.connect();
    let removes: String = names
        .iter()
        .map(|name| format!("REMOVE|{name}|\n"))
        .collect();
    client.send(removes.as_bytes());
    for name in &names {
        assert_eq!(client.line(), "OK\n", "REMOVE|{name}| after the demo");
    }
}

#[test]
fn the_test_scripts_start_their_server_on_server_port() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/stress_test.sh");
    // Sourcing defines the script's functions and runs nothing.
    let start_and_stop = "source \"$1\" && make_work_dir && trap cleanup EXIT \
        && start_server \"$(requested_port)\" && echo \"PORT $server_port\" \
        && read -r _ && stop_server";
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for requested in [Some(free_port), None] {
        let mut command = std::process::Command::new("bash");
        command
            .args(["-c", start_and_stop, "the-test", script])
            .env("SERVER_BIN", common::BINARY)
            .env("HARNESS_BIN", "unused")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        match requested {
            Some(port) => command.env("SERVER_PORT", port.to_string()),
            None => command.env_remove("SERVER_PORT"),
        };
        let mut child = command.spawn().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let port: u16 = std::io::BufRead::lines(&mut stdout)
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("PORT ").map(str::to_string))
            .expect("the script's server started")
            .parse()
            .unwrap();
        if let Some(requested) = requested {
            assert_eq!(port, requested);
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(Client::connect(addr).ask("QUERY|a|"), "FAIL");
        child.stdin.take().unwrap().write_all(b"\n").unwrap();
        assert!(child.wait().unwrap().success(), "the script's stop failed");
    }

    let output = std::process::Command::new("bash")
        .args(["-c", "source \"$1\" && requested_port", "the-test", script])
        .env("SERVER_PORT", "80800")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr)
        .unwrap()
        .contains("SERVER_PORT=80800 is not a port number"));
}
