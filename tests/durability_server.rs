//! `--data-dir` end to end with the real binary: acknowledged changes
//! survive `kill -9`, refused ones never appear, damage refuses to start,
//! and compaction keeps the directory small.
//!
//! The rules: `docs/durability.md`.

mod common;

use common::{data_files, log_of_packages, record_starts, Client, ServerProcess, TempDir};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn start(dir: &TempDir, fsync: &str) -> ServerProcess {
    let dir = dir.path().to_str().unwrap();
    ServerProcess::start(&["--data-dir", dir, "--fsync", fsync])
}

/// What one writer knows for sure: the state of each name after its last
/// acknowledged command (`true` = indexed); a name whose last command is
/// still unanswered is absent.
type Acknowledged = HashMap<String, bool>;

#[test]
fn acknowledged_changes_survive_kill_9_and_refused_ones_never_appear() {
    let dir = TempDir::new("kill9").unwrap();
    let mut server = start(&dir, "always");
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let stop = Arc::clone(&stop);
            let acknowledged = Arc::clone(&acknowledged);
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut known = Acknowledged::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{w}-{i}");
                    // Each package depends on the previous one of this
                    // writer (if kept), and every third is removed again.
                    let deps = if i > 0 && known.get(&format!("w{w}-{}", i - 1)) == Some(&true) {
                        format!("w{w}-{}", i - 1)
                    } else {
                        String::new()
                    };
                    let Some(answer) = client.try_ask(&format!("INDEX|{name}|{deps}")) else {
                        break;
                    };
                    assert_eq!(answer, "OK");
                    known.insert(name.clone(), true);
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    // Refused: its dependency was never indexed.
                    let refused = format!("INDEX|never-{w}-{i}|missing-{w}-{i}");
                    let Some(answer) = client.try_ask(&refused) else {
                        break;
                    };
                    assert_eq!(answer, "FAIL");
                    if i % 3 == 2 {
                        // A leaf: nothing depends on it yet. Until its
                        // answer arrives the removal may or may not have
                        // happened, so the name is not known either way.
                        known.remove(&name);
                        let Some(answer) = client.try_ask(&format!("REMOVE|{name}|")) else {
                            break;
                        };
                        assert_eq!(answer, "OK");
                        known.insert(name, false);
                    }
                    i += 1;
                }
                (w, known, i)
            })
        })
        .collect();
    // Mid-stream: once enough is acknowledged to check, however loaded the
    // machine is.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < 400 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    let server = start(&dir, "always");
    let mut client = server.connect();
    let mut checked = 0;
    for (w, known, sent) in &results {
        for (name, indexed) in known {
            let want = if *indexed { "OK" } else { "FAIL" };
            assert_eq!(client.ask(&format!("QUERY|{name}|")), want, "{name}");
            checked += 1;
        }
        for i in 0..*sent {
            assert_eq!(client.ask(&format!("QUERY|never-{w}-{i}|")), "FAIL");
        }
    }
    assert!(
        checked > 100,
        "only {checked} acknowledged changes to check"
    );
}

#[test]
fn a_graceful_stop_keeps_everything_even_without_fsync() {
    let dir = TempDir::new("graceful").unwrap();
    let mut server = start(&dir, "never");
    let mut client = server.connect();
    let batch: String = (0..1000).map(|i| format!("INDEX|p{i}|\n")).collect();
    client.send(batch.as_bytes());
    for _ in 0..1000 {
        assert_eq!(client.line(), "OK\n");
    }
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    let server = start(&dir, "never");
    let mut client = server.connect();
    for i in 0..1000 {
        assert_eq!(client.ask(&format!("QUERY|p{i}|")), "OK");
    }
    assert!(
        server.logs()[0].contains("packages=1000"),
        "{:?}",
        server.logs()
    );
}

#[test]
fn a_graceful_stop_delivers_every_durable_answer_waiting_for_the_log() {
    const LINES: usize = 4_000;
    let dir = TempDir::new("graceful-always").unwrap();
    let mut server = start(&dir, "always");
    let mut client = server.connect();
    let batch: String = (0..LINES / 2)
        .map(|i| format!("INDEX|p{i}|\nQUERY|p{i}|\n"))
        .collect();
    client.send(batch.as_bytes());
    // Executed, and their answers with the log or on their way, when the
    // stop begins.
    server.wait_for_requests(LINES as u64);
    server.signal("TERM");
    for i in 0..LINES {
        assert_eq!(client.line(), "OK\n", "answer {i}");
    }
    assert!(client.closed());
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    let server = start(&dir, "always");
    let mut client = server.connect();
    for i in 0..LINES / 2 {
        assert_eq!(client.ask(&format!("QUERY|p{i}|")), "OK");
    }
}

