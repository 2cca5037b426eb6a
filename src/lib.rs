//! package-indexer (layout documented once the modules land).

pub mod admin;
pub mod app;
pub mod config;
pub mod durability;
pub mod healthcheck;
pub mod index;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod signal;
pub mod store;
pub mod workload;
