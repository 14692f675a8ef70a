//! The writer for outputs with one reader for the process's life (stdout, an RTSP server we publish
//! to): every access unit (or MPEG-TS batch) is written whole with blocking writes, so a slow reader
//! makes the encoder drop raw frames upstream, never cut ones.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use log::{debug, warn};

use super::{FrameTiming, Pull, Pulled, Puller, SinkEnd, SinkStats, Source, ts};
use crate::exit::{Exit, ExitExt};

/// Most MPEG-TS bytes gathered into one write (a few frames' worth).
const TS_BATCH_BYTES: usize = 1 << 20;
/// Longest wait for the rest of a PES whose packets are coming (mpegtsmux sends them in one burst).
const TS_PES_WAIT: gst::ClockTime = gst::ClockTime::from_mseconds(5);
/// How often the writer looks at the stop flag while no access unit arrives.
const POLL: Duration = Duration::from_millis(20);

/// What the encoder's buffers hold, which says how [`run_writer`] writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// H.264 access units (`--mux raw`, RTSP): normalised, and the stream starts at an IDR.
    AnnexB,
    /// MPEG-TS packets: written as they come, a frame's packets in one write.
    MpegTs,
}

/// Where [`run_writer`] puts each whole access unit (or MPEG-TS buffer): any byte writer (stdout),
/// or a publisher that also needs the unit's PTS ([`super::rtsp::Publisher`]). An error says how
/// the stream ends: [`SinkEnd::ReaderGone`] when the reader left, else [`SinkEnd::Failed`].
pub trait AuOut {
    fn put(&mut self, au: &[u8], pts: Option<gst::ClockTime>) -> Result<(), SinkEnd>;
}

impl<W: Write> AuOut for W {
    fn put(&mut self, au: &[u8], _pts: Option<gst::ClockTime>) -> Result<(), SinkEnd> {
        self.write_all(au).and_then(|()| self.flush()).map_err(write_failed)
    }
}

fn write_failed(e: std::io::Error) -> SinkEnd {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return SinkEnd::ReaderGone;
    }
    SinkEnd::Failed(Err::<(), _>(e).exit(Exit::Io).unwrap_err().context("writing the stream"))
}

/// Pulls access units until EOS, the stop flag, or a write error, and writes them as `payload` says.
pub fn run_writer(
    source: &Source,
    out: &mut impl AuOut,
    stop: &AtomicBool,
    stats: &SinkStats,
    payload: Payload,
    timing: &FrameTiming,
) -> SinkEnd {
    let mut puller = Puller::new(source);
    let mut h264 = H264Writer { waiting_for_idr: true, warned_slices: false };
    let mut mpegts = TsWriter::default();
    let wait = gst::ClockTime::from_nseconds(POLL.as_nanos() as u64);
    loop {
        if stop.load(Ordering::Acquire) {
            return SinkEnd::Stopped;
        }
        if puller.follow() {
            // A rebuilt pipeline: its stream starts again at an IDR with its own SPS/PPS.
            h264.waiting_for_idr = true;
        }
        let pulled = match puller.pull(wait, stats) {
            Ok(Pull::Sample(p)) => p,
            Ok(Pull::Empty | Pull::Idle) => continue,
            Ok(Pull::Eos) => return SinkEnd::Eos,
            Err(e) => return SinkEnd::Failed(e),
        };
        let written = match payload {
            Payload::AnnexB => h264.write(&pulled, &mut puller, out, stats, timing),
            Payload::MpegTs => mpegts.write(&pulled, &puller, out, stats, timing),
        };
        if let Err(end) = written {
            return end;
        }
    }
}