#[test]
fn damage_in_the_middle_refuses_to_start_and_touches_nothing() {
    let dir = TempDir::new("damage").unwrap();
    let mut server = start(&dir, "always");
    let mut client = server.connect();
    for i in 0..50 {
        assert_eq!(client.ask(&format!("INDEX|p{i}|")), "OK");
    }
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(10)).unwrap();
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-"))
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();

    let dir_arg = dir.path().to_str().unwrap();
    let Err((status, logs)) = ServerProcess::try_start(&["--data-dir", dir_arg]) else {
        panic!("started on a damaged log");
    };
    assert_eq!(status.unwrap().code(), Some(1));
    let last = logs.last().unwrap();
    assert!(
        last.contains("level=error") && last.contains("log-"),
        "{logs:?}"
    );
    assert!(last.contains("damaged at byte"), "{logs:?}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "the damaged file was changed"
    );
}

/// The largest size `dir` reached while `work` ran, sampled continuously
/// (not after the fact).
fn peak_dir_bytes(dir: &TempDir, work: impl FnOnce()) -> u64 {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, path) = (Arc::clone(&done), dir.path().to_owned());
        thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                // Files come and go during a compaction; a vanished one
                // counts as empty.
                let bytes: u64 = std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                peak = peak.max(bytes);
            }
            peak
        })
    };
    work();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap()
}

#[test]
fn four_clients_churning_one_package_keep_the_directory_under_8_mb() {
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 50_000; // 100,000 commands per client
    for fsync in ["never", "always"] {
        let dir = TempDir::new("churn").unwrap();
        let server = start(&dir, fsync);
        let peak = peak_dir_bytes(&dir, || {
            let churners: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let mut client = server.connect();
                    thread::spawn(move || {
                        let mut writer = client.writer.try_clone().unwrap();
                        let sender = thread::spawn(move || {
                            let chunk = "INDEX|churn|\nREMOVE|churn|\n".repeat(500);
                            for _ in 0..ROUNDS / 500 {
                                writer.write_all(chunk.as_bytes()).unwrap();
                            }
                        });
                        for _ in 0..ROUNDS * 2 {
                            assert_eq!(client.line(), "OK\n");
                        }
                        sender.join().unwrap();
                    })
                })
                .collect();
            for churner in churners {
                churner.join().unwrap();
            }
        });
        println!("--fsync {fsync}: peak data directory size {peak} bytes");
        assert!(
            peak < 8 << 20,
            "--fsync {fsync}: the directory reached {peak} bytes"
        );
        assert!(
            server
                .logs()
                .iter()
                .any(|l| l.contains("msg=\"compacted\"")),
            "--fsync {fsync}: never compacted: {:?}",
            server.logs()
        );
        assert_eq!(server.connect().ask("QUERY|churn|"), "FAIL");
    }
}

fn refused_start(dir: &TempDir) -> String {
    let dir_arg = dir.path().to_str().unwrap();
    let Err((status, logs)) = ServerProcess::try_start(&["--data-dir", dir_arg]) else {
        panic!("started on a damaged data directory");
    };
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{logs:?}");
    logs.last().cloned().unwrap_or_default()
}

#[test]
fn a_length_flipped_in_any_record_but_the_last_refuses_and_changes_nothing() {
    let dir = TempDir::new("length-flip").unwrap();
    let log = log_of_packages(dir.path(), 100);
    let pristine = std::fs::read(&log).unwrap();
    let starts = record_starts(&pristine);
    assert_eq!(starts.len(), 100);
    for &start in &starts[..99] {
        // The length's third byte: the record now claims to run megabytes
        // past the end of the file, like a torn last record would.
        let mut bytes = pristine.clone();
        bytes[start + 2] ^= 0x10;
        std::fs::write(&log, &bytes).unwrap();
        let before = data_files(dir.path());
        let message = refused_start(&dir);
        assert!(
            message.contains("log-1.pi") && message.contains(&format!("damaged at byte {start}")),
            "{message}"
        );
        assert_eq!(
            data_files(dir.path()),
            before,
            "record at {start}: files changed"
        );
    }
}

