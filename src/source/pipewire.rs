//! `--source pipewire:TARGET`: frames from a PipeWire video node (gamescope, a screen-cast portal,
//! a compositor), through GStreamer's `pipewiresrc`.
//!
//! The pipeline is `pipewiresrc target-object=SERIAL ! capsfilter (BGRx, NV12, RGBx, BGRA, RGBA,
//! I420) ! videoconvert ! videoscale add-borders=true ! I420 WxH, pixel-aspect-ratio 1/1 !
//! appsink max-buffers=1 drop=true sync=false`: whatever size the node sends, or changes to
//! mid-stream, is scaled into the stream's fixed size with its aspect ratio kept (borders). Each
//! sample is copied into a [`Latest`] buffer in the rawvideo layout and offered; PipeWire gets its
//! buffer back as soon as `videoconvert` has read it (or, when nothing needs converting, as soon as
//! the copy is done), so a source that owns few buffers never starves.
//!
//! Shared memory (MemFd, MemPtr) works everywhere. A DMA-BUF buffer is imported as an EGL image
//! where the EGL display can (`EGL_EXT_image_dma_buf_import`): it is letterboxed and packed into
//! I420 on the GPU on a thread of its own and never reaches `videoconvert` (see [`gpu`]; GStreamer
//! 1.22's caps carry no DRM modifier, so the driver's implicit layout is assumed). Elsewhere, or
//! after an import failed, it is read through a CPU mapping by `videoconvert` (linear layouts only),
//! and the reason is logged once. The memory type that arrived, and which way DMA-BUFs went, is
//! reported by [`Capture::memory`], [`Capture::describe`] and the `path:` log line.
//!
//! The node is found through GStreamer's PipeWire device provider (TARGET is a `node.name`,
//! `object.serial` or object id). While it is missing, nothing is offered and the frame loop
//! repeats the last frame; when it appears (again) the pipeline is (re)started, with a backoff.
//! A node that never appears ends the source after the timeout the caller passes
//! (`--source-timeout`), one that went away and did not come back ends it cleanly after the same
//! timeout. No PipeWire daemon is an `Exit::Unavailable` error from [`Capture::start`]; a node that
//! nothing links our stream to (no session manager) ends the source with `Exit::Unavailable`.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use log::{debug, info, warn};

use crate::exit::{Exit, ExitExt};
use crate::frame::{HostFrame, PixFmt};
use crate::gst_util::{bus_error_line, init, make};
use crate::source::live::{Latest, SourceEnd};

mod gpu;

/// The formats taken from the node: what gamescope offers (BGRx, NV12) and the common others.
pub const NODE_FORMATS: [PixFmt; 6] =
    [PixFmt::Bgr0, PixFmt::Nv12, PixFmt::Rgb0, PixFmt::Bgra, PixFmt::Rgba, PixFmt::I420];
/// What the frames handed to the frame loop are.
pub const FORMAT: PixFmt = PixFmt::I420;
/// How long a found node may take to be linked to our stream and negotiate a format.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the node list is looked at.
const POLL: Duration = Duration::from_millis(100);
/// Restart backoff after a failure: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(4));
/// The hint in every "start PipeWire" message.
const START_HINT: &str =
    "start one with scripts/pipewire-headless.sh start, then eval \"$(scripts/pipewire-headless.sh env)\"";

/// Which kind of memory the node's buffers came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// A shared-memory file descriptor (memfd), mapped by the CPU.
    MemFd,
    /// Memory PipeWire had already mapped (or copied) for us.
    MemPtr,
    /// A DMA-BUF: imported as an EGL image where the display can, else read through a CPU
    /// mapping (see the module doc).
    DmaBuf,
}

