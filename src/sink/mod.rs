//! The sink stage: takes encoded access units from the appsink, normalises them to go2rtc's exact
//! byte rules (annexb), and writes each one whole.
//!
//! - stdout ([`writer::run_writer`]): one reader for the process's life; blocking writes on the sink
//!   thread, so a slow reader makes the encoder drop raw frames upstream, never cut ones. An RTSP
//!   server we publish to ([`rtsp`]) is served the same way, one access unit and its PTS at a time.
//! - FIFO and TCP ([`demand::run_demand`]): readers come and go. One mechanism serves both
//!   ([`Endpoint`]): non-blocking writes behind a bounded queue of whole access units
//!   ([`queue::AuQueue`]), a new reader starts at an IDR, and a reader that falls behind loses whole
//!   access units up to the next IDR.
//! - `rtsp-listen:` ([`rtsp_server::run_served`]): our own RTSP server; clients come and go and
//!   share one encoder, like FIFO/TCP readers but any number at once.
//!
//! All three take the encoder's output through one [`Puller`], which follows pipeline rebuilds.

pub mod demand;
pub mod fifo;
pub mod output;
pub mod queue;
pub mod rtsp;
pub mod rtsp_server;
pub mod stdout;
pub mod tcp;
pub mod ts;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::annexb::{AuInfo, Normalizer};

pub use demand::{Conn, DemandSettings, Endpoint, run_demand};
pub use writer::{AuOut, Payload, run_writer};

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

/// The encoder's output as a sink thread takes it: the current pipeline's appsink (followed across
/// rebuilds), and a normaliser for its access units (a new one per pipeline, whose stream starts
/// again at an IDR with its own SPS/PPS).
pub(crate) struct Puller<'s> {
    source: &'s Source,
    generation: u64,
    appsink: gst_app::AppSink,
    normalizer: Normalizer,
    /// The last access unit [`Puller::normalize`] wrote.
    pub au: Vec<u8>,
}

/// What one [`Puller::pull`] found.
pub(crate) enum Pull {
    /// A sample, mapped.
    Sample(Pulled),
    /// A sample without a buffer: nothing to write; pull again.
    Empty,
    /// Nothing came within the wait, and the stream has not ended.
    Idle,
    /// The encoder drained after end-of-stream (not a pipeline being replaced).
    Eos,
}

/// One sample taken from the encoder, with when the sink took it.
pub(crate) struct Pulled {
    pub sample: gst::Sample,
    map: gst::MappedBuffer<gst::buffer::Readable>,
    /// When the sink took it: where its "written" time starts.
    pub at: Instant,
}

impl Pulled {
    pub fn bytes(&self) -> &[u8] {
        self.map.as_slice()
    }

    pub fn pts(&self) -> Option<gst::ClockTime> {
        self.map.buffer().pts()
    }
}

impl<'s> Puller<'s> {
    pub fn new(source: &'s Source) -> Puller<'s> {
        let (generation, appsink) = source.current();
        Puller { source, generation, appsink, normalizer: Normalizer::new(), au: Vec::with_capacity(256 * 1024) }
    }

    /// Takes up the pipeline the source handed over since the last call, if any: `true` then.
    pub fn follow(&mut self) -> bool {
        if self.source.generation() == self.generation {
            return false;
        }
        (self.generation, self.appsink) = self.source.current();
        self.normalizer = Normalizer::new();
        true
    }

    pub fn appsink(&self) -> &gst_app::AppSink {
        &self.appsink
    }

    /// Waits up to `wait` for the next sample, counting it in `stats.pulled` (the watchdog's sign of
    /// life) and mapping its buffer.
    pub fn pull(&mut self, wait: gst::ClockTime, stats: &SinkStats) -> anyhow::Result<Pull> {
        let Some(sample) = self.appsink.try_pull_sample(wait) else {
            let ended = self.source.ended(self.generation, &self.appsink);
            return Ok(if ended { Pull::Eos } else { Pull::Idle });
        };
        stats.pulled.fetch_add(1, Ordering::Relaxed);
        let Some(buffer) = sample.buffer_owned() else { return Ok(Pull::Empty) };
        let map = buffer.into_mapped_buffer_readable().map_err(|_| anyhow::anyhow!("mapping an encoded buffer"))?;
        Ok(Pull::Sample(Pulled { sample, map, at: Instant::now() }))
    }

    /// Normalises `pulled` (an H.264 access unit) into [`Puller::au`].
    pub fn normalize(&mut self, pulled: &Pulled) -> AuInfo {
        self.normalizer.normalize(pulled.bytes(), &mut self.au)
    }
}

/// An encoder stand-in for the sink's tests: an appsrc feeding the appsink a sink reads, so
/// samples, end-of-stream and pipeline swaps are real GStreamer ones (no GPU, no encoder).
#[cfg(test)]
pub(crate) mod fixture {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;

