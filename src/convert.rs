//! RGBA -> YUV: decides where the conversion runs (`--convert`), and runs the GPU side of it.
//!
//! - GPU: a shader pass packs the rendered picture into I420 or NV12 (BT.709 limited range, as the
//!   caps declare), so only 1.5 bytes per pixel are read back.
//! - CPU: RGBA (4 bytes per pixel) is read back and GStreamer's videoconvert converts it on all
//!   cores.
//!
//! On a software renderer (llvmpipe) the shader pass runs on the same CPU cores, one fragment at a
//! time through an interpreter-like pipeline, and costs more than videoconvert's SIMD loops, so
//! `auto` picks the CPU there and the GPU everywhere else.

use std::fmt;
use std::rc::Rc;

use crate::cli::ConvertArg;
use crate::encode::settings::RawFormat;
use crate::render::egl::gl::{Gl, Pass, Program, Target, Uniform};

/// Where the conversion runs and what the encoder receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Shader pass on the GPU; the readback is already `RawFormat`.
    Gpu(RawFormat),
    /// RGBA readback; videoconvert produces `RawFormat`.
    Cpu(RawFormat),
}

impl Plan {
    pub fn encoder_format(self) -> RawFormat {
        match self {
            Plan::Gpu(f) | Plan::Cpu(f) => f,
        }
    }

    /// Bytes read back per frame.
    pub fn readback_bytes(self, width: u32, height: u32) -> usize {
        let px = width as usize * height as usize;
        match self {
            Plan::Gpu(_) => px * 3 / 2,
            Plan::Cpu(_) => px * 4,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Gpu(r) => write!(f, "GPU shader pass to {}", r.caps_name()),
            Plan::Cpu(r) => write!(f, "RGBA readback, videoconvert to {}", r.caps_name()),
        }
    }
}

/// How frames reach the encoder on this machine, with the reason: what `agentcast doctor` reports.
/// The zero-copy path (GL texture -> CUDA -> NVENC, issue 6) is not built yet, so every machine reads
/// back; the difference is how many bytes per pixel cross to the host.
pub fn auto_path(cuda_devices: usize, software_renderer: bool, nvenc_opens: bool) -> (&'static str, &'static str) {
    match (software_renderer, cuda_devices > 0, nvenc_opens) {
        (true, _, _) => (
            "readback of RGBA (4 B/px)",
            "the renderer is software (llvmpipe), so videoconvert on the CPU is cheaper than the shader pass",
        ),
        (false, true, true) => (
            "readback of shader-packed YUV (1.5 B/px) into NVENC",
            "CUDA and NVENC are here, but the zero-copy path is not built yet",
        ),
        (false, true, false) => (
            "readback of shader-packed YUV (1.5 B/px) into a CPU encoder",
            "CUDA but no NVENC (as on H100/H200/A100): render and convert on the GPU, encode on the CPU, the best possible here",
        ),
        (false, false, _) => (
            "readback of shader-packed YUV (1.5 B/px)",
            "a hardware renderer without CUDA: the GPU converts, the host gets 1.5 bytes per pixel",
        ),
    }
}

/// Whether the shader pass can pack this size into this layout: it writes four bytes per texel,
/// so every plane row must be a multiple of four bytes.
pub fn gpu_packs(format: RawFormat, width: u32, height: u32) -> bool {
    height.is_multiple_of(2)
        && match format {
            RawFormat::Nv12 => width.is_multiple_of(4),
            RawFormat::I420 => width.is_multiple_of(8),
        }
}

/// Chooses the plan, with the reason to log. `encoder_formats` is in the encoder's order of
/// preference.
pub fn choose(
    choice: ConvertArg,
    software_renderer: bool,
    renderer: &str,
    encoder_formats: &[RawFormat],
    width: u32,
    height: u32,
) -> Result<(Plan, String), String> {
    let cpu_format = encoder_formats[0];
    let gpu_format = encoder_formats.iter().copied().find(|f| gpu_packs(*f, width, height));
    match (choice, gpu_format) {
        (ConvertArg::Cpu, _) => Ok((Plan::Cpu(cpu_format), "--convert cpu".into())),
        (ConvertArg::Gpu, Some(f)) => Ok((Plan::Gpu(f), "--convert gpu".into())),
        (ConvertArg::Gpu, None) => Err(format!(
            "--convert gpu cannot pack {width}x{height} into {}: the width must be a multiple of {} (use --convert cpu)",
            encoder_formats.iter().map(|f| f.caps_name()).collect::<Vec<_>>().join("/"),
            if encoder_formats.contains(&RawFormat::Nv12) { 4 } else { 8 }
        )),
        (ConvertArg::Auto, _) if software_renderer => Ok((
            Plan::Cpu(cpu_format),
            format!("{renderer} is a software renderer: the shader pass would cost more CPU than videoconvert"),
        )),
        (ConvertArg::Auto, Some(f)) => {
            Ok((Plan::Gpu(f), format!("{renderer} is a GPU: packing YUV there cuts the readback to 1.5 bytes/pixel")))
        }
        (ConvertArg::Auto, None) => {
            Ok((Plan::Cpu(cpu_format), format!("the shader pass cannot pack a width of {width}; videoconvert can")))
        }
    }
}

