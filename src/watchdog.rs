//! The stall watchdog. GPU encoders have hung mid-stream with no timeout; a producer that hangs
//! shows a frozen tile forever, while one that exits is restarted by go2rtc. A thread watches two
//! signs of life and reports the stage through the stream's handle when either stops for
//! `--stall-timeout` (the CLI then exits 70 at once):
//! - the encoder: frames keep going in but no access unit comes out;
//! - the frame loop: it stops coming round (a GL or GStreamer call that never returns).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::error;

/// Counters the stages bump; the watchdog only reads them.
#[derive(Debug, Default)]
pub struct Pulse {
    /// Frames handed to the encoder.
    pub frames_in: AtomicU64,
    /// Frame-loop iterations (and waits), a heartbeat.
    pub loop_beats: AtomicU64,
    /// While false (start-up, shutdown, idle), the frame loop's heartbeat is not watched.
    pub loop_watched: AtomicBool,
    /// The stream has ended: the watchdog thread ends too.
    pub finished: AtomicBool,
}

/// What the watchdog concluded, for the pure check below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    Stalled(String),
}

/// The state between two looks.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    frames_in: u64,
    frames_out: u64,
    beats: u64,
    /// Since when output has not moved while input did.
    out_stuck_since: Option<Instant>,
    /// Since when the loop has not beaten (while watched).
    loop_stuck_since: Option<Instant>,
}

impl Seen {
    pub fn new() -> Self {
        Seen { frames_in: 0, frames_out: 0, beats: 0, out_stuck_since: None, loop_stuck_since: None }
    }
}

impl Default for Seen {
    fn default() -> Self {
        Self::new()
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub frames_in: u64,
    pub frames_out: u64,
    pub beats: u64,
    pub loop_watched: bool,
}

/// One look. Pure, so the rules are unit-tested with made-up clocks.
pub fn look(seen: &mut Seen, now: Instant, r: Reading, timeout: Duration, encoder: &str) -> Verdict {
    let Reading { frames_in, frames_out, beats, loop_watched } = r;
    // Encoder: output must move while input does. When input stops (idle, done) the encoder may
    // keep a few frames back until more come, so that clears the clock too.
    if frames_out != seen.frames_out || frames_in == seen.frames_in {
        seen.out_stuck_since = None;
    } else if seen.out_stuck_since.is_none() {
        seen.out_stuck_since = Some(now);
    }
    seen.frames_in = frames_in;
    seen.frames_out = frames_out;
    if let Some(t) = seen.out_stuck_since
        && now.duration_since(t) >= timeout
    {
        return Verdict::Stalled(format!(
            "encoder {encoder}: {frames_in} frames in, {frames_out} access units out, none for {:.1} s",
            now.duration_since(t).as_secs_f64()
        ));
    }
    // Frame loop heartbeat.
    if !loop_watched || beats != seen.beats {
        seen.loop_stuck_since = None;
    } else if seen.loop_stuck_since.is_none() {
        seen.loop_stuck_since = Some(now);
    }
    seen.beats = beats;
    if let Some(t) = seen.loop_stuck_since
        && now.duration_since(t) >= timeout
    {
        return Verdict::Stalled(format!(
            "frame loop: no progress for {:.1} s (a GL or GStreamer call did not return)",
            now.duration_since(t).as_secs_f64()
        ));
    }
    Verdict::Alive
}

/// Starts the watchdog thread. `frames_out` reads the sink's count of access units taken;
/// `stalled` is told the stage once, and the watchdog ends.
pub fn spawn(
    pulse: Arc<Pulse>,
    frames_out: impl Fn() -> u64 + Send + 'static,
    timeout: Duration,
    encoder: String,
    stalled: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<()> {
    thread::Builder::new().name("watchdog".into()).spawn(move || {
        let mut seen = Seen::new();
        let every = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
        while !pulse.finished.load(Ordering::Acquire) {
            thread::sleep(every);
            let reading = Reading {
                frames_in: pulse.frames_in.load(Ordering::Relaxed),
                frames_out: frames_out(),
                beats: pulse.loop_beats.load(Ordering::Relaxed),
                loop_watched: pulse.loop_watched.load(Ordering::Relaxed),
            };
            if let Verdict::Stalled(stage) = look(&mut seen, Instant::now(), reading, timeout, &encoder) {
                error!("stalled: {stage}");
                stalled(stage);
                return;
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn r(frames_in: u64, frames_out: u64, beats: u64, loop_watched: bool) -> Reading {
        Reading { frames_in, frames_out, beats, loop_watched }
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn an_encoder_that_stops_producing_is_a_stall() {
        let t0 = Instant::now();
        let mut s = Seen::new();
        assert_eq!(look(&mut s, t0, r(10, 8, 1, true), T, "x264enc"), Verdict::Alive);
        // Input grows, output stuck at 8.
        for i in 1..5 {
            let v = look(&mut s, at(t0, i), r(10 + i * 30, 8, 1 + i, true), T, "x264enc");
            assert_eq!(v, Verdict::Alive);
        }
        let v = look(&mut s, at(t0, 7), r(200, 8, 9, true), T, "x264enc");
        match v {
            Verdict::Stalled(m) => assert!(m.starts_with("encoder x264enc: 200 frames in, 8 access units out"), "{m}"),
            Verdict::Alive => panic!("should have stalled"),
        }
    }

    #[test]
    fn encoder_latency_and_idle_are_not_stalls() {
        let t0 = Instant::now();
        let mut s = Seen::new();
        // Output follows input a few frames behind.
        for i in 0..20u64 {
            let v = look(&mut s, at(t0, i), r(i * 30 + 3, i * 30, i, true), T, "e");
            assert_eq!(v, Verdict::Alive);
        }
        // Idle: nothing goes in, the encoder keeps 3 frames back, the loop is not watched.
        for i in 20..40u64 {
            assert_eq!(look(&mut s, at(t0, i), r(603, 600, 19, false), T, "e"), Verdict::Alive);
        }
    }

    #[test]
    fn a_frame_loop_that_stops_beating_is_a_stall() {
        let t0 = Instant::now();
        let mut s = Seen::new();
        assert_eq!(look(&mut s, t0, r(0, 0, 5, true), T, "e"), Verdict::Alive);
        // The beat stops from here on.
        assert_eq!(look(&mut s, at(t0, 1), r(0, 0, 5, true), T, "e"), Verdict::Alive);
        assert_eq!(look(&mut s, at(t0, 5), r(0, 0, 5, true), T, "e"), Verdict::Alive);
        let v = look(&mut s, at(t0, 7), r(0, 0, 5, true), T, "e");
        assert!(matches!(v, Verdict::Stalled(ref m) if m.starts_with("frame loop")), "{v:?}");
        // Not watched (shutdown): no verdict however long.
        let mut s = Seen::new();
        for i in 0..20 {
            assert_eq!(look(&mut s, at(t0, i), r(0, 0, 5, false), T, "e"), Verdict::Alive);
        }
    }
}
