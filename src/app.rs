//! The process lifecycle (`docs/lifecycle.md`): start, serve, stop on a
//! signal. Only the main thread ends the process: it takes signals with
//! `sigtimedwait` and looks at the data directory's health
//! ([`Store::check_alive`]) between waits of at most [`INTERRUPT_CHECK`].

use crate::admin::{AdminLimits, AdminServer, AdminState};
use crate::config::Config;
use crate::durability::{self, Fsync};
use crate::log::{self, DurationText};
use crate::metrics::Metrics;
use crate::procfs;
use crate::server::{self, Server, INTERRUPT_CHECK};
use crate::store::Store;
use crate::sys::{self, OpenFilesLimit, Signal, Signals};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Why the server could not run: one line, exit status 1.
#[derive(Debug)]
pub(crate) struct RuntimeError(pub String);

/// A server that is up: what the stop needs.
struct Serving {
    running: Server,
    store: Store,
    /// Dropped on an early return, which stops its thread too.
    admin: Option<AdminServer>,
    ready: Arc<AtomicBool>,
}

/// Runs the server until a signal stops it, then stops gracefully
/// (`docs/lifecycle.md#graceful-stop`); a second signal or a failure during
/// the stop ends it at once.
pub(crate) fn run(
    config: &Config,
    signals: Signals,
    metrics: Arc<Metrics>,
) -> Result<(), RuntimeError> {
    let serving = start(config, &metrics)?;
    let signal = loop {
        if let Some(signal) = pending_interruption(&signals, &serving.store, INTERRUPT_CHECK)? {
            break signal;
        }
    };
    serving.ready.store(false, Ordering::SeqCst);
    log::info(
        "stopping",
        &[
            ("signal", &signal),
            ("connections", &serving.running.active_connections()),
        ],
    );
    let mut interrupted = Ok(None);
    let report = serving.running.shutdown(config.shutdown_timeout, || {
        interrupted = pending_interruption(&signals, &serving.store, Duration::ZERO);
        !matches!(interrupted, Ok(None))
    });
    let Some(report) = report else {
        return Err(match interrupted {
            Ok(Some(second)) => RuntimeError(format!("second signal ({second}): exiting at once")),
            Err(failure) => failure,
            Ok(None) => RuntimeError("the stop was cut short".into()),
        });
    };
    serving
        .store
        .close()
        .map_err(|err| RuntimeError(format!("cannot flush the data directory: {err}")))?;
    // Probes are answered (alive, not ready) through the whole drain and
    // the log's close; the admin thread ends just before "stopped", so that
    // line comes after the last answer the process gives on any port.
    if let Some(admin) = serving.admin {
        admin.stop();
    }
    log::info(
        "stopped",
        &[
            ("drained", &report.drained),
            ("forced", &report.forced),
            ("from_backlog", &report.from_backlog),
            ("elapsed", &DurationText(report.elapsed)),
        ],
    );
    Ok(())
}