#[test]
fn a_damaged_last_record_is_cut_and_kept_beside_the_log() {
    let dir = TempDir::new("last-record").unwrap();
    let log = log_of_packages(dir.path(), 100);
    let mut bytes = std::fs::read(&log).unwrap();
    let last = *record_starts(&bytes).last().unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();

    let server = start(&dir, "always");
    let logs = server.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("level=warn") && l.contains("torn")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.contains("packages=99")), "{logs:?}");
    let saved = dir.path().join(format!("log-1.pi.torn-{last}"));
    assert_eq!(std::fs::read(&saved).unwrap(), bytes[last..]);
    let mut client = server.connect();
    assert_eq!(client.ask("QUERY|p98|"), "OK");
    assert_eq!(client.ask("QUERY|p99|"), "FAIL");
}

#[test]
fn a_deleted_newest_log_refuses_to_start() {
    let dir = TempDir::new("deleted-log").unwrap();
    let log = log_of_packages(dir.path(), 10);
    std::fs::remove_file(&log).unwrap();
    let message = refused_start(&dir);
    assert!(
        message.contains("log-1.pi") && message.contains("missing"),
        "{message}"
    );
}

#[test]
fn deleting_the_lock_file_lets_no_second_server_in() {
    let dir = TempDir::new("lock-deleted").unwrap();
    let first = start(&dir, "never");
    assert_eq!(first.connect().ask("INDEX|a|"), "OK");
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    let message = refused_start(&dir);
    assert!(message.contains("in use by another process"), "{message}");
    // The first server still owns the directory, and its data.
    assert_eq!(first.connect().ask("QUERY|a|"), "OK");
}

type Vanish = fn(&std::path::Path);

/// The ways files vanish under a running server.
const VANISHINGS: [(&str, Vanish); 4] = [
    ("log deleted", |dir| {
        std::fs::remove_file(dir.join("log-1.pi")).unwrap()
    }),
    ("snapshot deleted", |dir| {
        std::fs::remove_file(dir.join("snapshot-1.pi")).unwrap()
    }),
    ("directory deleted", |dir| {
        std::fs::remove_dir_all(dir).unwrap()
    }),
    ("directory replaced by an empty one", |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
    }),
];

#[test]
fn files_that_vanish_while_running_are_written_again_and_nothing_acknowledged_is_lost() {
    for fsync in ["always", "never"] {
        for (what, vanish) in VANISHINGS {
            let what = format!("{what}, --fsync {fsync}");
            let dir = TempDir::new("vanished").unwrap();
            let dir_arg = dir.path().to_str().unwrap();
            let mut server = ServerProcess::start(&[
                "--data-dir",
                dir_arg,
                "--fsync",
                fsync,
                "--admin-addr",
                "127.0.0.1:0",
            ]);
            let mut client = server.connect();
            for i in 0..50 {
                assert_eq!(client.ask(&format!("INDEX|before{i}|")), "OK", "{what}");
            }
            vanish(dir.path());
            // With `--fsync always` this OK comes only once the files
            // written again hold it: the kill below must not lose it.
            let mut acknowledged = 50;
            assert_eq!(client.ask("INDEX|after0|"), "OK", "{what}");
            if fsync == "never" {
                // Written to a file that is gone until the check notices.
                for i in 1..50 {
                    assert_eq!(client.ask(&format!("INDEX|after{i}|")), "OK", "{what}");
                }
                acknowledged = 99;
            }
            assert!(
                server.wait_for_log("wrote them again", Duration::from_secs(10)),
                "{what}: {:?}",
                server.logs()
            );
            let logs = server.logs();
            let line = logs
                .iter()
                .find(|l| l.contains("wrote them again"))
                .unwrap();
            assert!(line.contains("level=error"), "{what}: {line}");
            assert!(line.contains("missing="), "{what}: {line}");
            let (_, metrics) = server.http("GET", "/metrics");
            assert!(
                metrics.contains("package_indexer_data_dir_rewrites_total 1"),
                "{what}"
            );
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();

            let server = start(&dir, fsync);
            let mut client = server.connect();
            let mut kept = 0;
            for i in 0..50 {
                assert_eq!(client.ask(&format!("QUERY|before{i}|")), "OK", "{what}");
                kept += 1;
            }
            for i in 0..acknowledged - 50 {
                assert_eq!(client.ask(&format!("QUERY|after{i}|")), "OK", "{what}");
                kept += 1;
            }
            assert_eq!(kept, acknowledged, "{what}");
        }
    }
}

