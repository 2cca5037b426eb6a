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
        progress_line(1_000, 21_000, Duration::from_secs(1)),
        "indexed 1,000 of 21,000 (4%), 1,000/s, 20 s left"
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
