//! The capture thread: waits for the node (the frame loop repeats the last frame meanwhile), runs a
//! pipeline linked to it until it goes away, fails or the capture ends, restarts it with a backoff,
//! and offers each scaled sample to the frame loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use log::{debug, info, warn};

use super::node::{self, Node};
use super::{FORMAT, START_HINT, Shared, gpu, pipeline};
use crate::exit::Exit;
use crate::frame::HostFrame;
use crate::gst_util::bus_error_line;
use crate::source::live::{Latest, SourceEnd};

/// How long a found node may take to be linked to our stream and negotiate a format.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the node list is looked at.
const POLL: Duration = Duration::from_millis(100);
/// Restart backoff after a failure: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(4));

/// Why a running pipeline stopped.
enum Stopped {
    /// The capture is over (the frame loop closed, or the source ended).
    Done,
    /// The node went away.
    Gone,
    /// The pipeline failed; retry after a backoff.
    Failed(String),
}

/// The capture thread: waits for the node, runs a pipeline linked to it, and restarts it.
pub(super) struct Worker {
    pub(super) what: String,
    pub(super) target: String,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) timeout: Option<Duration>,
    pub(super) latest: Arc<Latest>,
    pub(super) shared: Arc<Shared>,
    pub(super) provider: gst::DeviceProvider,
    /// Where DMA-BUF buffers are imported (started with the first one).
    pub(super) gpu: Arc<gpu::GpuRoute>,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed) || self.latest.is_closed()
    }

    fn nodes(&self) -> Vec<Node> {
        node::video_nodes(&self.provider)
    }

    fn find(&self) -> Option<Node> {
        node::find(&self.provider, &self.target)
    }

    pub(super) fn run(self) {
        let mut missing_since = Instant::now();
        let mut ever_linked = false;
        let mut backoff = BACKOFF.0;
        let mut said_waiting = false;
        while !self.stopping() {
            let Some(node) = self.find() else {
                if !said_waiting {
                    let others: Vec<String> = self.nodes().iter().map(|n| n.to_string()).collect();
                    info!(
                        "{}: waiting for a PipeWire video node named {} (video nodes now: {}); the last frame repeats meanwhile",
                        self.what,
                        self.target,
                        if others.is_empty() { "none".to_string() } else { others.join(", ") }
                    );
                    said_waiting = true;
                }
                if let Some(t) = self.timeout
                    && missing_since.elapsed() >= t
                {
                    self.latest.end(node::missing_end(&self.what, &self.target, ever_linked, t));
                    break;
                }
                thread::sleep(POLL);
                continue;
            };
            said_waiting = false;
            let started = Instant::now();
            match self.capture(&node) {
                Stopped::Done => break,
                Stopped::Gone => {
                    ever_linked = true;
                    warn!(
                        "{}: node {node} went away; the last frame repeats at --fps until a node {} appears again",
                        self.what, self.target
                    );
                    missing_since = Instant::now();
                    backoff = BACKOFF.0;
                }
                Stopped::Failed(why) => {
                    if started.elapsed() > BACKOFF.1 * 2 {
                        backoff = BACKOFF.0;
                    }
                    warn!("{}: {why}; restarting in {} ms", self.what, backoff.as_millis());
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
        self.gpu.close();
        // The provider is not stopped: GStreamer keeps one per process, and PipeWire 0.3.65's
        // stop() races with its own loop thread (heap corruption at exit in 2 of 12 runs here, none
        // in 25 without it). Started once, it idles until the process ends.
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() && Instant::now() < until {
            thread::sleep(POLL.min(until - Instant::now()));
        }
    }

    /// Runs one pipeline linked to `node` until it stops.
    fn capture(&self, node: &Node) -> Stopped {
        let (pipeline, appsink) =
            match pipeline::build(node, &self.what, self.width, self.height, &self.shared, &self.gpu) {
                Ok(p) => p,
                Err(e) => return Stopped::Failed(format!("{e:#}")),
            };
        {
            let mut s = self.shared.state();
            s.node = Some(node.to_string());
            s.connected = true;
            s.negotiated = None;
        }
        info!("{}: linking to node {node}", self.what);
        // pipewiresrc waits (up to 30 s) in its state change until a session manager linked the
        // stream, so the change runs on GStreamer's thread pool and this thread keeps watching.
        pipeline.call_async(|p| {
            if let Err(e) = p.set_state(gst::State::Playing) {
                debug!("pipewire: set_state(Playing): {e}");
            }
        });
        let bus = pipeline.bus().expect("a pipeline has a bus");
        let started = Instant::now();
        let mut last_look = Instant::now();
        let outcome = loop {
            if self.stopping() {
                break Stopped::Done;
            }
            if let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_mseconds(POLL.as_millis() as u64)) {
                if let Err(e) = self.offer(&sample) {
                    break Stopped::Failed(format!("{e:#}"));
                }
                if self.latest.is_closed() {
                    break Stopped::Done;
                }
            }
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
                match msg.view() {
                    gst::MessageView::Error(e) => break Stopped::Failed(bus_error_line(&msg, e)),
                    _ => break Stopped::Failed("the node ended its stream (EOS)".into()),
                }
            }
            if last_look.elapsed() >= POLL * 2 {
                last_look = Instant::now();
                if self.find().as_ref() != Some(node) {
                    break Stopped::Gone;
                }
                if self.shared.state().negotiated.is_none() && started.elapsed() > LINK_TIMEOUT {
                    self.latest.end(SourceEnd::Failed(
                        Exit::Unavailable,
                        format!(
                            "{}: node {node} is there but nothing linked our stream to it within {} s: \
                             no session manager? (WirePlumber; {START_HINT})",
                            self.what,
                            LINK_TIMEOUT.as_secs()
                        ),
                    ));
                    // The state change may still be waiting for a link: leave the pipeline to a
                    // thread of its own rather than wait for pipewiresrc's 30 s timeout.
                    thread::spawn(move || {
                        let _ = pipeline.set_state(gst::State::Null);
                    });
                    return Stopped::Done;
                }
            }
        };
        if let Err(e) = pipeline.set_state(gst::State::Null) {
            debug!("{}: stopping the pipeline: {e}", self.what);
        }
        self.shared.state().connected = false;
        outcome
    }

    /// Copies a sample into a rawvideo buffer and offers it.
    fn offer(&self, sample: &gst::Sample) -> anyhow::Result<()> {
        let arrived = Instant::now();
        let caps = sample.caps().context("a sample without caps")?;
        let info = gst_video::VideoInfo::from_caps(caps).context("the sample's caps are not raw video")?;
        let buffer = sample.buffer().context("a sample without a buffer")?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|_| anyhow::anyhow!("mapping a {}x{} frame", info.width(), info.height()))?;
        if (info.width(), info.height()) != (self.width, self.height) || info.format() != gst_video::VideoFormat::I420 {
            bail!(
                "appsink delivered {:?} {}x{}, not the I420 caps it asked for",
                info.format(),
                info.width(),
                info.height()
            );
        }
        let mut data = self.latest.buffer(FORMAT.frame_bytes(self.width, self.height));
        pipeline::copy_planes(&frame, &mut data)?;
        drop(frame);
        self.latest.offer(HostFrame { data, arrived });
        Ok(())
    }
}
