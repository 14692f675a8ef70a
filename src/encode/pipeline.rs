//! The GStreamer pipeline:
//!
//! ```text
//! appsrc (live, TIME, explicit PTS) -> [videoconvert -> capsfilter] -> queue -> encoder
//!   -> capsfilter (profile) -> h264parse (SPS/PPS before every IDR) -> capsfilter (byte-stream, au)
//!   -> appsink
//! ```
//!
//! Every queue is bounded. Raw frames are dropped (and counted) before the encoder when it falls
//! behind; encoded access units are never dropped here (appsink `drop=false`): only the sink may drop
//! them, and only whole, resuming at an IDR.

use anyhow::{Context as _, anyhow};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use log::{debug, info, warn};

use super::factory::{Missing, apply_properties, apply_user_options, factory_for};
use crate::encode::settings::{self, Backend, EncoderSettings};
use crate::exit::{Exit, ExitExt, fail};
use crate::frame::{Frame, PixFmt, RawFormat};
use crate::gst_util::{bus_error_line, caps_for, copy_planes, make};

/// Raw frames queued in appsrc before new ones are dropped.
pub const APPSRC_MAX_BUFFERS: u64 = 2;
/// Raw frames between conversion and the encoder.
const QUEUE_MAX_BUFFERS: u32 = 2;
/// Encoded access units waiting for the sink thread.
pub const APPSINK_MAX_BUFFERS: u32 = 8;

/// What the render stage hands the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// RGBA, converted by videoconvert into the given layout.
    Rgba(RawFormat),
    /// Already YUV in this layout (the GPU packed it).
    Yuv(RawFormat),
    /// NV12 in CUDA memory on the GPU (the zero-copy path); `Setup::cuda_context` is its context.
    Cuda,
    /// The agent's frames in host memory, in this format's rawvideo layout (no GL involved);
    /// converted on the CPU only if the encoder takes another format.
    Host(PixFmt),
}

