//! The frame loop's side of an agent's frames: at each deadline the newest frame, or the last one
//! again when none came (`repeated`), the end of the source, or `--source-timeout` of silence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;

use crate::frame::{Frame, HostFrame, PixFmt};
use crate::source::live::{Latest, Loaned, SourceEnd, Taken};

/// The frame held for the next slot (and for repeats).
#[derive(Debug)]
enum Held {
    /// Our bytes (copied into the encoder's buffer per slot).
    Bytes(HostFrame),
    /// The bytes lent to GStreamer as a buffer, shared by every slot that repeats it.
    Lent { buffer: gst::Buffer, arrived: Instant },
}

impl Held {
    fn arrived(&self) -> Instant {
        match self {
            Held::Bytes(f) => f.arrived,
            Held::Lent { arrived, .. } => *arrived,
        }
    }
}

/// What the frame loop gets for a frame slot.
#[derive(Debug)]
pub enum Next {
    /// Encode `Feed::frame()`; `fresh` = it arrived since the last slot (else a repeat).
    Frame { fresh: bool },
    /// Nothing to encode yet (no frame has arrived so far, or an unpaced wait timed out).
    Nothing,
    /// The source ended: drain and stop (with an error when it failed).
    End(SourceEnd),
}

/// Frames from an agent, as the frame loop takes them.
#[derive(Debug)]
pub struct Feed {
    pub latest: Arc<Latest>,
    pub format: PixFmt,
    pub width: u32,
    pub height: u32,
    /// Draw the frame stamp over each frame (`--stamp`).
    pub stamp: bool,
    timeout: Option<Duration>,
    what: String,
    last: Option<Held>,
    /// When the last fresh frame was taken (or the feed started).
    last_fresh: Instant,
    /// Frame slots filled by repeating the last frame.
    pub repeated: u64,
    /// A PipeWire capture feeding `latest`, kept alive with the feed.
    pub capture: Option<crate::source::pipewire::Capture>,
    /// What a shared-memory ring's reader counted (`shm:` sources), for the stats.
    pub ring: Option<Arc<crate::source::shm::Counters>>,
}

impl Feed {
    pub fn new(
        latest: Arc<Latest>,
        format: PixFmt,
        size: (u32, u32),
        stamp: bool,
        timeout: Option<Duration>,
        what: String,
    ) -> Feed {
        Feed {
            latest,
            format,
            width: size.0,
            height: size.1,
            stamp,
            timeout,
            what,
            last: None,
            last_fresh: Instant::now(),
            repeated: 0,
            capture: None,
            ring: None,
        }
    }

    /// Waits up to `wait` for a frame newer than the last one (or the end); `None` when none came.
    pub fn wait_fresh(&mut self, wait: Duration) -> Option<Next> {
        match self.latest.wait(Instant::now() + wait) {
            Taken::Frame(f) => {
                // Lent bytes come back to the slot when GStreamer lets the buffer go.
                if let Some(Held::Bytes(old)) = self.last.replace(Held::Bytes(f)) {
                    self.latest.recycle(old.data);
                }
                self.last_fresh = Instant::now();
                Some(Next::Frame { fresh: true })
            }
            Taken::Ended(end) => Some(Next::End(end)),
            Taken::Timeout => self.timed_out(),
        }
    }

    /// No fresh frame for this slot: the last one again (paced), or nothing before the first.
    pub fn stale(&mut self) -> Next {
        if let Some(end) = self.timed_out() {
            return end;
        }
        if self.last.is_some() {
            self.repeated += 1;
            Next::Frame { fresh: false }
        } else {
            Next::Nothing
        }
    }

    /// `--source-timeout` of silence ends the stream cleanly.
    fn timed_out(&self) -> Option<Next> {
        let t = self.timeout?;
        if self.last_fresh.elapsed() < t {
            return None;
        }
        let waited = if self.last.is_some() { "sent no frame" } else { "sent no first frame" };
        Some(Next::End(SourceEnd::Finished(format!(
            "{}: the agent {waited} for {} s (--source-timeout); ending the stream",
            self.what,
            t.as_secs()
        ))))
    }

    /// When the frame encoded last arrived from the agent.
    pub fn arrived(&self) -> Option<Instant> {
        self.last.as_ref().map(Held::arrived)
    }

