//! Kill -9 of a process in the middle of appending: every change it was
//! told is durable must come back, in order, and nothing else but a prefix
//! of what it appended.
//!
//! The test binary runs itself as the victim (an ignored test that does
//! nothing unless `VICTIM_DIR` is set), reads its acknowledgements from a
//! pipe, and kills it mid-stream. The victim also compacts every few
//! milliseconds, so the kill can land in a rotation or a snapshot.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use super::OwnedChange;
use super::{index_change, recover_changes, rotate, wal_after, ScratchDir};
use crate::durability::Fsync;

const VICTIM_DIR: &str = "PACKAGE_INDEXER_TEST_VICTIM_DIR";
const THREADS: usize = 8;
const ACKS_BEFORE_KILL: usize = 3_000;
const DEPENDENCIES: &str = "dependency-a,dependency-b";

#[test]
#[ignore = "run as a child process by kill_9_mid_stream_loses_no_acknowledged_change"]
fn victim() {
    let Some(dir) = std::env::var_os(VICTIM_DIR) else {
        return;
    };
    let (_, recovered) = recover_changes(dir.as_ref()).unwrap();
    let log = Arc::new(wal_after(recovered, Fsync::Always));
    // The stand-in for the index: packages in the order they were indexed.
    let index = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, index, stdout) = (log.clone(), index.clone(), stdout.clone());
            thread::spawn(move || {
                // Runs until killed.
                for n in 0.. {
                    let package = format!("t{thread}-{n}");
                    let seq = {
                        let mut index = index.lock().unwrap();
                        index.push(package.clone());
                        log.append(&index_change(&package, DEPENDENCIES)).unwrap()
                    };
                    log.wait_durable(seq).unwrap();
                    let mut stdout = stdout.lock().unwrap();
                    writeln!(stdout, "acked {package}").unwrap();
                    stdout.flush().unwrap();
                }
            })
        })
        .collect();
    loop {
        thread::sleep(std::time::Duration::from_millis(5));
        let (generation, packages) = {
            let index = index.lock().unwrap();
            (rotate(&log).unwrap(), index.clone())
        };
        let contents = packages
            .iter()
            .map(|package| (package.as_str(), DEPENDENCIES.split(',')));
        log.write_snapshot(generation, contents).unwrap();
        if workers.iter().any(|worker| worker.is_finished()) {
            panic!("a victim thread died");
        }
    }
}

/// Kills the victim however the test ends, so no process outlives it.
struct Victim(Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_change() {
    let scratch = ScratchDir::new("kill-9");
    let mut victim = Victim(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "durability::tests::crash::victim",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(VICTIM_DIR, scratch.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut acked = Vec::new();
    for line in BufReader::new(victim.0.stdout.take().unwrap()).lines() {
        if let Some(package) = line.unwrap().strip_prefix("acked ") {
            acked.push(package.to_owned());
            if acked.len() == ACKS_BEFORE_KILL {
                break;
            }
        }
    }
    drop(victim);
    assert_eq!(acked.len(), ACKS_BEFORE_KILL, "the victim stopped early");

    let (changes, recovered) = recover_changes(scratch.path()).unwrap();
    eprintln!(
        "acknowledged {}, recovered {} ({:?}), torn tail: {:?}",
        acked.len(),
        changes.len(),
        recovered.stats,
        recovered.torn_tail
    );
    // Each thread appends its packages in order, so what survives of each
    // thread must be its first k packages, with no gap.
    let mut next_per_thread: HashMap<String, usize> = HashMap::new();
    for change in &changes {
        let OwnedChange::Index { package, .. } = change else {
            panic!("unexpected {change:?}");
        };
        let (thread, n) = package.split_once('-').unwrap();
        let next = next_per_thread.entry(thread.to_owned()).or_default();
        assert_eq!(n.parse::<usize>().unwrap(), *next, "gap before {package}");
        *next += 1;
    }
    let names: std::collections::HashSet<&str> = changes
        .iter()
        .map(|change| match change {
            OwnedChange::Index { package, .. } | OwnedChange::Remove { package } => {
                package.as_str()
            }
        })
        .collect();
    for package in &acked {
        assert!(names.contains(package.as_str()), "lost {package}");
    }
}
