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

    /// Moves the clock so that the next frame is due now, in the phase of `at` (an agent's frame
    /// arrived then): the deadlines after it fall on `at` plus whole intervals.
    pub fn due_in_phase_with(&mut self, at: Instant) {
        let now = Instant::now();
        let interval = self.interval().as_nanos().max(1);
        let phase = Duration::from_nanos((now.saturating_duration_since(at).as_nanos() % interval) as u64);
        self.start = now - phase - stream_time(self.index, self.fps);
    }

    /// Moves the next deadlines earlier by `by` (to an agent's frames' phase; see [`phase_shift`]).
    pub fn shift_earlier(&mut self, by: Duration) {
        self.start = self.start.checked_sub(by).unwrap_or(self.start);
    }
}

/// Least time between two phase shifts: bounds how much faster than `--fps` shifting can make the
/// stream (at most one interval a second).
pub const PHASE_SHIFT_EVERY: Duration = Duration::from_secs(1);

/// How far to move the frame clock earlier after an agent's frame `waited` in its slot for its
/// deadline (pure). An agent at the stream's rate whose frames arrive well before each deadline
/// (its phase was set while catching up, say) would have every frame wait that long; moving the
/// deadlines to its phase once removes the wait. Not when frames were superseded (the agent is
/// faster than `--fps`: waiting for the tick is right), not for waits under a tenth of an interval
/// (jitter), and at most once per [`PHASE_SHIFT_EVERY`].
pub fn phase_shift(
    waited: Duration,
    interval: Duration,
    superseded: bool,
    since_last: Option<Duration>,
) -> Option<Duration> {
    let due = since_last.is_none_or(|d| d >= PHASE_SHIFT_EVERY);
    (!superseded && due && waited > (interval / 10).max(Duration::from_millis(1))).then_some(waited)
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

/// When the process started, as far as it knows: the first call (the CLI's entry point makes it
/// first thing; a library user's first [`startup_ms`]).
pub fn started() -> std::time::Instant {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(std::time::Instant::now)
}

/// Milliseconds since [`started`], for the start-up's debug lines (`start-up: ... at N ms`).
pub fn startup_ms() -> f64 {
    started().elapsed().as_secs_f64() * 1000.0
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
    fn the_clock_follows_an_agents_phase_only_for_big_waits_without_supersession_once_a_second() {
        let (i, ms) = (stream_time(1, 30), Duration::from_millis);
        assert_eq!(phase_shift(ms(18), i, false, None), Some(ms(18)));
        assert_eq!(phase_shift(ms(3), i, false, None), None, "jitter");
        assert_eq!(phase_shift(ms(8), i, false, None), Some(ms(8)));
        assert_eq!(phase_shift(ms(18), i, true, None), None, "a faster agent");
        assert_eq!(phase_shift(ms(18), i, false, Some(ms(400))), None, "once a second");
        assert_eq!(phase_shift(ms(18), i, false, Some(ms(1000))), Some(ms(18)));
    }

    #[test]
    fn a_clock_started_by_an_agents_frame_keeps_that_frames_phase() {
        let mut clock = FrameClock::new(30);
        clock.index = 5;
        let at = Instant::now() - Duration::from_millis(80);
        clock.due_in_phase_with(at);
        // 80 ms = 2 intervals + 13.3 ms: the deadline is 13.3 ms ago, the next ones at + k x 33.3 ms.
        let next = clock.deadline() + clock.interval();
        let k = next.duration_since(at).as_secs_f64() / clock.interval().as_secs_f64();
        assert!((k - k.round()).abs() < 1e-3, "{k}");
        assert!(clock.deadline() <= Instant::now());
    }

    #[test]
    fn frames_due_rounds_down() {
        assert_eq!(frames_due(Duration::ZERO, 30), 0);
        assert_eq!(frames_due(Duration::from_millis(999), 30), 29);
        assert_eq!(frames_due(Duration::from_secs(1), 30), 30);
        assert_eq!(frames_due(stream_time(90, 30), 30), 90);
    }
}