/// Counts a written access unit (or MPEG-TS batch) and notes when the frame in it was written.
fn wrote(stats: &SinkStats, timing: &FrameTiming, index: Option<u64>, at: Instant, bytes: usize) {
    if let Some(i) = index {
        timing.timings.written(i, at, Instant::now());
    }
    stats.access_units.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// H.264 access units: normalised, and none written before the first IDR.
struct H264Writer {
    waiting_for_idr: bool,
    warned_slices: bool,
}

impl H264Writer {
    fn write(
        &mut self,
        pulled: &Pulled,
        puller: &mut Puller<'_>,
        out: &mut impl AuOut,
        stats: &SinkStats,
        timing: &FrameTiming,
    ) -> Result<(), SinkEnd> {
        let index = timing.index_of(&pulled.sample);
        let info = puller.normalize(pulled);
        if self.waiting_for_idr && !info.idr {
            stats.skipped_before_idr.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.waiting_for_idr = false;
        if (info.slices > 1 || info.b_slices > 0) && !self.warned_slices {
            self.warned_slices = true;
            warn!(
                "the encoder wrote {} slice(s) and {} B slice(s) in one picture; go2rtc cannot frame that",
                info.slices, info.b_slices
            );
        }
        if info.inserted_parameter_sets || info.short_start_codes > 0 {
            stats.repaired.fetch_add(1, Ordering::Relaxed);
            debug!("repaired an access unit: {info:?}");
        }
        out.put(&puller.au, pulled.pts())?;
        wrote(stats, timing, index, pulled.at, puller.au.len());
        if info.idr {
            stats.idr.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// MPEG-TS: mpegtsmux hands out one 188-byte packet per buffer, a frame's packets in one burst.
#[derive(Default)]
struct TsWriter {
    /// The frame whose packets were written last.
    frame: Option<u64>,
    /// Where the current PES ends.
    pes: ts::PesTracker,
    batch: Vec<u8>,
}

impl TsWriter {
    /// Gathers the packets that follow `pulled` and writes them in one go. Only while a PES of
    /// declared length is still coming is there a (short) wait; otherwise only what is already
    /// there is taken.
    fn write(
        &mut self,
        pulled: &Pulled,
        puller: &Puller<'_>,
        out: &mut impl AuOut,
        stats: &SinkStats,
        timing: &FrameTiming,
    ) -> Result<(), SinkEnd> {
        // Each packet carries its PES's PTS; a frame's times are noted with its first packet.
        let first_of_frame = timing.index_of(&pulled.sample).filter(|i| self.frame.replace(*i) != Some(*i));
        self.batch.clear();
        self.batch.extend_from_slice(pulled.bytes());
        let mut whole = self.pes.feed(pulled.bytes());
        while !whole && self.batch.len() < TS_BATCH_BYTES {
            let wait = if self.pes.mid_pes() { TS_PES_WAIT } else { gst::ClockTime::ZERO };
            let Some(more) = puller.appsink().try_pull_sample(wait) else { break };
            stats.pulled.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = more.buffer().and_then(|b| b.map_readable().ok()) {
                self.batch.extend_from_slice(m.as_slice());
                whole = self.pes.feed(m.as_slice());
            }
        }
        out.put(&self.batch, pulled.pts())?;
        wrote(stats, timing, first_of_frame, pulled.at, self.batch.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{Encoded, IDR, IDR_SHORT, P};
    use super::*;

    fn timing() -> FrameTiming {
        FrameTiming { timings: std::sync::Arc::new(crate::stats::Timings::default()), fps: 30 }
    }

    #[test]
    fn h264_starts_at_an_idr_and_is_written_normalised_until_the_end() {
        let encoded = Encoded::new();
        for au in [&P[..], &IDR_SHORT, &P] {
            encoded.push(au);
        }
        encoded.end();
        let (source, stats, mut out) = (Source::new(encoded.appsink.clone()), SinkStats::default(), Vec::new());
        let end = run_writer(&source, &mut out, &AtomicBool::new(false), &stats, Payload::AnnexB, &timing());
        assert!(matches!(end, SinkEnd::Eos), "{end:?}");
        assert_eq!(out, [&IDR[..], &P].concat());
        let count = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(count(&stats.pulled), 3);
        assert_eq!(count(&stats.skipped_before_idr), 1);
        assert_eq!((count(&stats.access_units), count(&stats.idr), count(&stats.repaired)), (2, 1, 1));
        assert_eq!(count(&stats.bytes), (IDR.len() + P.len()) as u64);
    }

    #[test]
    fn mpeg_ts_is_written_as_it_comes() {
        let encoded = Encoded::new();
        encoded.push(&P);
        encoded.push(&IDR_SHORT);
        encoded.end();
        let (source, stats, mut out) = (Source::new(encoded.appsink.clone()), SinkStats::default(), Vec::new());
        let end = run_writer(&source, &mut out, &AtomicBool::new(false), &stats, Payload::MpegTs, &timing());
        assert!(matches!(end, SinkEnd::Eos), "{end:?}");
        assert_eq!(out, [&P[..], &IDR_SHORT].concat());
        assert_eq!(stats.skipped_before_idr.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_stop_flag_stops_the_writer() {
        let encoded = Encoded::new();
        encoded.push(&IDR_SHORT);
        let (source, stats, mut out) = (Source::new(encoded.appsink.clone()), SinkStats::default(), Vec::new());
        let end = run_writer(&source, &mut out, &AtomicBool::new(true), &stats, Payload::AnnexB, &timing());
        assert!(matches!(end, SinkEnd::Stopped), "{end:?}");
        assert!(out.is_empty());
    }

    /// A writer that fails every write with `kind`.
    struct Failing(std::io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_the_reader_leaving_and_other_errors_fail() {
        let gone = Failing(std::io::ErrorKind::BrokenPipe).put(&P, None);
        assert!(matches!(gone, Err(SinkEnd::ReaderGone)));
        match Failing(std::io::ErrorKind::PermissionDenied).put(&P, None) {
            Err(SinkEnd::Failed(e)) => assert!(format!("{e:#}").starts_with("writing the stream"), "{e:#}"),
            other => panic!("{other:?}"),
        }
    }
}
