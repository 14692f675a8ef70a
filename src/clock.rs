//! The frame clock: frame `index` is due at `index / fps` seconds of stream, computed exactly from
//! the index (no accumulated rounding). Pacing, PTS and the `--duration` limit all use it.

use std::time::{Duration, Instant};

/// The stream's frame clock: frame `index` is due at `start + stream_time(index)`. It is kept
/// across pipeline rebuilds, so stamps and PTS continue.
#[derive(Debug, Clone, Copy)]
pub struct FrameClock {
    pub start: Instant,
    /// The next frame's index.
    pub index: u64,
    pub fps: u32,
}

impl FrameClock {
    pub fn new(fps: u32) -> FrameClock {
        FrameClock { start: Instant::now(), index: 0, fps }
    }

    /// When the next frame is due.
    pub fn deadline(&self) -> Instant {
        self.start + stream_time(self.index, self.fps)
    }

    /// Frames due by now that were not produced (0 when on time).
    pub fn behind(&self) -> u64 {
        frames_due(self.start.elapsed(), self.fps).saturating_sub(self.index)
    }

    /// Moves the clock so that the next frame is due now (after a slow first draw, or when an
    /// agent's frame arrived after its deadline).
    pub fn due_now(&mut self) {
        self.start = Instant::now() - stream_time(self.index, self.fps);
    }

    /// One frame interval.
    pub fn interval(&self) -> Duration {
        stream_time(1, self.fps)
    }
}

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
