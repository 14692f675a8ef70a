//! The render stage: draws the scene into an RGBA8 target, runs the GPU conversion pass when the
//! plan says so, and hands frames on: read back asynchronously through a ring of pixel-pack
//! buffers, or (zero-copy) copied on the GPU into CUDA memory. The frame stamp is drawn before the
//! conversion pass, or painted into read-back RGBA frames (see `Stamp`).

pub mod egl;
pub mod import;
pub mod pack;
pub mod scene;

pub use scene::SceneSpec;

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use log::info;

use crate::cuda::frames::ZeroCopy;
use crate::exit::{Exit, ExitExt};
use crate::frame::{Frame, PixFmt};
use crate::plan::{self, PathFacts, Plan};
use crate::stamp::{self, StampLayout};
use egl::gl::{Pass, Program, Readback, Target, Uniform};
use pack::GpuPack;

/// Pixel-pack buffers: unpaced, the frame drawn now is read while the previous one is handed on, so
/// glReadPixels never waits on the frame just drawn; paced, each frame is read in its own interval.
pub const READBACK_SLOTS: usize = 2;
/// How long to wait for a readback that should long be finished before calling the GPU hung.
pub(crate) const READBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the renderer found, for logs and the convert decision.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    pub platform: String,
    pub renderer: String,
    pub version: String,
    pub vendor: String,
    pub software: bool,
    /// The CUDA device the EGL device is (`EGL_CUDA_DEVICE_NV`), on NVIDIA's device platform.
    pub cuda_device: Option<i64>,
}

impl GpuInfo {
    /// The facts the plan chooses the path from, for this renderer on CUDA device `cuda`; probes
    /// libgstcuda and libcuda's GL entry points (`encoder_takes_cuda` is the caller's). Those
    /// probes (about 1.5 ms of library loading at start-up) are skipped where no CUDA device or no
    /// EGL device on one is here, which rules the zero-copy path out before they would count.
    pub fn path_facts(
        &self,
        cuda: Option<u32>,
        encoder_takes_cuda: Result<(), String>,
        width: u32,
        height: u32,
    ) -> PathFacts {
        let egl_on_cuda_device = self.cuda_device.is_some();
        let probe = |f: fn() -> Result<(), String>| {
            if cuda.is_some() && egl_on_cuda_device {
                f()
            } else {
                Err("not probed: no EGL device on a CUDA device".into())
            }
        };
        PathFacts {
            cuda,
            egl_on_cuda_device,
            software_renderer: self.software,
            encoder_takes_cuda,
            gst_cuda: probe(crate::cuda::gst_cuda_ready),
            gl_interop: probe(crate::cuda::gl_interop_ready),
            width,
            height,
        }
    }
}

/// An EGL context with nothing drawn yet: enough to learn what the GPU is before choosing the plan.
pub struct Gpu {
    /// Compiled by [`Gpu::compile_scene`] before the plan is known; [`Renderer::new`] takes it.
    /// Declared before `ctx`: its program is deleted while the context still exists.
    scene: Option<(SceneSpec, scene::Scene)>,
    ctx: egl::Context,
    pub info: GpuInfo,
}

impl Gpu {
    /// `cuda`: the CUDA device frames go to, where there is one (see [`crate::device`]).
    pub fn open(egl_device: Option<u32>, cuda: Option<crate::device::CudaIds>) -> anyhow::Result<Gpu> {
        reserve_thread_heap();
        let display = egl::Display::open(egl_device, cuda)?;
        let ctx = egl::Context::new(display).context("creating an OpenGL ES 3 context").exit(Exit::Unavailable)?;
        let gl = &ctx.gl;
        let renderer = gl.renderer();
        let platform = ctx.platform();
        let software =
            plan::is_software_renderer(&renderer) || matches!(platform, egl::Platform::Device { software: true, .. });
        let cuda_device = match platform {
            egl::Platform::Device { cuda, .. } => *cuda,
            _ => None,
        };
        let info = GpuInfo {
            platform: platform.to_string(),
            version: gl.version(),
            vendor: gl.vendor(),
            software,
            renderer,
            cuda_device,
        };
        info!(
            "GL_RENDERER: {}; GL_VERSION: {}; GL_VENDOR: {}{}",
            info.renderer,
            info.version,
            info.vendor,
            if software { " (software rasteriser)" } else { "" }
        );
        log::debug!("start-up: EGL display and GL context up at {:.1} ms", crate::clock::startup_ms());
        Ok(Gpu { scene: None, ctx, info })
    }

