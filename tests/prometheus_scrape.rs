//! A real Prometheus, configured with the kit's own scrape configuration
//! (`deploy/prometheus/prometheus.yml`), scrapes a real server and reports
//! the package count the test indexed, through Prometheus' query API.
//!
//! Needs the `prometheus` binary (Debian's `prometheus` package; run
//! `bash deploy/check.sh` to install it). Without it the test prints a SKIP
//! line and passes.

mod deploy_support;

use deploy_support::{
    http_get, kit_file, log_token, wait_for_stderr_line, KillOnDrop, RunningServer, TempDir,
};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long Prometheus gets to scrape the expected value; it scrapes every
/// second, so this only runs out when something is broken.
const SCRAPE_WAIT: Duration = Duration::from_secs(30);

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
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
    let Some(prometheus) = find_on_path("prometheus") else {
        println!(
            "SKIP: prometheus unavailable (no `prometheus` binary on PATH; \
             `bash deploy/check.sh` installs Debian's prometheus package)"
        );
        return;
    };

    let server = RunningServer::start();
    let answers = server.send_lines(&[
        "INDEX|zlib|",
        "INDEX|openssl|zlib",
        "INDEX|curl|openssl,zlib",
        "INDEX|nonexistent-dep-user|nonexistent",
        "QUERY|curl|",
    ]);
    assert_eq!(answers, ["OK", "OK", "OK", "FAIL", "OK"]);
    let indexed = "3";

    let dir = TempDir::new("prometheus");
    let admin = server.admin_addr.to_string();
    let config = kit_file("prometheus/prometheus.yml")
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("127.0.0.1:9090", &admin);
    assert!(
        config.contains("scrape_interval: 1s") && config.contains(&admin),
        "could not point the kit's scrape config at this server:\n{config}"
    );
    let config_path = dir.0.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    // The config loads the kit's rules, so Prometheus checks them too.
    std::fs::write(dir.0.join("alerts.yml"), kit_file("prometheus/alerts.yml")).unwrap();

    let mut child = Command::new(prometheus)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Declared after `dir`, so dropped first: Prometheus stops before its
    // storage directory is removed.
    let _prometheus = KillOnDrop(child);
    let line = wait_for_stderr_line(stderr, "msg=\"Listening on\"")
        .unwrap_or_else(|e| panic!("prometheus did not start: {e}"));
    let web = log_token(&line, " address=")
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no listen address in {line}"));

    let deadline = Instant::now() + SCRAPE_WAIT;
    let mut last_answer = String::new();
    while Instant::now() < deadline {
        let (status, body) = http_get(web, "/api/v1/query?query=package_indexer_packages");
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
