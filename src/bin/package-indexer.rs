//! The server binary (interim: no signals or admin yet).
use package_indexer::config::{self, Invocation};
use package_indexer::metrics::Metrics;
use package_indexer::{log, server, store::Store};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let config = match config::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(Invocation::Serve(config)) => config,
        Ok(Invocation::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("package-indexer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Healthcheck { .. }) => return ExitCode::FAILURE,
        Err(err) => {
            eprintln!("package-indexer: {err} (see --help)");
            return ExitCode::from(2);
        }
    };
    let running = match server::start(&config, Store::default(), Arc::new(Metrics::new())) {
        Ok(r) => r,
        Err(err) => {
            eprintln!("package-indexer: cannot listen on {}: {err}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    log::info("listening", &[("addr", &running.local_addr())]);
    loop {
        std::thread::park();
    }
}