impl Memory {
    /// Classifies a buffer's first memory by its allocator's type.
    fn of(buffer: &gst::BufferRef) -> Option<Memory> {
        if buffer.n_memory() == 0 {
            return None;
        }
        let mem = buffer.peek_memory(0);
        Some(if mem.is_type("dmabuf") {
            Memory::DmaBuf
        } else if mem.is_type("fd") {
            Memory::MemFd
        } else {
            Memory::MemPtr
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Memory::MemFd => "MemFd",
            Memory::MemPtr => "MemPtr",
            Memory::DmaBuf => "DmaBuf",
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is known about the connection, for logs and stats.
#[derive(Debug, Default, Clone)]
struct State {
    /// The node we are (or were last) linked to: `name (serial N)`.
    node: Option<String>,
    /// The node's format and size: `BGRx 320x240`.
    negotiated: Option<String>,
    memory: Option<Memory>,
    /// How DMA-BUF buffers went, once decided: `Ok` imported as EGL images, `Err` (why) through a
    /// CPU mapping.
    dmabuf: Option<Result<(), String>>,
    connected: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    /// TARGET and the stream's size, for the `path:` line.
    target: String,
    width: u32,
    height: u32,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn for_tests(target: &str, width: u32, height: u32) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::default(), stop: AtomicBool::new(false), target: target.into(), width, height })
    }

    /// Records which way DMA-BUF buffers go; a change is said in a `path:` line.
    fn dmabuf_route(&self, route: Result<(), String>) {
        let mut s = self.state();
        if s.dmabuf.as_ref() != Some(&route) {
            s.dmabuf = Some(route);
            info!("path: {}", describe(&self.target, self.width, self.height, &s));
        }
    }
}

/// A running capture: a thread that finds the node, runs the pipeline and restarts it.
#[derive(Debug)]
pub struct Capture {
    target: String,
    width: u32,
    height: u32,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Checks that a PipeWire daemon answers, then captures `target` into `latest` at
    /// `width` x `height` on a thread of its own. `timeout` (`--source-timeout`) bounds how long the
    /// node may be missing, at the start or after it went away; `None` waits for ever.
    pub fn start(
        target: &str,
        width: u32,
        height: u32,
        timeout: Option<Duration>,
        latest: Arc<Latest>,
    ) -> anyhow::Result<Capture> {
        let what = format!("pipewire:{target}");
        init()?;
        for (element, package) in [
            ("pipewiresrc", "gstreamer1.0-pipewire"),
            ("videoconvert", "gstreamer1.0-plugins-base"),
            ("videoscale", "gstreamer1.0-plugins-base"),
            ("appsink", "gstreamer1.0-plugins-base"),
        ] {
            if gst::ElementFactory::find(element).is_none() {
                return Err(anyhow::anyhow!("{what}: GStreamer element {element} not found (install {package})"))
                    .exit(Exit::Unavailable);
            }
        }
        daemon_answers().map_err(|why| anyhow::anyhow!("{what}: {why}")).exit(Exit::Unavailable)?;
        let provider = gst::DeviceProviderFactory::by_name("pipewiredeviceprovider")
            .with_context(|| {
                format!("{what}: GStreamer's PipeWire device provider is missing (install gstreamer1.0-pipewire)")
            })
            .exit(Exit::Unavailable)?;
        provider
            .start()
            .with_context(|| format!("{what}: listing PipeWire nodes failed; is the daemon running? ({START_HINT})"))
            .exit(Exit::Unavailable)?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            stop: AtomicBool::new(false),
            target: target.to_string(),
            width,
            height,
        });
        let gpu = gpu::GpuRoute::new(width, height, latest.clone(), shared.clone());
        let worker = Worker {
            what,
            target: target.to_string(),
            width,
            height,
            timeout,
            latest,
            shared: shared.clone(),
            provider,
            gpu,
        };
        let thread = thread::Builder::new().name("pipewire".into()).spawn(move || worker.run())?;
        Ok(Capture { target: target.to_string(), width, height, shared, thread: Some(thread) })
    }

    /// The pixel format of the frames offered.
    pub fn format(&self) -> PixFmt {
        FORMAT
    }

    /// The memory type of the node's buffers, once one arrived.
    pub fn memory(&self) -> Option<Memory> {
        self.shared.state().memory
    }

    /// The source for logs and stats: node, negotiated format and size, memory type.
    pub fn describe(&self) -> String {
        describe(&self.target, self.width, self.height, &self.shared.state())
    }
}

fn describe(target: &str, width: u32, height: u32, s: &State) -> String {
    let node = s.node.as_ref().map_or_else(|| format!("pipewire:{target}"), |n| format!("pipewire:{target} = {n}"));
    let out = format!("{FORMAT} {width}x{height}");
    let route = match (s.memory, &s.dmabuf) {
        (Some(Memory::DmaBuf), Some(Ok(()))) => {
            ", DMA-BUF imported as EGL images (letterboxed and packed to I420 on the GPU)".to_string()
        }
        (Some(Memory::DmaBuf), Some(Err(why))) => format!(", DMA-BUF read through a CPU mapping ({why})"),
        _ => String::new(),
    };
    match (s.connected, &s.negotiated, s.memory) {
        (true, Some(neg), Some(mem)) => format!("{node}: {neg} in {mem} buffers -> {out}{route}"),
        (true, Some(neg), None) => format!("{node}: {neg} -> {out}"),
        (true, None, _) => format!("{node}: linking -> {out}"),
        (false, _, _) => format!("{node}: waiting for the node -> {out}"),
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("pipewire:{}: the capture thread panicked", self.target);
        }
    }
}

