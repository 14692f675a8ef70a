//! The per-reader queue of whole access units behind a non-blocking writer. Pure: it writes to any
//! `io::Write` that may return `WouldBlock`, so its policy is unit-tested without pipes or sockets.
//!
//! Policy:
//! - a partly written access unit is always finished before anything else, so a reader never sees
//!   a cut or interleaved frame;
//! - after an attach, nothing is queued until an IDR (the reader's first bytes are SPS+PPS+IDR);
//! - when more than the lag budget is queued, everything not yet started is dropped and access
//!   units are dropped until the next IDR, and the caller is told to request one.

use std::collections::VecDeque;
use std::io::{self, Write};

/// Why access units were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Waiting for the first IDR after a reader attached.
    Attach,
    /// The reader fell more than the lag budget behind.
    Lag,
    /// Queued when the reader left.
    Detach,
}

/// Drop counters by reason, and the queue's high-water mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub dropped_attach: u64,
    pub dropped_lag: u64,
    pub dropped_detach: u64,
    pub written_aus: u64,
    pub written_bytes: u64,
    pub peak_bytes: usize,
    pub peak_aus: usize,
}

impl QueueStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_attach + self.dropped_lag + self.dropped_detach
    }
}

/// What [`AuQueue::push`] did with an access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Dropped(DropReason),
    /// The budget overflowed: the queue was cut back and an IDR is needed now.
    OverBudget,
}

#[derive(Debug)]
pub struct AuQueue {
    aus: VecDeque<Vec<u8>>,
    /// Bytes of the front access unit already written.
    front_written: usize,
    bytes: usize,
    budget_aus: usize,
    /// Set while access units are dropped until the next IDR.
    gate: Option<DropReason>,
    pub stats: QueueStats,
}

impl AuQueue {
    /// A queue that holds at most `budget_aus` access units before it starts dropping.
    pub fn new(budget_aus: usize) -> Self {
        Self {
            aus: VecDeque::new(),
            front_written: 0,
            bytes: 0,
            budget_aus: budget_aus.max(1),
            gate: Some(DropReason::Attach),
            stats: QueueStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.aus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aus.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes - self.front_written
    }

    /// A new reader: start again at the next IDR.
    pub fn attach(&mut self) {
        self.clear(DropReason::Detach);
        self.gate = Some(DropReason::Attach);
    }

    /// Keeps what is queued but takes nothing new until an IDR (a rebuilt encoder's stream).
    pub fn wait_for_idr(&mut self) {
        self.gate = Some(DropReason::Attach);
    }

    /// Drops everything, counting it under `reason` (the reader left).
    pub fn clear(&mut self, reason: DropReason) {
        let n = self.aus.len() as u64;
        self.count(reason, n);
        self.aus.clear();
        self.front_written = 0;
        self.bytes = 0;
    }

    fn count(&mut self, reason: DropReason, n: u64) {
        match reason {
            DropReason::Attach => self.stats.dropped_attach += n,
            DropReason::Lag => self.stats.dropped_lag += n,
            DropReason::Detach => self.stats.dropped_detach += n,
        }
    }

    /// Offers an access unit.
    pub fn push(&mut self, au: &[u8], idr: bool) -> Pushed {
        if let Some(reason) = self.gate {
            if !idr {
                self.count(reason, 1);
                return Pushed::Dropped(reason);
            }
            self.gate = None;
        }
        if self.aus.len() >= self.budget_aus {
            // Keep only a partly written front; drop the rest and this one.
            let keep = usize::from(self.front_written > 0);
            let dropped: Vec<Vec<u8>> = self.aus.drain(keep..).collect();
            self.bytes -= dropped.iter().map(Vec::len).sum::<usize>();
            self.count(DropReason::Lag, dropped.len() as u64 + 1);
            self.gate = Some(DropReason::Lag);
            if idr {
                // The incoming IDR is itself a recovery point: keep it and reopen the gate.
                self.stats.dropped_lag -= 1;
                self.gate = None;
                self.enqueue(au);
                return Pushed::Queued;
            }
            return Pushed::OverBudget;
        }
        self.enqueue(au);
        Pushed::Queued
    }

    fn enqueue(&mut self, au: &[u8]) {
        self.bytes += au.len();
        self.aus.push_back(au.to_vec());
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes());
        self.stats.peak_aus = self.stats.peak_aus.max(self.aus.len());
    }

