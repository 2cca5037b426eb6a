//! The admin port under a client holding stalled request heads and renewing
//! them: health probes are still answered within a second, through the
//! admin server alone and through the real binary.
//!
//! The rules: `docs/admin-http.md#limits-and-timeouts`.

mod common;

use common::{http, ServerProcess, StalledHeads};
use package_indexer::{AdminLimits, AdminServer, AdminState};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const PROBES: usize = 20;
const PROBE_BOUND: Duration = Duration::from_secs(1);

/// `PROBES` probes, spread over about a second so that they meet the flood
/// in every phase of its renewals, each answered `expected` within
/// `PROBE_BOUND`.
fn assert_probes_answer_in_time(addr: SocketAddr, path: &str, expected: (u16, &str)) {
    for probe in 0..PROBES {
        let started = Instant::now();
        let (status, body) = http(addr, "GET", path);
        let took = started.elapsed();
        assert_eq!((status, body.as_str()), expected, "probe {probe}");
        assert!(took < PROBE_BOUND, "probe {probe} of {path} took {took:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Both ends of every stalled connection live in this process.
fn assert_fd_budget(needed: u64) {
    let limit = common::open_files_limit();
    assert!(
        limit >= needed,
        "this test needs {needed} open files, the soft limit is {limit}: raise `ulimit -n`"
    );
}

#[test]
fn a_thousand_renewed_stalled_heads_do_not_delay_health_probes() {
    const STALLED: usize = 1000;
    assert_fd_budget(2 * STALLED as u64 + 100);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let state = AdminState {
        ready: Box::new(|| true),
        store: Arc::default(),
        render_metrics: Box::new(|out| out.push_str("up 1\n")),
    };
    let server = AdminServer::start(listener, state, AdminLimits::default()).unwrap();
    let addr = server.local_addr();
    let flood = StalledHeads::hold(addr, STALLED);
    assert_probes_answer_in_time(addr, "/healthz", (200, "ok\n"));
    assert_probes_answer_in_time(addr, "/readyz", (200, "ready\n"));
    let renewed = flood.stop();
    assert!(renewed >= STALLED, "only {renewed} renewals: no real flood");
    server.stop();
}

#[test]
fn two_hundred_stalled_heads_do_not_stop_the_binary_s_health_probes() {
    const STALLED: usize = 200;
    let server = ServerProcess::start(&[]);
    let admin = server.admin_addr.unwrap();
    let flood = StalledHeads::hold(admin, STALLED);
    assert_probes_answer_in_time(admin, "/healthz", (200, "ok\n"));
    assert_probes_answer_in_time(admin, "/readyz", (200, "ready\n"));
    let status = common::binary_command()
        .args(["healthcheck", "--admin-addr", &admin.to_string()])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let renewed = flood.stop();
    assert!(renewed >= STALLED, "only {renewed} renewals: no real flood");
}