    /// Compiles the scene now, while the encoder may still be being chosen: the scene does not
    /// depend on the plan, so its compile need not wait for it.
    pub fn compile_scene(&mut self, spec: &SceneSpec) -> anyhow::Result<()> {
        let scene = scene::Scene::load(&self.ctx.gl, spec)?;
        log::debug!("start-up: scene compiled at {:.1} ms", crate::clock::startup_ms());
        self.scene = Some((spec.clone(), scene));
        Ok(())
    }
}

/// Grows this thread's malloc arena in one go, before the driver allocates on it.
///
/// Bringing Mesa up and compiling the scene (its GLSL compiler, llvmpipe's LLVM) allocates about
/// 10 MB in small pieces on the thread that renders. glibc gives each thread an arena of its own
/// and grows it by the page, one `mprotect` call each: about 2,200 calls on this thread before the
/// first frame (`strace -f`), where the main thread's arena would grow 128 KiB at a time. Taking
/// 16 MiB here in pieces under malloc's mmap threshold, and freeing them, makes the arena's range
/// writable in about 170 calls; glibc hands the untouched pages back (`MADV_DONTNEED`) and keeps
/// the range writable, so later growth needs no call. Nothing is touched or kept, and with another
/// allocator it costs a few allocations.
fn reserve_thread_heap() {
    /// Under glibc's smallest mmap threshold (128 KiB), so the pieces come from the arena.
    const PIECE: usize = 96 * 1024;
    const TOTAL: usize = 16 * 1024 * 1024;
    let pieces: Vec<Vec<u8>> = (0..TOTAL / PIECE).map(|_| Vec::with_capacity(PIECE)).collect();
    // Kept from the optimiser, which may remove allocations that are never used.
    drop(std::hint::black_box(pieces));
}

/// How the frame stamp gets into the picture.
enum Stamp {
    /// Drawn by a scissored GL pass over its row, before the GPU pass packs the frame or CUDA copies
    /// it.
    Pass(Program, StampLayout),
    /// Painted into the read-back RGBA bytes (`Plan::Cpu`), the same pixels as the pass draws. No GL
    /// program: on llvmpipe a program's first draw has LLVM compile its draw variants, which for the
    /// stamp's program cost the first frame 3-4 ms on the 2-core machine; painting takes microseconds.
    ReadBack,
}

impl Stamp {
    fn new(gl: &Rc<egl::gl::Gl>, plan: Plan, width: u32, height: u32) -> anyhow::Result<Stamp> {
        let layout = StampLayout::for_size(width, height).context("frame stamp layout")?;
        if let Plan::Cpu(_) = plan {
            return Ok(Stamp::ReadBack);
        }
        let program = Program::fullscreen(gl, include_str!("shaders/stamp.glsl"))
            .map_err(|e| anyhow::anyhow!("built-in stamp shader: {e}"))?;
        Ok(Stamp::Pass(program, layout))
    }
}

/// What a renderer is asked for: its scene, picture size and rate, whether it stamps each frame's
/// number into the picture (`--stamp`), and whether the stream runs paced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    pub scene: SceneSpec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub stamp: bool,
    pub pace: bool,
}

/// How finished frames leave the renderer.
enum Handoff {
    /// Read back through a ring of pixel-pack buffers; `in_flight` holds (slot, frame index).
    Readback { pbo: Readback, in_flight: VecDeque<(usize, u64)>, next_slot: usize },
    /// Copied on the GPU into CUDA memory (zero-copy); `ready` holds frames not yet handed out.
    Cuda { zero_copy: ZeroCopy, ready: VecDeque<(u64, gstreamer::Buffer)> },
}

