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
use crate::log;
use crate::metrics::{IndexGauges, Metrics};
use crate::server::{Limits, Server};
use crate::signal::TerminationSignals;
use crate::store::Store;
use std::fmt;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

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
    let store = Store::default();
    let server = Server::bind(
        config.addr.as_str(),
        Limits::from(config),
        store.clone(),
        Arc::clone(&metrics),
    )
    .map_err(|err| RuntimeError(format!("cannot listen on {}: {err}", config.addr)))?;
    let ready = Arc::new(AtomicBool::new(false));
    let admin_addr = match &config.admin_addr {
        Some(addr) => Some(start_admin(addr, &ready, &store, &metrics)?),
        None => None,
    };
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

fn start_admin(
    addr: &str,
    ready: &Arc<AtomicBool>,
    store: &Store,
    metrics: &Arc<Metrics>,
) -> Result<std::net::SocketAddr, RuntimeError> {
    let cannot =
        |err: std::io::Error| RuntimeError(format!("cannot listen on {addr} (admin): {err}"));
    let listener = TcpListener::bind(addr).map_err(cannot)?;
    let local = listener.local_addr().map_err(cannot)?;
    let (store, metrics) = (store.clone(), Arc::clone(metrics));
    let state = AdminState {
        ready: Arc::clone(ready),
        render_metrics: Box::new(move |out| {
            let gauges = {
                let index = store.read();
                IndexGauges {
                    packages: index.packages() as u64,
                    dependencies: index.dependencies() as u64,
                }
            };
            metrics.render(gauges, out);
        }),
    };
    admin::spawn(listener, state).map_err(cannot)?;
    Ok(local)
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
