//! DMA-BUF export, for tests: a render target's texture -> EGL image (EGL_KHR_gl_texture_2D_image)
//! -> DMA-BUF fds, fourcc, strides, offsets, modifier (EGL_MESA_image_dma_buf_export). The import
//! is tested against buffers the driver exported; the capture itself never exports, so this is
//! compiled for tests only. Exported fds are [`OwnedFd`]s. Also here: the tests that draw through
//! an EGL image of a texture, which is this half's.

use std::ffi::c_void;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use anyhow::{Context as _, anyhow, bail};
use drm_fourcc::DrmFourcc;
use khronos_egl as egl;

use super::super::Context;
use super::super::gl::Target;
use super::import::{DmaBuf, Plane};
use super::{CreateImageKhr, DestroyImageKhr, EglImage, Image, entry, lacks, missing};

const GL_TEXTURE_2D_KHR: egl::Enum = 0x30B1;
const GL_TEXTURE_LEVEL_KHR: egl::Int = 0x30BC;

type ExportQueryMesa =
    unsafe extern "system" fn(egl::EGLDisplay, EglImage, *mut i32, *mut i32, *mut u64) -> egl::Boolean;
type ExportMesa =
    unsafe extern "system" fn(egl::EGLDisplay, EglImage, *mut i32, *mut egl::Int, *mut egl::Int) -> egl::Boolean;

/// What exporting a texture needs from the EGL display.
pub const EXPORT_EGL: [&str; 3] =
    ["EGL_KHR_image_base", "EGL_KHR_gl_texture_2D_image", "EGL_MESA_image_dma_buf_export"];

/// The extensions exporting needs that this context's display lacks (empty: it can export).
pub fn export_missing(ctx: &Context) -> Vec<&'static str> {
    missing(&EXPORT_EGL, |e| ctx.display.has_extension(e))
}

/// One exported plane.
#[derive(Debug)]
pub struct ExportedPlane {
    pub fd: OwnedFd,
    pub offset: u32,
    pub stride: u32,
}

/// A texture exported as a DMA-BUF.
#[derive(Debug)]
pub struct Exported {
    pub width: u32,
    pub height: u32,
    pub fourcc: DrmFourcc,
    pub modifier: u64,
    pub planes: Vec<ExportedPlane>,
}

impl Exported {
    /// The buffer as [`Importer::import`] takes it (fds borrowed from `self`).
    pub fn dma_buf(&self) -> DmaBuf<'_> {
        DmaBuf {
            width: self.width,
            height: self.height,
            fourcc: self.fourcc,
            modifier: Some(self.modifier),
            planes: self.planes.iter().map(|p| Plane { fd: p.fd.as_fd(), offset: p.offset, pitch: p.stride }).collect(),
        }
    }
}

/// An EGL image whose storage is `target`'s texture (EGL_KHR_gl_texture_2D_image; the caller
/// checked the extensions).
fn texture_image(ctx: &Context, target: &Target) -> anyhow::Result<Image> {
    let display = &ctx.display;
    let create: CreateImageKhr = entry(display, "eglCreateImageKHR")?;
    let destroy: DestroyImageKhr = entry(display, "eglDestroyImageKHR")?;
    let attribs = [GL_TEXTURE_LEVEL_KHR, 0, egl::NONE];
    // SAFETY: EGL_GL_TEXTURE_2D_KHR takes the current context and a texture name of it as the
    // client buffer (an integer carried in the pointer); the target's texture is complete (one
    // level of immutable storage) and `attribs` ends with EGL_NONE.
    let raw = unsafe {
        create(
            display.raw.as_ptr(),
            ctx.raw.as_ptr(),
            GL_TEXTURE_2D_KHR,
            target.texture_name() as usize as *mut c_void,
            attribs.as_ptr(),
        )
    };
    if raw.is_null() {
        bail!("eglCreateImageKHR(EGL_GL_TEXTURE_2D_KHR) failed: {:?}", display.egl.get_error());
    }
    Ok(Image { display: display.clone(), raw, destroy })
}

