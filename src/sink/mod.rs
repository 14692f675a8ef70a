//! The sink stage: takes encoded access units from the appsink, normalises them to go2rtc's exact
//! byte rules (annexb), and writes each one whole.
//!
//! - stdout (`run_writer`): one reader for the process's life; blocking writes on the sink thread,
//!   so a slow reader makes the encoder drop raw frames upstream, never cut ones. An RTSP server we
//!   publish to ([`rtsp`]) is served the same way, one access unit and its PTS at a time.
//! - FIFO and TCP (`run_demand`): readers come and go. One mechanism serves both ([`Endpoint`]):
//!   non-blocking writes behind a bounded queue of whole access units ([`queue::AuQueue`]), a new
//!   reader starts at an IDR, and a reader that falls behind loses whole access units up to the
//!   next IDR.
//! - `rtsp-listen:` ([`rtsp_server::run_served`]): our own RTSP server; clients come and go and
//!   share one encoder, like FIFO/TCP readers but any number at once.

pub mod fifo;
pub mod output;
pub mod queue;
pub mod rtsp;
pub mod rtsp_server;
pub mod stdout;
pub mod tcp;
pub mod ts;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;
use log::{debug, info, warn};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::annexb::Normalizer;
use crate::exit::{Exit, ExitExt};
use queue::{AuQueue, DropReason, Pushed};

/// Most MPEG-TS bytes gathered into one write (a few frames' worth).
const TS_BATCH_BYTES: usize = 1 << 20;
/// Longest wait for the rest of a PES whose packets are coming (mpegtsmux sends them in one burst).
const TS_PES_WAIT: gst::ClockTime = gst::ClockTime::from_mseconds(5);
/// How often the writer looks at the stop flag while no access unit arrives.
const POLL: Duration = Duration::from_millis(20);

/// The encoder pipeline's appsink, swapped when the pipeline is rebuilt (after an encoder error, or
/// on another backend). The sink thread picks up a new one by its generation number.
#[derive(Debug)]
pub struct Source {
    generation: AtomicU64,
    /// Set between retiring a pipeline and handing over its replacement: the old appsink's
    /// end-of-stream is not the end of the stream then.
    swapping: AtomicBool,
    /// The new pipeline is another backend (another SPS): readers must start a new session.
    new_session: AtomicBool,
    appsink: std::sync::Mutex<gst_app::AppSink>,
}

impl Source {
    pub fn new(appsink: gst_app::AppSink) -> Source {
        Source {
            generation: AtomicU64::new(0),
            swapping: AtomicBool::new(false),
            new_session: AtomicBool::new(false),
            appsink: std::sync::Mutex::new(appsink),
        }
    }

    /// The current pipeline is about to be retired; a replacement follows (or the stop flag).
    pub fn begin_swap(&self) {
        self.swapping.store(true, Ordering::Release);
    }

