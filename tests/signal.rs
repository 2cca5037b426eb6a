//! `SIGTERM`, `SIGINT`, `SIGHUP`, `SIGUSR1` and `SIGUSR2` sent to the whole
//! process reach `Signals::wait` instead of killing it.
//!
//! The rules: `docs/lifecycle.md#signals`.
//!
//! The server blocks the signals at the top of `main`. A test cannot: libtest
//! owns `main` and runs each test on a thread of its own, so a signal sent to
//! the process could land on libtest's main thread and take the default
//! action (exit). A function in `.init_array`, which the C runtime calls on
//! the main thread before `main`, blocks them first, exactly as the server
//! would; every later thread inherits the mask. This file has one test so
//! nothing else shares the process while signals are in flight.

use package_indexer::block_signals;
use std::process::Command;
use std::time::Duration;

/// Far longer than a signal sent to the process itself takes to arrive.
const WAIT: Duration = Duration::from_secs(10);

extern "C" fn block_before_main() {
    if let Err(error) = block_signals() {
        eprintln!("cannot block the signals: {error}");
        std::process::abort();
    }
}

// The one placement the crate's `unsafe_code` lint allows outside src/sys.rs:
// the C runtime calls the functions listed in `.init_array` on the main
// thread before `main`, and `block_before_main` is a plain `extern "C" fn()`
// with no arguments, which is what that list holds.
#[allow(unsafe_code)]
#[used]
#[link_section = ".init_array"]
static BLOCK_BEFORE_MAIN: extern "C" fn() = block_before_main;

fn send_to_self(signal_name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal_name}"))
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal_name} failed: {status}");
}

#[test]
fn process_directed_signals_are_collected_in_order() {
    // Blocking again is harmless and yields the handle to wait with.
    let signals = block_signals().unwrap();

    for (name, stops) in [
        ("TERM", true),
        ("INT", true),
        ("HUP", false),
        ("USR1", false),
        ("USR2", false),
    ] {
        send_to_self(name);
        let signal = signals.wait_for(WAIT).unwrap().expect(name);
        assert_eq!(signal.to_string(), format!("SIG{name}"));
        assert_eq!(signal.stops(), stops, "{name}");
    }
}