    /// SPS, PPS and an IDR, the last two behind 3-byte start codes.
    pub const IDR_SHORT: [u8; 16] = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88];
    /// [`IDR_SHORT`] normalised.
    pub const IDR: [u8; 18] = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88];
    /// An IDR slice with no parameter sets.
    pub const IDR_ALONE: [u8; 6] = [0, 0, 0, 1, 0x65, 0x88];
    /// A P slice.
    pub const P: [u8; 6] = [0, 0, 0, 1, 0x41, 0x98];

    pub struct Encoded {
        pipeline: gst::Pipeline,
        src: gst_app::AppSrc,
        pub appsink: gst_app::AppSink,
    }

    impl Encoded {
        pub fn new() -> Encoded {
            gst::init().unwrap();
            let pipeline = gst::Pipeline::new();
            let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
            let appsink = gst_app::AppSink::builder().sync(false).build();
            pipeline.add_many([src.upcast_ref::<gst::Element>(), appsink.upcast_ref()]).unwrap();
            src.link(&appsink).unwrap();
            pipeline.set_state(gst::State::Playing).unwrap();
            Encoded { pipeline, src, appsink }
        }

        pub fn push(&self, bytes: &[u8]) {
            self.src.push_buffer(gst::Buffer::from_slice(bytes.to_vec())).unwrap();
        }

        pub fn end(&self) {
            self.src.end_of_stream().unwrap();
        }
    }

    impl Drop for Encoded {
        fn drop(&mut self) {
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{Encoded, IDR, IDR_ALONE, IDR_SHORT, P};
    use super::*;

    const WAIT: gst::ClockTime = gst::ClockTime::from_seconds(5);

    fn sample(puller: &mut Puller<'_>, stats: &SinkStats) -> Pulled {
        match puller.pull(WAIT, stats).unwrap() {
            Pull::Sample(p) => p,
            _ => panic!("no sample within {WAIT}"),
        }
    }

    #[test]
    fn the_puller_counts_and_normalises_each_unit_and_sees_the_end() {
        let encoded = Encoded::new();
        let source = Source::new(encoded.appsink.clone());
        let stats = SinkStats::default();
        let mut puller = Puller::new(&source);
        assert!(matches!(puller.pull(gst::ClockTime::ZERO, &stats).unwrap(), Pull::Idle));

        encoded.push(&IDR_SHORT);
        encoded.push(&P);
        let first = sample(&mut puller, &stats);
        assert_eq!(first.bytes(), IDR_SHORT);
        let info = puller.normalize(&first);
        assert!(info.idr);
        assert_eq!(info.short_start_codes, 2);
        assert_eq!(puller.au, IDR);
        let second = sample(&mut puller, &stats);
        assert!(!puller.normalize(&second).idr);
        assert_eq!(puller.au, P);
        assert_eq!(stats.pulled.load(Ordering::Relaxed), 2);

        encoded.end();
        assert!(matches!(puller.pull(WAIT, &stats).unwrap(), Pull::Eos));
        assert_eq!(stats.pulled.load(Ordering::Relaxed), 2, "an end is no sample");
    }

    #[test]
    fn the_puller_follows_a_replaced_pipeline_with_a_fresh_normaliser() {
        let (old, new) = (Encoded::new(), Encoded::new());
        let source = Source::new(old.appsink.clone());
        let stats = SinkStats::default();
        let mut puller = Puller::new(&source);
        assert!(!puller.follow());
        old.push(&IDR_SHORT);
        let pulled = sample(&mut puller, &stats);
        puller.normalize(&pulled);

        // The old pipeline's end-of-stream during the swap is not the end of the stream.
        source.begin_swap();
        old.end();
        assert!(matches!(puller.pull(WAIT, &stats).unwrap(), Pull::Idle));
        source.replace(new.appsink.clone(), false);
        assert!(puller.follow());
        assert!(!puller.follow(), "a pipeline is taken up once");

        // The old normaliser would put the old SPS/PPS in front of this IDR; the new pipeline's
        // stream has its own.
        new.push(&IDR_ALONE);
        let pulled = sample(&mut puller, &stats);
        let info = puller.normalize(&pulled);
        assert!(info.idr && !info.inserted_parameter_sets);
        assert_eq!(puller.au, IDR_ALONE);
        new.end();
        assert!(matches!(puller.pull(WAIT, &stats).unwrap(), Pull::Eos));
    }
}