impl Input {
    /// The encoder's own layout, when the frames already are in one.
    fn as_raw(self) -> Option<RawFormat> {
        match self {
            Input::Yuv(f) => Some(f),
            Input::Cuda | Input::Host(PixFmt::Nv12) => Some(RawFormat::Nv12),
            Input::Host(PixFmt::I420) => Some(RawFormat::I420),
            Input::Rgba(_) | Input::Host(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub input: Input,
    pub backend: Backend,
    pub settings: EncoderSettings,
    /// `--encoder-opt` overrides, applied after the table.
    pub options: &'a [(String, String)],
    /// Testing aids ([`crate::faults`]): silence after this many access units (a stall) ...
    pub stall_after: Option<u64>,
    /// ... or an encoder error after this many (a failure).
    pub fail_after: Option<u64>,
    /// Wrap the stream in MPEG-TS (mpegtsmux) instead of raw Annex-B.
    pub mpegts: bool,
    /// `--gpu`: the CUDA device NVENC must open on (`None`: the first).
    pub gpu: Option<u32>,
    /// With `Input::Cuda`: the `gst.cuda.context` the frames' memory belongs to.
    pub cuda_context: Option<&'a gst::Context>,
}

fn raw_caps(format: &str, s: &Setup, colorimetry: &str) -> gst::Caps {
    caps_for(format, s.width, s.height, s.fps, colorimetry)
}

/// Packages named in the hint when an element is missing.
const BASE: &str = "gstreamer1.0-plugins-base";
const BAD: &str = "gstreamer1.0-plugins-bad";

/// The running pipeline.
pub struct Encoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    appsink: gst_app::AppSink,
    frame_bytes: usize,
    /// With `Input::Host`: how an agent's frame becomes a buffer, and GStreamer's layout of that
    /// buffer (which pads rows, e.g. RGB rows to 4 bytes).
    host: Option<(HostIn, gst_video::VideoInfo)>,
    frame_duration: gst::ClockTime,
    fps: u32,
    /// The pipeline converts raw frames with videoconvert.
    videoconvert: bool,
}

/// How an agent's host frame goes in.
#[derive(Debug)]
enum HostIn {
    /// Copied (or lent) as it is: its rawvideo plane layout.
    Copy(Vec<crate::frame::PlaneLayout>),
    /// Converted from RGB on the CPU into the encoder's YUV layout.
    Convert { from: PixFmt, to: RawFormat },
}

/// Result of offering a frame to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The encoder is behind and its input queue is full; the frame was not taken.
    Full,
}

impl Encoder {
    pub fn new(s: &Setup) -> anyhow::Result<Encoder> {
        let plan = InputPlan::new(s)?;
        let appsrc = gst_app::AppSrc::builder()
            .name("frames")
            .caps(&plan.src_caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .block(false)
            .max_buffers(APPSRC_MAX_BUFFERS)
            .max_bytes(0)
            .build();
        let appsink = gst_app::AppSink::builder()
            .name("stream")
            .sync(false)
            .max_buffers(APPSINK_MAX_BUFFERS)
            .drop(false)
            .enable_last_sample(false)
            .build();
        let mut chain: Vec<gst::Element> = vec![appsrc.clone().upcast()];
        chain.extend(conversion(s, &plan)?);
        chain.extend(encoding(s)?);
        chain.push(appsink.clone().upcast());

        let pipeline = gst::Pipeline::with_name("agentcast");
        pipeline.add_many(&chain).context("building the pipeline")?;
        if let Some(context) = s.cuda_context {
            // The bin hands it to every element: nvcodec then uses our CUDA context, not its own.
            pipeline.set_context(context);
        }
        gst::Element::link_many(&chain).context("linking the pipeline (caps did not negotiate)")?;
        info!(
            "pipeline: appsrc {} -> {}{} -> h264parse -> appsink ({} kbit/s CBR, GOP {}, VBV {} ms, qp-max {}, profile {})",
            plan.src_caps.structure(0).and_then(|st| st.get::<&str>("format").ok()).unwrap_or("?"),
            if plan.needs_convert { format!("videoconvert -> {} -> ", plan.yuv.caps_name()) } else { String::new() },
            s.backend.element(),
            s.settings.bitrate_kbps,
            s.settings.gop,
            s.settings.vbv_ms(),
            s.settings.qp_max,
            s.settings.profile.caps_name()
        );
        let frame_duration = gst::ClockTime::from_nseconds(crate::clock::stream_time(1, s.fps).as_nanos() as u64);
        Ok(Encoder {
            pipeline,
            appsrc,
            appsink,
            frame_bytes: plan.frame_bytes,
            host: plan.host,
            frame_duration,
            fps: s.fps,
            videoconvert: plan.needs_convert,
        })
    }

    /// Starts the pipeline. Errors from elements that fail to open arrive here or on the bus.
    pub fn start(&self) -> anyhow::Result<()> {
        self.pipeline.set_state(gst::State::Playing).map(|_| ()).map_err(|_| match self.pending_error() {
            Some(e) => fail(Exit::Software, e),
            None => fail(Exit::Software, "the pipeline failed to start"),
        })
    }

    /// An error already posted on the bus, if any, as one line.
    pub fn pending_error(&self) -> Option<String> {
        first_bus_error(&self.pipeline.bus()?)
    }

    pub fn bus(&self) -> gst::Bus {
        self.pipeline.bus().expect("a pipeline always has a bus")
    }

    pub fn appsink(&self) -> gst_app::AppSink {
        self.appsink.clone()
    }

    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// PTS of stream frame `index`, from the frame clock.
    pub fn pts(&self, index: u64) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(crate::clock::stream_time(index, self.fps).as_nanos() as u64)
    }

    /// How an agent's host frames reach the encoder, for the `path:` line.
    pub fn host_route(&self) -> String {
        match &self.host {
            Some((HostIn::Convert { from, to }, _)) => {
                format!("{from} -> {} on the CPU (yuvutils-rs)", to.caps_name())
            }
            Some((HostIn::Copy(_), _)) if self.videoconvert => "videoconvert".into(),
            Some((HostIn::Copy(_), _)) if self.takes_host_buffers() => "as they are (no copy)".into(),
            Some((HostIn::Copy(_), _)) => "copied into GStreamer's layout".into(),
            None => String::new(),
        }
    }

    /// Whether agent frames in their rawvideo layout are also in GStreamer's layout for the caps
    /// (same plane offsets and strides), so their bytes can go in without a copy.
    pub fn takes_host_buffers(&self) -> bool {
        self.host.as_ref().is_some_and(|(how, info)| {
            let HostIn::Copy(planes) = how else { return false };
            planes.len() == info.n_planes() as usize
                && planes
                    .iter()
                    .zip(info.offset().iter().zip(info.stride()))
                    .all(|(p, (&o, &st))| p.offset == o && p.stride == st as usize)
        })
    }

    /// Whether the input queue has room for another frame.
    pub fn has_room(&self) -> bool {
        self.appsrc.current_level_buffers() < APPSRC_MAX_BUFFERS
    }