    /// Hands the sink a new pipeline's appsink. `new_sps`: it is another backend, whose SPS differs,
    /// so a FIFO/TCP reader is closed and its next session starts with the new SPS (go2rtc keeps the
    /// first SPS of a session).
    pub fn replace(&self, appsink: gst_app::AppSink, new_sps: bool) {
        *self.appsink.lock().unwrap_or_else(|p| p.into_inner()) = appsink;
        self.new_session.store(new_sps, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.swapping.store(false, Ordering::Release);
    }

    /// Whether an end-of-stream now means the end (not a pipeline being, or just, replaced).
    fn ended(&self, generation: u64, appsink: &gst_app::AppSink) -> bool {
        if self.swapping.load(Ordering::Acquire) || self.generation() != generation {
            std::thread::sleep(Duration::from_millis(5));
            return false;
        }
        appsink.is_eos()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> (u64, gst_app::AppSink) {
        let sink = self.appsink.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (self.generation(), sink)
    }
}

/// Counters the writer keeps; read by the frame loop for its stats line.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Access units taken from the encoder (written or not): the watchdog's sign of life.
    pub pulled: AtomicU64,
    pub access_units: AtomicU64,
    pub idr: AtomicU64,
    pub bytes: AtomicU64,
    /// Access units dropped while waiting for the first IDR.
    pub skipped_before_idr: AtomicU64,
    /// Access units that needed SPS/PPS inserted or start codes lengthened.
    pub repaired: AtomicU64,
    /// FIFO/TCP: access units dropped because a reader had just attached (waiting for an IDR),
    /// fell behind, or left with them queued; and encoded while nobody read.
    pub dropped_attach: AtomicU64,
    pub dropped_lag: AtomicU64,
    pub dropped_detach: AtomicU64,
    pub dropped_no_reader: AtomicU64,
    pub attaches: AtomicU64,
    /// `rtsp-listen:`: RTSP clients connected now.
    pub clients: AtomicU64,
    /// Where readers and clients reach a listening output (TCP, RTSP): its URL and real port.
    pub listening: std::sync::OnceLock<(String, u16)>,
}

/// Why the writer stopped.
#[derive(Debug)]
pub enum SinkEnd {
    /// The encoder drained after end-of-stream; everything was written.
    Eos,
    /// The stop flag was raised; the last access unit was written whole.
    Stopped,
    /// The reader closed the pipe.
    ReaderGone,
    Failed(anyhow::Error),
}

/// Where [`run_writer`] puts each whole access unit (or MPEG-TS buffer): any byte writer (stdout),
/// or a publisher that also needs the unit's PTS ([`rtsp::Publisher`]). An error says how the
/// stream ends: [`SinkEnd::ReaderGone`] when the reader left, else [`SinkEnd::Failed`].
pub trait AuOut {
    fn put(&mut self, au: &[u8], pts: Option<gst::ClockTime>) -> Result<(), SinkEnd>;
}

impl<W: Write> AuOut for W {
    fn put(&mut self, au: &[u8], _pts: Option<gst::ClockTime>) -> Result<(), SinkEnd> {
        self.write_all(au).and_then(|()| self.flush()).map_err(write_failed)
    }
}

/// Pulls access units until EOS, the stop flag, or a write error.
/// `annexb`: the buffers are H.264 access units to normalise and gate on an IDR; otherwise (MPEG-TS)
/// they are written as they come.
pub fn run_writer(
    source: &Source,
    out: &mut impl AuOut,
    stop: &AtomicBool,
    stats: &SinkStats,
    annexb: bool,
    timing: &FrameTiming,
) -> SinkEnd {
    let (mut generation, mut appsink) = source.current();
    let mut normalizer = Normalizer::new();
    let mut au = Vec::with_capacity(256 * 1024);
    let mut waiting_for_idr = true;
    let mut warned_slices = false;
    // MPEG-TS: the frame whose packets were written last, and where its PES ends.
    let mut ts_frame: Option<u64> = None;
    let mut pes = ts::PesTracker::default();
    loop {
        if stop.load(Ordering::Acquire) {
            return SinkEnd::Stopped;
        }
        if source.generation() != generation {
            // A rebuilt pipeline: its stream starts again at an IDR with its own SPS/PPS.
            (generation, appsink) = source.current();
            normalizer = Normalizer::new();
            waiting_for_idr = true;
        }
        let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64)) else {
            if source.ended(generation, &appsink) {
                return SinkEnd::Eos;
            }
            continue;
        };
        stats.pulled.fetch_add(1, Ordering::Relaxed);
        let Some(buffer) = sample.buffer() else { continue };
        let map = match buffer.map_readable() {
            Ok(m) => m,
            Err(e) => return SinkEnd::Failed(anyhow::anyhow!("mapping an encoded buffer: {e}")),
        };
        if !annexb {
            // mpegtsmux hands out one 188-byte packet per buffer, a frame's packets in one burst:
            // gather them and write the frame in one go. Only while a PES of declared length is
            // still coming is there a (short) wait; otherwise only what is already there is taken.
            let out_at = std::time::Instant::now();
            // Each packet carries its PES's PTS; a frame's times are noted with its first packet.
            let first_of_frame = timing.index_of(&sample).filter(|i| ts_frame.replace(*i) != Some(*i));
            au.clear();
            au.extend_from_slice(map.as_slice());
            let mut whole = pes.feed(map.as_slice());
            while !whole && au.len() < TS_BATCH_BYTES {
                let wait = if pes.mid_pes() { TS_PES_WAIT } else { gst::ClockTime::ZERO };
                let Some(more) = appsink.try_pull_sample(wait) else { break };
                stats.pulled.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = more.buffer().and_then(|b| b.map_readable().ok()) {
                    au.extend_from_slice(m.as_slice());
                    whole = pes.feed(m.as_slice());
                }
            }
            if let Err(end) = out.put(&au, buffer.pts()) {
                return end;
            }
            if let Some(i) = first_of_frame {
                timing.timings.written(i, out_at, std::time::Instant::now());
            }
            stats.access_units.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(au.len() as u64, Ordering::Relaxed);
            continue;
        }
        let out_at = std::time::Instant::now();
        let index = timing.index_of(&sample);
        let info = normalizer.normalize(map.as_slice(), &mut au);
        if waiting_for_idr && !info.idr {
            stats.skipped_before_idr.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        waiting_for_idr = false;
        if (info.slices > 1 || info.b_slices > 0) && !warned_slices {
            warned_slices = true;
            warn!(
                "the encoder wrote {} slice(s) and {} B slice(s) in one picture; go2rtc cannot frame that",
                info.slices, info.b_slices
            );
        }
        if info.inserted_parameter_sets || info.short_start_codes > 0 {
            stats.repaired.fetch_add(1, Ordering::Relaxed);
            debug!("repaired an access unit: {info:?}");
        }
        if let Err(end) = out.put(&au, buffer.pts()) {
            return end;
        }
        if let Some(i) = index {
            timing.timings.written(i, out_at, std::time::Instant::now());
        }
        stats.access_units.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(au.len() as u64, Ordering::Relaxed);
        if info.idr {
            stats.idr.fetch_add(1, Ordering::Relaxed);
        }
    }
}

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

