//! The protocol listener under floods, through the real binary: the listen
//! backlog (and what waits in it at a stop), the file descriptors kept from
//! protocol connections, and TCP keepalive on every protocol connection.
//!
//! The rules: `docs/lifecycle.md#connections-and-their-limits` and
//! `docs/lifecycle.md#the-listen-backlog-at-a-stop`.

mod common;

use common::{log_field, Client, ServerProcess, TempDir};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The system's `net.core.somaxconn`, the kernel's cap on any backlog.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The value of one series in a `/metrics` body, `name{labels}` exactly.
fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .parse()
        .unwrap()
}

/// Opens `n` connections to a server that is accepting none (it is stopped
/// with `SIGSTOP`) and sends `line` on each. Each connect must complete
/// within 1 s, so all of them are queued in the listen backlog; a backlog
/// too small drops the SYNs past it and the connect waits for a retry.
fn queue_while_stopped(server: &ServerProcess, n: usize, line: &str) -> Vec<Client> {
    server.signal("STOP");
    (0..n)
        .map(|i| {
            let stream = TcpStream::connect_timeout(&server.addr, Duration::from_secs(1))
                .unwrap_or_else(|e| panic!("connect {i} of {n} while stopped: {e}"));
            let mut client = Client::from_stream(stream);
            client.send(format!("{line}\n").as_bytes());
            client
        })
        .collect()
}

#[test]
fn the_listen_backlog_is_somaxconn_and_holds_a_burst_the_server_is_not_accepting() {
    let server = ServerProcess::start(&[]);
    let backlog = somaxconn();
    let start_line = server.logs().join("\n");
    assert_eq!(
        log_field(&start_line, "listen_backlog"),
        Some(backlog.to_string())
    );
    // std's own backlog is 128: a burst past it would wait on SYN retries.
    let burst = backlog.min(1000);
    let mut clients = queue_while_stopped(&server, burst, "QUERY|a|");
    server.signal("CONT");
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.line(), "FAIL\n", "connection {i}");
    }
}

#[test]
fn connections_waiting_in_the_backlog_at_a_stop_get_their_answers() {
    let mut server = ServerProcess::start(&[]);
    assert_eq!(server.connect().ask("INDEX|a|"), "OK");
    let burst = somaxconn().min(1000);
    let mut clients = queue_while_stopped(&server, burst, "QUERY|a|");
    // The stop is requested before the server runs again: most of these
    // connections are still in the backlog when it begins.
    server.signal("TERM");
    server.signal("CONT");
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.line(), "OK\n", "connection {i}");
        assert!(client.closed(), "connection {i}");
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
    let logs = server.logs().join("\n");
    let stopped = logs
        .lines()
        .find(|l| l.contains("msg=\"stopped\""))
        .unwrap();
    let from_backlog: usize = log_field(stopped, "from_backlog").unwrap().parse().unwrap();
    assert!(from_backlog <= burst, "{stopped}");
    println!("{from_backlog} of {burst} connections taken from the backlog after the stop");
}

/// Opens protocol connections as fast as it can, holding them all, until
/// told to stop; returns how many it opened.
fn flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::Relaxed) && held.len() < 3_000 {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(stream) => held.push(stream),
                Err(_) => thread::sleep(Duration::from_millis(1)),
            }
        }
        held.len()
    })
}

