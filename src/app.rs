//! The process lifecycle (SPEC §4): start, serve, stop on a signal.
//!
//! Start: bind both listeners (a failure is a one-line error, exit 1), start
//! accepting, report ready, log one line with the address, version and
//! settings. Stop, on the first `SIGTERM`/`SIGINT`: report not ready, stop
//! accepting, let connections answer what they received, wait at most
//! `--shutdown-timeout`, log one line, exit 0. A second signal exits at
//! once with status 1.

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::durability::{self, Change, Fsync, Log, LogEvent};
use crate::index::Indexer;
use crate::log;
use crate::metrics::{IndexGauges, Metrics};
use crate::server::{Limits, Server};
use crate::store::Store;
use crate::sys::TerminationSignals;
use std::fmt;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the server could not run: one line, exit status 1.
#[derive(Debug)]
pub struct RuntimeError(pub String);

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the server until a signal stops it.
pub fn run(
    config: &Config,
    signals: TerminationSignals,
    metrics: Arc<Metrics>,
) -> Result<(), RuntimeError> {
    // Bind before loading: a taken port fails at once, and the admin
    // listener answers (not ready) while a large data directory loads.
    let listener = TcpListener::bind(config.addr.as_str())
        .map_err(|err| RuntimeError(format!("cannot listen on {}: {err}", config.addr)))?;
    let ready = Arc::new(AtomicBool::new(false));
    let loaded: Arc<OnceLock<Store>> = Arc::new(OnceLock::new());
    let admin_addr = match &config.admin_addr {
        Some(addr) => Some(start_admin(addr, &ready, &loaded, &metrics)?),
        None => None,
    };
    let store = match &config.data_dir {
        Some(dir) => open_durable(dir, config.fsync, &metrics)?,
        None => Store::default(),
    };
    let _ = loaded.set(store.clone());
    if store.log().is_some() {
        start_compactor(store.clone(), Arc::clone(&metrics))?;
    }
    let server = Server::from_listener(
        listener,
        Limits::from(config),
        store.clone(),
        Arc::clone(&metrics),
    )
    .map_err(|err| RuntimeError(format!("cannot listen on {}: {err}", config.addr)))?;
    let running = server
        .start()
        .map_err(|err| RuntimeError(format!("cannot start the acceptor: {err}")))?;
    ready.store(true, Ordering::SeqCst);
    let admin_shown = admin_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    let data_dir = config
        .data_dir
        .as_ref()
        .map_or_else(|| "none".to_string(), |d| d.display().to_string());
    log::info(
        "listening",
        &[
            ("addr", &running.local_addr()),
            ("admin_addr", &admin_shown),
            ("version", &env!("CARGO_PKG_VERSION")),
            ("max_connections", &config.max_connections),
            ("max_line_bytes", &config.max_line_bytes),
            ("idle_timeout", &DurationText(config.idle_timeout)),
            ("write_timeout", &DurationText(config.write_timeout)),
            ("shutdown_timeout", &DurationText(config.shutdown_timeout)),
            ("data_dir", &data_dir),
            ("fsync", &config.fsync),
            ("log_format", &config.log_format),
            ("log_level", &config.log_level),
        ],
    );

    let signal = signals
        .wait()
        .map_err(|err| RuntimeError(format!("cannot wait for signals: {err}")))?;
    ready.store(false, Ordering::SeqCst);
    log::info(
        "stopping",
        &[
            ("signal", &signal),
            ("connections", &running.active_connections()),
        ],
    );
    thread::Builder::new()
        .name("second-signal".into())
        .spawn(move || {
            if let Ok(second) = signals.wait() {
                log::warn("second signal: exiting at once", &[("signal", &second)]);
                std::process::exit(1);
            }
        })
        .map_err(|err| RuntimeError(format!("cannot watch for a second signal: {err}")))?;
    let report = running.shutdown(config.shutdown_timeout);
    if let Some(log) = store.log() {
        log.close()
            .map_err(|err| RuntimeError(format!("cannot flush the data directory: {err}")))?;
    }
    log::info(
        "stopped",
        &[
            ("drained", &report.drained),
            ("forced", &report.forced),
            ("elapsed", &DurationText(report.elapsed)),
        ],
    );
    Ok(())
}

