//! A real Prometheus, configured with the kit's own scrape configuration
//! (`deploy/prometheus/prometheus.yml`) and rules, scrapes a real server and
//! reports the package count the test indexed, through Prometheus' query API.
//!
//! Needs the `prometheus` binary (Debian's `prometheus` package; `.ci/run`
//! installs it). Without it the test fails under
//! `PACKAGE_INDEXER_REQUIRE_TOOLS=1`, and otherwise prints a SKIP line.

mod common;

use common::{ServerProcess, TempDir};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SCRAPE_CONFIG: &str = include_str!("../deploy/prometheus/prometheus.yml");
const ALERT_RULES: &str = include_str!("../deploy/prometheus/alerts.yml");

/// How long Prometheus gets to start, and then to scrape the expected value;
/// it scrapes every second, so these only run out when something is broken.
const START_WAIT: Duration = Duration::from_secs(30);
const SCRAPE_WAIT: Duration = Duration::from_secs(30);

/// A Prometheus process, killed and reaped on drop.
struct Prometheus {
    child: Child,
    web_addr: SocketAddr,
}

impl Prometheus {
    /// Starts `binary` on an ephemeral loopback port with its config and
    /// storage in `dir`, and learns the port from its `Listening on` log line.
    fn start(binary: PathBuf, dir: &TempDir) -> Prometheus {
        let mut child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        // From here on a failure still kills the child, through Drop.
        let mut prometheus = Prometheus {
            child,
            web_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            // Keep draining after the line is found, so Prometheus never
            // blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_WAIT;
        let mut seen = Vec::new();
        while let Ok(line) =
            line_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line.contains("msg=\"Listening on\"") {
                if let Some(addr) = common::log_field(&line, "address") {
                    prometheus.web_addr = addr.parse().unwrap();
                    return prometheus;
                }
            }
            seen.push(line);
        }
        panic!("prometheus did not start listening:\n{}", seen.join("\n"));
    }

    /// Runs an instant query; returns the HTTP status and the JSON body.
    fn query(&self, promql: &str) -> (u16, String) {
        common::http(
            self.web_addr,
            "GET",
            &format!("/api/v1/query?query={promql}"),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample value of the first series in a `/api/v1/query` answer:
/// `..."value":[<time>,"<value>"]...`.
fn first_sample_value(body: &str) -> Option<&str> {
    let after = &body[body.find("\"value\":[")?..];
    let quoted = &after[after.find(",\"")? + 2..];
    Some(&quoted[..quoted.find('"')?])
}

#[test]
fn prometheus_scrapes_the_package_count() {
    let Some(binary) = common::external_tool("prometheus", "Debian's prometheus package") else {
        return;
    };

    let server = ServerProcess::start(&[]);
    let mut client = server.connect();
    for (request, answer) in [
        ("INDEX|zlib|", "OK"),
        ("INDEX|openssl|zlib", "OK"),
        ("INDEX|curl|openssl,zlib", "OK"),
        ("INDEX|orphan|not-indexed", "FAIL"),
        ("QUERY|curl|", "OK"),
    ] {
        assert_eq!(client.ask(request), answer, "{request}");
    }
    let indexed = "3";

    let dir = TempDir::new("prometheus").unwrap();
    let admin = server.admin_addr.expect("admin listener").to_string();
    let config = SCRAPE_CONFIG
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("127.0.0.1:8081", &admin);
    assert!(
        config.contains("scrape_interval: 1s") && config.contains(&admin),
        "could not point the kit's scrape config at this server:\n{config}"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    // The config loads the kit's rules, so Prometheus checks them too.
    std::fs::write(dir.path().join("alerts.yml"), ALERT_RULES).unwrap();
    // Declared after `dir`, so dropped first: Prometheus stops before its
    // storage directory is removed.
    let prometheus = Prometheus::start(binary, &dir);

    let deadline = Instant::now() + SCRAPE_WAIT;
    let mut last_answer = String::new();
    while Instant::now() < deadline {
        let (status, body) = prometheus.query("package_indexer_packages");
        if status == 200 && first_sample_value(&body) == Some(indexed) {
            assert!(
                body.contains("\"job\":\"package-indexer\""),
                "scraped under another job name than the alert rules select: {body}"
            );
            return;
        }
        last_answer = format!("{status} {body}");
        thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "Prometheus did not report package_indexer_packages = {indexed} within {SCRAPE_WAIT:?}; \
         last answer: {last_answer}"
    );
}
