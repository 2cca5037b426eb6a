//! The server over real TCP (in-process, port 0): protocol behaviour,
//! pipelining, limits and graceful shutdown.
//!
//! The rules: `docs/protocol.md` and `docs/lifecycle.md#graceful-stop`.

mod common;

use common::Client;

use package_indexer::Metrics;
use package_indexer::Store;
use package_indexer::{Config, Server};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn limits() -> Config {
    common::server_config(&[
        "--max-connections",
        "100",
        "--idle-timeout",
        "30s",
        "--write-timeout",
        "5s",
        "--tcp-keepalive",
        "off",
    ])
}

fn start(limits: Config) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = Arc::new(Metrics::new());
    Server::start(listener, &limits, None, Store::default(), metrics).unwrap()
}

/// A client of the in-process server.
fn connect(server: &Server) -> Client {
    Client::connect(server.local_addr())
}

#[test]
fn answers_each_command() {
    let server = start(limits());
    let mut c = connect(&server);
    assert_eq!(c.ask("QUERY|a|"), "FAIL");
    assert_eq!(c.ask("INDEX|b|a"), "FAIL");
    assert_eq!(c.ask("INDEX|a|"), "OK");
    assert_eq!(c.ask("INDEX|b|a,a"), "OK");
    assert_eq!(c.ask("REMOVE|a|"), "FAIL");
    assert_eq!(c.ask("INDEX|a|b"), "FAIL");
    assert_eq!(c.ask("REMOVE|b|"), "OK");
    assert_eq!(c.ask("REMOVE|b|"), "OK");
    assert_eq!(c.ask("QUERY|a|\r"), "OK");
}

#[test]
fn malformed_lines_get_error_and_keep_the_connection() {
    let server = start(limits());
    let mut c = connect(&server);
    for bad in [
        "",
        "INDEX|emacs=elisp|",
        "INDEX|emacs elisp|",
        "INDEX|emacs☃elisp|",
        "BLINDEX|a|b",
        "QUERY|a",
        "QUERY|a|b|",
        "REMOVE|a|b",
        "INDEX|a|b,,c",
    ] {
        assert_eq!(c.ask(bad), "ERROR", "{bad:?}");
    }
    c.send(b"\xff\xfe\x00|\x80|\n");
    assert_eq!(c.line(), "ERROR\n");
    assert_eq!(c.ask("INDEX|a|"), "OK");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(limits());
    let mut c = connect(&server);
    let mut batch = String::new();
    let mut expected = Vec::new();
    for i in 0..20_000 {
        batch.push_str(&format!("INDEX|p{i}|\nQUERY|p{i}|\nBAD\n"));
        expected.extend(["OK", "OK", "ERROR"]);
    }
    let mut writer = c.writer.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(batch.as_bytes()).unwrap());
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(c.line().trim_end(), *want, "answer {i}");
    }
    sender.join().unwrap();
}

#[test]
fn oversized_lines_get_one_error_and_are_skipped() {
    let server = start(Config {
        max_line_bytes: 64,
        ..limits()
    });
    let mut c = connect(&server);
    // Exactly at the limit (63 bytes + newline) is fine.
    let longest = format!("INDEX|{}|", "a".repeat(63 - 7));
    assert_eq!(longest.len() + 1, 64);
    assert_eq!(c.ask(&longest), "OK");
    assert_eq!(c.ask(&format!("INDEX|{}|", "b".repeat(57))), "ERROR");
    // A megabyte with no newline is answered once, then dropped unbuffered.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        c.send(&chunk);
    }
    assert_eq!(c.line(), "ERROR\n");
    c.send(b"tail-of-the-long-line\nQUERY|");
    c.send(b"a|\n");
    assert_eq!(c.line(), "FAIL\n");
}

#[test]
fn a_line_cut_by_close_is_not_executed() {
    let server = start(limits());
    let mut c = connect(&server);
    c.send(b"INDEX|half|");
    c.writer.shutdown(Shutdown::Write).unwrap();
    assert!(c.closed());
    assert_eq!(connect(&server).ask("QUERY|half|"), "FAIL");
}