    /// The frame to encode for stream index `index` (after `Next::Frame`): `Frame::Host` bytes to
    /// copy, or a `Frame::Buffer` to take as it is. `lend`: the encoder
    /// takes buffers in the rawvideo layout as they are, so the bytes go to it without a copy (a
    /// repeat shares the same memory). With `--stamp` each slot gets its own stamped copy.
    pub fn frame(&mut self, index: u64, lend: bool) -> Option<Frame<'_>> {
        if lend
            && !self.stamp
            && matches!(self.last, Some(Held::Bytes(_)))
            && let Some(Held::Bytes(f)) = self.last.take()
        {
            let arrived = f.arrived;
            let buffer = gst::Buffer::from_mut_slice(Loaned::new(f.data, &self.latest));
            self.last = Some(Held::Lent { buffer, arrived });
        }
        match self.last.as_mut()? {
            Held::Lent { buffer, .. } => Some(Frame::Buffer(buffer.clone())),
            Held::Bytes(frame) => {
                if self.stamp {
                    crate::stamp::paint_host(&mut frame.data, self.format, self.width, self.height, index as u32);
                }
                Some(Frame::Host(&frame.data))
            }
        }
    }

    /// Frames the agent sent that a newer one replaced before they were encoded.
    pub fn superseded(&self) -> u64 {
        self.latest.superseded()
    }

    /// The source, as the stats name it (a capture says what it negotiated).
    pub fn describe(&self) -> std::borrow::Cow<'_, str> {
        match &self.capture {
            Some(c) => c.describe().into(),
            None => self.what.as_str().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(timeout: Option<Duration>) -> Feed {
        Feed::new(
            Arc::new(Latest::new(crate::source::live::Overrun::Replace)),
            PixFmt::Gray,
            (4, 2),
            false,
            timeout,
            "raw:t".into(),
        )
    }

    fn offer(f: &Feed, v: u8) {
        assert!(f.latest.offer(HostFrame { data: vec![v; 8], arrived: Instant::now() }));
    }

    #[test]
    fn nothing_before_the_first_frame_then_fresh_then_repeats() {
        let mut f = feed(None);
        assert!(f.wait_fresh(Duration::ZERO).is_none());
        assert!(matches!(f.stale(), Next::Nothing));
        offer(&f, 1);
        offer(&f, 2);
        assert!(matches!(f.wait_fresh(Duration::ZERO), Some(Next::Frame { fresh: true })));
        assert!(matches!(f.frame(0, false), Some(Frame::Host([2, ..]))));
        assert_eq!(f.superseded(), 1);
        assert!(f.wait_fresh(Duration::from_millis(1)).is_none());
        assert!(matches!(f.stale(), Next::Frame { fresh: false }));
        assert!(matches!(f.stale(), Next::Frame { fresh: false }));
        assert_eq!(f.repeated, 2);
        assert!(matches!(f.frame(3, false), Some(Frame::Host([2, ..]))));
    }

    #[test]
    fn lent_frames_are_shared_by_repeats_and_come_back_to_the_slot() {
        gst::init().unwrap();
        let mut f = feed(None);
        offer(&f, 9);
        assert!(matches!(f.wait_fresh(Duration::ZERO), Some(Next::Frame { fresh: true })));
        let a = buffer(f.frame(0, true));
        let b = buffer(f.frame(1, true));
        assert_eq!(a.map_readable().unwrap().as_slice(), &[9; 8]);
        let (ma, mb) = (a.map_readable().unwrap(), b.map_readable().unwrap());
        assert_eq!(ma.as_ptr(), mb.as_ptr(), "a repeat shares the lent memory");
        drop((ma, mb));
        offer(&f, 10);
        assert!(matches!(f.wait_fresh(Duration::ZERO), Some(Next::Frame { fresh: true })));
        drop((a, b));
        // The first frame's bytes are free again once nothing holds its buffer.
        let _ = f.frame(2, true);
        assert_eq!(f.latest.buffer(8).capacity(), 8);
    }

    fn buffer(o: Option<Frame<'_>>) -> gst::Buffer {
        match o {
            Some(Frame::Buffer(b)) => b,
            Some(_) => panic!("bytes, not a lent buffer"),
            None => panic!("no frame"),
        }
    }

    #[test]
    fn silence_past_the_timeout_ends_the_stream_cleanly() {
        let mut f = feed(Some(Duration::ZERO));
        match f.wait_fresh(Duration::ZERO) {
            Some(Next::End(SourceEnd::Finished(m))) => assert!(m.contains("sent no first frame for 0 s"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(f.stale(), Next::End(_)));
    }
}
