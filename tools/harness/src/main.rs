//! `package-indexer-harness`: drives a server the way the challenge's
//! official test harness does and says whether it held up. What it sends
//! and checks, its flags and its exit statuses are in `docs/tools.md`
//! ("How the official harness drives a server", "The harness"): exit 0
//! after `All tests passed!`, 1 when a check failed, 2 for bad usage.

mod options;
mod report;
mod step;

use options::Options;
use package_indexer::flags::{self, UsageError};
use report::report_failures;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;
use step::{Step, StepRun};
use workload::{Package, Rng};

const PROGRAM: &str = "package-indexer-harness";

fn main() -> ExitCode {
    flags::tool_main(PROGRAM, options::parse, options::help, load_and_run)
}

/// Loads the packages (a list that cannot be used is bad usage: exit 2),
/// then runs the steps on them, reporting to stdout.
fn load_and_run(options: Options) -> ExitCode {
    match options.source.load() {
        Err(reason) => UsageError(reason).report(PROGRAM),
        Ok(packages) if run(&options, &packages, &mut io::stdout().lock()) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
    }
}

/// Runs the five steps, printing progress and failures to `out`; true when
/// every check held.
fn run(options: &Options, packages: &[Package], out: &mut impl Write) -> bool {
    // A bare IPv6 address takes brackets before its port.
    let target = if options.host.contains(':') {
        format!("[{}]:{}", options.host, options.port)
    } else {
        format!("{}:{}", options.host, options.port)
    };
    // Progress output is best effort: a closed stdout must not fail the run.
    let _ = writeln!(
        out,
        "{} packages ({}), server {target}, concurrency {}, unluckiness {}%, seed {}",
        packages.len(),
        options.source,
        options.concurrency,
        options.unluckiness,
        options.seed
    );
    let addresses = match package_indexer::resolve(&target) {
        Ok(addresses) => addresses,
        Err(reason) => {
            let _ = writeln!(out, "FAILED: {reason}");
            return false;
        }
    };

    let mut rng = Rng::new(options.seed);
    let mut order: Vec<&Package> = packages.iter().collect();
    rng.shuffle(&mut order);
    let segments = split(&order, options.concurrency);

    let started = Instant::now();
    for step in Step::ALL {
        let step_run = StepRun::new(step, (&target, &addresses), packages, options.unluckiness);
        let client_seeds: Vec<u64> = segments.iter().map(|_| rng.next_u64()).collect();
        let step_started = Instant::now();
        match step_run.run_clients(&segments, &client_seeds) {
            Ok(totals) => {
                let _ = writeln!(
                    out,
                    "step {}/5 {}: {} requests ({} broken), at most {} rounds, {:.2}s",
                    step.number,
                    step.title,
                    totals.requests,
                    totals.broken,
                    totals.rounds,
                    step_started.elapsed().as_secs_f64()
                );
            }
            Err(failures) => {
                report_failures(out, step, &failures, options.seed);
                return false;
            }
        }
    }
    let _ = writeln!(out, "finished in {:.2}s", started.elapsed().as_secs_f64());
    let _ = writeln!(out, "All tests passed!");
    true
}