/// Exports the texture of `target` as a DMA-BUF (EGL_MESA_image_dma_buf_export), after the GL queue
/// has finished, so the buffer holds what was drawn. For tests and diagnostics.
pub fn export(ctx: &Context, target: &Target) -> anyhow::Result<Exported> {
    let missing = export_missing(ctx);
    if !missing.is_empty() {
        return Err(lacks("exporting a texture as a DMA-BUF", ctx, &missing));
    }
    let display = &ctx.display;
    let query: ExportQueryMesa = entry(display, "eglExportDMABUFImageQueryMESA")?;
    let export: ExportMesa = entry(display, "eglExportDMABUFImageMESA")?;
    ctx.gl.finish();
    let image = texture_image(ctx, target)?;
    let dpy = display.raw.as_ptr();
    let (mut fourcc, mut n) = (0i32, 0i32);
    let mut modifiers = [0u64; 4];
    // SAFETY: the image is live; the outputs are valid to write, and `modifiers` has room for the
    // four planes the extension can report.
    if unsafe { query(dpy, image.raw, &mut fourcc, &mut n, modifiers.as_mut_ptr()) } != egl::TRUE {
        bail!("eglExportDMABUFImageQueryMESA failed: {:?}", display.egl.get_error());
    }
    let n = usize::try_from(n).ok().filter(|n| (1..=4).contains(n)).with_context(|| format!("{n} planes"))?;
    let (mut fds, mut strides, mut offsets) = ([-1i32; 4], [0 as egl::Int; 4], [0 as egl::Int; 4]);
    // SAFETY: the image is live and each array has room for the `n` (at most 4) planes queried.
    let ok = unsafe { export(dpy, image.raw, fds.as_mut_ptr(), strides.as_mut_ptr(), offsets.as_mut_ptr()) };
    // Take ownership of every fd EGL made before anything can fail, so none leaks.
    let mut owned: Vec<Option<OwnedFd>> = Vec::with_capacity(n);
    for (i, &fd) in fds.iter().enumerate().take(n) {
        let first = fds[..i].contains(&fd);
        // SAFETY: EGL_MESA_image_dma_buf_export hands the caller a new fd per plane, which the
        // caller must close; each distinct non-negative one is wrapped exactly once.
        owned.push((fd >= 0 && !first).then(|| unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ok != egl::TRUE {
        bail!("eglExportDMABUFImageMESA failed: {:?}", display.egl.get_error());
    }
    let fourcc = DrmFourcc::try_from(fourcc as u32).map_err(|e| anyhow!("the exported image's fourcc: {e}"))?;
    let mut planes = Vec::with_capacity(n);
    for i in 0..n {
        // A plane without an fd of its own (-1, or the same number again) lies in an earlier one's.
        let fd = match owned[i].take() {
            Some(fd) => fd,
            None => {
                let j = fds[..i].iter().position(|&f| f == fds[i] && f >= 0).unwrap_or(0);
                let shared = planes.get(j).map(|p: &ExportedPlane| &p.fd).context("plane 0 has no fd")?;
                shared.try_clone().context("duplicating a plane's fd")?
            }
        };
        let offset = u32::try_from(offsets[i]).context("a negative offset")?;
        let stride = u32::try_from(strides[i]).context("a negative stride")?;
        planes.push(ExportedPlane { fd, offset, stride });
    }
    drop(image);
    Ok(Exported { width: target.width, height: target.height, fourcc, modifier: modifiers[0], planes })
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::render::egl::Display;
    use crate::render::egl::dmabuf::import::{
        ExternalBlit, Filter, IMPORT_GL, Imported, Importer, bind_external, import_missing,
    };
    use crate::render::egl::dmabuf::{entry, linear_modifier, missing};
    use crate::render::egl::gl::{Gl, Pass, Program};

    /// A pattern where every pixel differs from its neighbours and R, G and B differ from each
    /// other almost everywhere: a swapped R/B, a wrong pitch or a flipped image cannot match it.
    /// Alpha is opaque, so an X (no alpha) format reads back the same.
    fn pattern(x: u32, y: u32) -> [u8; 4] {
        [((x * 7 + y) % 256) as u8, ((y * 13 + x / 3) % 256) as u8, ((x + 3 * y + 101) % 251) as u8, 255]
    }

    const PATTERN_GLSL: &str = "#version 300 es
precision highp float;
out vec4 o;
void main() {
    ivec2 p = ivec2(gl_FragCoord.xy);
    o = vec4(float((p.x * 7 + p.y) % 256), float((p.y * 13 + p.x / 3) % 256), float((p.x + 3 * p.y + 101) % 251), 255.0)
        / 255.0;
}
";

    fn read(gl: &Rc<Gl>, target: &Target) -> Vec<u8> {
        let mut pbo =
            crate::render::egl::gl::Readback::new(gl, 1, target.width as usize * target.height as usize * 4).unwrap();
        pbo.start(0, target).unwrap();
        pbo.read(0, std::time::Duration::from_secs(5), <[u8]>::to_vec).unwrap()
    }

    /// Says where `got` first differs from `want` (RGBA rows of `width`), and whether it is R and B
    /// swapped or rows shifted (a wrong pitch).
    fn first_difference(got: &[u8], want: &[u8], width: usize) -> Option<String> {
        let i = got.chunks(4).zip(want.chunks(4)).position(|(g, w)| g != w)?;
        let (x, y) = (i % width, i / width);
        let swapped = got.chunks(4).zip(want.chunks(4)).all(|(g, w)| [g[2], g[1], g[0], g[3]] == w);
        let row = width * 4;
        let rows = want.len() / row;
        let shifted = (0..rows).find(|&k| k != y && got[y * row..(y + 1) * row] == want[k * row..(k + 1) * row]);
        Some(format!(
            "pixel ({x}, {y}) is {:?}, want {:?}{}{}",
            &got[i * 4..i * 4 + 4],
            &want[i * 4..i * 4 + 4],
            if swapped { "; R and B are swapped everywhere" } else { "" },
            shifted.map_or(String::new(), |k| format!("; row {y} holds row {k} (a wrong pitch or a flip?)"))
        ))
    }

    /// Draws [`PATTERN_GLSL`] into a new `w` x `h` target.
    fn draw_pattern(gl: &Rc<Gl>, w: u32, h: u32) -> Target {
        let program = Program::fullscreen(gl, PATTERN_GLSL).unwrap();
        let target = Target::new(gl, w, h).unwrap();
        Pass { program: &program, target: &target, source: None, uniforms: &[], scissor: None }.draw().unwrap();
        target
    }

    /// Everything but the DMA-BUF, on whatever EGL is here (llvmpipe in CI): a texture's EGL image
    /// (EGL_KHR_gl_texture_2D_image) bound to an external texture the way an import binds it, then
    /// drawn by [`ExternalBlit`], reads back pixel for pixel; drawn into a rectangle of a larger
    /// target, it lands there (top row first) with black around it.
    #[test]
    fn an_egl_image_drawn_through_an_external_texture_is_pixel_exact() {
        let _egl = crate::render::egl::egl_test_lock();
        let ctx = Context::new(Display::open(None, None).expect("an EGL display (llvmpipe in CI)")).unwrap();
        // Mesa (llvmpipe too) and the NVIDIA driver have these; a display without them fails here.
        let needed = ["EGL_KHR_image_base", "EGL_KHR_gl_texture_2D_image"];
        let mut lacking = missing(&needed, |e| ctx.display.has_extension(e));
        lacking.extend(missing(&IMPORT_GL, |e| ctx.gl.has_extension(e)));
        assert!(lacking.is_empty(), "this EGL display ({}) lacks {}", ctx.display.platform, lacking.join(", "));
        let gl = ctx.gl.clone();
        let (w, h) = (250u32, 130u32);
        let want: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| pattern(x, y))).collect();
        let drawn = draw_pattern(&gl, w, h);
        assert_eq!(first_difference(&read(&gl, &drawn), &want, w as usize), None, "the pattern as drawn");
        let image = texture_image(&ctx, &drawn).unwrap();
        let target_texture = entry(&ctx.display, "glEGLImageTargetTexture2DOES").unwrap();
        let texture = bind_external(&gl, target_texture, &image, Filter::Nearest).unwrap();
        let imported = Imported { texture, _image: image, width: w, height: h, fourcc: DrmFourcc::Abgr8888 };
        let blit = ExternalBlit::new(&gl).unwrap();
        let copy = Target::new(&gl, w, h).unwrap();
        blit.draw(&imported, &copy, [0, 0, w, h]).unwrap();
        if let Some(d) = first_difference(&read(&gl, &copy), &want, w as usize) {
            panic!("the picture drawn through the external texture differs: {d}");
        }
        // Into [10, 20, w, h] of a (w + 30) x (h + 40) target: borders black, the picture exact.
        let (bw, bh) = (w + 30, h + 40);
        let framed = Target::new(&gl, bw, bh).unwrap();
        blit.draw(&imported, &framed, [10, 20, w, h]).unwrap();
        let got = read(&gl, &framed);
        for y in 0..bh {
            for x in 0..bw {
                let at = (y * bw + x) as usize * 4;
                let inside = (10..10 + w).contains(&x) && (20..20 + h).contains(&y);
                let expect = if inside { pattern(x - 10, y - 20) } else { [0, 0, 0, 255] };
                assert_eq!(got[at..at + 4], expect, "pixel ({x}, {y}) of the framed picture (inside: {inside})");
            }
        }
        drop(imported);
    }

    /// Hardware: a non-uniform pattern drawn on the GPU is exported as a DMA-BUF and imported back
    /// as an external texture on the same display; drawn into a second target through the same
    /// shader the capture uses, it reads back pixel for pixel equal to what was drawn. The exported
    /// fds are closed before the imported texture is read, so the image keeps its own reference.
    /// A width of 250 (1000-byte rows) may make a driver pad the pitch.
    #[test]
    #[ignore = "needs an EGL display with EGL_EXT_image_dma_buf_import and EGL_MESA_image_dma_buf_export (the NVIDIA driver)"]
    fn dmabuf_export_then_import_is_pixel_exact() {
        let _egl = crate::render::egl::egl_test_lock();
        let display = Display::open(None, None).expect("an EGL display");
        let ctx = Context::new(display).expect("an OpenGL ES 3 context");
        let renderer = ctx.gl.renderer();
        let lacking = [import_missing(&ctx), export_missing(&ctx)].concat();
        assert!(
            lacking.is_empty(),
            "this EGL display ({}, GL_RENDERER {renderer}) lacks {}: DMA-BUF import and export cannot run here",
            ctx.display.platform,
            lacking.join(", ")
        );
        let gl = ctx.gl.clone();
        let (w, h) = (250u32, 130u32);
        let want: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| pattern(x, y))).collect();
        {
            let drawn = draw_pattern(&gl, w, h);
            let original = read(&gl, &drawn);
            if let Some(d) = first_difference(&original, &want, w as usize) {
                panic!("the pattern itself did not draw as computed: {d}");
            }

            let exported = export(&ctx, &drawn).unwrap();
            eprintln!(
                "exported {}x{} {} modifier {:#018x}, planes (offset, stride): {:?}",
                exported.width,
                exported.height,
                exported.fourcc,
                exported.modifier,
                exported.planes.iter().map(|p| (p.offset, p.stride)).collect::<Vec<_>>()
            );
            assert!(exported.planes[0].stride >= w * 4, "a stride shorter than a row: {exported:?}");
            let importer = Importer::new(&ctx).unwrap();
            let modifier = Some(exported.modifier);
            if let Err(why) = importer.supports(exported.fourcc, modifier) {
                panic!("the display refuses the buffer it exported itself: {why}");
            }
            let imported = importer.import(&exported.dma_buf(), Filter::Nearest).unwrap();
            drop(exported); // the EGL image holds its own reference to the buffer
            let copy = Target::new(&gl, w, h).unwrap();
            ExternalBlit::new(&gl).unwrap().draw(&imported, &copy, [0, 0, w, h]).unwrap();
            let got = read(&gl, &copy);
            if let Some(d) = first_difference(&got, &want, w as usize) {
                panic!("the imported DMA-BUF differs from what was drawn: {d}");
            }
            // The same buffer imported with R and B swapped in its fourcc reads back swapped: the
            // fourcc given is the one the driver honours (a wrong entry in drm_fourcc would show).
            let exported = export(&ctx, &drawn).unwrap();
            let swapped = match exported.fourcc {
                DrmFourcc::Abgr8888 => Some(DrmFourcc::Argb8888),
                DrmFourcc::Argb8888 => Some(DrmFourcc::Abgr8888),
                DrmFourcc::Xbgr8888 => Some(DrmFourcc::Xrgb8888),
                DrmFourcc::Xrgb8888 => Some(DrmFourcc::Xbgr8888),
                _ => None,
            };
            match swapped.map(|f| (f, importer.supports(f, modifier))) {
                Some((fourcc, Ok(()))) => {
                    let imported = importer.import(&DmaBuf { fourcc, ..exported.dma_buf() }, Filter::Nearest).unwrap();
                    ExternalBlit::new(&gl).unwrap().draw(&imported, &copy, [0, 0, w, h]).unwrap();
                    let want_swapped: Vec<u8> = want.chunks(4).flat_map(|p| [p[2], p[1], p[0], p[3]]).collect();
                    if let Some(d) = first_difference(&read(&gl, &copy), &want_swapped, w as usize) {
                        panic!("imported as {fourcc} (R and B swapped) it should read back swapped: {d}");
                    }
                }
                Some((fourcc, Err(why))) => eprintln!("skipped the swapped-fourcc import ({fourcc}): {why}"),
                None => eprintln!("skipped the swapped-fourcc import: {} has no R/B twin here", exported.fourcc),
            }
            // A linear buffer imported with a wrong pitch must not read back the same: a pitch that
            // import_attribs dropped or misplaced would show here. (Tiled layouts place rows by the
            // modifier, not the pitch.)
            if exported.modifier == linear_modifier() {
                let mut wrong = exported.dma_buf();
                wrong.planes[0].pitch += 256;
                if let Ok(bad) = importer.import(&wrong, Filter::Nearest) {
                    ExternalBlit::new(&gl).unwrap().draw(&bad, &copy, [0, 0, w, h]).unwrap();
                    assert!(read(&gl, &copy) != want, "a DMA-BUF imported with the wrong pitch read back the same");
                }
            } else {
                eprintln!("skipped the wrong-pitch import: the exported layout is tiled, not linear");
            }
        }
    }
}
