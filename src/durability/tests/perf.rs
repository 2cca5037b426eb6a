//! Rough measurements of the durability engine, run by hand:
//!
//! `cargo test --release --lib durability::tests::perf -- --ignored --nocapture`
//!
//! They print figures and check only correctness, never speed. Set
//! `TMPDIR` to put the scratch files on the disk to be measured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::{dir_bytes, each_change, index_change, name, open_wal as open, rotate, ScratchDir};
use crate::durability::{recover, Change, Fsync, LoggedChange};

#[test]
#[ignore = "measurement; run by hand in release mode"]
fn append_and_wait_throughput_from_100_threads() {
    const THREADS: usize = 100;
    const PER_THREAD: usize = 2_000;
    for fsync in [Fsync::Never, Fsync::Always] {
        let scratch = ScratchDir::new("throughput");
        let log = Arc::new(open(scratch.path(), fsync));
        let index_lock = Arc::new(Mutex::new(()));
        let started = Instant::now();
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let log = Arc::clone(&log);
                let index_lock = Arc::clone(&index_lock);
                thread::spawn(move || {
                    let package = format!("package-{thread}");
                    for n in 0..PER_THREAD {
                        let change = if n % 2 == 0 {
                            index_change(&package, "base-a,base-b,base-c")
                        } else {
                            Change::Remove {
                                package: name(&package),
                            }
                        };
                        let seq = {
                            let _index = index_lock.lock().unwrap();
                            log.append(&change).unwrap()
                        };
                        log.wait_durable(seq).unwrap();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let elapsed = started.elapsed();
        let total = THREADS * PER_THREAD;
        let stats = log.stats();
        eprintln!(
            "fsync={fsync}: {total} append+wait from {THREADS} threads in {:.2?} = {:.0}/s \
             ({} writes, {} syncs, {:.1} changes per write)",
            elapsed,
            total as f64 / elapsed.as_secs_f64(),
            stats.batches_written,
            stats.syncs,
            total as f64 / stats.batches_written as f64
        );
    }
}

#[test]
#[ignore = "measurement; run by hand in release mode"]
fn recovery_of_a_million_packages() {
    const PACKAGES: usize = 1_000_000;
    let names: Vec<String> = (0..PACKAGES).map(|n| format!("package-{n}")).collect();
    // Three dependencies on earlier packages, so the order is topological.
    let dependencies = |n: usize| -> [&str; 3] {
        let earlier = |k: usize| names[n.saturating_sub(k)].as_str();
        [earlier(1), earlier(2), earlier(3)]
    };

    let snapshot_dir = ScratchDir::new("million-snapshot");
    {
        let log = open(snapshot_dir.path(), Fsync::Never);
        let started = Instant::now();
        let generation = rotate(&log).unwrap();
        let bytes = log
            .write_snapshot(
                generation,
                (0..PACKAGES).map(|n| (names[n].as_str(), dependencies(n))),
            )
            .unwrap();
        eprintln!(
            "snapshot of {PACKAGES} packages: {bytes} bytes written in {:.2?}",
            started.elapsed()
        );
    }
    let log_dir = ScratchDir::new("million-log");
    {
        let log = open(log_dir.path(), Fsync::Never);
        for (n, package) in names.iter().enumerate() {
            let field = dependencies(n).join(",");
            let seq = log.append(&index_change(package, &field)).unwrap();
            if n % 10_000 == 0 {
                log.wait_durable(seq).unwrap();
            }
        }
    }

    for (what, dir) in [("snapshot", &snapshot_dir), ("log", &log_dir)] {
        let mut count = 0usize;
        let recovered = recover(
            dir.path(),
            each_change(|_| {
                count += 1;
                Ok(())
            }),
        )
        .unwrap();
        assert_eq!(count, PACKAGES);
        eprintln!(
            "recover {PACKAGES} packages from a {what} ({} bytes on disk): {:.2?} reading and decoding",
            dir_bytes(dir.path()),
            recovered.stats.elapsed
        );
        drop(recovered);

        // With a stand-in for the index that owns its names, as a real one
        // would.
        let mut state: HashMap<String, Vec<String>> = HashMap::with_capacity(PACKAGES);
        let started = Instant::now();
        recover(
            dir.path(),
            each_change(|change| {
                if let LoggedChange::Index {
                    package,
                    dependencies,
                } = change
                {
                    state.insert(
                        package.to_string(),
                        dependencies.iter().map(|d| d.to_string()).collect(),
                    );
                }
                Ok(())
            }),
        )
        .unwrap();
        assert_eq!(state.len(), PACKAGES);
        eprintln!(
            "recover {PACKAGES} packages from a {what} into a HashMap: {:.2?}",
            started.elapsed()
        );
    }
}
