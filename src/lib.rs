//! # package-indexer
//!
//! A TCP server that keeps a consistent index of packages and their
//! dependencies for many concurrent clients (the contract is `SPEC.md` in
//! `../shared/`). Standard library only.
//!
//! ## Layout
//!
//! | module | concept |
//! | --- | --- |
//! | [`protocol`] | bytes -> [`protocol::Request`], [`protocol::Response`] -> bytes; pure, total, zero-copy |
//! | [`package_list`] | the Homebrew-style list format (`name: dep dep`), one line at a time |
//! | [`index`] | the dependency graph: interned names, compact edge lists, dependent counts; no I/O, no locks |
//! | [`store`] | the one `Arc<RwLock<Indexer>>` all connections share, and the durable log beside it |
//! | [`durability`] | `--data-dir`: write-ahead log with group commit, snapshots, recovery |
//! | [`server`] | listener, one thread per connection, limits, graceful stop |
//! | [`admin`] | the HTTP thread, one `poll(2)` loop: `/healthz`, `/readyz`, `/metrics` |
//! | [`metrics`] | lock-free counters and histograms, Prometheus text |
//! | [`config`] | flags and `PACKAGE_INDEXER_*` variables -> [`config::Config`] |
//! | [`flags`] | the one command-line parser of the server and its tools: flags, variables, `--help`, typed values |
//! | [`log`] | one event per line on stderr, text or JSON |
//! | [`sys`] | the one place with `unsafe`: the system calls std does not offer (blocking and `sigwait`ing signals, `poll`, the listen backlog, the open-files limit, TCP keepalive) |
//! | [`app`] | the process lifecycle: start, serve, stop |
//! | [`healthcheck`] | the `healthcheck` subcommand's probe |
//!
//! The binary (`src/bin/package-indexer.rs`) is thin. The tools are crates
//! of their own in the workspace, under `tools/`: `package-indexer-harness`
//! (the challenge's test harness), `package-indexer-bench` (the benchmark
//! against a null server) and the package graphs they share (`workload`).
//!
//! ## The life of a request
//!
//! 1. The acceptor thread ([`server`]) accepts a connection and, below
//!    `--max-connections`, hands it to a new named thread with a small stack.
//! 2. That thread reads into a buffer bounded by `--max-line-bytes` and, for
//!    each complete line, calls [`protocol::parse_line`], which borrows the
//!    names from the buffer.
//! 3. [`store::Store::execute`] runs the request under the read lock
//!    (`QUERY`) or the write lock (`INDEX`, `REMOVE`) against
//!    [`index::Indexer`]; with `--data-dir`, a change is appended to the
//!    log's in-memory buffer inside the same critical section, so the log's
//!    order is the index's order.
//! 4. The answer's bytes go to an output buffer; when the input buffer holds
//!    no further complete line, the thread waits until the log covers the
//!    batch's changes (one `fdatasync` serves every waiting writer), then
//!    sends every answer of the batch with one write.
//! 5. [`metrics`] counts the request and its latency with relaxed atomics.

pub mod admin;
pub mod app;
pub mod config;
pub mod durability;
pub mod flags;
pub mod healthcheck;
pub mod index;
pub mod log;
pub mod metrics;
pub mod name;
pub mod package_list;
pub mod protocol;
pub mod server;
pub mod store;
pub mod sys;
