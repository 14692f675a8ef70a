//! Demand paging for FIFO and TCP outputs: readers come and go, one at a time. A reader gets
//! non-blocking writes behind a bounded queue of whole access units ([`AuQueue`]); it starts at an
//! IDR, and when it falls behind it loses whole access units up to the next IDR. The frame loop
//! hears of each attach and detach ([`Note`]) so it can pause while nobody reads.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;
use log::info;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::queue::{AuQueue, DropReason, Pushed, QueueStats};
use super::{FrameTiming, Note, Pull, Puller, SinkEnd, SinkStats, Source};

/// A connected reader: a non-blocking writer with a descriptor to poll.
pub trait Conn: Write + AsFd + Send {
    /// Called when the descriptor polls readable: whether the reader closed its end. Readers never
    /// send us data; anything they do send is read and discarded.
    fn closed(&mut self) -> bool {
        false
    }
}

impl Conn for std::fs::File {}

impl Conn for std::net::TcpStream {
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}

/// A place readers attach to: a FIFO or a TCP listener.
pub trait Endpoint: Send {
    /// A reader that appeared since the last call, as a non-blocking writer; `None` if none did.
    fn try_attach(&mut self) -> anyhow::Result<Option<Box<dyn Conn>>>;
    /// Called while a reader is attached: turn away anyone else.
    fn reject_extra(&mut self) {}
    fn describe(&self) -> String;
    /// Where a listening endpoint (TCP) is reached; `None` for a FIFO.
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

/// Settings of the demand-paged sink.
#[derive(Debug, Clone, Copy)]
pub struct DemandSettings {
    /// Most access units queued for a reader before dropping up to the next IDR (`--max-lag`).
    pub budget_aus: usize,
    /// Least time between two IDR requests for a lagging reader.
    pub keyframe_every: Duration,
}

/// Poll interval while no reader is attached: an attach is noticed well within a frame.
const ATTACH_POLL: Duration = Duration::from_millis(5);
/// Longest wait while a reader is attached (the stop flag is checked at least this often).
const ATTACHED_POLL: Duration = Duration::from_millis(50);
/// Poll interval while finishing writes on stop or end-of-stream.
const WRITE_POLL: Duration = Duration::from_millis(2);
/// How long a stop or end-of-stream waits to finish what the reader was sent.
const FINISH_TIMEOUT: Duration = Duration::from_millis(300);
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Wakes the sink thread when the appsink has a sample or reaches EOS, so it can sleep in poll(2)
/// on the reader's descriptor and the appsink at once: a sample goes out as soon as it is encoded,
/// and a reader that leaves is noticed at once (POLLERR/POLLHUP), before another can take its place
/// in the same pipe.
struct Waker {
    rx: UnixStream,
}

impl Waker {
    fn install(appsink: &gst_app::AppSink) -> anyhow::Result<Waker> {
        Self::pair(appsink).map_err(|e| anyhow::anyhow!("creating the sink's wake-up socket: {e}"))
    }

    fn pair(appsink: &gst_app::AppSink) -> std::io::Result<Waker> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        let (tx_sample, tx_eos) = (tx.try_clone()?, tx);
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |_| {
                    let _ = (&tx_sample).write(&[1]); // a full wake pipe already means "wake up"
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| {
                    let _ = (&tx_eos).write(&[2]);
                })
                .build(),
        );
        Ok(Waker { rx })
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 256];
        while matches!(self.rx.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Serves readers that come and go until EOS, the stop flag, or a failure.
pub fn run_demand(
    source: &Source,
    endpoint: &mut dyn Endpoint,
    settings: DemandSettings,
    stop: &AtomicBool,
    stats: &SinkStats,
    notify: &dyn Fn(Note),
    timing: &FrameTiming,
) -> SinkEnd {
    let mut puller = Puller::new(source);
    let mut waker = match Waker::install(puller.appsink()) {
        Ok(w) => w,
        Err(e) => return SinkEnd::Failed(e),
    };
    let mut slot = ReaderSlot::new(endpoint.describe(), settings, notify);
    loop {
        if stop.load(Ordering::Acquire) {
            slot.finish_front();
            return SinkEnd::Stopped;
        }
        if puller.follow() {
            waker = match Waker::install(puller.appsink()) {
                Ok(w) => w,
                Err(e) => return SinkEnd::Failed(e),
            };
            slot.pipeline_rebuilt(source.new_session.load(Ordering::Acquire));
        }
        // Notice a reader that just left before deciding whether a newcomer is a second reader.
        slot.notice_gone();
        if let Err(e) = slot.attach_or_reject(endpoint, stats) {
            return SinkEnd::Failed(e);
        }
        slot.sleep(&mut waker);
        match slot.take_encoded(&mut puller, stats, timing) {
            Ok(Pull::Eos) => {
                slot.finish_queue();
                slot.publish(stats);
                return SinkEnd::Eos;
            }
            Ok(_) => {}
            Err(e) => return SinkEnd::Failed(e),
        }
        slot.write();
        slot.publish(stats);
        slot.log_stats();
    }
}

/// The one reader a FIFO or TCP output serves at a time, and the queue of what it is sent.
struct ReaderSlot<'n> {
    /// The endpoint, as the log names it.
    name: String,
    settings: DemandSettings,
    notify: &'n dyn Fn(Note),
    conn: Option<Box<dyn Conn>>,
    queue: AuQueue,
    /// When the reader attached, until its first bytes are written.
    attached_at: Option<Instant>,
    last_keyframe_request: Option<Instant>,
    next_stats: Instant,
    /// The queue's counters as last logged.
    logged: QueueStats,
}

