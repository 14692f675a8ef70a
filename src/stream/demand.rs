//! Whether a frame pushed now would be seen, readable by the agent without asking the frame loop:
//! [`super::Handle::wants_frame`]. An RL agent steps thousands of times a second while the stream
//! takes at most `--fps` frames, and none while nobody reads; rendering the frames it would throw
//! away is most of what streaming costs the agent. So the frame loop publishes what it knows in two
//! atomics, and the question costs one clock read and two loads.
//!
//! - `watched`: someone will see the frame. A FIFO/TCP output has a reader attached (the sink's
//!   [`crate::sink::Note`]s); stdout and RTSP publishing always send. False once the stream ended.
//! - `due`: when the frame loop next takes a frame, on the frame clock. The loop stores the next
//!   slot's deadline after each take. A push moves it one interval on at once (before the frame is
//!   offered), so the agent is not asked again in the moment between its push and the loop's take;
//!   the loop's store after the take then sets the real deadline.
//!
//! - `hold`: the agent asked not to be asked before then ([`super::Handle::hold_frames`]; a
//!   render budget that is spent), so that a skipped frame costs it no more than an unwatched one.
//!
//! Unpaced (`--no-pace`) streams encode every frame, so `due` stays 0: a frame is wanted whenever
//! someone reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The frame loop's answer to "would a frame pushed now be seen?", shared with the handle.
#[derive(Debug)]
pub(crate) struct Demand {
    /// The zero of `due`.
    origin: Instant,
    watched: AtomicBool,
    /// Nanoseconds after `origin` at which the next frame is due.
    due: AtomicU64,
    /// Nanoseconds after `origin` before which the agent wants to be asked for no frame.
    hold: AtomicU64,
    /// How far a push moves `due` on (zero when unpaced).
    interval_ns: u64,
}

impl Demand {
    /// A demand for a stream at `fps`, paced or not; nobody watches yet.
    pub fn new(fps: u32, pace: bool) -> Demand {
        let interval = if pace { crate::clock::stream_time(1, fps) } else { Duration::ZERO };
        Demand {
            origin: Instant::now(),
            watched: AtomicBool::new(false),
            due: AtomicU64::new(0),
            hold: AtomicU64::new(0),
            interval_ns: interval.as_nanos() as u64,
        }
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Someone will see a frame pushed now, and one is due.
    pub fn wants(&self) -> bool {
        self.watched.load(Ordering::Acquire) && {
            let now = self.ns(Instant::now());
            now >= self.due.load(Ordering::Acquire) && now >= self.hold.load(Ordering::Relaxed)
        }
    }

    /// The agent cannot afford a frame for `span` (a render budget): none is wanted until then.
    pub fn hold_for(&self, span: Duration) {
        self.hold.store(self.ns(Instant::now()) + span.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Someone will see a frame pushed now (due or not).
    pub fn watched(&self) -> bool {
        self.watched.load(Ordering::Acquire)
    }

    /// A reader attached or left (the output always sends: true until the end).
    pub fn set_watched(&self, watched: bool) {
        self.watched.store(watched, Ordering::Release);
    }

    /// The frame loop took a frame: the next one is due at `at` (unpaced: at once).
    pub fn due_at(&self, at: Instant) {
        if self.interval_ns > 0 {
            self.due.store(self.ns(at), Ordering::Release);
        }
    }

    /// The agent is pushing a frame now: the next one is due no sooner than an interval from now,
    /// until the frame loop says when exactly.
    pub fn pushed(&self) {
        if self.interval_ns > 0 {
            self.due.fetch_max(self.ns(Instant::now()) + self.interval_ns, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_watching_wants_nothing() {
        let d = Demand::new(30, true);
        assert!(!d.wants(), "nobody watches yet");
        d.set_watched(true);
        assert!(d.wants(), "the first frame is due at once");
        d.set_watched(false);
        assert!(!d.wants());
    }

    #[test]
    fn a_push_waits_an_interval_and_the_loop_sets_the_deadline() {
        let d = Demand::new(10, true);
        d.set_watched(true);
        d.pushed();
        assert!(!d.wants(), "just pushed: the next frame is 100 ms away");
        // The loop took the frame; its next slot is already due (the agent was late).
        d.due_at(Instant::now());
        assert!(d.wants());
        d.due_at(Instant::now() + Duration::from_millis(50));
        assert!(!d.wants());
        std::thread::sleep(Duration::from_millis(60));
        assert!(d.wants(), "the deadline has passed");
    }

    #[test]
    fn a_hold_wants_nothing_until_it_ends() {
        let d = Demand::new(30, true);
        d.set_watched(true);
        d.hold_for(Duration::from_millis(50));
        assert!(!d.wants());
        std::thread::sleep(Duration::from_millis(60));
        assert!(d.wants());
        d.hold_for(Duration::ZERO);
        assert!(d.wants(), "a zero hold holds nothing");
    }

    #[test]
    fn unpaced_wants_every_frame_while_watched() {
        let d = Demand::new(30, false);
        d.set_watched(true);
        d.pushed();
        d.due_at(Instant::now() + Duration::from_secs(10));
        assert!(d.wants());
    }
}