/// Binds both listeners before loading (a taken port fails at once, and
/// probes are answered, not ready, while a large data directory loads),
/// then opens the store, starts accepting and reports ready.
fn start(config: &Config, metrics: &Arc<Metrics>) -> Result<Serving, RuntimeError> {
    let fd_limit = raise_fd_limit();
    let listen_backlog = config
        .listen_backlog
        .or_else(sys::somaxconn)
        .unwrap_or(server::FALLBACK_LISTEN_BACKLOG);
    let listener = bind(&config.addr, listen_backlog, "")?;
    let ready = Arc::new(AtomicBool::new(false));
    let loaded: Arc<OnceLock<Store>> = Arc::new(OnceLock::new());
    let admin = config.admin_addr.as_ref().map(|addr| {
        let listener = bind(addr, listen_backlog, " (admin)")?;
        // Room for the pending connections the open-files limit keeps for it.
        let mut limits = AdminLimits::default();
        if let Some(limit) = fd_limit {
            limits.max_connections = admin_connections(limit);
        }
        let state = admin_state(Arc::clone(&ready), Arc::clone(&loaded), Arc::clone(metrics));
        AdminServer::start(listener, state, limits)
            .map_err(|err| RuntimeError(format!("cannot listen on {addr} (admin): {err}")))
    });
    let admin = admin.transpose()?;
    let store = match &config.data_dir {
        Some(dir) => open_durable(dir, config.fsync, metrics)?,
        None => Store::default(),
    };
    let _ = loaded.set(store.clone());
    let served_at_most = fd_limit.map_or(Ok(config.max_connections), |limit| {
        connections_at_most(limit, config.max_connections)
    })?;
    metrics.set_limits(served_at_most as u64, config.max_line_bytes as u64);
    let ceiling = fd_limit.map(fd_ceiling);
    let running = Server::start(
        listener,
        config,
        ceiling,
        store.clone(),
        Arc::clone(metrics),
    )
    .map_err(|err| RuntimeError(format!("cannot start the acceptor: {err}")))?;
    ready.store(true, Ordering::SeqCst);
    let serving = Serving {
        running,
        store,
        admin,
        ready,
    };
    log_start_line(config, &serving, listen_backlog, fd_limit);
    Ok(serving)
}

/// The start line: the addresses, the version and every setting in force.
fn log_start_line(config: &Config, serving: &Serving, listen_backlog: u32, fd_limit: Option<u64>) {
    let admin_addr = serving
        .admin
        .as_ref()
        .map_or_else(|| "off".to_string(), |a| a.local_addr().to_string());
    let data_dir = config
        .data_dir
        .as_ref()
        .map_or_else(|| "none".to_string(), |d| d.display().to_string());
    let tcp_keepalive = config
        .tcp_keepalive
        .map_or_else(|| "off".into(), |idle| DurationText(idle).to_string());
    log::info(
        "listening",
        &[
            ("addr", &serving.running.local_addr()),
            ("admin_addr", &admin_addr),
            ("version", &env!("CARGO_PKG_VERSION")),
            ("max_connections", &config.max_connections),
            ("listen_backlog", &listen_backlog),
            ("fd_limit", &fd_limit),
            ("max_line_bytes", &config.max_line_bytes),
            ("idle_timeout", &DurationText(config.idle_timeout)),
            ("tcp_keepalive", &tcp_keepalive),
            ("write_timeout", &DurationText(config.write_timeout)),
            ("shutdown_timeout", &DurationText(config.shutdown_timeout)),
            ("data_dir", &data_dir),
            ("fsync", &config.fsync),
            ("log_format", &config.log_format),
            ("log_level", &config.log_level),
        ],
    );
}

/// What ends serving: a stopping signal within `wait`, or a failure of the
/// data directory (the error). Other collected signals are logged, ignored.
fn pending_interruption(
    signals: &Signals,
    store: &Store,
    wait: Duration,
) -> Result<Option<Signal>, RuntimeError> {
    if let Err(err) = store.check_alive() {
        // Memory is now ahead of the disk, and the log answers no more
        // waits: the process ends, and the restart recovers from the disk.
        let failure = format!("the data directory failed; exiting: {err}");
        return Err(RuntimeError(failure));
    }
    let signal = signals
        .wait_for(wait)
        .map_err(|err| RuntimeError(format!("cannot wait for signals: {err}")))?;
    match signal {
        Some(signal) if !signal.stops() => {
            log::warn("ignoring signal", &[("signal", &signal)]);
            Ok(None)
        }
        stop => Ok(stop),
    }
}

/// Binds `addr` with `backlog` (std's 128 overflows under bursts, which then
/// wait for SYN retries); `what` names the listener in the error.
fn bind(addr: &str, backlog: u32, what: &str) -> Result<TcpListener, RuntimeError> {
    let listener = TcpListener::bind(addr).and_then(|listener| {
        sys::set_listen_backlog(&listener, backlog)?;
        Ok(listener)
    });
    listener.map_err(|err| RuntimeError(format!("cannot listen on {addr}{what}: {err}")))
}

