//! The operator's view into a running server, through the real binary:
//! `/v1/packages/NAME` and `show`, `/v1/export` and `export`.
//!
//! The rules: `docs/admin-http.md#v1packagesname`,
//! `docs/admin-http.md#v1export`, `docs/command-line.md#show` and
//! `docs/command-line.md#export`.
//!
//! The JSON is also read by `jq`, a parser that is not the project's own;
//! without `jq` that check fails under `PACKAGE_INDEXER_REQUIRE_TOOLS=1`
//! (as `.ci/run` sets) and prints a SKIP line otherwise.

mod common;

use common::{
    external_tool, http_answer, index_list, run_binary, run_binary_with, run_to_end, Client,
    ServerProcess, TempDir,
};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const SMALL_LIST: &str = "z:\nb:\ny: z b\na: y z\nc: y\nhomebrew/x@2: a\n";

fn admin(server: &ServerProcess) -> String {
    server.admin_addr.unwrap().to_string()
}

/// `show`'s exit code and output.
fn show(server: &ServerProcess, name: &str) -> (Option<i32>, String, String) {
    let output = run_binary(&["show", "--admin-addr", &admin(server), name]);
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn show_names_what_depends_on_a_package_and_says_when_it_is_missing() {
    let server = ServerProcess::start(&[]);
    index_list(server.addr, SMALL_LIST);
    assert_eq!(
        show(&server, "y"),
        (
            Some(0),
            "y\ndepends on (2): b, z\nneeded by (2): a, c\n".into(),
            String::new()
        )
    );
    assert_eq!(
        show(&server, "homebrew/x@2"),
        (
            Some(0),
            "homebrew/x@2\ndepends on (1): a\nneeded by (0)\n".into(),
            String::new()
        )
    );
    let (code, stdout, _) = show(&server, "nope");
    assert_eq!((code, stdout.as_str()), (Some(1), "nope: not indexed\n"));
    let (code, _, stderr) = show(&server, "a,b");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid package name 'a,b'"), "{stderr}");
    // A REMOVE refused: show says why.
    let mut client = server.connect();
    assert_eq!(client.ask("REMOVE|z|"), "FAIL");
    let (_, stdout, _) = show(&server, "z");
    assert!(stdout.contains("needed by (2): a, y"), "{stdout}");
}

#[test]
fn show_fails_when_the_server_cannot_be_asked() {
    let server = ServerProcess::start(&[]);
    let admin_addr = admin(&server);
    drop(server);
    let output = run_binary(&["show", "--admin-addr", &admin_addr, "a"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("package-indexer show: "), "{stderr}");
}

#[test]
fn packages_answers_json_that_a_real_parser_reads() {
    let server = ServerProcess::start(&[]);
    index_list(server.addr, SMALL_LIST);
    let answer = http_answer(server.admin_addr.unwrap(), "GET", "/v1/packages/y");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    assert_eq!(
        answer.body,
        "{\"name\":\"y\",\"dependencies\":[\"b\",\"z\"],\"dependents\":[\"a\",\"c\"]}\n"
    );
    let missing = http_answer(server.admin_addr.unwrap(), "GET", "/v1/packages/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        "{\"error\":\"not indexed\",\"name\":\"nope\"}\n"
    );
    let invalid = http_answer(server.admin_addr.unwrap(), "GET", "/v1/packages/a%7Cb");
    assert_eq!(invalid.status, 400);
    assert_eq!(
        invalid.body,
        "{\"error\":\"invalid package name\",\"name\":\"a%7Cb\"}\n"
    );

    let Some(jq) = external_tool("jq", "Debian's jq package") else {
        return;
    };
    // jq reads each body and writes it back in its own canonical form.
    let canonical = |body: &str| {
        let mut command = Command::new(&jq);
        command.args(["--sort-keys", "--compact-output", "."]);
        let output = run_to_end(command, body.as_bytes());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "jq refused {body:?}: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(
        canonical(&answer.body),
        "{\"dependencies\":[\"b\",\"z\"],\"dependents\":[\"a\",\"c\"],\"name\":\"y\"}\n"
    );
    assert_eq!(
        canonical(&missing.body),
        "{\"error\":\"not indexed\",\"name\":\"nope\"}\n"
    );
    assert_eq!(
        canonical(&invalid.body),
        "{\"error\":\"invalid package name\",\"name\":\"a%7Cb\"}\n"
    );
}

#[test]
fn head_answers_like_get_without_a_body() {
    let server = ServerProcess::start(&[]);
    index_list(server.addr, SMALL_LIST);
    let addr = server.admin_addr.unwrap();
    for path in ["/v1/packages/y", "/v1/packages/nope", "/v1/export"] {
        let get = http_answer(addr, "GET", path);
        let head = http_answer(addr, "HEAD", path);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(head.body, "", "{path}");
        assert_eq!(
            head.header("Content-Length"),
            Some(&*get.body.len().to_string()),
            "{path}"
        );
    }
}

/// The Homebrew list with a line for each dependency it never lists (the
/// real dump has two), so every package in it can be indexed.
fn complete_brew_list() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/brew-dependencies.txt");
    let mut list = std::fs::read_to_string(path).unwrap();
    let mut listed = HashSet::new();
    let mut mentioned = Vec::new();
    for (i, line) in list.lines().enumerate() {
        if let Some(entry) = package_indexer::package_list::parse_line(i + 1, line).unwrap() {
            listed.insert(entry.name.to_string());
            mentioned.extend(entry.dependencies.iter().map(|d| d.to_string()));
        }
    }
    let mut missing: Vec<String> = mentioned
        .into_iter()
        .filter(|d| !listed.contains(d))
        .collect();
    missing.sort();
    missing.dedup();
    for name in missing {
        list.push_str(&format!("\n{name}:"));
    }
    list.push('\n');
    list
}

/// Runs `export -o FILE` against `server` and returns what it wrote.
fn export_to_file(server: &ServerProcess, file: &std::path::Path) -> String {
    let output = run_binary(&[
        "export",
        "--admin-addr",
        &admin(server),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "export: {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty());
    std::fs::read_to_string(file).unwrap()
}

/// Checks that every package of an export comes after all its
/// dependencies (so each was present when it was indexed) and is listed
/// once; returns the packages.
fn check_dependency_order(export: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, line) in export.lines().enumerate() {
        let entry = package_indexer::package_list::parse_line(i + 1, line)
            .unwrap()
            .unwrap_or_else(|| panic!("blank line {}", i + 1));
        for dependency in &entry.dependencies {
            assert!(
                seen.contains(dependency.as_str()),
                "line {}: {line:?} before its dependency {dependency}",
                i + 1
            );
        }
        assert!(seen.insert(entry.name.to_string()), "{} twice", entry.name);
    }
    seen
}

#[test]
fn the_homebrew_list_exported_and_loaded_again_exports_the_same_bytes() {
    let list = complete_brew_list();
    let files = TempDir::new("export").unwrap();
    let first_server = ServerProcess::start(&[]);
    let packages = index_list(first_server.addr, &list);
    let first = export_to_file(&first_server, &files.path().join("first.txt"));
    assert_eq!(check_dependency_order(&first).len(), packages);
    assert!(
        !files.path().join("first.txt.tmp").exists(),
        "the temporary file was left behind"
    );
    drop(first_server);

    let second_server = ServerProcess::start(&[]);
    assert_eq!(index_list(second_server.addr, &first), packages);
    let second = export_to_file(&second_server, &files.path().join("second.txt"));
    assert!(first == second, "the second export differs from the first");

    // Standard output gets the same bytes, whatever a variable named after
    // `--output` says: only the server's flags come from variables.
    let ignored = files.path().join("from-a-variable.txt");
    let output = run_binary_with(
        &["export", "--admin-addr", &admin(&second_server)],
        b"",
        &[("PACKAGE_INDEXER_OUTPUT", ignored.to_str().unwrap())],
    );
    assert!(output.status.success());
    assert!(output.stdout == second.as_bytes());
    assert!(!ignored.exists());
}

#[test]
fn export_fails_without_a_server_and_leaves_no_file() {
    let server = ServerProcess::start(&[]);
    let admin_addr = admin(&server);
    drop(server);
    let files = TempDir::new("export-fails").unwrap();
    let file = files.path().join("backup.txt");
    let output = run_binary(&[
        "export",
        "--admin-addr",
        &admin_addr,
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(std::fs::read_dir(files.path()).unwrap().next().is_none());
    // The address is at fault, not the file.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "package-indexer export: cannot connect to {admin_addr}: "
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("backup.txt"), "{stderr}");
    let usage = run_binary(&["export", "--admin-addr", "nowhere"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn an_export_during_writes_is_a_state_the_server_passed_through() {
    let server = ServerProcess::start(&[]);
    index_list(server.addr, SMALL_LIST);
    let stop = AtomicBool::new(false);
    let exports = thread::scope(|scope| {
        // Each writer indexes chains of packages, each on the one before,
        // and removes them from the leaf down: at every moment each
        // package's dependencies are indexed.
        for writer in 0..2 {
            let (stop, addr) = (&stop, server.addr);
            scope.spawn(move || {
                let mut client = Client::connect(addr);
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = |i: usize| format!("w{writer}-r{round}-{i}");
                    let mut batch = format!("INDEX|{}|y\n", name(0));
                    for i in 1..200 {
                        batch.push_str(&format!("INDEX|{}|{},a\n", name(i), name(i - 1)));
                    }
                    for i in (0..200).rev() {
                        batch.push_str(&format!("REMOVE|{}|\n", name(i)));
                    }
                    client.send(batch.as_bytes());
                    for _ in 0..400 {
                        assert_eq!(client.line(), "OK\n");
                    }
                    round += 1;
                }
            });
        }
        let files = TempDir::new("export-writes").unwrap();
        let exports: Vec<String> = (0..10)
            .map(|i| export_to_file(&server, &files.path().join(format!("{i}.txt"))))
            .collect();
        stop.store(true, Ordering::Relaxed);
        exports
    });
    for export in &exports {
        let packages = check_dependency_order(export);
        for name in ["z", "b", "y", "a", "c", "homebrew/x@2"] {
            assert!(packages.contains(name), "{name} missing");
        }
    }
}

/// Package `i` of the large export: a 240-byte name.
fn long_name(i: usize) -> String {
    format!("{i:0>240}")
}

/// A server holding a chain of 50,000 packages with 240-byte names: its
/// export is 24 MB, far more than socket buffers hold.
fn server_with_a_large_export() -> ServerProcess {
    let server = ServerProcess::start(&[]);
    let name = long_name;
    let mut list = format!("{}:\n", name(0));
    for i in 1..50_000 {
        list.push_str(&format!("{}: {}\n", name(i), name(i - 1)));
    }
    index_list(server.addr, &list);
    server
}

#[test]
fn probes_answer_while_an_export_goes_to_a_slow_reader() {
    let server = server_with_a_large_export();
    let addr = server.admin_addr.unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /v1/export HTTP/1.1\r\n\r\n").unwrap();
    let mut status = [0u8; 12];
    slow.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let inspect = format!("/v1/packages/{}", long_name(7));
    for path in ["/healthz", "/readyz", &inspect] {
        let started = Instant::now();
        let answer = http_answer(addr, "GET", path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(started.elapsed() < Duration::from_secs(1), "{path} waited");
    }
    // The slow reader still gets all of it.
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8(rest).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), length);
    assert_eq!(body.lines().count(), 50_000);
}

#[test]
fn the_text_form_is_what_show_prints() {
    let server = ServerProcess::start(&[]);
    index_list(server.addr, SMALL_LIST);
    let addr = server.admin_addr.unwrap();
    let answer = http_answer(addr, "GET", "/v1/text/packages/y");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        answer.body,
        "y\ndepends on (2): b, z\nneeded by (2): a, c\n"
    );
    let missing = http_answer(addr, "GET", "/v1/text/packages/nope");
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (404, "not indexed\n")
    );
    let invalid = http_answer(addr, "GET", "/v1/text/packages/a%7Cb");
    assert_eq!(
        (invalid.status, invalid.body.as_str()),
        (400, "invalid package name\n")
    );
}

/// The stderr of each HTTP subcommand run against `addr` with `timeout`.
fn http_tools_against(addr: &str, timeout: &str) -> Vec<String> {
    let tools: [&[&str]; 3] = [&["healthcheck"], &["show", "a"], &["export"]];
    tools
        .iter()
        .map(|tool| {
            let mut args = tool.to_vec();
            args.extend(["--admin-addr", addr, "--timeout", timeout]);
            let output = run_binary(&args);
            assert_eq!(output.status.code(), Some(1), "{args:?}");
            String::from_utf8(output.stderr).unwrap()
        })
        .collect()
}

#[test]
fn http_tools_pointed_at_the_protocol_port_say_so() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    for stderr in http_tools_against(&addr, "10s") {
        assert!(
            stderr.ends_with(&format!(
                "{addr}: answered \"ERROR\", not HTTP (is that the admin address?)\n"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn http_tools_report_silence_as_no_answer_from_the_address() {
    // Connections are accepted by the kernel into the backlog; nothing
    // ever answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    for stderr in http_tools_against(&addr, "300ms") {
        assert!(
            stderr.ends_with(&format!(
                "no answer from {addr} within 0.3 s (is that the admin address?)\n"
            )),
            "{stderr}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}