/// Whether a GL_RENDERER string names a software rasteriser.
pub fn is_software_renderer(renderer: &str) -> bool {
    let r = renderer.to_ascii_lowercase();
    ["llvmpipe", "softpipe", "swiftshader", "software rasterizer", "swrast"].iter().any(|s| r.contains(s))
}

/// The GPU side: the packing program and its output target.
pub struct GpuPack {
    program: Program,
    pub target: Target,
    nv12: bool,
    size: [i32; 2],
}

impl GpuPack {
    pub fn new(gl: &Rc<Gl>, format: RawFormat, width: u32, height: u32) -> anyhow::Result<GpuPack> {
        let program = Program::fullscreen(gl, include_str!("render/shaders/pack_yuv.glsl"))
            .map_err(|e| anyhow::anyhow!("built-in YUV packing shader: {e}"))?;
        let target = Target::new(gl, width / 4, height * 3 / 2)?;
        Ok(GpuPack { program, target, nv12: format == RawFormat::Nv12, size: [width as i32, height as i32] })
    }

    /// Packs `source` into [`GpuPack::target`].
    pub fn run(&self, source: &Target) -> anyhow::Result<()> {
        Pass {
            program: &self.program,
            target: &self.target,
            source: Some(("u_src", source)),
            uniforms: &[("u_nv12", Uniform::I32(i32::from(self.nv12))), ("u_size", Uniform::IVec2(self.size))],
            scissor: None,
        }
        .draw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_path_says_which_bytes_cross_to_the_host_and_why() {
        assert!(auto_path(0, true, false).0.contains("4 B/px"));
        assert!(auto_path(1, true, true).0.contains("4 B/px"), "llvmpipe reads back RGBA even beside CUDA");
        let (path, why) = auto_path(1, false, false);
        assert!(path.contains("1.5 B/px") && path.contains("CPU encoder") && why.contains("no NVENC"));
        let (path, why) = auto_path(2, false, true);
        assert!(path.contains("NVENC") && why.contains("not built yet"), "never claims zero-copy");
        assert!(auto_path(0, false, false).0.contains("1.5 B/px"));
    }

    const X264: &[RawFormat] = &[RawFormat::Nv12, RawFormat::I420];
    const OPENH264: &[RawFormat] = &[RawFormat::I420];

    #[test]
    fn auto_uses_cpu_on_llvmpipe() {
        let (plan, why) = choose(ConvertArg::Auto, true, "llvmpipe", X264, 1280, 720).unwrap();
        assert_eq!(plan, Plan::Cpu(RawFormat::Nv12));
        assert!(why.contains("software"));
    }

    #[test]
    fn auto_uses_gpu_on_hardware() {
        let (plan, _) = choose(ConvertArg::Auto, false, "NVIDIA H100", X264, 1920, 1080).unwrap();
        assert_eq!(plan, Plan::Gpu(RawFormat::Nv12));
        let (plan, _) = choose(ConvertArg::Auto, false, "NVIDIA H100", OPENH264, 1920, 1080).unwrap();
        assert_eq!(plan, Plan::Gpu(RawFormat::I420));
    }

    #[test]
    fn unpackable_widths() {
        // 1284 is a multiple of 4 but not 8: NV12 packs, I420 does not.
        assert_eq!(choose(ConvertArg::Gpu, true, "x", X264, 1284, 720).unwrap().0, Plan::Gpu(RawFormat::Nv12));
        let e = choose(ConvertArg::Gpu, true, "x", OPENH264, 1284, 720).unwrap_err();
        assert!(e.starts_with("--convert gpu"), "{e}");
        let (plan, _) = choose(ConvertArg::Auto, false, "gpu", OPENH264, 1284, 720).unwrap();
        assert_eq!(plan, Plan::Cpu(RawFormat::I420));
        assert!(!gpu_packs(RawFormat::Nv12, 1282, 720));
    }

    #[test]
    fn readback_sizes() {
        assert_eq!(Plan::Gpu(RawFormat::I420).readback_bytes(1280, 720), 1280 * 720 * 3 / 2);
        assert_eq!(Plan::Cpu(RawFormat::I420).readback_bytes(1280, 720), 1280 * 720 * 4);
    }

    #[test]
    fn software_renderer_names() {
        assert!(is_software_renderer("llvmpipe (LLVM 15.0.6, 256 bits)"));
        assert!(is_software_renderer("softpipe"));
        assert!(!is_software_renderer("NVIDIA H200/PCIe/SSE2"));
        assert!(!is_software_renderer("Mesa Intel(R) UHD Graphics 630 (CFL GT2)"));
    }
}
