//! The challenge's harness, reproduced by `package-indexer-harness`, run
//! against the real server at concurrency 100: on a generated graph always,
//! and on the real Homebrew list (`data/brew-dependencies.txt`).

mod common;

use common::ServerProcess;
use std::path::Path;
use std::process::Command;

const HARNESS: &str = env!("CARGO_BIN_EXE_package-indexer-harness");

fn run_harness(server: &ServerProcess, extra: &[&str]) {
    let port = server.addr.port().to_string();
    let out = Command::new(HARNESS)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--concurrency",
            "100",
        ])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("All tests passed!"),
        "harness failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn passes_at_concurrency_100_on_a_generated_graph() {
    let server = ServerProcess::start(&[]);
    for seed in ["1", "2"] {
        run_harness(&server, &["--seed", seed, "--unluckiness", "10"]);
    }
}

#[test]
fn passes_at_concurrency_100_on_the_homebrew_list() {
    let brew = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/brew-dependencies.txt");
    let server = ServerProcess::start(&[]);
    run_harness(
        &server,
        &["--seed", "7", "--packages", brew.to_str().unwrap()],
    );
}

#[test]
fn passes_against_a_durable_server() {
    let dir = common::TempDir::new("harness");
    let server = ServerProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
    run_harness(&server, &["--seed", "3"]);
}
