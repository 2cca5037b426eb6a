//! The durable store seen from outside, through the same calls the server
//! makes: what a start makes of a data directory damaged byte by byte, and
//! what a stop in the middle of a compaction leaves.
//!
//! The rules: `docs/durability.md#recovery-at-start`.

mod common;

use common::{data_files, TempDir};
use package_indexer::parse_line;
use package_indexer::Store;
use package_indexer::{DurableOptions, Fsync, Loaded, Metrics, RecoveryError, StoreGauges};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Package -> sorted dependencies.
type State = BTreeMap<String, Vec<String>>;

/// Opens `dir`; the compactor never starts a compaction on its own.
fn open(dir: &Path) -> Result<(Store, Loaded), RecoveryError> {
    let options = DurableOptions {
        fsync: Fsync::Never,
        compact_at_least: u64::MAX,
    };
    Store::open(dir, options, Arc::default())
}

fn run(store: &Store, line: &str) {
    try_run(store, line).unwrap();
}

/// Executes `line` and waits until its answer may be sent: `Ok` means it
/// was acknowledged.
fn try_run(store: &Store, line: &str) -> std::io::Result<()> {
    let request = parse_line(line.as_bytes()).unwrap();
    let executed = store.execute(&request)?;
    store.wait_durable(executed.wait_for)
}

fn state(store: &Store) -> State {
    store
        .read()
        .topological()
        .map(|(name, dependencies)| {
            let mut dependencies: Vec<String> = dependencies.map(str::to_owned).collect();
            dependencies.sort();
            (name.to_owned(), dependencies)
        })
        .collect()
}

const BEFORE_FIRST_SNAPSHOT: [&str; 3] = ["INDEX|a|", "INDEX|b|a", "INDEX|c|a,b"];
const IN_THE_SEALED_LOG: [&str; 2] = ["REMOVE|c|", "INDEX|d|b"];
const IN_THE_NEWEST_LOG: [&str; 3] = ["INDEX|e|d,a", "REMOVE|d|", "INDEX|f|"];

/// Builds a directory in the middle of its life: `snapshot-2.pi` (the first
/// changes), `log-2.pi` (more changes, sealed by a rotation whose snapshot
/// failed) and `log-3.pi` (the newest). Returns the state after each prefix
/// of the history: `states[k]` holds the first `k` changes.
fn directory_mid_life(dir: &Path) -> Vec<State> {
    let (store, _) = open(dir).unwrap();
    let mut states = vec![State::new()];
    let mut apply = |line: &str| {
        run(&store, line);
        states.push(state(&store));
    };
    BEFORE_FIRST_SNAPSHOT.iter().for_each(|line| apply(line));
    store.compact().unwrap();
    IN_THE_SEALED_LOG.iter().for_each(|line| apply(line));
    // A directory where the snapshot's temporary file must go makes the
    // snapshot fail after the rotation, as a full disk would.
    let blocker = dir.join("snapshot-3.pi.tmp");
    fs::create_dir(&blocker).unwrap();
    assert!(store.compact().is_err());
    fs::remove_dir(&blocker).unwrap();
    IN_THE_NEWEST_LOG.iter().for_each(|line| apply(line));
    store.close().unwrap();
    drop(store);
    let names: Vec<String> = data_files(dir).into_keys().collect();
    assert_eq!(names, ["log-2.pi", "log-3.pi", "snapshot-2.pi"]);
    states
}

/// How starts on the copies of one file, damaged one way, ended.
#[derive(Default, Debug)]
struct Tally {
    refused: usize,
    whole: usize,
    shortened: usize,
}

