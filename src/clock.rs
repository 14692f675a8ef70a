//! The frame clock: frame `index` is due at `index / fps` seconds of stream, computed exactly from
//! the index (no accumulated rounding). Pacing, PTS and the `--duration` limit all use it.

use std::time::Duration;

/// When frame `index` is due, from the start of the stream.
pub fn stream_time(index: u64, fps: u32) -> Duration {
    Duration::from_nanos((u128::from(index) * 1_000_000_000 / u128::from(fps)) as u64)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock every process on the machine shares (and the one
/// `Instant` reads), so a reader process can compare its arrival times with our render times.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The index of the frame due after `elapsed` of stream (rounded down).
pub fn frames_due(elapsed: Duration, fps: u32) -> u64 {
    (elapsed.as_nanos() * u128::from(fps) / 1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_time_does_not_drift() {
        assert_eq!(stream_time(30, 30), Duration::from_secs(1));
        assert_eq!(stream_time(3_000_000, 30), Duration::from_secs(100_000));
        assert_eq!(stream_time(1, 30), Duration::from_nanos(33_333_333));
    }

    #[test]
    fn frames_due_rounds_down() {
        assert_eq!(frames_due(Duration::ZERO, 30), 0);
        assert_eq!(frames_due(Duration::from_millis(999), 30), 29);
        assert_eq!(frames_due(Duration::from_secs(1), 30), 30);
        assert_eq!(frames_due(stream_time(90, 30), 30), 90);
    }
}
