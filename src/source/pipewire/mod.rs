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
//!
//! Here: the [`Capture`] handle and what it reports. `node`: the daemon check and finding the node;
//! `worker`: the capture thread (waiting, restarting, offering frames); `pipeline`: the GStreamer
//! pipeline and its pad probe; `gpu`: the DMA-BUF route.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;
use gstreamer as gst;
use gstreamer::prelude::*;
use log::{info, warn};

use crate::exit::{Exit, ExitExt};
use crate::frame::PixFmt;
use crate::gst_util::init;
use crate::source::live::Latest;

mod gpu;
mod node;
mod pipeline;
mod worker;

/// The formats taken from the node: what gamescope offers (BGRx, NV12) and the common others.
pub const NODE_FORMATS: [PixFmt; 6] =
    [PixFmt::Bgr0, PixFmt::Nv12, PixFmt::Rgb0, PixFmt::Bgra, PixFmt::Rgba, PixFmt::I420];
/// What the frames handed to the frame loop are.
pub const FORMAT: PixFmt = PixFmt::I420;
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
        node::daemon_answers().map_err(|why| anyhow::anyhow!("{what}: {why}")).exit(Exit::Unavailable)?;
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
        let worker = worker::Worker {
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