/// Splits `items` into `parts` contiguous segments whose sizes differ by at
/// most one (some are empty when there are fewer items than parts).
fn split<T>(items: &[T], parts: usize) -> Vec<&[T]> {
    (0..parts)
        .map(|i| &items[i * items.len() / parts..(i + 1) * items.len() / parts])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use package_indexer::{Command, Response};
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::thread;
    use workload::Source;

    #[test]
    fn split_covers_everything_in_near_equal_parts() {
        let items: Vec<u32> = (0..10).collect();
        let parts = split(&items, 3);
        assert_eq!(parts, [&items[0..3], &items[3..6], &items[6..10]]);
        let parts = split(&items[..2], 4);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 2);
        assert_eq!(parts.len(), 4);
    }

    type Index = Mutex<HashMap<String, Vec<String>>>;

    /// A small correct indexer: the reference the harness must pass.
    fn reference_answer(index: &Index, line: &str) -> Option<Response> {
        let Ok(request) = package_indexer::parse_line(line.as_bytes()) else {
            return Some(Response::Error);
        };
        let name = request.package.as_str();
        let mut index = index.lock().unwrap();
        let accepted = match request.command {
            Command::Index => {
                let dependencies: Vec<String> =
                    request.dependencies.iter().map(|d| d.to_string()).collect();
                let known = dependencies.iter().all(|d| index.contains_key(d));
                if known {
                    index.insert(name.to_string(), dependencies);
                }
                known
            }
            Command::Remove => {
                let needed = index.values().any(|deps| deps.iter().any(|d| d == name));
                if !needed {
                    index.remove(name);
                }
                !needed
            }
            Command::Query => index.contains_key(name),
        };
        Some(Response::ok_if(accepted))
    }

    fn always_ok(_: &Index, _: &str) -> Option<Response> {
        Some(Response::Ok)
    }

    /// `None`: close the connection instead of answering.
    fn hang_up(_: &Index, _: &str) -> Option<Response> {
        None
    }

    /// Serves `answer` on an ephemeral port, a thread per connection, for the
    /// rest of the test process; returns the port.
    fn spawn_server(answer: fn(&Index, &str) -> Option<Response>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let index = Arc::new(Index::default());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let index = Arc::clone(&index);
                thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        let Some(response) = answer(&index, &line) else {
                            return;
                        };
                        if writer.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// Runs the harness on a generated graph; returns success and output.
    fn run_against(port: u16, concurrency: usize, unluckiness: u32) -> (bool, String) {
        let options = Options {
            host: "127.0.0.1".to_string(),
            port,
            concurrency,
            seed: 11,
            unluckiness,
            source: Source::Generated {
                seed: 11,
                count: 300,
            },
        };
        let packages = options.source.load().unwrap();
        let mut out = Vec::new();
        let passed = run(&options, &packages, &mut out);
        (passed, String::from_utf8(out).unwrap())
    }

    #[test]
    fn passes_a_correct_server() {
        let port = spawn_server(reference_answer);
        for (concurrency, unluckiness) in [(1, 0), (7, 20), (400, 5)] {
            let (passed, output) = run_against(port, concurrency, unluckiness);
            assert!(passed, "{output}");
            assert!(output.ends_with("All tests passed!\n"), "{output}");
            assert_eq!(output.matches("step ").count(), 5, "{output}");
        }
    }

    #[test]
    fn fails_a_server_that_accepts_everything() {
        let port = spawn_server(always_ok);
        let (passed, output) = run_against(port, 3, 0);
        assert!(!passed);
        assert!(output.contains("FAILED at step 5/5"), "{output}");
        assert!(output.contains(": expected FAIL, got OK"), "{output}");
        assert!(!output.contains("All tests passed!"), "{output}");

        let (passed, output) = run_against(port, 3, 50);
        assert!(!passed);
        assert!(output.contains("FAILED at step 2/5"), "{output}");
        assert!(output.contains("expected ERROR, got OK"), "{output}");
    }

    #[test]
    fn fails_a_server_that_hangs_up() {
        let port = spawn_server(hang_up);
        let (passed, output) = run_against(port, 2, 5);
        assert!(!passed);
        // Either client may fail first and stop the other before it sends.
        let failure = output
            .lines()
            .find(|l| l.starts_with("FAIL step 1/5, client "));
        assert!(
            failure.is_some_and(|line| line.contains(": sent \"REMOVE|")
                && line.ends_with(": the server closed the connection")),
            "{output}"
        );
    }

    #[test]
    fn fails_when_nothing_listens() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (passed, output) = run_against(port, 2, 5);
        assert!(!passed);
        assert!(output.contains("cannot connect to 127.0.0.1:"), "{output}");
    }
}
