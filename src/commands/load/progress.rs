//! What `load` shows while it works: on a terminal, a progress line on
//! stderr redrawn in place a few times a second; everywhere, one summary
//! line at the end.

use crate::figures::thousands;
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

/// The least time between two redraws of the progress line.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// Moves to the start of the line and erases it (VT100, understood by
/// every terminal in use).
const ERASE_LINE: &str = "\r\x1b[K";

/// The progress line of one load, drawn only on a terminal.
pub(super) struct Progress {
    total: u64,
    started: Instant,
    /// When the line was last drawn; `None` before the first time.
    drawn: Option<Instant>,
    terminal: bool,
}

impl Progress {
    /// Starts the clock for `total` lines; draws only when `terminal`.
    pub(super) fn new(total: u64, terminal: bool) -> Progress {
        Progress {
            total,
            started: Instant::now(),
            drawn: None,
            terminal,
        }
    }

    /// `done` lines are answered: redraws the line if it is time to.
    pub(super) fn update(&mut self, done: u64) {
        let now = Instant::now();
        // The first answers draw the line at once: even a short load shows
        // that it is moving.
        let due = self
            .drawn
            .is_none_or(|at| now.duration_since(at) >= REDRAW_EVERY);
        if self.terminal && due {
            self.drawn = Some(now);
            let line = progress_line(done, self.total, now.duration_since(self.started));
            // Progress is a courtesy: a terminal that refuses it stops nothing.
            let _ = write!(std::io::stderr().lock(), "{ERASE_LINE}{line}");
        }
    }

    /// Erases the progress line, if one was drawn, for what follows.
    pub(super) fn clear(&mut self) {
        if self.drawn.take().is_some() {
            let _ = write!(std::io::stderr().lock(), "{ERASE_LINE}");
        }
    }
}

/// `indexed 512,000 of 1,000,000 (51%), 480,000/s, 1 s left`.
pub(super) fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    let rate = per_second(done, elapsed);
    let remaining = total.saturating_sub(done);
    let left = if remaining == 0 {
        format!("{} left", duration_words(0.0))
    } else if rate > 0.0 {
        format!("{} left", duration_words(remaining as f64 / rate))
    } else {
        "time left unknown".to_string()
    };
    format!(
        "indexed {} of {} ({percent}%), {}/s, {left}",
        thousands(done),
        thousands(total),
        thousands(whole(rate))
    )
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `under 1 s`, `42 s`, `3 min 20 s`.
fn duration_words(seconds: f64) -> String {
    if seconds < 1.0 {
        return "under 1 s".to_string();
    }
    let seconds = whole(seconds);
    if seconds < 60 {
        format!("{seconds} s")
    } else {
        format!("{} min {} s", seconds / 60, seconds % 60)
    }
}

/// `x` rounded to a whole number, for showing.
// Rates and times shown are far below 2^64; saturating is fine beyond.
#[allow(clippy::cast_possible_truncation)]
fn whole(x: f64) -> u64 {
    x.round() as u64
}

/// The numbers of a finished load, shown as its one summary line.
#[derive(Debug, Default)]
pub(super) struct Summary {
    /// Packages in the list.
    pub(super) listed: u64,
    /// Answered `OK`.
    pub(super) indexed: u64,
    /// Never sent: they can never be indexed.
    pub(super) skipped: u64,
    /// Answered `FAIL`.
    pub(super) refused: u64,
    /// Answered `ERROR`.
    pub(super) malformed: u64,
    /// Sent, or to be sent, and never answered (the connection failed).
    pub(super) unanswered: u64,
    pub(super) elapsed: Duration,
}

impl Summary {
    /// True when the whole list is in the index.
    pub(super) fn all_indexed(&self) -> bool {
        self.indexed == self.listed
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "indexed {} of {} packages in {:.2} s ({}/s)",
            thousands(self.indexed),
            thousands(self.listed),
            self.elapsed.as_secs_f64(),
            thousands(whole(per_second(self.indexed, self.elapsed)))
        )?;
        let parts = [
            (self.skipped, "skipped (can never be indexed)"),
            (self.refused, "refused (FAIL)"),
            (self.malformed, "malformed (ERROR)"),
            (self.unanswered, "unanswered (connection lost)"),
        ];
        for (count, what) in parts {
            if count > 0 {
                write!(f, "; {} {what}", thousands(count))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_gives_count_share_rate_and_time_left() {
        assert_eq!(
            progress_line(512_000, 1_000_000, Duration::from_secs(1)),
            "indexed 512,000 of 1,000,000 (51%), 512,000/s, under 1 s left"
        );
        assert_eq!(
            progress_line(1_000, 100_000, Duration::from_secs(2)),
            "indexed 1,000 of 100,000 (1%), 500/s, 3 min 18 s left"
        );
        assert_eq!(
            progress_line(0, 10, Duration::ZERO),
            "indexed 0 of 10 (0%), 0/s, time left unknown"
        );
        assert_eq!(
            progress_line(0, 0, Duration::from_secs(1)),
            "indexed 0 of 0 (100%), 0/s, under 1 s left"
        );
    }

    #[test]
    fn the_summary_names_only_what_happened() {
        let clean = Summary {
            listed: 3370,
            indexed: 3370,
            elapsed: Duration::from_millis(500),
            ..Summary::default()
        };
        assert_eq!(
            clean.to_string(),
            "indexed 3,370 of 3,370 packages in 0.50 s (6,740/s)"
        );
        assert!(clean.all_indexed());
        let troubled = Summary {
            listed: 10,
            indexed: 4,
            skipped: 3,
            refused: 1,
            malformed: 1,
            unanswered: 1,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(
            troubled.to_string(),
            "indexed 4 of 10 packages in 1.00 s (4/s); 3 skipped (can never be indexed); \
             1 refused (FAIL); 1 malformed (ERROR); 1 unanswered (connection lost)"
        );
        assert!(!troubled.all_indexed());
    }
}