/// Where libpipewire looks for the daemon's socket: `$PIPEWIRE_REMOTE` (a name or an absolute
/// path, default `pipewire-0`) in `$PIPEWIRE_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR`. `var` reads the
/// environment.
fn socket_path(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let name = PathBuf::from(var("PIPEWIRE_REMOTE").unwrap_or_else(|| "pipewire-0".into()));
    if name.is_absolute() {
        return Ok(name);
    }
    ["PIPEWIRE_RUNTIME_DIR", "XDG_RUNTIME_DIR"]
        .iter()
        .find_map(|v| var(v).filter(|d| !d.is_empty()))
        .map(|dir| PathBuf::from(dir).join(&name))
        .ok_or_else(|| {
            format!("no PipeWire daemon: XDG_RUNTIME_DIR is not set, so there is no socket to find ({START_HINT})")
        })
}

/// Ok when something accepts connections on the daemon's socket.
fn daemon_answers() -> Result<(), String> {
    let path = socket_path(|k| std::env::var_os(k))?;
    UnixStream::connect(&path)
        .map(drop)
        .map_err(|e| format!("no PipeWire daemon answers at {} ({e}); {START_HINT}", path.display()))
}

/// A node as the device provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    serial: Option<String>,
    id: Option<String>,
}

impl Node {
    fn of(device: &gst::Device) -> Option<Node> {
        let props = device.properties()?;
        let get = |k: &str| -> Option<String> {
            let v = props.value(k).ok()?;
            v.get::<String>().ok().or_else(|| v.serialize().ok().map(|s| s.to_string()))
        };
        Some(Node { name: get("node.name")?, serial: get("object.serial"), id: get("object.id") })
    }

    fn matches(&self, target: &str) -> bool {
        self.name == target || self.serial.as_deref() == Some(target) || self.id.as_deref() == Some(target)
    }