#[test]
fn a_data_directory_that_cannot_be_made_again_stops_the_server() {
    let dir = TempDir::new("vanished-for-good").unwrap();
    let mut server = start(&dir, "never");
    assert_eq!(server.connect().ask("INDEX|a|"), "OK");
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path(), b"not a directory").unwrap();
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "{:?}",
        server.logs()
    );
    let logs = server.logs();
    assert!(logs.last().unwrap().contains("level=error"), "{logs:?}");
    std::fs::remove_file(dir.path()).unwrap();
}

/// Starts `writers` clients that INDEX and REMOVE packages of their own
/// until `stop`; returns how many changes each had acknowledged.
fn background_writers(
    addr: std::net::SocketAddr,
    writers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<usize>> {
    (0..writers)
        .map(|w| {
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut acknowledged = 0;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(client.ask(&format!("INDEX|bg{w}|")), "OK");
                    assert_eq!(client.ask(&format!("REMOVE|bg{w}|")), "OK");
                    acknowledged += 2;
                }
                acknowledged
            })
        })
        .collect()
}

#[test]
fn pipelined_durable_writes_and_queries_are_answered_in_order_among_other_writers() {
    const ROUNDS: usize = 2_000;
    let dir = TempDir::new("order").unwrap();
    let server = start(&dir, "always");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = background_writers(server.addr, 4, &stop);
    // Queries need no log write of their own but wait for the others';
    // each answer is known from the line before it, so any answer that
    // overtook another shows.
    let mut lines = String::new();
    let mut expected = String::new();
    for i in 0..ROUNDS {
        let step = [
            (format!("QUERY|p{i}|"), "FAIL"),
            (format!("INDEX|p{i}|"), "OK"),
            (format!("QUERY|p{i}|"), "OK"),
            (format!("INDEX|q{i}|p{i}"), "OK"),
            (format!("REMOVE|p{i}|"), "FAIL"),
            (format!("REMOVE|q{i}|"), "OK"),
            (format!("QUERY|q{i}|"), "FAIL"),
            (format!("BLINDEX|q{i}|"), "ERROR"),
        ];
        for (line, answer) in step {
            lines.push_str(&line);
            lines.push('\n');
            expected.push_str(answer);
            expected.push('\n');
        }
    }
    let mut client = server.connect();
    let mut writer = client.writer.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for chunk in lines.as_bytes().chunks(1500) {
            writer.write_all(chunk).unwrap();
        }
    });
    let mut answers = String::new();
    for _ in 0..expected.lines().count() {
        answers.push_str(&client.line());
    }
    sender.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(acknowledged > 0, "the other writers got nothing done");
    assert!(answers == expected, "answers out of order");
}

#[test]
fn a_client_that_stops_reading_does_not_hold_up_durable_answers_to_others() {
    let dir = TempDir::new("stalled-reader").unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let server = ServerProcess::start(&[
        "--data-dir",
        dir_arg,
        "--fsync",
        "always",
        "--write-timeout",
        "2s",
        "--log-level",
        "debug",
    ]);
    // It pipelines durable writes, each followed by queries whose answers
    // queue behind its answer, and never reads: more answers (6.3 MB) than
    // the socket holds on loopback (4 MB), so its connection's thread
    // blocks in `write`.
    const GROUPS: usize = 100_000;
    let group_answers = 21 * "OK\n".len();
    let lines: String = (0..GROUPS)
        .map(|i| format!("INDEX|s{i}|\n{}", format!("QUERY|s{i}|\n").repeat(20)))
        .collect();
    let stalled = server.connect();
    let mut stalled_writer = stalled.writer.try_clone().unwrap();
    let flood = thread::spawn(move || {
        // Fails once the server gives up on the connection.
        let _ = stalled_writer.write_all(lines.as_bytes());
    });
    let mut other = server.connect();
    for i in 0..200 {
        let asked = std::time::Instant::now();
        assert_eq!(other.ask(&format!("INDEX|o{i}|")), "OK");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "answer {i} took {:?}",
            asked.elapsed()
        );
    }
    // Its connection gives up on the stalled client after the write
    // timeout...
    let since = std::time::Instant::now();
    while !server
        .logs()
        .iter()
        .any(|l| l.contains("connection dropped"))
    {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "never cut off by the write timeout"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // ...so reading now, it finds the end of its connection after a prefix
    // of its answers.
    let mut stalled = stalled;
    let mut received = 0;
    let mut sink = [0u8; 1 << 16];
    loop {
        match stalled.reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    assert!(
        received < GROUPS * group_answers,
        "every answer arrived: {received} bytes"
    );
    flood.join().unwrap();
    assert_eq!(other.ask("QUERY|o199|"), "OK");
}