#[test]
fn every_flipped_or_cut_byte_refuses_or_recovers_a_prefix_and_loses_nothing_silently() {
    let source = TempDir::new("every-byte-source").unwrap();
    let states = directory_mid_life(source.path());
    let before_newest = BEFORE_FIRST_SNAPSHOT.len() + IN_THE_SEALED_LOG.len();
    let pristine = data_files(source.path());
    let mut tallies = BTreeMap::<(String, &str), Tally>::new();
    for (name, bytes) in &pristine {
        let mut copies: Vec<(&str, String, Vec<u8>)> = Vec::new();
        for at in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut flipped = bytes.clone();
                flipped[at] ^= mask;
                copies.push(("flip", format!("{name}: byte {at} ^ {mask:#04x}"), flipped));
            }
            copies.push(("cut", format!("{name}: cut at {at}"), bytes[..at].to_vec()));
        }
        for (kind, what, damaged) in copies {
            let dir = TempDir::new("every-byte").unwrap();
            for (other, other_bytes) in &pristine {
                fs::write(dir.path().join(other), other_bytes).unwrap();
            }
            fs::write(dir.path().join(name), &damaged).unwrap();
            let before = data_files(dir.path());
            let tally = tallies.entry((name.clone(), kind)).or_default();
            match open(dir.path()) {
                Err(error) => {
                    assert!(
                        matches!(error, RecoveryError::Refused(_)),
                        "{what}: {error}"
                    );
                    assert_eq!(data_files(dir.path()), before, "{what}: files changed");
                    tally.refused += 1;
                }
                Ok((store, loaded)) => {
                    let recovered = state(&store);
                    let kept = states
                        .iter()
                        .rposition(|state| *state == recovered)
                        .unwrap_or_else(|| panic!("{what}: not a prefix: {recovered:?}"));
                    assert!(kept >= before_newest, "{what}: kept only {kept} changes");
                    match &loaded.torn_tail {
                        Some(torn) => {
                            let original = &before[&torn
                                .file
                                .file_name()
                                .unwrap()
                                .to_string_lossy()
                                .into_owned()];
                            let saved = fs::read(&torn.saved_to).unwrap();
                            let offset = usize::try_from(torn.offset).unwrap();
                            assert_eq!(saved, original[offset..], "{what}");
                        }
                        // Only a cut exactly at a record boundary can drop
                        // records unseen: nothing in the file is left to say
                        // more was there.
                        None if kept < states.len() - 1 => assert_eq!(kind, "cut", "{what}"),
                        None => {}
                    }
                    if kept == states.len() - 1 {
                        tally.whole += 1;
                    } else {
                        tally.shortened += 1;
                    }
                }
            }
        }
    }
    for ((name, kind), tally) in &tallies {
        println!("{name}, {kind}: {tally:?}");
        // The snapshot and the sealed log are needed whole.
        if name != "log-3.pi" {
            assert_eq!(tally.whole + tally.shortened, 0, "{name} {kind}: {tally:?}");
        }
    }
    let newest_cut = &tallies[&("log-3.pi".to_owned(), "cut")];
    assert!(
        newest_cut.shortened > 0 && newest_cut.refused > 0,
        "{newest_cut:?}"
    );
}

/// Compactions finished in `dir` so far: each writes the next snapshot
/// after the first, empty one.
fn compactions(dir: &Path) -> u64 {
    let names = fs::read_dir(dir).unwrap().filter_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        name.strip_prefix("snapshot-")?
            .strip_suffix(".pi")?
            .parse()
            .ok()
    });
    names.max().unwrap_or(1) - 1
}

/// The value of the unlabelled series `name` in `metrics`' exposition.
fn metric(metrics: &Metrics, name: &str) -> f64 {
    let mut text = String::new();
    metrics.render(StoreGauges::default(), &mut text);
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '));
    value.and_then(|value| value.parse().ok()).expect(name)
}

#[test]
fn a_stop_during_a_compaction_waits_for_it_reports_no_error_and_keeps_everything() {
    // With a tiny index and no minimum, every batch of churn outgrows the
    // snapshot, so the compactor starts a compaction as soon as it ends one.
    // A stop that happens to fall between two is tried again.
    for attempt in 1..=20 {
        let dir = TempDir::new("stop-compacting").unwrap();
        let metrics = Arc::new(Metrics::new());
        let options = DurableOptions {
            fsync: Fsync::Always,
            compact_at_least: 1,
        };
        let (store, _) = Store::open(dir.path(), options, Arc::clone(&metrics)).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                thread::spawn(move || {
                    // Whether `w{w}` is indexed after its last acknowledged
                    // command, and after the one that was cut off, if any.
                    let mut acknowledged = false;
                    for i in 0.. {
                        let (command, indexed) = if i % 2 == 0 {
                            ("INDEX", true)
                        } else {
                            ("REMOVE", false)
                        };
                        if try_run(&store, &format!("{command}|w{w}|")).is_err() {
                            return (w, acknowledged, indexed);
                        }
                        acknowledged = indexed;
                    }
                    unreachable!()
                })
            })
            .collect();
        let started = Instant::now();
        while compactions(dir.path()) < 20 && started.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(1));
        }
        let before_closing = compactions(dir.path());
        store.close().unwrap();
        let finished_while_closing = compactions(dir.path()) > before_closing;
        let outcomes: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        for errors in [
            "package_indexer_durability_errors_total",
            "package_indexer_data_dir_rewrites_total",
        ] {
            assert_eq!(metric(&metrics, errors), 0.0, "{errors}");
        }
        drop(store);

        let (store, _) = open(dir.path()).unwrap();
        let recovered = state(&store);
        for (w, acknowledged, cut_off) in outcomes {
            // The cut-off command was appended before the stop, and the stop
            // syncs everything appended: either state may be on disk.
            let indexed = recovered.contains_key(&format!("w{w}"));
            assert!(indexed == acknowledged || indexed == cut_off, "w{w}");
        }
        if finished_while_closing {
            println!("the stop landed in a compaction on attempt {attempt}");
            return;
        }
    }
    panic!("no stop landed in a compaction in 20 attempts");
}