    /// What `target-object` gets: the serial (unique) when known, else the name.
    fn target_object(&self) -> &str {
        self.serial.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.serial {
            Some(s) => write!(f, "{} (serial {s})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a running pipeline stopped.
enum Stopped {
    /// The capture is over (the frame loop closed, or the source ended).
    Done,
    /// The node went away.
    Gone,
    /// The pipeline failed; retry after a backoff.
    Failed(String),
}

struct Worker {
    what: String,
    target: String,
    width: u32,
    height: u32,
    timeout: Option<Duration>,
    latest: Arc<Latest>,
    shared: Arc<Shared>,
    provider: gst::DeviceProvider,
    /// Where DMA-BUF buffers are imported (started with the first one).
    gpu: Arc<gpu::GpuRoute>,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed) || self.latest.is_closed()
    }

    fn nodes(&self) -> Vec<Node> {
        self.provider.devices().iter().filter(|d| d.has_classes("Video/Source")).filter_map(Node::of).collect()
    }

    fn find(&self) -> Option<Node> {
        self.nodes().into_iter().find(|n| n.matches(&self.target))
    }

    fn run(self) {
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
                    self.latest.end(self.missing_end(ever_linked, t));
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

    fn missing_end(&self, ever_linked: bool, t: Duration) -> SourceEnd {
        if ever_linked {
            SourceEnd::Finished(format!(
                "{}: the node went away and no node {} came back within {} s (--source-timeout); ending the stream",
                self.what,
                self.target,
                t.as_secs_f32()
            ))
        } else {
            SourceEnd::Failed(
                Exit::NoInput,
                format!(
                    "{}: no PipeWire video node with the name, serial or id {} appeared within {} s (--source-timeout)",
                    self.what,
                    self.target,
                    t.as_secs_f32()
                ),
            )
        }
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() && Instant::now() < until {
            thread::sleep(POLL.min(until - Instant::now()));
        }
    }

    /// Runs one pipeline linked to `node` until it stops.
    fn capture(&self, node: &Node) -> Stopped {
        let (pipeline, appsink) = match self.build(node) {
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

    fn build(&self, node: &Node) -> anyhow::Result<(gst::Pipeline, gst_app::AppSink)> {
        let src = make("pipewiresrc", "gstreamer1.0-pipewire")?;
        src.set_property("target-object", node.target_object());
        src.set_property("client-name", "agentcast");
        // media.type lets the session manager match us with video nodes.
        src.set_property("stream-properties", gst::Structure::builder("props").field("media.type", "Video").build());
        let pipeline = gst::Pipeline::with_name("pipewire-capture");
        let appsink = add_scaler(&pipeline, &src, self.width, self.height)?;
        self.watch_node_pad(&src);
        Ok((pipeline, appsink))
    }

    /// Logs the node's format and size once per change, and the memory type of its buffers.
    fn watch_node_pad(&self, src: &gst::Element) {
        let Some(pad) = src.static_pad("src") else { return };
        let (shared, gpu) = (self.shared.clone(), self.gpu.clone());
        let (what, width, height) = (self.what.clone(), self.width, self.height);
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER, move |pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Caps(c) = ev.view()
                        && let Ok(v) = gst_video::VideoInfo::from_caps(c.caps())
                    {
                        let neg = format!("{} {}x{}", v.format(), v.width(), v.height());
                        let mut s = shared.state();
                        if s.negotiated.as_deref() != Some(neg.as_str()) {
                            let how = if (v.width(), v.height()) == (width, height) {
                                "the stream's size".to_string()
                            } else {
                                format!("scaled to {width}x{height}, aspect kept with borders")
                            };
                            info!("{what}: the node sends {neg} ({how})");
                            s.negotiated = Some(neg);
                        }
                    }
                }
                Some(gst::PadProbeData::Buffer(buf)) => {
                    return on_buffer(&shared, &gpu, buf, pad.current_caps().as_ref());
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        });
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
        copy_planes(&frame, &mut data)?;
        drop(frame);
        self.latest.offer(HostFrame { data, arrived });
        Ok(())
    }
}

/// A buffer from the node (on its pad, `caps` the pad's): records its memory type, hands a
/// DMA-BUF to the GPU route where it can take it (dropped from the CPU branch then), and says a
/// change of memory type or DMA-BUF route in a `path:` line.
fn on_buffer(
    shared: &Shared,
    gpu: &Arc<gpu::GpuRoute>,
    buf: &gst::Buffer,
    caps: Option<&gst::Caps>,
) -> gst::PadProbeReturn {
    let mem = Memory::of(buf);
    let routed = match (mem, caps) {
        (Some(Memory::DmaBuf), Some(caps)) => Some(match gst_video::VideoInfo::from_caps(caps) {
            // GStreamer 1.22's caps carry no DRM modifier: the driver's implicit layout.
            Ok(info) => gpu.route(buf, &info, None),
            Err(_) => gpu::Routed::Cpu("the node's caps are not raw video".into()),
        }),
        _ => None,
    };
    let mut s = shared.state();
    let mut changed = false;
    if let Some(gpu::Routed::Cpu(why)) = &routed
        && s.dmabuf.is_none()
    {
        s.dmabuf = Some(Err(why.clone()));
        changed = true;
    }
    if let Some(mem) = mem
        && s.memory != Some(mem)
    {
        s.memory = Some(mem);
        // A DMA-BUF taken by the GPU is said once its first frame is drawn.
        changed |= !(routed == Some(gpu::Routed::Gpu) && s.dmabuf.is_none());
    }
    if changed {
        info!("path: {}", describe(&shared.target, shared.width, shared.height, &s));
    }
    if routed == Some(gpu::Routed::Gpu) { gst::PadProbeReturn::Drop } else { gst::PadProbeReturn::Ok }
}

/// Adds `src ! (node formats) ! videoconvert ! videoscale add-borders=true ! I420 WxH, PAR 1/1 !
/// appsink` to `pipeline` (src included): any size in, the stream's size out, aspect kept.
fn add_scaler(
    pipeline: &gst::Pipeline,
    src: &gst::Element,
    width: u32,
    height: u32,
) -> anyhow::Result<gst_app::AppSink> {
    let formats = gst::List::new(NODE_FORMATS.iter().map(|f| f.caps_name()));
    let from_node = make("capsfilter", "gstreamer1.0-plugins-base")?;
    from_node.set_property("caps", gst::Caps::builder("video/x-raw").field("format", formats).build());
    let convert = make("videoconvert", "gstreamer1.0-plugins-base")?;
    let scale = make("videoscale", "gstreamer1.0-plugins-base")?;
    scale.set_property("add-borders", true);
    let out_caps = gst::Caps::builder("video/x-raw")
        .field("format", FORMAT.caps_name())
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let appsink = gst_app::AppSink::builder().caps(&out_caps).max_buffers(1).drop(true).sync(false).build();
    pipeline.add_many([src, &from_node, &convert, &scale, appsink.upcast_ref()])?;
    gst::Element::link_many([src, &from_node, &convert, &scale, appsink.upcast_ref()])
        .context("linking pipewiresrc ! videoconvert ! videoscale ! appsink")?;
    Ok(appsink)
}

/// Copies a mapped frame's planes, row by row (its strides may be padded), into the packed
/// rawvideo layout of [`FORMAT`].
fn copy_planes(frame: &gst_video::VideoFrameRef<&gst::BufferRef>, out: &mut [u8]) -> anyhow::Result<()> {
    let layout = FORMAT.planes(frame.width(), frame.height());
    for (i, plane) in layout.iter().enumerate() {
        let stride = frame.plane_stride()[i] as usize;
        let data = frame.plane_data(i as u32).context("reading a plane")?;
        for row in 0..plane.rows {
            let src =
                data.get(row * stride..row * stride + plane.row_bytes).context("a plane shorter than its rows")?;
            let at = plane.offset + row * plane.stride;
            out[at..at + plane.row_bytes].copy_from_slice(src);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_found_like_libpipewire_finds_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            socket_path(env(&[("XDG_RUNTIME_DIR", "/run/user/7")])).unwrap(),
            PathBuf::from("/run/user/7/pipewire-0")
        );
        let runtime = env(&[
            ("XDG_RUNTIME_DIR", "/run/user/7"),
            ("PIPEWIRE_RUNTIME_DIR", "/tmp/pw"),
            ("PIPEWIRE_REMOTE", "other"),
        ]);
        assert_eq!(socket_path(runtime).unwrap(), PathBuf::from("/tmp/pw/other"));
        assert_eq!(socket_path(env(&[("PIPEWIRE_REMOTE", "/abs/sock")])).unwrap(), PathBuf::from("/abs/sock"));
        assert!(socket_path(env(&[("XDG_RUNTIME_DIR", "")])).unwrap_err().contains("pipewire-headless.sh start"));
    }

    /// A DMA-BUF buffer on a display that cannot import (llvmpipe in CI) goes on to the CPU
    /// mapping, and the source says so with the reason; shared memory says nothing of DMA-BUF.
    #[test]
    fn dma_bufs_that_cannot_be_imported_are_mapped_and_said_so() {
        let _egl = crate::render::egl::egl_test_lock();
        gst::init().unwrap();
        let shared = Shared::for_tests("gamescope", 640, 360);
        let gpu = gpu::GpuRoute::new(640, 360, Arc::new(Latest::new(false)), shared.clone());
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, 320, 240).build().unwrap();
        let caps = info.to_caps().unwrap();
        {
            let mut s = shared.state();
            (s.connected, s.negotiated) = (true, Some("BGRx 320x240".into()));
        }
        let plain = gst::Buffer::with_size(info.size()).unwrap();
        assert_eq!(on_buffer(&shared, &gpu, &plain, Some(&caps)), gst::PadProbeReturn::Ok);
        let said = describe("gamescope", 640, 360, &shared.state());
        assert_eq!(said, "pipewire:gamescope: BGRx 320x240 in MemPtr buffers -> i420 640x360");

        let mut dmabuf = gst::Buffer::new();
        dmabuf.get_mut().unwrap().append_memory(crate::render::egl::dmabuf::dmabuf_memory_for_tests(info.size()));
        let ret = on_buffer(&shared, &gpu, &dmabuf, Some(&caps));
        gpu.close();
        let s = shared.state().clone();
        if s.dmabuf == Some(Ok(())) || ret == gst::PadProbeReturn::Drop {
            eprintln!("skipped: this EGL display imports DMA-BUFs; the hardware tests cover it");
            return;
        }
        assert_eq!(ret, gst::PadProbeReturn::Ok, "the CPU branch gets the buffer");
        assert_eq!(s.memory, Some(Memory::DmaBuf));
        let said = describe("gamescope", 640, 360, &s);
        assert!(
            said.starts_with("pipewire:gamescope: BGRx 320x240 in DmaBuf buffers -> i420 640x360, DMA-BUF read through a CPU mapping (")
                && said.contains("EGL_EXT_image_dma_buf_import"),
            "{said}"
        );
        let imported = State { dmabuf: Some(Ok(())), ..s };
        assert!(describe("gamescope", 640, 360, &imported).ends_with(
            "in DmaBuf buffers -> i420 640x360, DMA-BUF imported as EGL images (letterboxed and packed to I420 on the GPU)"
        ));
    }

    #[test]
    fn targets_match_a_name_serial_or_id() {
        let n = Node { name: "gamescope".into(), serial: Some("98".into()), id: Some("32".into()) };
        assert!(n.matches("gamescope") && n.matches("98") && n.matches("32"));
        assert!(!n.matches("game"));
        assert_eq!(n.target_object(), "98");
        assert_eq!(n.to_string(), "gamescope (serial 98)");
    }

    /// A node that changes size mid-stream (new caps on the same pad): the output keeps its size,
    /// and both pictures are scaled into it with borders. PipeWire 0.3.65's pipewiresink cannot do
    /// this (see tests/pipewire.rs), so an appsrc stands in for pipewiresrc here.
    #[test]
    fn a_size_change_mid_stream_is_scaled_into_the_same_output() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
        let appsink = add_scaler(&pipeline, src.upcast_ref(), 640, 360).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        // BGRx frames of one grey level: 4:3 in a 16:9 output leaves 80-pixel borders.
        let mut luma_rows = Vec::new();
        for (i, (w, h, grey)) in [(320u32, 240u32, 200u8), (640, 480, 100)].into_iter().enumerate() {
            let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, w, h).build().unwrap();
            src.set_caps(Some(&info.to_caps().unwrap()));
            let mut buffer = gst::Buffer::from_mut_slice(vec![grey; info.size()]);
            buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(i as u64 * 33));
            src.push_buffer(buffer).unwrap();
            let sample = appsink.try_pull_sample(gst::ClockTime::from_seconds(10)).expect("a scaled frame");
            let out = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            assert_eq!((out.format(), out.width(), out.height()), (gst_video::VideoFormat::I420, 640, 360));
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &out).unwrap();
            let mut packed = vec![0u8; FORMAT.frame_bytes(640, 360)];
            copy_planes(&frame, &mut packed).unwrap();
            luma_rows.push(packed[180 * 640..181 * 640].to_vec());
        }
        pipeline.set_state(gst::State::Null).unwrap();
        for (row, grey) in luma_rows.iter().zip([200u8, 100]) {
            // Limited-range luma of that grey in the middle, black (16) in the borders.
            let want = 16 + (u32::from(grey) * 219 / 255) as u8;
            assert!(row[320].abs_diff(want) <= 2, "centre {} for grey {grey}, want {want}", row[320]);
            assert!(row[40].abs_diff(16) <= 2 && row[600].abs_diff(16) <= 2, "borders {} {}", row[40], row[600]);
            assert!(row[90].abs_diff(want) <= 2 && row[550].abs_diff(want) <= 2, "picture spans 80..560");
        }
    }

    #[test]
    fn padded_strides_are_packed_into_the_rawvideo_layout() {
        gst::init().unwrap();
        let (w, h) = (6u32, 4u32);
        // A buffer with each row padded to 16 bytes, as a pool may hand out.
        let strides = [16i32, 16, 16];
        let offsets = [0usize, 16 * 4, 16 * 4 + 16 * 2];
        let padded = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
            .stride(&strides)
            .offset(&offsets)
            .build()
            .unwrap();
        let mut bytes = vec![0u8; offsets[2] + 16 * 2];
        for (plane, (&off, rows)) in offsets.iter().zip([4usize, 2, 2]).enumerate() {
            for r in 0..rows {
                for c in 0..16 {
                    bytes[off + r * 16 + c] = (plane * 100 + r * 10 + c) as u8;
                }
            }
        }
        let buffer = gst::Buffer::from_mut_slice(bytes);
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &padded).unwrap();
        let mut out = vec![0u8; FORMAT.frame_bytes(w, h)];
        copy_planes(&frame, &mut out).unwrap();
        assert_eq!(out.len(), 6 * 4 + 2 * 3 * 2);
        assert_eq!(&out[..6], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(&out[6..12], &[10, 11, 12, 13, 14, 15]);
        assert_eq!(&out[24..27], &[100, 101, 102]);
        assert_eq!(&out[27..30], &[110, 111, 112]);
        assert_eq!(&out[30..33], &[200, 201, 202]);
    }
}