/// Draws frames and hands them on in the layout the plan promised.
pub struct Renderer {
    // Field order is drop order: the CUDA registration (in `handoff`) before the texture it
    // registers, every GL object before the context.
    handoff: Handoff,
    pack: Option<GpuPack>,
    stamp: Option<Stamp>,
    scene: scene::Scene,
    target: Target,
    /// Keeps the GL context current for the objects above (and flushes it for the CUDA copy).
    ctx: egl::Context,
    fps: u32,
    /// Paced: how long [`Renderer::collect_ready`] waits for the frame just drawn to be read back
    /// before leaving it for the next interval; `None` unpaced.
    own_interval_wait: Option<Duration>,
    /// (paced frames whose readback missed `own_interval_wait`, all paced frames read back).
    deferred: (u64, u64),
}

impl Renderer {
    pub fn new(mut gpu: Gpu, cfg: &RenderSettings, plan: Plan) -> anyhow::Result<Renderer> {
        let gl = gpu.ctx.gl.clone();
        let scene = match gpu.scene.take() {
            Some((spec, scene)) if spec == cfg.scene => scene,
            _ => scene::Scene::load(&gl, &cfg.scene)?,
        };
        let target = Target::new(&gl, cfg.width, cfg.height).exit(Exit::Software)?;
        let stamp = if cfg.stamp { Some(Stamp::new(&gl, plan, cfg.width, cfg.height)?) } else { None };
        let pack = match plan {
            Plan::Cpu(_) => None,
            Plan::Gpu(_) | Plan::Cuda { .. } => Some(GpuPack::new(&gl, plan.encoder_format(), cfg.width, cfg.height)?),
        };
        let handoff = match (plan, &pack) {
            (Plan::Cuda { gpu }, Some(pack)) => Handoff::Cuda {
                zero_copy: ZeroCopy::new(gpu, pack.target.texture_name(), cfg.width, cfg.height, cfg.fps)?,
                ready: VecDeque::new(),
            },
            _ => Handoff::Readback {
                pbo: Readback::new(&gl, READBACK_SLOTS, plan.readback_bytes(cfg.width, cfg.height))
                    .exit(Exit::Software)?,
                in_flight: VecDeque::new(),
                next_slot: 0,
            },
        };
        log::debug!("start-up: renderer ready (shaders compiled) at {:.1} ms", crate::clock::startup_ms());
        // Half an interval: the loop still meets its next deadline when a readback is slow.
        let own_interval_wait = cfg.pace.then(|| crate::clock::stream_time(1, cfg.fps) / 2);
        Ok(Renderer {
            handoff,
            pack,
            stamp,
            scene,
            target,
            ctx: gpu.ctx,
            fps: cfg.fps,
            own_interval_wait,
            deferred: (0, 0),
        })
    }

    /// Draws frame `frame` (stream time `frame / fps`) and queues its readback.
    pub fn render(&mut self, frame: u64) -> anyhow::Result<()> {
        let time = frame as f64 / f64::from(self.fps);
        self.scene.draw(&self.target, frame, time as f32, self.fps)?;
        if let Some(Stamp::Pass(program, layout)) = &self.stamp {
            let number = frame as u32; // wraps after 2^32 frames (4.5 years at 30 fps)
            Pass {
                program,
                target: &self.target,
                source: None,
                uniforms: &[
                    ("u_frame", Uniform::U32(number)),
                    ("u_crc", Uniform::U32(u32::from(stamp::crc8(number)))),
                    ("u_x", Uniform::F32(layout.x as f32)),
                    ("u_block", Uniform::F32(layout.block as f32)),
                ],
                scissor: Some([layout.x, layout.y, layout.width(), layout.block]),
            }
            .draw()?;
        }
        let source = match &self.pack {
            Some(pack) => {
                pack.run(&self.target)?;
                &pack.target
            }
            None => &self.target,
        };
        match &mut self.handoff {
            Handoff::Cuda { zero_copy, ready } => {
                // Submit the draws; CUDA's map orders them before the copy (see cuda::interop).
                self.ctx.gl.flush();
                let buffer =
                    zero_copy.copy_frame().context("copying the frame into CUDA memory").exit(Exit::Software)?;
                ready.push_back((frame, buffer));
            }
            Handoff::Readback { pbo, in_flight, next_slot } => {
                let slot = *next_slot;
                pbo.start(slot, source)?;
                *next_slot = (slot + 1) % pbo.slots();
                in_flight.push_back((slot, frame));
            }
        }
        Ok(())
    }

