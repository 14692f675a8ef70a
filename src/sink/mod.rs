//! The sink stage: takes encoded access units from the appsink, normalises them to go2rtc's exact
//! byte rules (annexb), and writes each one whole. `stdout.rs` owns the output descriptor.

pub mod stdout;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer_app as gst_app;
use log::{debug, warn};

use crate::annexb::Normalizer;
use crate::exit::{Exit, ExitExt};

/// How often the writer looks at the stop flag while no access unit arrives.
const POLL: Duration = Duration::from_millis(20);

/// Counters the writer keeps; read by the frame loop for its stats line.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub access_units: AtomicU64,
    pub idr: AtomicU64,
    pub bytes: AtomicU64,
    /// Access units dropped while waiting for the first IDR.
    pub skipped_before_idr: AtomicU64,
    /// Access units that needed SPS/PPS inserted or start codes lengthened.
    pub repaired: AtomicU64,
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

/// Pulls access units until EOS, the stop flag, or a write error.
pub fn run_writer(appsink: &gst_app::AppSink, out: &mut impl Write, stop: &AtomicBool, stats: &SinkStats) -> SinkEnd {
    let mut normalizer = Normalizer::new();
    let mut au = Vec::with_capacity(256 * 1024);
    let mut waiting_for_idr = true;
    let mut warned_slices = false;
    loop {
        if stop.load(Ordering::Acquire) {
            return SinkEnd::Stopped;
        }
        let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64)) else {
            if appsink.is_eos() {
                return SinkEnd::Eos;
            }
            continue;
        };
        let Some(buffer) = sample.buffer() else { continue };
        let map = match buffer.map_readable() {
            Ok(m) => m,
            Err(e) => return SinkEnd::Failed(anyhow::anyhow!("mapping an encoded buffer: {e}")),
        };
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
        if let Err(e) = out.write_all(&au).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return SinkEnd::ReaderGone;
            }
            return SinkEnd::Failed(Err::<(), _>(e).exit(Exit::Io).unwrap_err().context("writing the stream"));
        }
        stats.access_units.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(au.len() as u64, Ordering::Relaxed);
        if info.idr {
            stats.idr.fetch_add(1, Ordering::Relaxed);
        }
    }
}
