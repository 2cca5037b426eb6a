//! The challenge's harness, reproduced by `package-indexer-harness`, run
//! against the real server at concurrency 100: on its embedded Homebrew list
//! (its default), on the same list read from `data/`, on generated graphs,
//! and with a data directory. The server runs in this test process,
//! started through the library as the binary starts it.
//!
//! The harness: `docs/tools.md#the-harness`.

use package_indexer::Store;
use package_indexer::{parse_command_line, Invocation};
use package_indexer::{Config, Server};
use package_indexer::{DurableOptions, Fsync};
use package_indexer::{Metrics, StoreGauges};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const HARNESS: &str = env!("CARGO_BIN_EXE_package-indexer-harness");

/// A server on an ephemeral loopback port with the default limits, stopped
/// when dropped; a data directory is closed and removed then too.
struct TestServer {
    running: Option<Server>,
    store: Store,
    data_dir: Option<PathBuf>,
    /// The server's metrics, which count the failures of the data
    /// directory (writes, syncs, compactions).
    metrics: Arc<Metrics>,
}

impl TestServer {
    fn in_memory() -> TestServer {
        TestServer::serve(Store::default(), None, Arc::default())
    }

    /// A server with `--data-dir` set to a fresh directory named after `tag`.
    fn durable(tag: &str) -> TestServer {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("harness-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let metrics = Arc::new(Metrics::new());
        let options = DurableOptions::new(Fsync::Always);
        let (store, _loaded) = Store::open(&dir, options, Arc::clone(&metrics)).unwrap();
        TestServer::serve(store, Some(dir), metrics)
    }

    fn serve(store: Store, data_dir: Option<PathBuf>, metrics: Arc<Metrics>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = default_config();
        let server = Server::start(listener, &config, None, store.clone(), Arc::clone(&metrics));
        TestServer {
            running: Some(server.unwrap()),
            store,
            data_dir,
            metrics,
        }
    }

    /// The failures the data directory counted in the server's metrics.
    fn durability_failures(&self) -> u64 {
        let mut text = String::new();
        self.metrics.render(StoreGauges::default(), &mut text);
        let name = "package_indexer_durability_errors_total ";
        let value = text.lines().find_map(|line| line.strip_prefix(name));
        value.and_then(|value| value.parse().ok()).expect(name)
    }

    fn port(&self) -> u16 {
        self.running.as_ref().unwrap().local_addr().port()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(5), || false);
        }
        let _ = self.store.close();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The settings the server binary runs with when given no flags.
fn default_config() -> Config {
    match parse_command_line(Vec::new(), |_| Ok(None)) {
        Ok(Invocation::Run(config)) => config,
        other => panic!("no default configuration: {other:?}"),
    }
}

/// Runs the harness against `server`; its output, once it passed.
fn run_harness(server: &TestServer, extra: &[&str]) -> String {
    let port = server.port().to_string();
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
    stdout.into_owned()
}

#[test]
fn passes_at_concurrency_100_on_a_generated_graph() {
    let server = TestServer::in_memory();
    for seed in ["1", "2"] {
        let flags = ["--seed", seed, "--unluckiness", "10", "--count", "3370"];
        run_harness(&server, &flags);
    }
}

#[test]
fn passes_at_concurrency_100_on_the_homebrew_list() {
    let server = TestServer::in_memory();
    let output = run_harness(&server, &["--seed", "7"]);
    assert!(
        output.starts_with("3370 packages (the embedded Homebrew list)"),
        "{output}"
    );
    let brew = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/brew-dependencies.txt");
    let output = run_harness(
        &server,
        &["--seed", "8", "--packages", brew.to_str().unwrap()],
    );
    assert!(
        output.starts_with("3370 packages (the list in "),
        "{output}"
    );
}

#[test]
fn passes_against_a_durable_server() {
    let server = TestServer::durable("durable");
    run_harness(&server, &["--seed", "3"]);
    assert_eq!(server.durability_failures(), 0);
    assert!(
        server.store.gauges().log_bytes > 0,
        "a data directory is in use"
    );
}

#[test]
fn an_argument_that_is_not_utf8_is_bad_usage() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(HARNESS)
        .arg("--host")
        .arg(std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
}

#[test]
fn a_removal_refused_for_good_names_what_blocks_it() {
    // The README's demo left `b`, which depends on `a`, on the server;
    // the list knows `a` but not `b`.
    let server = TestServer::in_memory();
    let addr = format!("127.0.0.1:{}", server.port());
    let mut client = package_indexer::Connection::new(package_indexer::connect(&addr).unwrap());
    for line in ["INDEX|a|", "INDEX|b|a"] {
        assert_eq!(
            client.ask(line.as_bytes()).unwrap(),
            package_indexer::Response::Ok
        );
    }
    let list = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("harness-blocked-{}.txt", std::process::id()));
    std::fs::write(&list, "a:\nc: a\n").unwrap();
    let out = Command::new(HARNESS)
        .args(["--host", "127.0.0.1", "--port", &server.port().to_string()])
        .args(["--concurrency", "1", "--packages", list.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&list);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "sent \"REMOVE|a|\": FAIL, and no client had a package accepted for 30s; \
             1 package(s) of this client still refused; a is needed by no package of this \
             list (1 listed as depending on it, none indexed): a package the list does not \
             hold depends on it (run against a fresh server)"
        ),
        "{stdout}"
    );
}
