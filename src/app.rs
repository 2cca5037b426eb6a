//! The process lifecycle (SPEC §4): start, serve, stop on a signal.
//!
//! Start: bind both listeners (a failure is a one-line error, exit 1), start
//! accepting, report ready, log one line with the address, version and
//! settings. Stop, on the first `SIGTERM`/`SIGINT`: report not ready, stop
//! accepting, let connections answer what they received, wait at most
//! `--shutdown-timeout`, log one line, exit 0. A second signal exits at
//! once with status 1.

use crate::admin::{AdminServer, AdminState};
use crate::config::Config;
use crate::durability::{self, Event, Fsync};
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
use std::time::{SystemTime, UNIX_EPOCH};

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
    // Dropped on an early return, which stops its thread too.
    let admin = match &config.admin_addr {
        Some(addr) => Some(start_admin(addr, &ready, &loaded, &metrics)?),
        None => None,
    };
    let store = match &config.data_dir {
        Some(dir) => open_durable(dir, config.fsync, &metrics)?,
        None => Store::default(),
    };
    let _ = loaded.set(store.clone());
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
    let admin_shown = admin
        .as_ref()
        .map_or_else(|| "off".to_string(), |a| a.local_addr().to_string());
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
    store
        .close()
        .map_err(|err| RuntimeError(format!("cannot flush the data directory: {err}")))?;
    // Probes are answered (alive, not ready) through the whole drain and
    // the log's close; the admin thread ends just before "stopped", so that
    // line comes after the last answer the process gives on any port.
    if let Some(admin) = admin {
        admin.stop();
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
) -> Result<AdminServer, RuntimeError> {
    let cannot =
        |err: std::io::Error| RuntimeError(format!("cannot listen on {addr} (admin): {err}"));
    let listener = TcpListener::bind(addr).map_err(cannot)?;
    let (store, metrics) = (Arc::clone(store), Arc::clone(metrics));
    let state = AdminState {
        ready: Arc::clone(ready),
        render_metrics: Box::new(move |out| {
            let mut gauges = IndexGauges::default();
            if let Some(store) = store.get() {
                if let Some(bytes) = store.log_bytes() {
                    metrics.set_log_bytes(bytes);
                }
                let index = store.read();
                gauges.packages = index.packages() as u64;
                gauges.dependencies = index.dependencies() as u64;
            }
            metrics.render(gauges, out);
        }),
    };
    AdminServer::start(listener, state).map_err(cannot)
}

/// Rebuilds the index from `dir` and opens it for writing. Damage is a
/// one-line error naming the file and offset; a torn last record is a
/// warning.
fn open_durable(dir: &Path, fsync: Fsync, metrics: &Arc<Metrics>) -> Result<Store, RuntimeError> {
    let observer_metrics = Arc::clone(metrics);
    let observe = Arc::new(move |event: Event<'_>| durability_event(&observer_metrics, event));
    let (store, loaded) = Store::open(dir, durability::Options::new(fsync), observe)
        .map_err(|err| RuntimeError(format!("cannot load the data directory: {err}")))?;
    if let Some(torn) = &loaded.torn_tail {
        log::warn("cut a torn last record", &[("detail", torn)]);
    }
    let stats = &loaded.stats;
    log::info(
        "loaded",
        &[
            ("data_dir", &dir.display()),
            ("packages", &store.read().packages()),
            ("snapshot_records", &stats.snapshot_records),
            ("log_records", &stats.log_records),
            ("bytes", &stats.bytes),
            ("elapsed", &DurationText(stats.elapsed)),
        ],
    );
    Ok(store)
}

/// What the server does with each event of its data directory.
fn durability_event(metrics: &Metrics, event: Event<'_>) {
    match event {
        Event::Synced(took) => metrics.record_fsync(took),
        Event::Failed(err) => {
            // Memory is now ahead of the disk: answering anything more could
            // acknowledge a change that is not durable. Crash-only: stop here
            // and let the restart recover from what is on disk.
            metrics.durability_error();
            log::error("the data directory failed; exiting", &[("error", err)]);
            std::process::exit(1);
        }
        Event::Compacted {
            took,
            log_bytes,
            snapshot_bytes,
            packages,
        } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics.snapshot_written(now);
            log::info(
                "compacted",
                &[
                    ("elapsed", &DurationText(took)),
                    ("log_bytes", &log_bytes),
                    ("snapshot_bytes", &snapshot_bytes),
                    ("packages", &packages),
                ],
            );
        }
        Event::CompactionFailed(err) => {
            // The log keeps every change, so nothing is lost; disk use grows
            // until a later attempt succeeds.
            metrics.durability_error();
            log::error("compaction failed", &[("error", err)]);
        }
    }
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
