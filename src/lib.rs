//! # package-indexer
//!
//! A TCP server keeping a consistent index of packages and their
//! dependencies for many concurrent clients, and its operator tools, in one
//! binary; standard library only. The contract is `docs/`, one page a
//! subject: `protocol.md`, `command-line.md`, `admin-http.md`,
//! `durability.md`, `lifecycle.md` and `tools.md`.
//!
//! ## Layout
//!
//! One idea per file; the modules are private, and what the binary, the
//! tests and the tool crates need is re-exported here.
//!
//! | file | concept |
//! | --- | --- |
//! | `name.rs` | [`PackageName`] and [`Dependencies`]: names validated once, where bytes enter |
//! | `protocol.rs` | a line -> [`Request`] ([`parse_line`]), [`Response`] -> bytes; pure, total, zero-copy |
//! | `index/` | [`Indexer`], the dependency graph laid out for the cache: a tag table, 24-byte nodes with short names inline, each package's dependencies and dependents in one run of ids, staged lookups for runs of commands; no I/O, no locks |
//! | `store.rs` | [`Store`]: the one `Arc<RwLock<Indexer>>` every connection shares, and the durable side it owns |
//! | `durability/` | `--data-dir`: recovery, the compactor thread, snapshots, one owner for all of it; `wal.rs` is the whole durable write path: the append, the group commit, the sync and who waits for it |
//! | `server.rs` | [`Server`]: the listener, one thread per connection, limits, graceful stop |
//! | `admin/` | [`AdminServer`]: the HTTP listener, one `poll(2)` loop (`event_loop.rs`) over request lines (`request.rs`) and routes (`routes.rs`): health, readiness, metrics, the `/v1` inspection and export (on worker threads, `workers.rs`) |
//! | `json.rs` | just enough JSON: strings written for the admin API and the logs (the product never reads JSON) |
//! | `metrics.rs` | [`Metrics`]: lock-free counters and histograms, Prometheus text |
//! | [`procfs`] | a process's CPU time and memory from `/proc`, for the metrics and the bench |
//! | `app.rs` | the server's life: start, serve, stop on a signal or a failure |
//! | `cli.rs` | [`main`]: the binary's command line, the server or a subcommand |
//! | `config.rs` | flags and `PACKAGE_INDEXER_*` variables -> [`Config`] |
//! | [`flags`] | the one command-line parser of the server and its tools |
//! | [`package_list`] | the Homebrew-style list format (`name: dep dep`), one line at a time |
//! | `log.rs` | one event per line on stderr, text or JSON |
//! | `figures.rs` | numbers written for people ([`thousands`]) |
//! | `commands/` | the operator's tools, one subcommand a file (`healthcheck`, `show`, `export`, ...), and the client kit they share with the harness, the bench and the tests: [`Connection`] and [`pipeline`] for the protocol (`connection.rs`), [`http_get`] for the admin listener (`http.rs`) |
//! | `sys.rs` | the one place with `unsafe`: the system calls std lacks (signals, `poll`, the listen backlog, the open-files limit, TCP keepalive) and the prefetch hint |
//!
//! The binary (`src/bin/package-indexer.rs`) only calls [`main`]. The
//! workspace's tool crates are under `tools/`: the harness, the bench and
//! the package graphs they share (`workload`).
//!
//! ## The life of a request
//!
//! 1. The acceptor thread ([`Server`]) accepts a connection and, below
//!    `--max-connections`, hands it to a new named thread with a small stack.
//! 2. That thread reads into a buffer bounded by `--max-line-bytes` and
//!    parses the complete lines in batches of up to 256: [`parse_line`]
//!    validates names into [`PackageName`]s borrowed from the buffer.
//! 3. [`Store::execute_all`] runs the batch in order, in runs of one kind:
//!    queries under one read lock, changes under one write lock; with
//!    `--data-dir`, each change is appended to the
//!    log's buffer in the same critical section, so the log's order is the
//!    index's order.
//! 4. The answers go to an output buffer; once no complete line is left,
//!    the thread waits until the log covers every change they could reveal
//!    (one `fdatasync` serves every waiting connection: `durability/wal.rs`),
//!    then sends them with one write.
//! 5. [`Metrics`] counts the batch with a few relaxed atomic additions.

mod admin;
mod app;
mod cli;
mod commands;
mod config;
mod durability;
mod figures;
pub mod flags;
mod index;
mod json;
mod log;
mod metrics;
mod name;
pub mod package_list;
pub mod procfs;
mod protocol;
mod server;
mod store;
#[allow(unsafe_code)]
mod sys;

pub use admin::{AdminLimits, AdminServer, AdminState};
pub use cli::main;
pub use commands::connection::{
    connect, connect_to, pipeline, resolve, AnswerSink, Connection, PipelineOutcome, Sender,
    LINES_IN_FLIGHT,
};
pub use commands::http::{http_get, HttpAnswer};
pub use config::{parse as parse_command_line, Config, Invocation};
pub use durability::{DurableOptions, Fsync, LoadStats, Loaded, RecoveryError, TornTail};
pub use figures::thousands;
pub use index::{IndexOutcome, Indexer, Refusal};
pub use metrics::{Metrics, RejectReason, StoreGauges};
pub use name::{Dependencies, PackageName, MAX_NAME_BYTES};
pub use protocol::{parse_line, write_request, Command, Malformed, ParseError, Request, Response};
pub use server::{Server, ShutdownReport};
pub use store::{Executed, Inspection, LogPosition, Store};
pub use sys::{block_signals, Signal, Signals};
