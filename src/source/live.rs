//! The hand-over between a thread that receives an agent's frames (a pipe, a socket, a
//! shared-memory ring, PipeWire, a Python `push`) and the frame loop: one slot where the newest
//! frame wins.
//!
//! The receiving side never waits for the encoder: a frame that arrives before the previous one
//! was taken replaces it, and the replaced one is counted as superseded. The frame loop takes the
//! newest frame at each deadline, or repeats the last one when none came. Only `Overrun::Wait`
//! (a file read with `--no-pace`) makes the receiving side wait, so that every frame is encoded.
//! Buffers go round: the loop gives each frame's buffer back and the receiver refills it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::exit::Exit;
use crate::frame::HostFrame;

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEnd {
    /// A clean end (EOF at a frame boundary, the writer closed the ring): drain and exit 0.
    Finished(String),
    /// An error of this kind, as one line (a partial frame at EOF is `Exit::BadData`).
    Failed(Exit, String),
}

/// What [`Latest::wait`] found.
#[derive(Debug)]
pub enum Taken {
    Frame(HostFrame),
    /// No frame came before the deadline.
    Timeout,
    /// The source ended and every frame it offered has been taken.
    Ended(SourceEnd),
}

#[derive(Debug, Default)]
struct Inner {
    frame: Option<HostFrame>,
    spare: Vec<Vec<u8>>,
    end: Option<SourceEnd>,
    /// Set by the frame loop when it stops: offers are refused from then on.
    closed: bool,
}

/// What `Latest::offer` does with a frame that arrives before the previous one was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrun {
    /// The newest frame wins: the older one is replaced and counted as superseded (paced streams).
    Replace,
    /// Nothing is lost: `offer` waits until the previous frame was taken (a file read with
    /// `--no-pace`, where every frame is encoded).
    Wait,
}

/// The newest-frame slot; see the module doc. Shared as `Arc<Latest>`.
#[derive(Debug)]
pub struct Latest {
    inner: Mutex<Inner>,
    changed: Condvar,
    overrun: Overrun,
    offered: AtomicU64,
    superseded: AtomicU64,
}

/// Spare buffers kept for reuse.
const SPARES: usize = 3;

impl Latest {
    pub fn new(overrun: Overrun) -> Latest {
        Latest {
            inner: Mutex::default(),
            changed: Condvar::new(),
            overrun,
            offered: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of `len` bytes to receive the next frame into (a recycled one when possible).
    /// Its contents are unspecified.
    pub fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self.lock().spare.pop().unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Fills the spare buffers with `len` bytes each, touched, so the first frames handed over
    /// (a Python agent's first pushes) cost no page faults.
    pub fn prefault(&self, len: usize) {
        let mut inner = self.lock();
        while inner.spare.len() < SPARES {
            inner.spare.push(vec![1u8; len]);
        }
    }

    /// Gives a frame's buffer back for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        let mut inner = self.lock();
        if inner.spare.len() < SPARES {
            inner.spare.push(buf);
        }
    }

    /// Offers a whole frame. Returns false once the frame loop has stopped (the receiver should
    /// stop too). Never waits, except with `Overrun::Wait`.
    pub fn offer(&self, frame: HostFrame) -> bool {
        let mut inner = self.lock();
        if self.overrun == Overrun::Wait {
            while inner.frame.is_some() && !inner.closed {
                inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
            }
        }
        if inner.closed {
            return false;
        }
        self.offered.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = inner.frame.replace(frame) {
            self.superseded.fetch_add(1, Ordering::Relaxed);
            if inner.spare.len() < SPARES {
                inner.spare.push(old.data);
            }
        }
        self.changed.notify_all();
        true
    }

    /// The source has ended; frames already offered are still taken first.
    pub fn end(&self, end: SourceEnd) {
        let mut inner = self.lock();
        inner.end.get_or_insert(end);
        self.changed.notify_all();
    }

    /// The frame loop stops: a waiting or later `offer` returns false.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The newest frame, if one arrived since the last take; or how the source ended.
    pub fn take(&self) -> Taken {
        self.wait(Instant::now())
    }

    /// Waits until `deadline` for a frame (or the end).
    pub fn wait(&self, deadline: Instant) -> Taken {
        let mut inner = self.lock();
        loop {
            if let Some(f) = inner.frame.take() {
                self.changed.notify_all();
                return Taken::Frame(f);
            }
            if let Some(end) = &inner.end {
                return Taken::Ended(end.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Taken::Timeout;
            }
            inner = self.changed.wait_timeout(inner, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Frames offered so far.
    pub fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Frames replaced by a newer one before the frame loop took them.
    pub fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }
}

/// A frame's bytes on loan (to GStreamer, as a buffer's memory): they go back to the slot's spare
/// buffers when the loan ends.
pub struct Loaned {
    data: Vec<u8>,
    home: std::sync::Weak<Latest>,
}

impl Loaned {
    pub fn new(data: Vec<u8>, home: &Arc<Latest>) -> Loaned {
        Loaned { data, home: Arc::downgrade(home) }
    }
}

impl AsRef<[u8]> for Loaned {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for Loaned {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl Drop for Loaned {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.recycle(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(v: u8) -> HostFrame {
        HostFrame { data: vec![v; 4], arrived: Instant::now() }
    }

    fn value(t: Taken) -> u8 {
        match t {
            Taken::Frame(f) => f.data[0],
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn the_newest_frame_wins_and_the_rest_are_counted() {
        let slot = Latest::new(Overrun::Replace);
        for v in 1..=3 {
            assert!(slot.offer(frame(v)));
        }
        assert_eq!(value(slot.take()), 3);
        assert_eq!((slot.offered(), slot.superseded()), (3, 2));
        assert!(matches!(slot.take(), Taken::Timeout));
        // The superseded frames' buffers are reused.
        assert_eq!(slot.buffer(4).len(), 4);
    }

    #[test]
    fn loaned_bytes_come_back_as_a_spare_buffer() {
        let slot = Arc::new(Latest::new(Overrun::Replace));
        let loan = Loaned::new(vec![7; 16], &slot);
        assert_eq!(loan.as_ref(), &[7; 16]);
        drop(loan);
        assert_eq!(slot.lock().spare.len(), 1);
        assert_eq!(slot.buffer(16).capacity(), 16, "the loaned allocation is reused");
    }

    #[test]
    fn frames_offered_before_the_end_are_still_taken() {
        let slot = Latest::new(Overrun::Replace);
        slot.offer(frame(7));
        slot.end(SourceEnd::Finished("eof".into()));
        assert_eq!(value(slot.wait(Instant::now())), 7);
        assert!(matches!(slot.wait(Instant::now()), Taken::Ended(SourceEnd::Finished(_))));
    }

    #[test]
    fn a_lossless_slot_makes_the_writer_wait_and_close_releases_it() {
        let slot = Arc::new(Latest::new(Overrun::Wait));
        let writer = {
            let slot = slot.clone();
            std::thread::spawn(move || (1..=5).map(|v| slot.offer(frame(v))).filter(|ok| *ok).count())
        };
        let mut seen = Vec::new();
        while seen.len() < 3 {
            if let Taken::Frame(f) = slot.wait(Instant::now() + Duration::from_secs(5)) {
                seen.push(f.data[0]);
            }
        }
        assert_eq!(seen, [1, 2, 3]);
        slot.close();
        let accepted = writer.join().unwrap();
        assert!((3..=4).contains(&accepted), "{accepted}");
        assert_eq!(slot.superseded(), 0);
    }
}