/// Starts the admin thread. Index gauges read zero until `store` is set,
/// once the data directory has loaded.
fn start_admin(
    addr: &str,
    ready: &Arc<AtomicBool>,
    store: &Arc<OnceLock<Store>>,
    metrics: &Arc<Metrics>,
) -> Result<std::net::SocketAddr, RuntimeError> {
    let cannot =
        |err: std::io::Error| RuntimeError(format!("cannot listen on {addr} (admin): {err}"));
    let listener = TcpListener::bind(addr).map_err(cannot)?;
    let local = listener.local_addr().map_err(cannot)?;
    let (store, metrics) = (Arc::clone(store), Arc::clone(metrics));
    let state = AdminState {
        ready: Arc::clone(ready),
        render_metrics: Box::new(move |out| {
            let mut gauges = IndexGauges::default();
            if let Some(store) = store.get() {
                if let Some(log) = store.log() {
                    metrics.set_log_bytes(log.log_bytes());
                }
                let index = store.read();
                gauges.packages = index.packages() as u64;
                gauges.dependencies = index.dependencies() as u64;
            }
            metrics.render(gauges, out);
        }),
    };
    admin::spawn(listener, state).map_err(cannot)?;
    Ok(local)
}

/// Rebuilds the index from `dir` and opens its log. Damage is a one-line
/// error naming the file and offset; a torn last record is a warning.
/// Public so that tools' tests can serve a durable store in process; the
/// caller closes the log when done. A later failure of the log exits the
/// process, as in the server.
pub fn open_durable(
    dir: &Path,
    fsync: Fsync,
    metrics: &Arc<Metrics>,
) -> Result<Store, RuntimeError> {
    let mut index = Indexer::new();
    let recovered = durability::recover(dir, |change| replay(&mut index, change))
        .map_err(|err| RuntimeError(format!("cannot load the data directory: {err}")))?;
    if let Some(torn) = &recovered.torn_tail {
        log::warn("dropped a torn last record", &[("detail", torn)]);
    }
    let stats = recovered.stats.clone();
    log::info(
        "loaded",
        &[
            ("data_dir", &dir.display()),
            ("packages", &index.packages()),
            ("snapshot_records", &stats.snapshot_records),
            ("log_records", &stats.log_records),
            ("bytes", &stats.bytes),
            ("elapsed", &DurationText(stats.elapsed)),
        ],
    );
    let metrics = Arc::clone(metrics);
    let log = Log::open(recovered, fsync, move |event| match event {
        LogEvent::Synced(took) => metrics.record_fsync(took),
        LogEvent::Failed(err) => {
            // Memory is now ahead of the disk: answering anything more could
            // acknowledge a change that is not durable. Crash-only: stop here
            // and let the restart recover from what is on disk.
            metrics.durability_error();
            log::error("the data directory failed; exiting", &[("error", err)]);
            std::process::exit(1);
        }
    })
    .map_err(|err| RuntimeError(format!("cannot open the log in {}: {err}", dir.display())))?;
    Ok(Store::with_log(index, log))
}

/// Applies one recovered change; a change the index refuses means the
/// files do not describe a state this server could have reached.
fn replay(index: &mut Indexer, change: Change<'_>) -> Result<(), String> {
    let outcome = match change {
        Change::Index {
            package,
            dependencies,
        } => index.index(package, dependencies.iter().copied()),
        Change::Remove { package } => index.remove(package),
    };
    if outcome.changed() {
        Ok(())
    } else {
        Err(format!("the index answers {outcome:?} to a logged change"))
    }
}

/// How often the compactor checks whether the log outgrew the snapshot.
const COMPACTION_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Background compaction: when the log outgrows the snapshot, rotate it
/// and copy the index under the read lock (writers wait only for the copy),
/// then write the snapshot from the copy with no lock held.
fn start_compactor(store: Store, metrics: Arc<Metrics>) -> Result<(), RuntimeError> {
    thread::Builder::new()
        .name("compactor".into())
        .spawn(move || {
            let Some(log) = store.log() else { return };
            loop {
                thread::sleep(COMPACTION_CHECK_INTERVAL);
                if !log.needs_compaction() {
                    continue;
                }
                // The new log file is created before taking the lock, so
                // writers wait only for the switch and the copy.
                let taken = log.prepare_rotation().and_then(|next| {
                    let index = store.read();
                    log.rotate_to(next)
                        .map(|generation| (generation, index.clone()))
                });
                let written = taken.and_then(|(generation, copy)| {
                    log.write_snapshot(generation, copy.topological())
                });
                match written {
                    Ok(bytes) => {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64());
                        metrics.snapshot_written(now);
                        log::debug("snapshot written", &[("bytes", &bytes)]);
                    }
                    Err(err) => {
                        // The log keeps every change, so nothing is lost;
                        // disk use grows until a later attempt succeeds.
                        metrics.durability_error();
                        log::error("compaction failed", &[("error", &err)]);
                        thread::sleep(COMPACTION_CHECK_INTERVAL * 25);
                    }
                }
            }
        })
        .map(drop)
        .map_err(|err| RuntimeError(format!("cannot start the compactor: {err}")))
}

/// Shows a duration with the unit the flags use (`1500ms`, `30s`).
struct DurationText(std::time::Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1000) {
            write!(f, "{}s", millis / 1000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}