impl<'n> ReaderSlot<'n> {
    fn new(name: String, settings: DemandSettings, notify: &'n dyn Fn(Note)) -> ReaderSlot<'n> {
        let queue = AuQueue::new(settings.budget_aus);
        let logged = queue.stats;
        ReaderSlot {
            name,
            settings,
            notify,
            conn: None,
            queue,
            attached_at: None,
            last_keyframe_request: None,
            next_stats: Instant::now() + STATS_EVERY,
            logged,
        }
    }

    /// A rebuilt pipeline: the reader continues at its first IDR (new SPS/PPS in front), or, when
    /// the encoder changed backend (`new_session`), is closed so its next session starts with the
    /// new SPS.
    fn pipeline_rebuilt(&mut self, new_session: bool) {
        if new_session && self.conn.is_some() {
            self.detach("closed: the encoder changed backend (new SPS)");
        } else {
            self.queue.wait_for_idr();
            info!("{}: the encoder pipeline was rebuilt; the reader continues at its first IDR", self.name);
        }
    }

    /// Detaches a reader whose end polls closed now.
    fn notice_gone(&mut self) {
        if self.conn.as_mut().is_some_and(|c| reader_gone(c.as_mut(), PollTimeout::ZERO)) {
            self.detach("left");
        }
    }

    /// Takes a reader that appeared while none is attached; turns away others while one is.
    fn attach_or_reject(&mut self, endpoint: &mut dyn Endpoint, stats: &SinkStats) -> anyhow::Result<()> {
        if self.conn.is_some() {
            endpoint.reject_extra();
        } else if let Some(c) = endpoint.try_attach()? {
            self.attach(c);
            stats.attaches.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn attach(&mut self, conn: Box<dyn Conn>) {
        self.conn = Some(conn);
        self.queue.attach();
        self.attached_at = Some(Instant::now());
        info!("{}: reader attached; starting it at the next IDR", self.name);
        (self.notify)(Note::Attached);
    }

    /// Closes the reader's descriptor at once (so a FIFO's unread bytes die with the pipe and the
    /// next reader starts clean) and drops what was queued for it.
    fn detach(&mut self, how: &str) {
        let queued = self.queue.len();
        self.queue.clear(DropReason::Detach);
        self.conn = None;
        info!("{}: reader {how}; dropped {queued} queued access unit(s); waiting for the next reader", self.name);
        (self.notify)(Note::Detached);
    }

    /// Sleeps until a sample arrives, the reader can take more bytes, or the reader goes.
    fn sleep(&mut self, waker: &mut Waker) {
        let revents = {
            let mut fds = vec![PollFd::new(waker.rx.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = self.conn.as_ref() {
                let want =
                    if self.queue.is_empty() { PollFlags::POLLIN } else { PollFlags::POLLIN | PollFlags::POLLOUT };
                fds.push(PollFd::new(c.as_fd(), want));
            }
            let wait = if self.conn.is_some() { ATTACHED_POLL } else { ATTACH_POLL };
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::ZERO);
            match poll(&mut fds, timeout) {
                Ok(_) => fds.get(1).and_then(PollFd::revents),
                Err(_) => None,
            }
        };
        waker.drain();
        if self.conn.as_mut().is_some_and(|c| gone_after_poll(c.as_mut(), revents)) {
            self.detach("left");
        }
    }

    /// Takes every access unit the encoder has ready: [`Pull::Eos`] when the stream ended, else
    /// [`Pull::Idle`].
    fn take_encoded(
        &mut self,
        puller: &mut Puller<'_>,
        stats: &SinkStats,
        timing: &FrameTiming,
    ) -> anyhow::Result<Pull> {
        loop {
            let pulled = match puller.pull(gst::ClockTime::ZERO, stats)? {
                Pull::Sample(p) => p,
                Pull::Empty => continue,
                end @ (Pull::Idle | Pull::Eos) => return Ok(end),
            };
            let info = puller.normalize(&pulled);
            if info.idr {
                stats.idr.fetch_add(1, Ordering::Relaxed);
            }
            // FIFO/TCP: "written" is the hand-over to the reader's queue.
            if self.conn.is_some()
                && let Some(i) = timing.index_of(&pulled.sample)
            {
                timing.timings.written(i, pulled.at, Instant::now());
            }
            if self.conn.is_none() {
                stats.dropped_no_reader.fetch_add(1, Ordering::Relaxed);
            } else {
                self.queue_unit(&puller.au, info.idr);
            }
        }
    }

    /// Queues an access unit for the attached reader; one that is too far behind loses what is
    /// queued up to the next IDR, and the encoder is asked for one (at most every `keyframe_every`).
    fn queue_unit(&mut self, au: &[u8], idr: bool) {
        if self.queue.push(au, idr) != Pushed::OverBudget {
            return;
        }
        let due = self.last_keyframe_request.is_none_or(|t| t.elapsed() >= self.settings.keyframe_every);
        info!(
            "{}: reader is more than {} access units behind; dropping to the next IDR{}",
            self.name,
            self.settings.budget_aus,
            if due { " (requested one)" } else { "" }
        );
        if due {
            self.last_keyframe_request = Some(Instant::now());
            (self.notify)(Note::NeedKeyframe);
        }
    }

    /// Writes what the reader takes now; a reader whose write fails is detached.
    fn write(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        let before = self.queue.stats.written_bytes;
        match self.queue.write_to(c.as_mut()) {
            Ok(()) => {
                if self.queue.stats.written_bytes > before
                    && let Some(t) = self.attached_at.take()
                {
                    info!("{}: first bytes to the reader {:.0} ms after it attached", self.name, ms(t.elapsed()));
                }
            }
            Err(e) => {
                let how = match e.kind() {
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => "left".to_string(),
                    _ => format!("failed ({e})"),
                };
                self.detach(&how);
            }
        }
    }

    /// At end-of-stream: writes what is queued, if the reader takes it soon.
    fn finish_queue(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        let deadline = Instant::now() + FINISH_TIMEOUT;
        while !self.queue.is_empty() && Instant::now() < deadline {
            if self.queue.write_to(c.as_mut()).is_err() {
                break;
            }
            std::thread::sleep(WRITE_POLL);
        }
    }

    /// On stop: finishes a partly written access unit if the reader takes it soon, so it is not cut.
    fn finish_front(&mut self) {
        let Some(w) = self.conn.as_mut() else { return };
        let deadline = Instant::now() + FINISH_TIMEOUT;
        while self.queue.mid_access_unit() && Instant::now() < deadline {
            let mut one = OneUnit { w: w.as_mut(), done: false };
            if self.queue.write_to(&mut one).is_err() {
                return;
            }
            std::thread::sleep(WRITE_POLL);
        }
    }

    /// Mirrors the queue's counters into the shared stats.
    fn publish(&self, stats: &SinkStats) {
        let s = self.queue.stats;
        stats.access_units.store(s.written_aus, Ordering::Relaxed);
        stats.bytes.store(s.written_bytes, Ordering::Relaxed);
        stats.dropped_attach.store(s.dropped_attach, Ordering::Relaxed);
        stats.dropped_lag.store(s.dropped_lag, Ordering::Relaxed);
        stats.dropped_detach.store(s.dropped_detach, Ordering::Relaxed);
    }

    /// Logs the queue's counters once a second, when they changed.
    fn log_stats(&mut self) {
        if Instant::now() < self.next_stats {
            return;
        }
        self.next_stats = Instant::now() + STATS_EVERY;
        let s = self.queue.stats;
        if s == self.logged {
            return;
        }
        info!(
            "{}: {} written ({} bytes); dropped: {} attach, {} lag, {} detach; queue {} AU / {} bytes (peak {} bytes)",
            self.name,
            s.written_aus,
            s.written_bytes,
            s.dropped_attach,
            s.dropped_lag,
            s.dropped_detach,
            self.queue.len(),
            self.queue.bytes(),
            s.peak_bytes
        );
        self.logged = s;
    }
}

/// Whether the reader is gone, judging by poll results: POLLERR (a FIFO with no reader left, a TCP
/// reset), POLLHUP, or POLLIN on a TCP reader whose read returns end-of-file (it closed).
fn gone_after_poll(c: &mut dyn Conn, revents: Option<PollFlags>) -> bool {
    match revents {
        Some(r) if r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) => true,
        Some(r) if r.contains(PollFlags::POLLIN) => c.closed(),
        _ => false,
    }
}

fn reader_gone(c: &mut dyn Conn, timeout: PollTimeout) -> bool {
    let revents = {
        let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, timeout).is_err() {
            return false;
        }
        fds[0].revents()
    };
    gone_after_poll(c, revents)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A writer that takes bytes only until the current access unit is finished.
struct OneUnit<'a> {
    w: &'a mut dyn Conn,
    done: bool,
}

impl Write for OneUnit<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.done {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = self.w.write(buf)?;
        self.done = n == buf.len();
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::super::fixture::{Encoded, IDR, IDR_SHORT, P};
    use super::*;

    impl Conn for UnixStream {
        fn closed(&mut self) -> bool {
            let mut buf = [0u8; 64];
            !matches!(self.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }

    /// A connected reader: our end (a [`Conn`]) and the reader's end.
    fn reader() -> (Box<dyn Conn>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        (Box::new(ours), theirs)
    }

    fn read_all(r: &mut UnixStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// Readers waiting to attach, and how often one was turned away.
    #[derive(Default)]
    struct Readers {
        waiting: VecDeque<Box<dyn Conn>>,
        rejected: usize,
    }

    impl Endpoint for Readers {
        fn try_attach(&mut self) -> anyhow::Result<Option<Box<dyn Conn>>> {
            Ok(self.waiting.pop_front())
        }
        fn reject_extra(&mut self) {
            self.rejected += 1;
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    fn settings(budget_aus: usize, keyframe_every: Duration) -> DemandSettings {
        DemandSettings { budget_aus, keyframe_every }
    }

    #[test]
    fn one_reader_at_a_time_attaches_and_its_leaving_is_noticed() {
        let notes = RefCell::new(Vec::new());
        let notify = |n: Note| notes.borrow_mut().push(n);
        let mut slot = ReaderSlot::new("test".into(), settings(8, Duration::ZERO), &notify);
        let (stats, mut readers) = (SinkStats::default(), Readers::default());
        slot.attach_or_reject(&mut readers, &stats).unwrap();
        assert!(slot.conn.is_none() && notes.borrow().is_empty(), "nobody came");

        let (first, first_end) = reader();
        let (second, _second_end) = reader();
        readers.waiting.extend([first, second]);
        slot.attach_or_reject(&mut readers, &stats).unwrap();
        slot.attach_or_reject(&mut readers, &stats).unwrap();
        assert_eq!(*notes.borrow(), [Note::Attached]);
        assert_eq!((readers.waiting.len(), readers.rejected), (1, 1), "the second waits while the first reads");
        assert_eq!(stats.attaches.load(Ordering::Relaxed), 1);

        slot.notice_gone();
        assert!(slot.conn.is_some(), "the reader is still there");
        drop(first_end);
        slot.notice_gone();
        assert!(slot.conn.is_none());
        assert_eq!(*notes.borrow(), [Note::Attached, Note::Detached]);
        slot.attach_or_reject(&mut readers, &stats).unwrap();
        assert_eq!(*notes.borrow(), [Note::Attached, Note::Detached, Note::Attached]);
    }

    #[test]
    fn a_reader_starts_at_an_idr_and_loses_what_was_queued_when_it_leaves() {
        let notify = |_: Note| {};
        let mut slot = ReaderSlot::new("test".into(), settings(8, Duration::ZERO), &notify);
        let (conn, mut end) = reader();
        slot.attach(conn);
        slot.queue_unit(&P, false);
        slot.queue_unit(&IDR, true);
        slot.queue_unit(&P, false);
        slot.write();
        assert_eq!(read_all(&mut end), [&IDR[..], &P].concat());
        let stats = SinkStats::default();
        slot.publish(&stats);
        assert_eq!(stats.access_units.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dropped_attach.load(Ordering::Relaxed), 1);

        slot.queue_unit(&P, false);
        slot.detach("left");
        slot.publish(&stats);
        assert_eq!(stats.dropped_detach.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_lagging_reader_asks_for_an_idr_at_most_every_interval() {
        for (every, requests) in [(Duration::from_secs(3600), 1), (Duration::ZERO, 2)] {
            let notes = RefCell::new(Vec::new());
            let notify = |n: Note| notes.borrow_mut().push(n);
            let mut slot = ReaderSlot::new("test".into(), settings(2, every), &notify);
            let (conn, _end) = reader();
            slot.attach(conn);
            for _ in 0..2 {
                // Nothing is written: the queue fills, then overflows.
                for (au, idr) in [(&IDR[..], true), (&P, false), (&P, false), (&P, false)] {
                    slot.queue_unit(au, idr);
                }
            }
            let asked = notes.borrow().iter().filter(|n| **n == Note::NeedKeyframe).count();
            assert_eq!(asked, requests, "keyframe_every {every:?}");
        }
    }

    #[test]
    fn a_rebuild_keeps_the_reader_and_a_new_backend_closes_it() {
        let notes = RefCell::new(Vec::new());
        let notify = |n: Note| notes.borrow_mut().push(n);
        let mut slot = ReaderSlot::new("test".into(), settings(8, Duration::ZERO), &notify);
        let (conn, mut end) = reader();
        slot.attach(conn);
        slot.queue_unit(&IDR, true);
        slot.pipeline_rebuilt(false);
        slot.queue_unit(&P, false); // the new pipeline's stream starts at its IDR
        slot.queue_unit(&IDR, true);
        slot.write();
        assert_eq!(read_all(&mut end), [IDR, IDR].concat());
        assert_eq!(*notes.borrow(), [Note::Attached]);

        slot.pipeline_rebuilt(true);
        assert!(slot.conn.is_none());
        assert_eq!(*notes.borrow(), [Note::Attached, Note::Detached]);
    }

    /// A reader that takes `room` more bytes, then would block.
    struct Slow {
        fd: UnixStream,
        got: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.got.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl AsFd for Slow {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            self.fd.as_fd()
        }
    }

    impl Conn for Slow {}

    #[test]
    fn a_stop_finishes_the_unit_being_written_and_no_more() {
        let notify = |_: Note| {};
        let mut slot = ReaderSlot::new("test".into(), settings(8, Duration::ZERO), &notify);
        let (got, room) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(3)));
        let (fd, _other) = UnixStream::pair().unwrap();
        slot.attach(Box::new(Slow { fd, got: got.clone(), room: room.clone() }));
        slot.queue_unit(&IDR, true);
        slot.queue_unit(&P, false);
        slot.write();
        assert_eq!(got.lock().unwrap().len(), 3, "cut mid-unit");
        *room.lock().unwrap() = 1000;
        slot.finish_front();
        assert_eq!(*got.lock().unwrap(), IDR);
    }

    #[test]
    fn demand_paging_serves_an_attached_reader_until_the_end() {
        let encoded = Encoded::new();
        let source = Source::new(encoded.appsink.clone());
        let (conn, mut end) = reader();
        let mut readers = Readers::default();
        readers.waiting.push_back(conn);
        for au in [&IDR_SHORT[..], &P] {
            encoded.push(au);
        }
        encoded.end();
        let notes = RefCell::new(Vec::new());
        let notify = |n: Note| notes.borrow_mut().push(n);
        let (stats, stop) = (SinkStats::default(), AtomicBool::new(false));
        let timing = FrameTiming { timings: std::sync::Arc::new(crate::stats::Timings::default()), fps: 30 };
        let result = run_demand(&source, &mut readers, settings(8, Duration::ZERO), &stop, &stats, &notify, &timing);
        assert!(matches!(result, SinkEnd::Eos), "{result:?}");
        assert_eq!(read_all(&mut end), [&IDR[..], &P].concat());
        assert_eq!(*notes.borrow(), [Note::Attached]);
        assert_eq!(stats.access_units.load(Ordering::Relaxed), 2);
        assert_eq!(stats.pulled.load(Ordering::Relaxed), 2);
    }
}