    /// Offers a frame (stream index `index`, in the input layout) without blocking.
    pub fn push(&self, index: u64, frame: Frame<'_>) -> anyhow::Result<Push> {
        if let Some(bytes) = frame.bytes()
            && bytes.len() != self.frame_bytes
        {
            return Err(anyhow!("frame of {} bytes, the caps need {}", bytes.len(), self.frame_bytes));
        }
        if !self.has_room() {
            return Ok(Push::Full);
        }
        let mut buffer = match frame {
            Frame::Cuda(buffer) | Frame::Buffer(buffer) => buffer,
            Frame::Bytes(bytes) => {
                let mut buffer = gst::Buffer::with_size(bytes.len()).context("allocating a frame buffer")?;
                let b = buffer.get_mut().expect("a new buffer is writable");
                b.map_writable().context("mapping a frame buffer")?.copy_from_slice(bytes);
                buffer
            }
            Frame::Host(bytes) => {
                let (how, info) = self.host.as_ref().context("a host frame on a pipeline built for rendered frames")?;
                let mut buffer = gst::Buffer::with_size(info.size()).context("allocating a frame buffer")?;
                let b = buffer.get_mut().expect("a new buffer is writable");
                let mut map = b.map_writable().context("mapping a frame buffer")?;
                match how {
                    HostIn::Copy(planes) => copy_planes(bytes, planes, &mut map, info.offset(), info.stride()),
                    HostIn::Convert { from, to } => crate::encode::host::to_yuv(
                        *from,
                        bytes,
                        (info.width(), info.height()),
                        *to,
                        &mut map,
                        info.offset(),
                        info.stride(),
                    )
                    .map_err(|e| fail(Exit::Software, format!("{e:#}")))?,
                }
                drop(map);
                buffer
            }
        };
        let b = buffer.make_mut();
        b.set_pts(self.pts(index));
        b.set_duration(self.frame_duration);
        self.appsrc
            .push_buffer(buffer)
            .map_err(|e| fail(Exit::Software, format!("pushing a frame into the encoder: {e:?}")))?;
        Ok(Push::Queued)
    }

    /// Makes the next frame an IDR with SPS/PPS in front.
    pub fn force_keyframe(&self) {
        let event = gst_video::DownstreamForceKeyUnitEvent::builder().all_headers(true).build();
        if !self.appsrc.send_event(event) {
            debug!("the encoder did not accept a force-key-unit event (not running)");
        }
    }

    /// No more frames: the encoder drains and the appsink reaches EOS.
    pub fn end_of_stream(&self) {
        if let Err(e) = self.appsrc.end_of_stream() {
            debug!("appsrc end_of_stream: {e:?}");
        }
    }