    /// Writes as much as `w` takes without blocking. `Ok` when the queue is empty or the writer
    /// would block; errors other than `WouldBlock`/`Interrupted` are returned (the reader is gone).
    pub fn write_to(&mut self, w: &mut (impl Write + ?Sized)) -> io::Result<()> {
        while let Some(front) = self.aus.front() {
            match w.write(&front[self.front_written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.front_written += n;
                    self.stats.written_bytes += n as u64;
                    if self.front_written == front.len() {
                        self.bytes -= front.len();
                        self.front_written = 0;
                        self.aus.pop_front();
                        self.stats.written_aus += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether an access unit is partly written (the reader has a cut frame until it is finished).
    pub fn mid_access_unit(&self) -> bool {
        self.front_written > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `room` bytes, then blocks.
    struct Pipe {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn au(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    #[test]
    fn starts_at_an_idr_after_attach() {
        let mut q = AuQueue::new(10);
        assert_eq!(q.push(&au(1, 5), false), Pushed::Dropped(DropReason::Attach));
        assert_eq!(q.push(&au(2, 5), true), Pushed::Queued);
        assert_eq!(q.push(&au(3, 5), false), Pushed::Queued);
        let mut p = Pipe { got: vec![], room: 100 };
        q.write_to(&mut p).unwrap();
        assert_eq!(p.got, [au(2, 5), au(3, 5)].concat());
        assert_eq!(q.stats.dropped_attach, 1);
        assert_eq!(q.stats.written_aus, 2);
    }

    #[test]
    fn partial_writes_finish_before_anything_else() {
        let mut q = AuQueue::new(10);
        q.push(&au(1, 10), true);
        q.push(&au(2, 10), false);
        let mut p = Pipe { got: vec![], room: 4 };
        q.write_to(&mut p).unwrap();
        assert!(q.mid_access_unit());
        assert_eq!(q.bytes(), 16);
        p.room = 100;
        q.write_to(&mut p).unwrap();
        assert_eq!(p.got, [au(1, 10), au(2, 10)].concat());
        assert!(q.is_empty() && !q.mid_access_unit());
    }

    #[test]
    fn over_budget_drops_whole_units_until_the_next_idr() {
        let mut q = AuQueue::new(3);
        q.push(&au(1, 10), true);
        let mut p = Pipe { got: vec![], room: 3 };
        q.write_to(&mut p).unwrap(); // the IDR is now partly written
        q.push(&au(2, 10), false);
        q.push(&au(3, 10), false);
        assert_eq!(q.push(&au(4, 10), false), Pushed::OverBudget);
        assert_eq!(q.len(), 1, "only the partly written unit stays");
        assert_eq!(q.push(&au(5, 10), false), Pushed::Dropped(DropReason::Lag));
        assert_eq!(q.push(&au(6, 10), true), Pushed::Queued);
        assert_eq!(q.push(&au(7, 10), false), Pushed::Queued);
        p.room = 1000;
        q.write_to(&mut p).unwrap();
        // The reader sees the whole first IDR, then the next IDR: nothing cut, nothing in between.
        assert_eq!(p.got, [au(1, 10), au(6, 10), au(7, 10)].concat());
        assert_eq!(q.stats.dropped_lag, 4);
        assert_eq!(q.stats.peak_aus, 3);
    }

    #[test]
    fn an_idr_arriving_over_budget_is_kept() {
        let mut q = AuQueue::new(2);
        q.push(&au(1, 10), true);
        q.push(&au(2, 10), false);
        assert_eq!(q.push(&au(3, 10), true), Pushed::Queued);
        let mut p = Pipe { got: vec![], room: 1000 };
        q.write_to(&mut p).unwrap();
        assert_eq!(p.got, au(3, 10));
        assert_eq!(q.stats.dropped_lag, 2);
    }

    #[test]
    fn detach_discards_everything_and_waits_for_an_idr_again() {
        let mut q = AuQueue::new(10);
        q.push(&au(1, 10), true);
        q.push(&au(2, 10), false);
        q.attach();
        assert_eq!(q.stats.dropped_detach, 2);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.push(&au(3, 10), false), Pushed::Dropped(DropReason::Attach));
    }

    #[test]
    fn errors_other_than_would_block_are_returned() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = AuQueue::new(10);
        q.push(&au(1, 10), true);
        assert_eq!(q.write_to(&mut Gone).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
