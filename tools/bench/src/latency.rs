//! Latency histogram: fixed memory however long a run lasts, about 1%
//! relative precision, cheap to record from every client thread and to merge.
//!
//! Values are nanoseconds. Below [`SUB_BUCKETS`] each value has its own
//! bucket; above, every power of two is split into [`SUB_BUCKETS`] equal
//! buckets (log-linear, as HDR histograms do).

use std::time::Duration;

/// Buckets per power of two; 64 gives a relative bucket width of at most 1/64.
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Enough buckets for every `u64`: 59 powers of two of 64 buckets each.
const BUCKETS: usize = (64 - SUB_BUCKET_BITS as usize + 1) * (1 << SUB_BUCKET_BITS);

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

/// The bucket holding `value`: below [`BUCKETS`], so it fits a usize.
#[allow(clippy::cast_possible_truncation)]
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BUCKET_BITS;
    // The top SUB_BUCKET_BITS + 1 bits: a number in SUB_BUCKETS..2 * SUB_BUCKETS.
    let mantissa = value >> shift;
    ((shift as u64 + 1) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as usize
}

/// The smallest value and the width of bucket `index`.
fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return (index, 1);
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = index % SUB_BUCKETS + SUB_BUCKETS;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency below which `percent` of the samples fall (the middle of
    /// the bucket holding that rank); `None` without samples.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        // The small allowance keeps 99.9% of 1,000 samples at rank 999 despite
        // 99.9 having no exact binary form.
        // A float rank of at most `total`; the cast saturates.
        #[allow(clippy::cast_possible_truncation)]
        let rank = (percent * self.total as f64 / 100.0 - 1e-9).ceil() as u64;
        let rank = rank.clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket_range(index);
                return Some(Duration::from_nanos(low + width / 2));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for value in (0..100_000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let index = bucket_of(value);
            assert!(index < BUCKETS, "{value}");
            assert!(index >= previous, "{value}");
            previous = index;
            let (low, width) = bucket_range(index);
            assert!(
                low <= value && value - low < width,
                "{value} in {low}+{width}"
            );
        }
    }

    #[test]
    fn buckets_are_within_two_percent() {
        for value in [100u64, 1_000, 12_345, 999_999, 10_000_000_000] {
            let (_, width) = bucket_range(bucket_of(value));
            assert!(width as f64 / value as f64 <= 0.02, "{value}: {width}");
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut histogram = Histogram::default();
        for nanos in 1..=50 {
            histogram.record(Duration::from_nanos(nanos));
        }
        assert_eq!(histogram.count(), 50);
        assert_eq!(histogram.percentile(50.0), Some(Duration::from_nanos(25)));
        assert_eq!(histogram.percentile(99.0), Some(Duration::from_nanos(50)));
        assert_eq!(histogram.percentile(0.0), Some(Duration::from_nanos(1)));
        assert_eq!(histogram.percentile(100.0), Some(Duration::from_nanos(50)));
    }

    #[test]
    fn percentiles_of_a_long_tail() {
        let mut histogram = Histogram::default();
        for _ in 0..990 {
            histogram.record(Duration::from_micros(100));
        }
        for _ in 0..9 {
            histogram.record(Duration::from_millis(5));
        }
        histogram.record(Duration::from_millis(50));
        let near = |got: Option<Duration>, want: Duration| {
            let got = got.unwrap().as_secs_f64();
            (got - want.as_secs_f64()).abs() <= want.as_secs_f64() * 0.02
        };
        assert!(near(histogram.percentile(50.0), Duration::from_micros(100)));
        assert!(near(histogram.percentile(99.0), Duration::from_micros(100)));
        assert!(near(histogram.percentile(99.9), Duration::from_millis(5)));
        assert!(near(histogram.percentile(100.0), Duration::from_millis(50)));
    }

    #[test]
    fn merging_adds_counts_and_empty_has_no_percentile() {
        let mut a = Histogram::default();
        assert_eq!(a.percentile(50.0), None);
        let mut b = Histogram::default();
        a.record(Duration::from_nanos(10));
        b.record(Duration::from_nanos(30));
        b.record(Duration::from_nanos(30));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.percentile(50.0), Some(Duration::from_nanos(30)));
        assert_eq!(a.percentile(10.0), Some(Duration::from_nanos(10)));
    }
}