#[test]
fn a_protocol_flood_at_the_fd_limit_leaves_the_admin_port_and_the_data_directory_working() {
    let dir = TempDir::new("fd-flood").unwrap();
    let data_dir = dir.path().display().to_string();
    let fd_limit = 256;
    let server = ServerProcess::start_with_fd_limit(
        fd_limit,
        &["--data-dir", &data_dir, "--fsync", "never"],
    );
    let logs = server.logs().join("\n");
    assert!(logs.contains(" fd_limit=256 "), "{logs}");
    assert!(
        logs.contains("--max-connections does not fit in the open-files limit"),
        "{logs}"
    );
    let mut writer = server.connect();
    assert_eq!(writer.ask("INDEX|base|"), "OK");

    let stop = Arc::new(AtomicBool::new(false));
    let flooding = flood(server.addr, Arc::clone(&stop));
    let admin = server.admin_addr.unwrap();
    for check in 0..10 {
        thread::sleep(Duration::from_millis(100));
        let asked = Instant::now();
        let (status, body) = common::http(admin, "GET", "/healthz");
        let took = asked.elapsed();
        assert_eq!((status, body.as_str()), (200, "ok\n"), "check {check}");
        assert!(took < Duration::from_secs(1), "check {check} took {took:?}");
    }

    // Enough changes through the connection opened before the flood to
    // pass the compaction threshold (1 MiB of log): the rotation and the
    // snapshot need new descriptors while the flood goes on.
    let name = "p".repeat(240);
    let batch: String = (0..5_000)
        .map(|i| format!("INDEX|{name}{i}|base\n"))
        .collect();
    writer.send(batch.as_bytes());
    for i in 0..5_000 {
        assert_eq!(writer.line(), "OK\n", "change {i}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = common::http(admin, "GET", "/metrics");
        assert_eq!(status, 200);
        if metric(&body, "package_indexer_last_snapshot_timestamp_seconds") > 0.0 {
            assert!(
                metric(
                    &body,
                    "package_indexer_connections_rejected_total{reason=\"fds\"}"
                ) > 0.0
            );
            assert!(metric(&body, "process_open_fds") <= f64::from(fd_limit));
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot written:\n{body}");
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let opened = flooding.join().unwrap();
    assert!(opened > fd_limit as usize, "the flood opened only {opened}");
    assert_eq!(writer.ask("QUERY|base|"), "OK");
    let logs = server.logs().join("\n");
    assert!(!logs.contains("level=error"), "{logs}");
}

/// The keepalive timer of the server's side of `client`'s connection, from
/// `/proc/net/tcp`: `None` when no keepalive timer runs, else the time
/// until it fires.
fn keepalive_timer(server: SocketAddr, client: &TcpStream) -> Option<Duration> {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (local, remote) = (hex(server), hex(client.local_addr().unwrap()));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let fields: Vec<&str> = table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(1..3) == Some(&[local.as_str(), remote.as_str()][..]))
        .unwrap_or_else(|| panic!("no {local} {remote} in\n{table}"));
    // `tr:when`: timer 2 is the socket timer, which on an established
    // connection is keepalive; `when` counts clock ticks of 1/100 s.
    let (timer, when) = fields[5].split_once(':').unwrap();
    let ticks = u64::from_str_radix(when, 16).unwrap();
    (timer == "02").then(|| Duration::from_millis(ticks * 10))
}

#[test]
fn protocol_connections_have_tcp_keepalive_unless_it_is_off() {
    let server = ServerProcess::start(&["--tcp-keepalive", "7s"]);
    let mut client = server.connect();
    assert_eq!(client.ask("QUERY|a|"), "FAIL");
    let timer = keepalive_timer(server.addr, &client.writer).expect("keepalive timer");
    assert!(timer <= Duration::from_secs(7), "{timer:?}");
    let start_line = server.logs().join("\n");
    assert_eq!(
        log_field(&start_line, "tcp_keepalive").as_deref(),
        Some("7s")
    );

    let server = ServerProcess::start(&["--tcp-keepalive", "off"]);
    let mut client = server.connect();
    assert_eq!(client.ask("QUERY|a|"), "FAIL");
    assert_eq!(keepalive_timer(server.addr, &client.writer), None);
}

/// Opens connections to `server` until one is closed unanswered, holding
/// every answered one; returns them.
fn fill_up(server: &ServerProcess) -> Vec<Client> {
    let mut held = Vec::new();
    loop {
        let mut client = server.connect();
        match client.try_ask("QUERY|a|") {
            Some(answer) => {
                assert_eq!(answer, "FAIL");
                held.push(client);
            }
            None => return held,
        }
        assert!(held.len() <= 10_000, "no connection was ever refused");
    }
}

/// Under a low open-files limit, the server serves as many clients at once
/// as its start line's warning says, keeps the rest of the descriptors for
/// the admin listener and the data directory, and is not ready while it
/// can take no more.
fn serves_under_fd_limit(fd_limit: u32, at_least: usize) {
    let dir = TempDir::new("fd-limit").unwrap();
    let data_dir = dir.path().display().to_string();
    let server = ServerProcess::start_with_fd_limit(fd_limit, &["--data-dir", &data_dir]);
    let logs = server.logs().join("\n");
    let warning = logs
        .lines()
        .find(|line| line.contains("does not fit in the open-files limit"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    let at_most: usize = log_field(warning, "connections_at_most")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(server.http("GET", "/readyz").0, 200);
    let mut held = fill_up(&server);
    println!(
        "--nofile={fd_limit}: {} clients served at once ({warning})",
        held.len()
    );
    assert!(held.len() >= at_least, "only {} served", held.len());
    assert_eq!(held.len(), at_most, "{warning}");
    assert_eq!(server.http("GET", "/readyz"), (503, "not ready\n".into()));
    assert_eq!(server.http("GET", "/healthz").0, 200);
    let (_, metrics) = server.http("GET", "/metrics");
    assert_eq!(
        metric(&metrics, "package_indexer_max_connections"),
        at_most as f64
    );
    // The data directory still has its descriptors: a change is logged.
    assert_eq!(held[0].ask("INDEX|a|"), "OK");
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.http("GET", "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready again after a close");
        thread::sleep(Duration::from_millis(20));
    }
    // Ready is reported as the closed connection's thread ends, a moment
    // before its descriptor is released.
    while server.connect().try_ask("QUERY|a|").is_none() {
        assert!(Instant::now() < deadline, "no room again after a close");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn under_an_open_files_limit_of_128_it_serves_at_least_64_clients_at_once() {
    serves_under_fd_limit(128, 64);
}

#[test]
fn under_an_open_files_limit_of_64_it_serves_clients_and_says_how_many() {
    serves_under_fd_limit(64, 16);
}

#[test]
fn an_open_files_limit_with_room_for_no_client_refuses_the_start() {
    let dir = TempDir::new("fd-limit-refused").unwrap();
    let output = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 20 && exec \"$0\" \"$@\"", common::BINARY])
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    let last = lines.last().unwrap();
    assert!(last.contains("level=error"), "{stderr}");
    assert!(
        last.contains("the open-files limit (20) leaves no descriptor for a protocol connection: raise it to at least"),
        "{stderr}"
    );
    assert!(!stderr.contains("msg=\"listening\""), "{stderr}");
}
