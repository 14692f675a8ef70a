//! The GPU route for a PipeWire node's DMA-BUF buffers: a probe on `pipewiresrc`'s pad hands each
//! DMA-BUF buffer to a thread of its own, which owns the EGL context
//! ([`crate::render::import::DmaBufFrames`]): it imports the buffer as an EGL image, draws it
//! letterboxed into the stream's size, packs I420, gives the buffer back to PipeWire as soon as the
//! GPU has finished with it, reads the frame back and offers it. Such buffers never reach
//! `videoconvert`.
//!
//! The thread starts with the first DMA-BUF buffer, and the probe waits (once) for it to say which
//! node formats this EGL display imports. Where it cannot (no EGL_EXT_image_dma_buf_import, a size
//! the shader pass cannot pack, a format the display does not list) or an import fails, the reason
//! is logged once and every later buffer takes the CPU mapping through `videoconvert`; a buffer
//! whose import failed is lost (the frame loop repeats the one before). At most two buffers are
//! held: the one being drawn and the newest waiting (an older waiting one goes back at once).
//!
//! The thread's EGL display is the process's only one while it captures (host frames need no
//! renderer): displays of one platform share an EGLDisplay, which the first of them to go
//! terminates.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_video as gst_video;
use log::{debug, warn};

use super::{NODE_FORMATS, Shared};
use crate::frame::{HostFrame, PixFmt};
use crate::render::egl::dmabuf::{self, DmaBuf};
use crate::render::import::DmaBufFrames;
use crate::source::live::Latest;

/// How long the first DMA-BUF buffer waits for the thread to open EGL and answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the thread looks whether the frame loop closed.
const POLL: Duration = Duration::from_millis(100);

/// What the probe does with a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Routed {
    /// The GPU thread took it: drop it from the CPU branch.
    Gpu,
    /// The CPU mapping takes it, for this reason (said once).
    Cpu(String),
    /// The route is closed (the capture is ending): let it through, say nothing.
    Closed,
}

/// A DMA-BUF buffer waiting for the GPU thread.
struct Job {
    buffer: gst::Buffer,
    info: gst_video::VideoInfo,
    format: PixFmt,
    modifier: Option<u64>,
    arrived: Instant,
}

/// Per node format, whether the display imports it (the reason when not).
type Formats = Vec<(PixFmt, Result<(), String>)>;

#[derive(Default)]
struct Slot {
    /// The thread's answer once it opened: the formats, or why it could not open.
    opened: Option<Result<Formats, String>>,
    /// Why the route gave up, after a failed import.
    failed: Option<String>,
    job: Option<Job>,
    closed: bool,
}

