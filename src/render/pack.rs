//! The GPU side of the RGBA -> YUV conversion: a shader pass that packs the rendered picture into
//! I420 or NV12 (BT.709 limited range, as the caps declare), so only 1.5 bytes per pixel are read
//! back. Where it runs is the plan's choice (`crate::plan`).

use std::rc::Rc;

use crate::frame::RawFormat;
use crate::render::egl::gl::{Gl, Pass, Program, Target, Uniform};

/// The GPU side: the packing program and its output target.
pub struct GpuPack {
    program: Program,
    pub target: Target,
    nv12: bool,
    size: [i32; 2],
}

impl GpuPack {
    pub fn new(gl: &Rc<Gl>, format: RawFormat, width: u32, height: u32) -> anyhow::Result<GpuPack> {
        let program = Program::fullscreen(gl, include_str!("shaders/pack_yuv.glsl"))
            .map_err(|e| anyhow::anyhow!("built-in YUV packing shader: {e}"))?;
        let target = Target::new(gl, width / 4, height * 3 / 2)?;
        Ok(GpuPack { program, target, nv12: format == RawFormat::Nv12, size: [width as i32, height as i32] })
    }

    /// Packs `source` into [`GpuPack::target`].
    pub fn run(&self, source: &Target) -> anyhow::Result<()> {
        Pass {
            program: &self.program,
            target: &self.target,
            source: Some(("u_src", source.into())),
            uniforms: &[("u_nv12", Uniform::I32(i32::from(self.nv12))), ("u_size", Uniform::IVec2(self.size))],
            scissor: None,
        }
        .draw()
    }
}
