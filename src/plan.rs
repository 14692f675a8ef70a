//! The plan: where a rendered frame's RGBA -> YUV conversion runs (`--convert`) and which path it
//! takes to the encoder (`--path`). Pure policy over plain facts; the GPU side of the conversion
//! (the shader pass) is `render::pack`, and the facts are gathered by `render::GpuInfo::path_facts`.
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

use crate::frame::RawFormat;
use crate::settings::{Convert, FramePath};

/// Where the conversion runs and what the encoder receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Shader pass on the GPU; the readback is already `RawFormat`.
    Gpu(RawFormat),
    /// RGBA readback; videoconvert produces `RawFormat`.
    Cpu(RawFormat),
    /// Zero-copy: the shader pass packs NV12 and CUDA copies it on the GPU into the encoder's
    /// CUDA-memory buffers (`cuda::frames`) on CUDA device `gpu`.
    Cuda { gpu: u32 },
}

impl Plan {
    pub fn encoder_format(self) -> RawFormat {
        match self {
            Plan::Gpu(f) | Plan::Cpu(f) => f,
            Plan::Cuda { .. } => RawFormat::Nv12,
        }
    }

    /// Bytes read back per frame (none on the zero-copy path).
    pub fn readback_bytes(self, width: u32, height: u32) -> usize {
        let px = width as usize * height as usize;
        match self {
            Plan::Gpu(_) => px * 3 / 2,
            Plan::Cpu(_) => px * 4,
            Plan::Cuda { .. } => 0,
        }
    }

    /// The frame path's name in the stats and the bytes that cross to the host per frame, given
    /// whether the encoder built takes CUDA memory (NVENC). Zero-copy frames into any other encoder
    /// go through cudadownload (the testing aid, or a fallback after NVENC failed), which copies
    /// the packed NV12 to the host: that is said, not hidden.
    pub fn host_path(self, encoder_takes_cuda: bool, width: u32, height: u32) -> (&'static str, usize) {
        match self {
            Plan::Cuda { .. } if encoder_takes_cuda => ("zero-copy", 0),
            Plan::Cuda { .. } => ("cuda-download", width as usize * height as usize * 3 / 2),
            _ => ("readback", self.readback_bytes(width, height)),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Gpu(r) => write!(f, "GPU shader pass to {}", r.caps_name()),
            Plan::Cpu(r) => write!(f, "RGBA readback, videoconvert to {}", r.caps_name()),
            Plan::Cuda { gpu } => {
                write!(f, "GPU shader pass to NV12, copied into CUDA memory on device {gpu} (zero-copy)")
            }
        }
    }
}

/// What decides the frame path (`--path`), gathered at start-up; pure so it is tested without a GPU.
#[derive(Debug, Clone)]
pub struct PathFacts {
    /// The CUDA device chosen (`--gpu`, else 0), where there is CUDA.
    pub cuda: Option<u32>,
    /// The renderer runs on an NVIDIA EGL device (`EGL_NV_device_cuda`), matched to that CUDA device.
    pub egl_on_cuda_device: bool,
    pub software_renderer: bool,
    /// The encoder that opened (with its NVENC lease held) takes CUDA memory; else why not.
    pub encoder_takes_cuda: Result<(), String>,
    /// libgstcuda-1.0 loads and finds libcuda; else why not.
    pub gst_cuda: Result<(), String>,
    /// libcuda has the GL interop entry points; else why not.
    pub gl_interop: Result<(), String>,
    pub width: u32,
    pub height: u32,
}

/// Why zero-copy is impossible where there is no CUDA at all (said before anything else is set up).
pub const NO_CUDA: &str = "there is no CUDA device";

/// `--path zero-copy` refused, and why (the one-line error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--path zero-copy is not possible here: {why}")]
pub struct ZeroCopyRefused {
    pub why: String,
}

/// How rendered frames reach the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The shader-packed NV12 texture goes to the encoder in CUDA memory.
    ZeroCopy,
    /// The frame is read back to the host (the conversion plan says in which layout).
    Readback,
}

/// The route [`choose_path`] took, and the reason to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChoice {
    pub route: Route,
    pub why: String,
}