/// The route, shared by the capture's pipelines (their probes) and its GPU thread.
pub(super) struct GpuRoute {
    width: u32,
    height: u32,
    latest: Arc<Latest>,
    shared: Arc<Shared>,
    slot: Mutex<Slot>,
    cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GpuRoute {
    pub(super) fn new(width: u32, height: u32, latest: Arc<Latest>, shared: Arc<Shared>) -> Arc<GpuRoute> {
        Arc::new(GpuRoute {
            width,
            height,
            latest,
            shared,
            slot: Mutex::default(),
            cv: Condvar::new(),
            thread: Mutex::default(),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `buffer` (DMA-BUF memory, laid out as `info`, `modifier` its DRM format modifier
    /// where known, else the driver's implicit layout) for the GPU, or says why the CPU mapping
    /// takes it. Called on the streaming thread.
    pub(super) fn route(
        self: &Arc<Self>,
        buffer: &gst::Buffer,
        info: &gst_video::VideoInfo,
        modifier: Option<u64>,
    ) -> Routed {
        let Some(format) = PixFmt::from_caps_name(info.format().to_str()) else {
            return Routed::Cpu(format!("{} is not a node format", info.format().to_str()));
        };
        if let Err(why) = dmabuf::gst_planes(buffer, info) {
            return Routed::Cpu(why);
        }
        let mut slot = self.slot();
        if slot.closed {
            return Routed::Closed;
        }
        if let Some(why) = &slot.failed {
            return Routed::Cpu(why.clone());
        }
        if slot.opened.is_none() {
            slot = self.start(slot);
        }
        let supported = match &slot.opened {
            None => return Routed::Cpu(format!("the GPU thread did not open EGL within {} s", OPEN_TIMEOUT.as_secs())),
            Some(Err(why)) => return Routed::Cpu(why.clone()),
            Some(Ok(formats)) => formats.iter().find(|(f, _)| *f == format).map(|(_, r)| r.clone()),
        };
        if let Err(why) = supported.unwrap_or_else(|| Err(format!("{format} is not a node format"))) {
            return Routed::Cpu(why);
        }
        // The newest wins: a job still waiting goes back to PipeWire here.
        slot.job = Some(Job { buffer: buffer.clone(), info: info.clone(), format, modifier, arrived: Instant::now() });
        self.cv.notify_all();
        Routed::Gpu
    }

    /// Starts the GPU thread and waits for its answer (at most [`OPEN_TIMEOUT`]).
    fn start<'a>(self: &'a Arc<Self>, slot: MutexGuard<'a, Slot>) -> MutexGuard<'a, Slot> {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_none() {
            let route = self.clone();
            match thread::Builder::new().name("pipewire-gl".into()).spawn(move || route.run()) {
                Ok(t) => *thread = Some(t),
                Err(e) => {
                    let mut slot = slot;
                    slot.opened = Some(Err(format!("starting the GPU thread: {e}")));
                    return slot;
                }
            }
        }
        drop(thread);
        let (slot, _) = self
            .cv
            .wait_timeout_while(slot, OPEN_TIMEOUT, |s| s.opened.is_none() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        slot
    }

    /// Ends the GPU thread (a waiting buffer goes back) and waits for it.
    pub(super) fn close(&self) {
        {
            let mut slot = self.slot();
            slot.closed = true;
            slot.job = None;
        }
        self.cv.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            warn!("pipewire: the GPU thread panicked");
        }
    }

    /// The GPU thread: opens EGL, answers, then draws jobs until closed or failed.
    fn run(self: Arc<Self>) {
        let frames = DmaBufFrames::open(self.width, self.height);
        let answer = match &frames {
            Ok(f) => Ok(NODE_FORMATS.iter().map(|&fmt| (fmt, f.supports(fmt))).collect()),
            Err(e) => Err(format!("{e:#}")),
        };
        self.slot().opened = Some(answer);
        self.cv.notify_all();
        let Ok(mut frames) = frames else { return };
        while let Some(job) = self.next_job() {
            if let Err(e) = self.draw(&mut frames, job) {
                let why = format!("importing a DMA-BUF failed: {e:#}");
                self.slot().failed = Some(why.clone());
                self.shared.dmabuf_route(Err(why));
                return;
            }
            self.shared.dmabuf_route(Ok(()));
        }
        debug!("pipewire: the GPU thread ends");
    }

    /// Waits for the next job; `None` once closed.
    fn next_job(&self) -> Option<Job> {
        let mut slot = self.slot();
        loop {
            if slot.closed || self.latest.is_closed() {
                return None;
            }
            if let Some(job) = slot.job.take() {
                return Some(job);
            }
            slot = self.cv.wait_timeout(slot, POLL).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Draws one job, gives its buffer back, reads the frame and offers it.
    fn draw(&self, frames: &mut DmaBufFrames, job: Job) -> anyhow::Result<()> {
        let Job { buffer, info, format, modifier, arrived } = job;
        {
            let planes = dmabuf::gst_planes(&buffer, &info).map_err(anyhow::Error::msg)?;
            let fourcc = dmabuf::drm_fourcc(format).ok_or_else(|| anyhow::anyhow!("{format} has no DRM format"))?;
            let buf = DmaBuf { width: info.width(), height: info.height(), fourcc, modifier, planes };
            frames.draw(format, &buf)?;
        }
        drop(buffer); // back to PipeWire: the GPU has finished reading it
        let mut data = self.latest.buffer(super::FORMAT.frame_bytes(self.width, self.height));
        frames.read(&mut data)?;
        self.latest.offer(HostFrame { data, arrived });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmabuf_buffer(info: &gst_video::VideoInfo) -> gst::Buffer {
        let mut buffer = gst::Buffer::new();
        buffer.get_mut().unwrap().append_memory(dmabuf::dmabuf_memory_for_tests(info.size()));
        buffer
    }

    /// Where this display cannot import (llvmpipe in CI), a DMA-BUF buffer takes the CPU mapping
    /// with the reason, every time, and the thread has ended; system memory never reaches it.
    /// Where it can (the NVIDIA driver), the route does not blame a missing extension;
    /// `dmabuf_buffers_reach_the_frame_loop_letterboxed` follows a real DMA-BUF there.
    #[test]
    fn without_import_dma_bufs_take_the_cpu_mapping_and_say_why() {
        let _egl = crate::render::egl::egl_test_lock();
        gst::init().unwrap();
        let lacking = dmabuf::default_display_import_missing();
        let shared = Shared::for_tests("test", 640, 360);
        let latest = Arc::new(Latest::new(crate::source::live::Overrun::Replace));
        let route = GpuRoute::new(640, 360, latest.clone(), shared);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, 320, 240).build().unwrap();
        let plain = gst::Buffer::with_size(info.size()).unwrap();
        assert_eq!(route.route(&plain, &info, None), Routed::Cpu("plane 0 is not in DMA-BUF memory".into()));
        assert!(route.thread.lock().unwrap().is_none(), "system memory starts no GPU thread");
        let buffer = dmabuf_buffer(&info);
        let routed = route.route(&buffer, &info, None);
        if lacking.is_empty() {
            let blamed = matches!(&routed, Routed::Cpu(why) if why.contains("which this EGL display"));
            assert!(!blamed, "the display lists every import extension, yet: {routed:?}");
            route.close();
            return;
        }
        let names_them = |r: &Routed| matches!(r, Routed::Cpu(why) if lacking.iter().all(|e| why.contains(e)));
        assert!(names_them(&routed), "want the CPU mapping naming {lacking:?}: {routed:?}");
        let again = route.route(&buffer, &info, None);
        assert!(names_them(&again), "{again:?}");
        assert_eq!(latest.offered(), 0);
        route.close();
        assert_eq!(route.route(&buffer, &info, None), Routed::Closed);
    }

    /// Hardware: a DMA-BUF the driver exported (a grey 4:3 picture) goes through the route as a
    /// node's buffer would: the GPU thread takes it, the frame loop gets a 16:9 I420 frame with
    /// black borders and the grey's luma, and the route says it imported.
    #[test]
    #[ignore = "needs an EGL display with EGL_EXT_image_dma_buf_import and EGL_MESA_image_dma_buf_export (the NVIDIA driver)"]
    fn dmabuf_buffers_reach_the_frame_loop_letterboxed() {
        use crate::render::egl::gl::{Pass, Program, Target};
        use crate::render::egl::{Context, Display};
        use drm_fourcc::DrmFourcc;
        let _egl = crate::render::egl::egl_test_lock();
        gst::init().unwrap();
        // Drawn and exported on a context of its own, gone before the route opens its display: the
        // exported fds keep the buffer.
        let exported = {
            let ctx = Context::new(Display::open(None, None).expect("an EGL display")).unwrap();
            let grey = "#version 300 es\nprecision highp float;\nout vec4 o;\nvoid main() { o = vec4(vec3(200.0 / 255.0), 1.0); }\n";
            let program = Program::fullscreen(&ctx.gl, grey).unwrap();
            let target = Target::new(&ctx.gl, 320, 240).unwrap();
            Pass { program: &program, target: &target, source: None, uniforms: &[], scissor: None }.draw().unwrap();
            dmabuf::export(&ctx, &target).unwrap_or_else(|e| panic!("{e:#}"))
        };
        let format = match exported.fourcc {
            DrmFourcc::Abgr8888 => gst_video::VideoFormat::Rgba,
            DrmFourcc::Xbgr8888 => gst_video::VideoFormat::Rgbx,
            DrmFourcc::Argb8888 => gst_video::VideoFormat::Bgra,
            DrmFourcc::Xrgb8888 => gst_video::VideoFormat::Bgrx,
            other => panic!("the driver exported {other}, not an RGB format a node sends"),
        };
        let plane = &exported.planes[0];
        let info = gst_video::VideoInfo::builder(format, 320, 240)
            .stride(&[plane.stride as i32])
            .offset(&[plane.offset as usize])
            .build()
            .unwrap();
        let size = plane.offset as usize + plane.stride as usize * 240;
        let mut buffer = gst::Buffer::new();
        let memory = dmabuf::dmabuf_memory_of_fd_for_tests(plane.fd.try_clone().unwrap(), size);
        buffer.get_mut().unwrap().append_memory(memory);

        let shared = Shared::for_tests("test", 640, 360);
        let latest = Arc::new(Latest::new(crate::source::live::Overrun::Replace));
        let route = GpuRoute::new(640, 360, latest.clone(), shared.clone());
        assert_eq!(route.route(&buffer, &info, Some(exported.modifier)), Routed::Gpu);
        drop(buffer);
        let frame = match latest.wait(Instant::now() + Duration::from_secs(10)) {
            crate::source::live::Taken::Frame(f) => f,
            other => panic!("no frame from the GPU thread within 10 s: {other:?} (route: {:?})", shared.state().dmabuf),
        };
        route.close();
        assert_eq!(shared.state().dmabuf, Some(Ok(())));
        let y = |x: usize, row: usize| frame.data[row * 640 + x];
        let want = 16 + (200u32 * 219 / 255) as u8;
        for row in [0, 180, 359] {
            assert!(y(40, row).abs_diff(16) <= 1 && y(600, row).abs_diff(16) <= 1, "borders at row {row}");
            assert!(y(320, row).abs_diff(want) <= 1, "luma {} at (320, {row}), want {want}", y(320, row));
        }
    }
}