fn write_failed(e: std::io::Error) -> SinkEnd {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return SinkEnd::ReaderGone;
    }
    SinkEnd::Failed(Err::<(), _>(e).exit(Exit::Io).unwrap_err().context("writing the stream"))
}

/// What the sink needs to note each access unit's times: the shared table and the frame rate that
/// turns a sample's running time back into the frame's stream index.
#[derive(Debug, Clone)]
pub struct FrameTiming {
    pub timings: std::sync::Arc<crate::stats::Timings>,
    pub fps: u32,
}

impl FrameTiming {
    /// The stream index of the frame in `sample`, from its PTS as running time.
    pub fn index_of(&self, sample: &gst::Sample) -> Option<u64> {
        let pts = sample.buffer()?.pts()?;
        let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
        let rt = segment.to_running_time(pts)?;
        Some(((u128::from(rt.nseconds()) * u128::from(self.fps) + 500_000_000) / 1_000_000_000) as u64)
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

/// What the demand-paged sink tells the frame loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A reader attached: resume encoding and make the next frame an IDR.
    Attached,
    /// The reader left.
    Detached,
    /// The reader fell behind and lost frames: an IDR now lets it recover.
    NeedKeyframe,
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
    fn install(appsink: &gst_app::AppSink) -> std::io::Result<Waker> {
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
    let name = endpoint.describe();
    let (mut generation, mut appsink) = source.current();
    let mut waker = match Waker::install(&appsink) {
        Ok(w) => w,
        Err(e) => return SinkEnd::Failed(anyhow::anyhow!("creating the sink's wake-up socket: {e}")),
    };
    let mut conn: Option<Box<dyn Conn>> = None;
    let mut queue = AuQueue::new(settings.budget_aus);
    let mut normalizer = Normalizer::new();
    let mut au = Vec::with_capacity(256 * 1024);
    let mut last_keyframe_request: Option<Instant> = None;
    let mut attached_at: Option<Instant> = None;
    let mut next_stats = Instant::now() + STATS_EVERY;
    let mut logged = queue.stats;
    loop {
        if stop.load(Ordering::Acquire) {
            if let Some(c) = conn.as_mut() {
                finish_front(&mut queue, c.as_mut());
            }
            return SinkEnd::Stopped;
        }
        if source.generation() != generation {
            // A rebuilt pipeline: the reader continues at its first IDR (new SPS/PPS in front).
            (generation, appsink) = source.current();
            waker = match Waker::install(&appsink) {
                Ok(w) => w,
                Err(e) => return SinkEnd::Failed(anyhow::anyhow!("creating the sink's wake-up socket: {e}")),
            };
            normalizer = Normalizer::new();
            if source.new_session.load(Ordering::Acquire) && conn.is_some() {
                detach(&name, &mut conn, &mut queue, "closed: the encoder changed backend (new SPS)", notify);
            } else {
                queue.wait_for_idr();
                info!("{name}: the encoder pipeline was rebuilt; the reader continues at its first IDR");
            }
        }
        // Notice a reader that just left before deciding whether a newcomer is a second reader.
        if conn.as_mut().is_some_and(|c| reader_gone(c.as_mut(), PollTimeout::ZERO)) {
            detach(&name, &mut conn, &mut queue, "left", notify);
        }
        match conn {
            None => match endpoint.try_attach() {
                Ok(Some(c)) => {
                    conn = Some(c);
                    queue.attach();
                    attached_at = Some(Instant::now());
                    stats.attaches.fetch_add(1, Ordering::Relaxed);
                    info!("{name}: reader attached; starting it at the next IDR");
                    notify(Note::Attached);
                }
                Ok(None) => {}
                Err(e) => return SinkEnd::Failed(e),
            },
            Some(_) => endpoint.reject_extra(),
        }

        // Sleep until a sample arrives, the reader can take more bytes, or the reader goes.
        let revents = {
            let mut fds = vec![PollFd::new(waker.rx.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = conn.as_ref() {
                let want = if queue.is_empty() { PollFlags::POLLIN } else { PollFlags::POLLIN | PollFlags::POLLOUT };
                fds.push(PollFd::new(c.as_fd(), want));
            }
            let wait = if conn.is_some() { ATTACHED_POLL } else { ATTACH_POLL };
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::ZERO);
            match poll(&mut fds, timeout) {
                Ok(_) => fds.get(1).and_then(PollFd::revents),
                Err(_) => None,
            }
        };
        waker.drain();
        if conn.as_mut().is_some_and(|c| gone_after_poll(c.as_mut(), revents)) {
            detach(&name, &mut conn, &mut queue, "left", notify);
        }

        while let Some(sample) = appsink.try_pull_sample(gst::ClockTime::ZERO) {
            stats.pulled.fetch_add(1, Ordering::Relaxed);
            let Some(buffer) = sample.buffer() else { continue };
            let Ok(map) = buffer.map_readable() else {
                return SinkEnd::Failed(anyhow::anyhow!("mapping an encoded buffer"));
            };
            let out_at = std::time::Instant::now();
            let info = normalizer.normalize(map.as_slice(), &mut au);
            if info.idr {
                stats.idr.fetch_add(1, Ordering::Relaxed);
            }
            // FIFO/TCP: "written" is the hand-over to the reader's queue.
            if conn.is_some()
                && let Some(i) = timing.index_of(&sample)
            {
                timing.timings.written(i, out_at, std::time::Instant::now());
            }
            if conn.is_none() {
                stats.dropped_no_reader.fetch_add(1, Ordering::Relaxed);
            } else if queue.push(&au, info.idr) == Pushed::OverBudget {
                let due = last_keyframe_request.is_none_or(|t| t.elapsed() >= settings.keyframe_every);
                info!(
                    "{name}: reader is more than {} access units behind; dropping to the next IDR{}",
                    settings.budget_aus,
                    if due { " (requested one)" } else { "" }
                );
                if due {
                    last_keyframe_request = Some(Instant::now());
                    notify(Note::NeedKeyframe);
                }
            }
        }
        if source.ended(generation, &appsink) {
            if let Some(c) = conn.as_mut() {
                let deadline = Instant::now() + FINISH_TIMEOUT;
                while !queue.is_empty() && Instant::now() < deadline {
                    if queue.write_to(c.as_mut()).is_err() {
                        break;
                    }
                    std::thread::sleep(WRITE_POLL);
                }
            }
            publish(&queue, stats);
            return SinkEnd::Eos;
        }

        if let Some(c) = conn.as_mut() {
            let before = queue.stats.written_bytes;
            match queue.write_to(c.as_mut()) {
                Ok(()) => {
                    if queue.stats.written_bytes > before
                        && let Some(t) = attached_at.take()
                    {
                        info!("{name}: first bytes to the reader {:.0} ms after it attached", ms(t.elapsed()));
                    }
                }
                Err(e) => {
                    let how = match e.kind() {
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => "left".to_string(),
                        _ => format!("failed ({e})"),
                    };
                    detach(&name, &mut conn, &mut queue, &how, notify);
                }
            }
        }
        publish(&queue, stats);
        if Instant::now() >= next_stats {
            next_stats = Instant::now() + STATS_EVERY;
            let s = queue.stats;
            if s != logged {
                info!(
                    "{name}: {} written ({} bytes); dropped: {} attach, {} lag, {} detach; queue {} AU / {} bytes (peak {} bytes)",
                    s.written_aus,
                    s.written_bytes,
                    s.dropped_attach,
                    s.dropped_lag,
                    s.dropped_detach,
                    queue.len(),
                    queue.bytes(),
                    s.peak_bytes
                );
                logged = s;
            }
        }
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

/// Closes the reader's descriptor at once (so a FIFO's unread bytes die with the pipe and the next
/// reader starts clean) and drops what was queued for it.
fn detach(name: &str, conn: &mut Option<Box<dyn Conn>>, queue: &mut AuQueue, how: &str, notify: &dyn Fn(Note)) {
    let queued = queue.len();
    queue.clear(DropReason::Detach);
    *conn = None;
    info!("{name}: reader {how}; dropped {queued} queued access unit(s); waiting for the next reader");
    notify(Note::Detached);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// On stop: finish a partly written access unit if the reader takes it soon, so it is not cut.
fn finish_front(queue: &mut AuQueue, w: &mut dyn Conn) {
    let deadline = Instant::now() + FINISH_TIMEOUT;
    while queue.mid_access_unit() && Instant::now() < deadline {
        let mut one = OneUnit { w, done: false };
        if queue.write_to(&mut one).is_err() {
            return;
        }
        std::thread::sleep(WRITE_POLL);
    }
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

/// Mirrors the queue's counters into the shared stats.
fn publish(queue: &AuQueue, stats: &SinkStats) {
    let s = queue.stats;
    stats.access_units.store(s.written_aus, Ordering::Relaxed);
    stats.bytes.store(s.written_bytes, Ordering::Relaxed);
    stats.dropped_attach.store(s.dropped_attach, Ordering::Relaxed);
    stats.dropped_lag.store(s.dropped_lag, Ordering::Relaxed);
    stats.dropped_detach.store(s.dropped_detach, Ordering::Relaxed);
}