/// Raises the open-files limit as far as allowed; the one in effect.
fn raise_fd_limit() -> Option<u64> {
    let limit = OpenFilesLimit::current()
        .inspect_err(|err| log::warn("cannot read the open-files limit", &[("error", err)]))
        .ok()?;
    let limit = limit.raise_soft_to_hard().unwrap_or_else(|err| {
        log::warn("cannot raise the open-files limit", &[("error", &err)]);
        limit
    });
    Some(limit.soft)
}

/// Descriptors the process may open after its start besides connections
/// (`docs/lifecycle.md`, "File descriptors", says which).
const RESERVED_FOR_THE_PROCESS: u64 = 14;

/// Admin connections pending at once under an open-files limit of `limit`:
/// a sixteenth of it, at most the listener's own cap, so probes fit under
/// any limit and an admin flood cannot take the data directory's descriptors.
fn admin_connections(limit: u64) -> usize {
    let cap = AdminLimits::default().max_connections;
    usize::try_from(limit / 16).map_or(cap, |share| share.min(cap))
}

/// The lowest descriptor number a protocol connection may not keep under an
/// open-files limit of `limit`: those above are for the process and admin.
fn fd_ceiling(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED_FOR_THE_PROCESS + admin_connections(limit) as u64)
}

/// Protocol connections served at once under the open-files limit `limit`,
/// with the descriptors open now taken: `--max-connections`, or fewer (with
/// a warning); an error when none fit.
fn connections_at_most(limit: u64, max_connections: usize) -> Result<usize, RuntimeError> {
    let ceiling = fd_ceiling(limit);
    // Descriptors open now below the ceiling (one inherited above it takes
    // no room): the numbers protocol connections cannot have.
    let open = procfs::open_fds().unwrap_or_default();
    let open = open.iter().filter(|&&fd| fd < ceiling).count() as u64;
    let room = ceiling.saturating_sub(open);
    if room == 0 {
        let enough = (limit..)
            .find(|&l| fd_ceiling(l) > open)
            .unwrap_or(u64::MAX);
        return Err(RuntimeError(format!(
            "the open-files limit ({limit}) leaves no descriptor for a protocol connection: \
             raise it to at least {enough} (ulimit -n, LimitNOFILE=, docker run --ulimit nofile=)"
        )));
    }
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if room < max_connections {
        log::warn(
            "--max-connections does not fit in the open-files limit; \
             connections past it are closed at once",
            &[
                ("max_connections", &max_connections),
                ("fd_limit", &limit),
                ("open_fds", &open),
                ("reserved_fds", &(limit - ceiling)),
                ("connections_at_most", &room),
            ],
        );
    }
    Ok(room.min(max_connections))
}

/// `/readyz` is 200 while `ready` is set and a protocol connection can be
/// taken; until `loaded` is set, index gauges read zero and `/v1` answers 503.
fn admin_state(
    ready: Arc<AtomicBool>,
    loaded: Arc<OnceLock<Store>>,
    metrics: Arc<Metrics>,
) -> AdminState {
    let (store, room) = (Arc::clone(&loaded), Arc::clone(&metrics));
    AdminState {
        ready: Box::new(move || ready.load(Ordering::SeqCst) && room.has_room()),
        store: loaded,
        render_metrics: Box::new(move |out| {
            let gauges = store.get().map(Store::gauges).unwrap_or_default();
            metrics.render(gauges, out);
        }),
    }
}

/// Rebuilds the index from `dir` and opens it for writing; a torn last
/// record is a warning.
fn open_durable(dir: &Path, fsync: Fsync, metrics: &Arc<Metrics>) -> Result<Store, RuntimeError> {
    let options = durability::DurableOptions::new(fsync);
    let (store, loaded) = Store::open(dir, options, Arc::clone(metrics))
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