#[test]
fn connections_over_the_limit_are_closed_at_once() {
    let server = start(Config {
        max_connections: 2,
        ..limits()
    });
    let mut first = connect(&server);
    let mut second = connect(&server);
    assert_eq!(first.ask("QUERY|a|"), "FAIL");
    assert_eq!(second.ask("QUERY|a|"), "FAIL");
    let mut third = connect(&server);
    assert!(third.closed());
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.active_connections() >= 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(connect(&server).ask("QUERY|a|"), "FAIL");
}

#[test]
fn idle_and_trickling_connections_are_closed() {
    let server = start(Config {
        idle_timeout: Duration::from_millis(300),
        ..limits()
    });
    let mut idle = connect(&server);
    assert_eq!(idle.ask("QUERY|a|"), "FAIL");
    let mut trickle = connect(&server);
    let started = Instant::now();
    // One byte every 50 ms never completes a line: still idle.
    for _ in 0..20 {
        if trickle.writer.write_all(b"Q").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(idle.closed());
    assert!(trickle.closed());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_others_are_served() {
    let server = start(Config {
        write_timeout: Duration::from_millis(300),
        ..limits()
    });
    let greedy = connect(&server);
    let request = b"QUERY|a|\n".repeat(100_000);
    let mut writer = greedy.writer.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Writing stops succeeding once the server gives up on this client.
    let flood = thread::spawn(move || {
        for _ in 0..200 {
            if writer.write_all(&request).is_err() {
                return true;
            }
        }
        false
    });
    let mut other = connect(&server);
    assert_eq!(other.ask("INDEX|a|"), "OK");
    assert!(
        flood.join().unwrap(),
        "server kept buffering for a client that never reads"
    );
    assert_eq!(other.ask("QUERY|a|"), "OK");
}

#[test]
fn concurrent_writers_keep_the_index_consistent() {
    let server = start(limits());
    let addr = server.local_addr();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                let mut ask = |req: String| {
                    writer.write_all(req.as_bytes()).unwrap();
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    line.trim_end().to_string()
                };
                assert_eq!(ask("INDEX|base|\n".into()), "OK");
                for i in 0..300 {
                    assert_eq!(ask(format!("INDEX|w{w}-{i}|base\n")), "OK");
                    assert_eq!(ask("REMOVE|base|\n".into()), "FAIL");
                    if i % 2 == 0 {
                        assert_eq!(ask(format!("REMOVE|w{w}-{i}|\n")), "OK");
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut c = connect(&server);
    for w in 0..16 {
        for i in 0..300 {
            let want = if i % 2 == 0 { "FAIL" } else { "OK" };
            assert_eq!(c.ask(&format!("QUERY|w{w}-{i}|")), want);
        }
    }
}

#[test]
fn shutdown_answers_received_lines_and_closes_idle_connections() {
    let server = start(limits());
    let mut idle = connect(&server);
    assert_eq!(idle.ask("QUERY|a|"), "FAIL");
    let mut busy = connect(&server);
    let batch = "INDEX|a|\nQUERY|a|\n".repeat(5_000);
    busy.send(batch.as_bytes());
    busy.send(b"INDEX|partial|");
    // Give the server a moment to receive the batch into its socket buffer.
    thread::sleep(Duration::from_millis(100));
    let report = server.shutdown(Duration::from_secs(5), || false).unwrap();
    assert_eq!(report.forced, 0);
    for _ in 0..10_000 {
        assert_eq!(busy.line(), "OK\n");
    }
    assert!(busy.closed());
    assert!(idle.closed());
}

#[test]
fn shutdown_is_bounded_by_its_timeout() {
    let server = start(limits());
    let stuck = connect(&server);
    // The server's answers pile up unread until its writes block; the
    // flood itself blocks too, so it runs on a thread of its own.
    let mut writer = stuck.writer.try_clone().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&written);
    thread::spawn(move || {
        let flood = b"QUERY|a|\n".repeat(10_000);
        while writer.write_all(&flood).is_ok() {
            progress.fetch_add(flood.len(), Ordering::Relaxed);
        }
    });
    // Wait until every buffer on the way is full and the flood stalls.
    let mut last = usize::MAX;
    while written.load(Ordering::Relaxed) != last {
        last = written.load(Ordering::Relaxed);
        thread::sleep(Duration::from_millis(300));
    }
    let started = Instant::now();
    let report = server
        .shutdown(Duration::from_millis(500), || false)
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        report.forced,
        1,
        "{report:?} written={}",
        written.load(Ordering::Relaxed)
    );
}