/// Chooses between the zero-copy path and the readback path, with the reason to log. `auto` takes zero-copy only when every fact allows it; `zero-copy` names the first
/// that does not as a one-line error.
pub fn choose_path(path: FramePath, convert: Convert, f: &PathFacts) -> Result<PathChoice, ZeroCopyRefused> {
    let choice = |route, why: String| Ok(PathChoice { route, why });
    let blocker: Option<String> = if convert == Convert::Cpu {
        Some("--convert cpu reads RGBA back by definition".into())
    } else if f.cuda.is_none() {
        Some(NO_CUDA.into())
    } else if f.software_renderer {
        Some("the renderer is software (llvmpipe), not the CUDA GPU".into())
    } else if !f.egl_on_cuda_device {
        Some("the renderer is not on an NVIDIA EGL device matched to the CUDA device".into())
    } else if !gpu_packs(RawFormat::Nv12, f.width, f.height) {
        Some(format!(
            "the shader pass cannot pack {}x{} into NV12 (width a multiple of 4, even height)",
            f.width, f.height
        ))
    } else if let Err(e) = &f.encoder_takes_cuda {
        Some(e.clone())
    } else if let Err(e) = &f.gst_cuda {
        Some(e.clone())
    } else if let Err(e) = &f.gl_interop {
        Some(e.clone())
    } else {
        None
    };
    match (path, blocker) {
        (FramePath::Readback, _) => choice(Route::Readback, "--path readback".into()),
        (FramePath::ZeroCopy, Some(why)) => Err(ZeroCopyRefused { why }),
        (FramePath::ZeroCopy, None) => choice(Route::ZeroCopy, "--path zero-copy".into()),
        (FramePath::Auto, None) => choice(
            Route::ZeroCopy,
            format!("CUDA device {}, its EGL device and a CUDA-memory encoder are all here", f.cuda.unwrap_or(0)),
        ),
        (FramePath::Auto, Some(why)) => {
            let best = if f.cuda.is_some() && !f.software_renderer && f.encoder_takes_cuda.is_err() {
                " (no NVENC, as on H100/H200/A100: render and convert on the GPU, read back 1.5 B/px, encode on the \
                 CPU; the best possible here)"
            } else {
                ""
            };
            choice(Route::Readback, format!("readback, because {why}{best}"))
        }
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
    choice: Convert,
    software_renderer: bool,
    renderer: &str,
    encoder_formats: &[RawFormat],
    width: u32,
    height: u32,
) -> Result<(Plan, String), String> {
    let cpu_format = encoder_formats[0];
    let gpu_format = encoder_formats.iter().copied().find(|f| gpu_packs(*f, width, height));
    match (choice, gpu_format) {
        (Convert::Cpu, _) => Ok((Plan::Cpu(cpu_format), "--convert cpu".into())),
        (Convert::Gpu, Some(f)) => Ok((Plan::Gpu(f), "--convert gpu".into())),
        (Convert::Gpu, None) => Err(format!(
            "--convert gpu cannot pack {width}x{height} into {}: the width must be a multiple of {} (use --convert cpu)",
            encoder_formats.iter().map(|f| f.caps_name()).collect::<Vec<_>>().join("/"),
            if encoder_formats.contains(&RawFormat::Nv12) { 4 } else { 8 }
        )),
        (Convert::Auto, _) if software_renderer => Ok((
            Plan::Cpu(cpu_format),
            format!("{renderer} is a software renderer: the shader pass would cost more CPU than videoconvert"),
        )),
        (Convert::Auto, Some(f)) => {
            Ok((Plan::Gpu(f), format!("{renderer} is a GPU: packing YUV there cuts the readback to 1.5 bytes/pixel")))
        }
        (Convert::Auto, None) => {
            Ok((Plan::Cpu(cpu_format), format!("the shader pass cannot pack a width of {width}; videoconvert can")))
        }
    }
}

/// Whether a GL_RENDERER string names a software rasteriser.
pub fn is_software_renderer(renderer: &str) -> bool {
    let r = renderer.to_ascii_lowercase();
    ["llvmpipe", "softpipe", "swiftshader", "software rasterizer", "swrast"].iter().any(|s| r.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvidia(nvenc: bool) -> PathFacts {
        PathFacts {
            cuda: Some(0),
            egl_on_cuda_device: true,
            software_renderer: false,
            encoder_takes_cuda: if nvenc { Ok(()) } else { Err("x264enc takes system memory only".into()) },
            gst_cuda: Ok(()),
            gl_interop: Ok(()),
            width: 1920,
            height: 1080,
        }
    }

    #[test]
    fn auto_takes_zero_copy_only_when_every_fact_allows_it() {
        let c = choose_path(FramePath::Auto, Convert::Auto, &nvidia(true)).unwrap();
        assert_eq!(c.route, Route::ZeroCopy, "{}", c.why);
        type Block = fn(&mut PathFacts);
        let blockers: [(&str, Block); 7] = [
            ("no CUDA device", |f| f.cuda = None),
            ("software", |f| f.software_renderer = true),
            ("NVIDIA EGL device", |f| f.egl_on_cuda_device = false),
            ("cannot pack 1922x1080", |f| f.width = 1922),
            ("system memory only", |f| f.encoder_takes_cuda = Err("x264enc takes system memory only".into())),
            ("libgstcuda", |f| f.gst_cuda = Err("libgstcuda-1.0.so.0 cannot load libcuda".into())),
            ("cuGraphicsGLRegisterImage", |f| f.gl_interop = Err("no cuGraphicsGLRegisterImage".into())),
        ];
        for (reason, block) in blockers {
            let mut f = nvidia(true);
            block(&mut f);
            let PathChoice { route, why } = choose_path(FramePath::Auto, Convert::Auto, &f).unwrap();
            assert!(
                route == Route::Readback && why.starts_with("readback, because") && why.contains(reason),
                "{reason}: {why}"
            );
            let e = choose_path(FramePath::ZeroCopy, Convert::Auto, &f).unwrap_err().to_string();
            assert!(e.starts_with("--path zero-copy is not possible here: ") && e.contains(reason), "{e}");
        }
        let e = choose_path(FramePath::ZeroCopy, Convert::Cpu, &nvidia(true)).unwrap_err().to_string();
        assert!(e.contains("--convert cpu"), "{e}");
        assert_eq!(choose_path(FramePath::Readback, Convert::Auto, &nvidia(true)).unwrap().route, Route::Readback);
    }

    #[test]
    fn cuda_without_nvenc_says_it_is_the_best_possible_there() {
        let PathChoice { route, why } = choose_path(FramePath::Auto, Convert::Auto, &nvidia(false)).unwrap();
        assert_eq!(route, Route::Readback);
        assert!(why.contains("H100/H200/A100") && why.contains("1.5 B/px") && why.contains("best possible"), "{why}");
        let mut llvmpipe = nvidia(false);
        (llvmpipe.cuda, llvmpipe.software_renderer) = (None, true);
        assert!(!choose_path(FramePath::Auto, Convert::Auto, &llvmpipe).unwrap().why.contains("best possible"));
    }

    #[test]
    fn the_zero_copy_plan_moves_no_bytes_to_the_host() {
        let plan = Plan::Cuda { gpu: 0 };
        assert_eq!(plan.readback_bytes(1920, 1080), 0);
        assert_eq!(plan.host_path(true, 1920, 1080), ("zero-copy", 0));
        assert_eq!(plan.host_path(false, 1920, 1080), ("cuda-download", 1920 * 1080 * 3 / 2), "cudadownload copies");
        assert_eq!(Plan::Cpu(RawFormat::Nv12).host_path(true, 1280, 720), ("readback", 1280 * 720 * 4));
        assert_eq!(plan.encoder_format(), RawFormat::Nv12);
    }

    const X264: &[RawFormat] = &[RawFormat::Nv12, RawFormat::I420];
    const OPENH264: &[RawFormat] = &[RawFormat::I420];

    #[test]
    fn auto_uses_cpu_on_llvmpipe() {
        let (plan, why) = choose(Convert::Auto, true, "llvmpipe", X264, 1280, 720).unwrap();
        assert_eq!(plan, Plan::Cpu(RawFormat::Nv12));
        assert!(why.contains("software"));
    }

    #[test]
    fn auto_uses_gpu_on_hardware() {
        let (plan, _) = choose(Convert::Auto, false, "NVIDIA H100", X264, 1920, 1080).unwrap();
        assert_eq!(plan, Plan::Gpu(RawFormat::Nv12));
        let (plan, _) = choose(Convert::Auto, false, "NVIDIA H100", OPENH264, 1920, 1080).unwrap();
        assert_eq!(plan, Plan::Gpu(RawFormat::I420));
    }

    #[test]
    fn unpackable_widths() {
        // 1284 is a multiple of 4 but not 8: NV12 packs, I420 does not.
        assert_eq!(choose(Convert::Gpu, true, "x", X264, 1284, 720).unwrap().0, Plan::Gpu(RawFormat::Nv12));
        let e = choose(Convert::Gpu, true, "x", OPENH264, 1284, 720).unwrap_err();
        assert!(e.starts_with("--convert gpu"), "{e}");
        let (plan, _) = choose(Convert::Auto, false, "gpu", OPENH264, 1284, 720).unwrap();
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
