//! `/metrics` end to end: real `Metrics` rendered through the admin server
//! over TCP, as Prometheus would scrape it, and (when installed; on
//! Debian/Ubuntu `apt-get install -y prometheus`) accepted by
//! `promtool check metrics`.
//!
//! The series: `docs/admin-http.md#the-metrics`.

mod common;

use package_indexer::{AdminLimits, AdminServer, AdminState};
use package_indexer::{Command, Response};
use package_indexer::{Metrics, RejectReason, StoreGauges};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

fn scrape(metrics: Arc<Metrics>) -> common::HttpAnswer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let state = AdminState {
        ready: Box::new(|| true),
        store: Arc::default(),
        render_metrics: Box::new(move |out| {
            let index = StoreGauges {
                packages: 10,
                dependencies: 25,
                ..StoreGauges::default()
            };
            metrics.render(index, out)
        }),
    };
    let server = AdminServer::start(listener, state, AdminLimits::default()).unwrap();
    let answer = common::http_answer(server.local_addr(), "GET", "/metrics");
    server.stop();
    answer
}

#[test]
fn scraped_metrics_are_valid_prometheus_text() {
    let metrics = Arc::new(Metrics::new());
    metrics.connection_opened();
    metrics.connection_rejected(RejectReason::Limit);
    metrics.record_request(
        Some(Command::Index),
        Response::Ok,
        Duration::from_micros(40),
    );
    metrics.record_request(None, Response::Error, Duration::from_micros(3));
    metrics.record_fsync(Duration::from_millis(2));

    let answer = scrape(metrics);
    let body = &answer.body;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; version=0.0.4")
    );
    assert_eq!(
        answer.header("Content-Length"),
        Some(body.len().to_string().as_str())
    );
    for sample in [
        "package_indexer_requests_total{command=\"index\",result=\"ok\"} 1",
        "package_indexer_requests_total{command=\"invalid\",result=\"error\"} 1",
        "package_indexer_connections_total 1",
        "package_indexer_connections_active 1",
        "package_indexer_connections_rejected_total{reason=\"limit\"} 1",
        "package_indexer_packages 10",
        "package_indexer_dependencies 25",
        "package_indexer_fsync_duration_seconds_count 1",
    ] {
        assert!(
            body.lines().any(|line| line == sample),
            "missing {sample}:\n{body}"
        );
    }

    common::promtool_check(body);
}
