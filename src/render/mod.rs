//! The render stage: draws the scene and the frame stamp into an RGBA8 target, runs the GPU
//! conversion pass when the plan says so, and reads frames back asynchronously through a ring of
//! pixel-pack buffers.

pub mod device;
pub mod egl;
pub mod scene;

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context as _;
use log::info;

use crate::config::Config;
use crate::convert::{self, GpuPack, Plan};
use crate::exit::{Exit, ExitExt};
use crate::stamp::{self, StampLayout};
use egl::gl::{Pass, Program, Readback, Target, Uniform};

/// Pixel-pack buffers in flight: the frame drawn now is read while the previous one is handed on,
/// so glReadPixels never waits on the frame just drawn.
pub const READBACK_SLOTS: usize = 2;
/// How long to wait for a readback that should long be finished before calling the GPU hung.
const READBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the renderer found, for logs and the convert decision.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    pub platform: String,
    pub renderer: String,
    pub version: String,
    pub vendor: String,
    pub software: bool,
}

/// An EGL context with nothing drawn yet: enough to learn what the GPU is before choosing the plan.
pub struct Gpu {
    ctx: egl::Context,
    pub info: GpuInfo,
}

impl Gpu {
    /// `cuda`: the CUDA device frames go to, where there is one (see [`device`]).
    pub fn open(egl_device: Option<u32>, cuda: Option<device::CudaIds>) -> anyhow::Result<Gpu> {
        let display = egl::Display::open(egl_device, cuda)?;
        let ctx = egl::Context::new(display).context("creating an OpenGL ES 3 context").exit(Exit::Unavailable)?;
        let gl = &ctx.gl;
        let renderer = gl.renderer();
        let platform = ctx.platform();
        let software = convert::is_software_renderer(&renderer)
            || matches!(platform, egl::Platform::Device { software: true, .. });
        let info =
            GpuInfo { platform: platform.to_string(), version: gl.version(), vendor: gl.vendor(), software, renderer };
        info!(
            "GL_RENDERER: {}; GL_VERSION: {}; GL_VENDOR: {}{}",
            info.renderer,
            info.version,
            info.vendor,
            if software { " (software rasteriser)" } else { "" }
        );
        Ok(Gpu { ctx, info })
    }
}

/// Draws frames and hands back their bytes in the layout the plan promised.
pub struct Renderer {
    // Field order is drop order: every GL object goes before the context.
    readback: Readback,
    pack: Option<GpuPack>,
    stamp: Option<(Program, StampLayout)>,
    scene: scene::Scene,
    target: Target,
    /// Held, not read: it keeps the GL context current for the objects above.
    _ctx: egl::Context,
    /// Frames whose readback is in flight: (slot, frame index).
    in_flight: VecDeque<(usize, u64)>,
    next_slot: usize,
    fps: u32,
}

impl Renderer {
    pub fn new(gpu: Gpu, cfg: &Config, plan: Plan) -> anyhow::Result<Renderer> {
        let gl = gpu.ctx.gl.clone();
        let scene = scene::Scene::load(&gl, &cfg.scene)?;
        let target = Target::new(&gl, cfg.width, cfg.height).exit(Exit::Software)?;
        let stamp = if cfg.stamp {
            let layout = StampLayout::for_size(cfg.width, cfg.height).context("frame stamp layout")?;
            let program = Program::fullscreen(&gl, include_str!("shaders/stamp.glsl"))
                .map_err(|e| anyhow::anyhow!("built-in stamp shader: {e}"))?;
            Some((program, layout))
        } else {
            None
        };
        let pack = match plan {
            Plan::Gpu(format) => Some(GpuPack::new(&gl, format, cfg.width, cfg.height)?),
            Plan::Cpu(_) => None,
        };
        let bytes = plan.readback_bytes(cfg.width, cfg.height);
        let readback = Readback::new(&gl, READBACK_SLOTS, bytes).exit(Exit::Software)?;
        Ok(Renderer {
            readback,
            pack,
            stamp,
            scene,
            target,
            _ctx: gpu.ctx,
            in_flight: VecDeque::new(),
            next_slot: 0,
            fps: cfg.fps,
        })
    }

    /// Draws frame `frame` (stream time `frame / fps`) and queues its readback.
    pub fn render(&mut self, frame: u64) -> anyhow::Result<()> {
        let time = frame as f64 / f64::from(self.fps);
        self.scene.draw(&self.target, frame, time as f32, self.fps)?;
        if let Some((program, layout)) = &self.stamp {
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
        let slot = self.next_slot;
        self.readback.start(slot, source)?;
        self.next_slot = (slot + 1) % self.readback.slots();
        self.in_flight.push_back((slot, frame));
        Ok(())
    }

    /// Frames rendered but not yet handed out.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Hands out finished frames, oldest first, while more than `keep` are in flight (0 drains).
    pub fn collect(&mut self, keep: usize, mut f: impl FnMut(u64, &[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        while self.in_flight.len() > keep {
            let (slot, frame) = self.in_flight.pop_front().expect("checked non-empty");
            self.readback.read(slot, READBACK_TIMEOUT, |bytes| f(frame, bytes))??;
        }
        Ok(())
    }

    /// Keeps the newest frame in flight and hands out the rest (the steady state).
    pub fn collect_ready(&mut self, f: impl FnMut(u64, &[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.collect(READBACK_SLOTS - 1, f)
    }
}
