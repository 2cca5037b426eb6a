//! Latencies of a run, every sample kept: percentiles are exact, and a
//! run of a few million samples costs a few tens of megabytes at most.

use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.0.extend_from_slice(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len() as u64
    }

    /// How many samples are longer than `limit`.
    pub fn count_over(&self, limit: Duration) -> u64 {
        self.0.iter().filter(|&&sample| sample > limit).count() as u64
    }

    /// The latency below which `percent` of the samples fall (the nearest
    /// rank); `None` without samples.
    // A float rank of at most the sample count; the cast saturates.
    #[allow(clippy::cast_possible_truncation)]
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        let count = self.0.len();
        if count == 0 {
            return None;
        }
        // The small allowance keeps 99.9% of 1,000 samples at rank 999
        // despite 99.9 having no exact binary form.
        let rank = (percent * count as f64 / 100.0 - 1e-9).ceil() as usize;
        let mut samples = self.0.clone();
        Some(*samples.select_nth_unstable(rank.clamp(1, count) - 1).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.percentile(50.0), None);
        for micros in (1..=1000).rev() {
            latencies.record(Duration::from_micros(micros));
        }
        let at = |p| latencies.percentile(p).map(|d| d.as_micros());
        assert_eq!(at(50.0), Some(500));
        assert_eq!(at(99.9), Some(999));
        assert_eq!((at(0.0), at(100.0)), (Some(1), Some(1000)));
        let mut more = Latencies::default();
        more.record(Duration::from_secs(1));
        latencies.merge(&more);
        assert_eq!(latencies.count(), 1001);
        assert_eq!(latencies.count_over(Duration::from_micros(990)), 11);
        assert_eq!(latencies.percentile(100.0), Some(Duration::from_secs(1)));
    }
}