    /// Stops the pipeline; unblocks every streaming thread.
    pub fn stop(&self) {
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            warn!("stopping the pipeline: {e}");
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// How frames reach the encoder: the caps appsrc announces, the layout the encoder gets, and what
/// goes between.
struct InputPlan {
    /// The encoder's own layout, and its caps.
    yuv: RawFormat,
    yuv_caps: gst::Caps,
    src_caps: gst::Caps,
    /// videoconvert goes between appsrc and the encoder.
    needs_convert: bool,
    frame_bytes: usize,
    host: Option<(HostIn, gst_video::VideoInfo)>,
}

impl InputPlan {
    fn new(s: &Setup) -> anyhow::Result<InputPlan> {
        let accepts = |f: RawFormat| s.backend.raw_formats().contains(&f);
        // The layout the encoder gets: the planned one if it takes it (a backend chosen after a
        // runtime fallback may not), else its own first choice.
        let yuv = match s.input {
            Input::Rgba(f) if accepts(f) => f,
            input => input.as_raw().filter(|f| accepts(*f)).unwrap_or(s.backend.raw_formats()[0]),
        };
        // BT.709 limited range: what the GPU pass writes and what videoconvert is told to write.
        let yuv_caps = raw_caps(yuv.caps_name(), s, "bt709");
        // An agent's RGB frames become the encoder's YUV on the CPU (encode::host) where
        // GStreamer's layout for it is tightly packed; videoconvert does the rest.
        let yuv_info = gst_video::VideoInfo::from_caps(&yuv_caps).context("encoder caps")?;
        let host_converts =
            |f: PixFmt| crate::encode::host::converts(f) && crate::encode::host::fits(yuv, s.width, yuv_info.stride());
        let src_caps = match s.input {
            Input::Rgba(_) => raw_caps("RGBA", s, "sRGB"),
            Input::Yuv(f) => raw_caps(f.caps_name(), s, "bt709"),
            Input::Cuda => crate::cuda::frames::caps(s.width, s.height, s.fps),
            // RGB frames are converted on the CPU into the encoder's own layout (encode::host).
            Input::Host(f) if host_converts(f) => yuv_caps.clone(),
            Input::Host(f) => {
                raw_caps(f.caps_name(), s, if matches!(f, PixFmt::Nv12 | PixFmt::I420) { "bt709" } else { "sRGB" })
            }
        };
        let needs_convert = match s.input {
            Input::Rgba(_) => true,
            Input::Host(f) if host_converts(f) => false,
            input => input.as_raw() != Some(yuv),
        };
        let info = gst_video::VideoInfo::from_caps(&src_caps).context("input caps")?;
        let (frame_bytes, host) = match s.input {
            Input::Host(f) => {
                let how = if host_converts(f) {
                    HostIn::Convert { from: f, to: yuv }
                } else {
                    HostIn::Copy(f.planes(s.width, s.height))
                };
                (f.frame_bytes(s.width, s.height), Some((how, info.clone())))
            }
            _ => (info.size(), None),
        };
        if let Input::Yuv(packed_format) = s.input {
            let yuv = packed_format;
            // The GPU pass writes tightly packed planes; GStreamer's default layout must agree.
            let packed = s.width as usize * s.height as usize * 3 / 2;
            if frame_bytes != packed || info.stride()[0] != s.width as i32 {
                return Err(anyhow!(
                    "{} {}x{}: GStreamer's layout ({frame_bytes} bytes, stride {}) is not tightly packed",
                    yuv.caps_name(),
                    s.width,
                    s.height,
                    info.stride()[0]
                ));
            }
        }
        Ok(InputPlan { yuv, yuv_caps, src_caps, needs_convert, frame_bytes, host })
    }
}

/// What goes between appsrc and the encoder's queue: cudadownload for CUDA frames into a CPU
/// encoder, and videoconvert where the layout is not the encoder's.
fn conversion(s: &Setup, plan: &InputPlan) -> anyhow::Result<Vec<gst::Element>> {
    let mut chain = Vec::new();
    if s.input == Input::Cuda && !s.backend.is_nvenc() {
        // Frames in CUDA memory into a CPU encoder: only as the testing aid that checks the
        // CUDA handoff on GPUs without NVENC, or after NVENC failed at run time.
        warn!("cudadownload copies every frame to the host for {}", s.backend.element());
        chain.push(make("cudadownload", BAD)?);
        let filter = make("capsfilter", "gstreamer1.0 core")?;
        filter.set_property("caps", raw_caps("NV12", s, "bt709"));
        chain.push(filter);
    }
    if plan.needs_convert {
        let convert = make("videoconvert", BASE)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        convert.set_property("n-threads", threads);
        let filter = make("capsfilter", "gstreamer1.0 core")?;
        filter.set_property("caps", &plan.yuv_caps);
        chain.push(convert);
        chain.push(filter);
    }
    Ok(chain)
}

/// queue -> encoder -> capsfilter (profile) -> h264parse -> capsfilter (byte-stream, au)
/// [-> mpegtsmux].
fn encoding(s: &Setup) -> anyhow::Result<Vec<gst::Element>> {
    let mut chain = Vec::new();
    let queue = make("queue", "gstreamer1.0 core")?;
    queue.set_property("max-size-buffers", QUEUE_MAX_BUFFERS);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    chain.push(queue);

    let factory = factory_for(s.backend, s.gpu).map_err(|e| fail(Exit::Unavailable, e))?;
    let encoder = make(&factory, s.backend.package())?;
    apply_properties(&encoder, &settings::properties(s.backend, &s.settings), Missing::Warn).exit(Exit::Unavailable)?;
    apply_user_options(&encoder, s.backend, s.options)?;
    crate::faults::install(&encoder, s.backend.element(), s.fail_after, s.stall_after);
    chain.push(encoder);
    let profile = make("capsfilter", "gstreamer1.0 core")?;
    profile.set_property(
        "caps",
        gst::Caps::builder("video/x-h264").field("profile", s.settings.profile.caps_name()).build(),
    );
    chain.push(profile);
    let parse = make("h264parse", BAD)?;
    parse.set_property("config-interval", -1i32);
    chain.push(parse);
    let out = make("capsfilter", "gstreamer1.0 core")?;
    out.set_property(
        "caps",
        gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build(),
    );
    chain.push(out);
    if s.mpegts {
        let mux = make("mpegtsmux", BAD)?;
        // PAT/PMT about every 100 ms, so a reader joining mid-stream finds them quickly.
        mux.set_property("si-interval", 100u32);
        chain.push(mux);
    }
    Ok(chain)
}

/// The first error already posted on `bus`, as one line.
pub(super) fn first_bus_error(bus: &gst::Bus) -> Option<String> {
    let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(bus_error_line(&msg, e)),
        _ => None,
    }
}