    /// The `gst.cuda.context` of the zero-copy frames, for the encoder's pipeline.
    pub fn cuda_context(&self) -> Option<gstreamer::Context> {
        match &self.handoff {
            Handoff::Cuda { zero_copy, .. } => Some(zero_copy.gst_context().clone()),
            Handoff::Readback { .. } => None,
        }
    }

    /// Frames rendered but not yet handed out.
    pub fn in_flight(&self) -> usize {
        match &self.handoff {
            Handoff::Cuda { ready, .. } => ready.len(),
            Handoff::Readback { in_flight, .. } => in_flight.len(),
        }
    }

    /// Hands out finished frames, oldest first, while more than `keep` are in flight (0 drains).
    pub fn collect(
        &mut self,
        keep: usize,
        mut f: impl FnMut(u64, Frame<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match &mut self.handoff {
            Handoff::Cuda { ready, .. } => {
                while ready.len() > keep {
                    let (frame, buffer) = ready.pop_front().expect("checked non-empty");
                    f(frame, Frame::Cuda(buffer))?;
                }
            }
            Handoff::Readback { pbo, in_flight, .. } => {
                let (width, height) = (self.target.width, self.target.height);
                while in_flight.len() > keep {
                    let (slot, frame) = in_flight.pop_front().expect("checked non-empty");
                    if let Some(Stamp::ReadBack) = self.stamp {
                        pbo.read_writable(slot, READBACK_TIMEOUT, |bytes| {
                            stamp::paint_host(bytes, PixFmt::Rgba, width, height, frame as u32);
                            f(frame, Frame::Bytes(bytes))
                        })??;
                    } else {
                        pbo.read(slot, READBACK_TIMEOUT, |bytes| f(frame, Frame::Bytes(bytes)))??;
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands out finished frames (the steady state). Zero-copy frames are complete when copied.
    /// Readback:
    /// - paced: the frame just drawn goes to the encoder in its own interval, not one interval later
    ///   behind its successor: its readback is waited for, up to half a frame interval (the loop
    ///   sleeps most of each interval anyway). Only a readback slower than that (a loaded machine)
    ///   stays in flight and goes out with the next frame, as the ring does, so the loop still meets
    ///   its next deadline; those frames are counted and logged (1st, 2nd, 4th... and at the end);
    /// - unpaced: the newest frame stays in flight so its read never waits on the GPU, which keeps
    ///   the frame rate up.
    pub fn collect_ready(&mut self, f: impl FnMut(u64, Frame<'_>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        match self.own_interval_wait {
            Some(wait) => self.collect_paced(wait, f),
            None => {
                let keep = match self.handoff {
                    Handoff::Cuda { .. } => 0,
                    Handoff::Readback { .. } => READBACK_SLOTS - 1,
                };
                self.collect(keep, f)
            }
        }
    }

    /// Paced collection: older frames at once, the newest if its readback finishes within `wait`.
    pub fn collect_paced(
        &mut self,
        wait: Duration,
        f: impl FnMut(u64, Frame<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let keep = match &self.handoff {
            Handoff::Cuda { .. } => 0,
            Handoff::Readback { pbo, in_flight, .. } => match in_flight.back() {
                Some(&(slot, _)) => {
                    let own = pbo.finished_within(slot, wait).exit(Exit::Software)?;
                    self.deferred.1 += 1;
                    if !own {
                        self.deferred.0 += 1;
                        let (late, all) = self.deferred;
                        // Said on the 1st, 2nd, 4th, 8th... such frame: visible, never a flood.
                        if late.is_power_of_two() {
                            info!(
                                "readback: {late} of {all} paced frames so far were not read back within {wait:?}; \
                                 they went to the encoder one interval late (a loaded machine or a slow GPU)"
                            );
                        }
                    }
                    usize::from(!own)
                }
                None => 0,
            },
        };
        self.collect(keep, f)
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        let (late, all) = self.deferred;
        if late > 0 {
            info!(
                "readback: {late} of {all} paced frames were not read back within half a frame interval; they went to the encoder one interval late"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RawFormat;
    use clap::Parser as _;

    /// Paced, a frame reaches the encoder in its own interval: collecting after rendering frame N
    /// hands out frame N itself, never waiting for frame N+1 to be rendered (here with a wait long
    /// enough for any readback, so the test does not depend on the machine's speed; the stream
    /// waits half a frame interval). Unpaced keeps the ring (N is handed out after N+1 is drawn).
    /// Runs on whatever EGL is here (llvmpipe in CI).
    #[test]
    fn paced_frames_do_not_wait_for_their_successor() {
        crate::gst_util::init().unwrap();
        let handed_out = |pace: bool| -> Vec<(u64, Vec<u64>)> {
            let mut args = vec!["agentcast", "--width", "640", "--height", "360", "--convert", "cpu"];
            if !pace {
                args.push("--no-pace");
            }
            let cfg = crate::cli::Cli::try_parse_from(args).unwrap().stream.config().unwrap();
            let cfg = cfg.render_settings().unwrap();
            let gpu = Gpu::open(None, None).expect("an EGL display (llvmpipe in CI)");
            let mut renderer = Renderer::new(gpu, &cfg, Plan::Cpu(RawFormat::Nv12)).unwrap();
            let half_interval = Duration::from_nanos(1_000_000_000 / 30 / 2);
            assert_eq!(renderer.own_interval_wait, pace.then_some(half_interval));
            (0..4)
                .map(|n| {
                    renderer.render(n).unwrap();
                    let mut got = Vec::new();
                    let take = |i, frame: Frame<'_>| {
                        assert_eq!(frame.bytes().map(<[u8]>::len), Some(640 * 360 * 4));
                        got.push(i);
                        Ok(())
                    };
                    if pace {
                        renderer.collect_paced(READBACK_TIMEOUT, take).unwrap();
                    } else {
                        renderer.collect_ready(take).unwrap();
                    }
                    (n, got)
                })
                .collect()
        };
        assert_eq!(handed_out(true), [(0, vec![0]), (1, vec![1]), (2, vec![2]), (3, vec![3])]);
        assert_eq!(handed_out(false), [(0, vec![]), (1, vec![0]), (2, vec![1]), (3, vec![2])]);
    }

    /// Hardware leg of the zero-copy path (any NVIDIA GPU with CUDA and EGL; no NVENC needed): the
    /// NV12 frame copied GL -> CUDA -> GstCudaMemory must equal, byte for byte, the same frame
    /// packed by the same shader and read back through glReadPixels.
    #[test]
    #[ignore = "needs an NVIDIA GPU with CUDA and the NVIDIA EGL driver"]
    fn zero_copy_frames_are_pixel_exact_against_the_readback() {
        let cuda = crate::cuda::select(None).expect("CUDA initialises").expect("a CUDA device");
        crate::gst_util::init().unwrap();
        let cli = crate::cli::Cli::try_parse_from(["agentcast", "--width", "640", "--height", "360"]).unwrap();
        let cfg = cli.stream.config().unwrap().render_settings().unwrap();
        let frame_of = |plan: Plan| -> Vec<u8> {
            let gpu = Gpu::open(None, Some(cuda)).unwrap();
            assert!(gpu.info.cuda_device.is_some(), "rendering on the NVIDIA EGL device: {:?}", gpu.info);
            let mut renderer = Renderer::new(gpu, &cfg, plan).unwrap();
            renderer.render(7).unwrap();
            let mut out = Vec::new();
            renderer
                .collect(0, |_, frame| {
                    out = match frame {
                        Frame::Bytes(b) | Frame::Host(b) => b.to_vec(),
                        Frame::Cuda(buffer) | Frame::Buffer(buffer) => {
                            // A CPU map of CUDA memory downloads it: the copy back the check needs.
                            let meta = buffer.meta::<gstreamer_video::VideoMeta>().unwrap();
                            let (stride, uv) = (meta.stride()[0] as usize, meta.offset()[1]);
                            let map = buffer.map_readable().unwrap();
                            let rows = |start: usize, n: usize| {
                                (0..n).flat_map(move |r| start + r * stride..start + r * stride + 640)
                            };
                            rows(0, 360).chain(rows(uv, 180)).map(|i| map[i]).collect()
                        }
                    };
                    Ok(())
                })
                .unwrap();
            out
        };
        let readback = frame_of(Plan::Gpu(RawFormat::Nv12));
        let zero_copy = frame_of(Plan::Cuda { gpu: cuda.ordinal });
        assert_eq!(readback.len(), 640 * 360 * 3 / 2);
        assert!(readback == zero_copy, "the CUDA copy differs from the readback");
    }
}
