//! Frames that arrive as DMA-BUFs (a PipeWire node's buffers), turned into the stream's I420 on
//! the GPU: imported as an EGL image ([`egl::dmabuf`]), drawn letterboxed into the stream's size
//! (aspect kept, black borders, bilinear), packed into I420 by the shader pass `convert` uses, and
//! read back (1.5 bytes per pixel). [`DmaBufFrames::draw`] returns once the GPU has finished with
//! the buffer, so the caller can give it back before [`DmaBufFrames::read`].
//!
//! A [`DmaBufFrames`] owns its EGL context, which is current on the thread that opened it: open,
//! use and drop it on one thread.

use anyhow::{Context as _, bail};

use super::egl::dmabuf::{self, DmaBuf, ExternalBlit, Filter, Importer};
use super::egl::gl::{Readback, Target};
use super::egl::{Context, Display};
use crate::frame::PixFmt;
use crate::frame::RawFormat;
use crate::plan::gpu_packs;
use crate::render::pack::GpuPack;

use crate::render::READBACK_TIMEOUT;

/// Where a `src` picture goes in a `dst` frame with its aspect ratio kept (square pixels): x, y,
/// width, height, centred, with borders on two sides (none when the aspects match), as
/// `videoscale add-borders=true` places it.
pub fn letterbox(src: (u32, u32), dst: (u32, u32)) -> [u32; 4] {
    let (sw, sh) = (u64::from(src.0.max(1)), u64::from(src.1.max(1)));
    let (dw, dh) = (u64::from(dst.0), u64::from(dst.1));
    // The wider of the two fills the width; the other fills the height.
    let (w, h) = if sw * dh >= dw * sh { (dw, (sh * dw + sw / 2) / sw) } else { ((sw * dh + sh / 2) / sh, dh) };
    let (w, h) = (w.clamp(1, dw) as u32, h.clamp(1, dh) as u32);
    [(dst.0 - w) / 2, (dst.1 - h) / 2, w, h]
}

/// The GPU path for DMA-BUF frames of one stream size (see the module doc).
pub struct DmaBufFrames {
    // Field order is drop order: every GL object before the context.
    readback: Readback,
    pack: GpuPack,
    frame: Target,
    blit: ExternalBlit,
    importer: Importer,
    ctx: Context,
    width: u32,
    height: u32,
}

impl DmaBufFrames {
    /// Opens an EGL context on this thread and everything the path needs for `width` x `height`
    /// I420 frames; fails saying what is missing (the extensions, or a size the shader pass cannot
    /// pack).
    pub fn open(width: u32, height: u32) -> anyhow::Result<DmaBufFrames> {
        if !gpu_packs(RawFormat::I420, width, height) {
            bail!(
                "the shader pass packs I420 only at widths that are a multiple of 8 and even heights, not {width}x{height}"
            );
        }
        let ctx = Context::new(Display::open(None, None)?).context("creating an OpenGL ES 3 context")?;
        let importer = Importer::new(&ctx)?;
        let gl = ctx.gl.clone();
        let blit = ExternalBlit::new(&gl)?;
        let frame = Target::new(&gl, width, height)?;
        let pack = GpuPack::new(&gl, RawFormat::I420, width, height)?;
        let readback = Readback::new(&gl, 1, PixFmt::I420.frame_bytes(width, height))?;
        Ok(DmaBufFrames { readback, pack, frame, blit, importer, ctx, width, height })
    }

    /// Whether buffers of `format` (without an explicit modifier: GStreamer 1.22's caps carry
    /// none) can be imported here; the reason when not.
    pub fn supports(&self, format: PixFmt) -> Result<(), String> {
        let fourcc = dmabuf::drm_fourcc(format).ok_or_else(|| format!("{format} has no DRM format here"))?;
        self.importer.supports(fourcc, None)
    }

    /// Draws `buf` (a `format` picture) letterboxed into the frame and packs it into I420; returns
    /// once the GPU has finished reading the buffer, which the caller may then release. The EGL
    /// image is gone by then.
    pub fn draw(&mut self, format: PixFmt, buf: &DmaBuf<'_>) -> anyhow::Result<()> {
        if dmabuf::drm_fourcc(format) != Some(buf.fourcc) {
            bail!("a {format} frame described as {}", buf.fourcc);
        }
        let imported = self.importer.import(buf, Filter::Linear)?;
        let rect = letterbox((buf.width, buf.height), (self.width, self.height));
        self.blit.draw(&imported, &self.frame, rect)?;
        self.pack.run(&self.frame)?;
        self.ctx.gl.finish();
        Ok(())
    }

    /// Reads the frame [`DmaBufFrames::draw`] packed into `out` (the rawvideo I420 layout,
    /// `width * height * 3 / 2` bytes).
    pub fn read(&mut self, out: &mut [u8]) -> anyhow::Result<()> {
        self.readback.start(0, &self.pack.target)?;
        let n = out.len();
        self.readback.read(0, READBACK_TIMEOUT, |bytes| match out.get_mut(..bytes.len()) {
            Some(dst) if bytes.len() == n => {
                dst.copy_from_slice(bytes);
                Ok(())
            }
            _ => bail!("a {}-byte I420 readback for a {n}-byte frame", bytes.len()),
        })?
    }

    /// The context, for tests that draw and export on it.
    #[cfg(test)]
    fn ctx(&self) -> &Context {
        &self.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::egl::gl::{Pass, Program};

    #[test]
    fn pictures_are_letterboxed_like_videoscale_add_borders() {
        assert_eq!(letterbox((320, 240), (640, 360)), [80, 0, 480, 360], "4:3 in 16:9: borders left and right");
        assert_eq!(letterbox((1280, 720), (640, 480)), [0, 60, 640, 360], "16:9 in 4:3: borders top and bottom");
        assert_eq!(letterbox((1920, 1080), (1280, 720)), [0, 0, 1280, 720], "same aspect: no borders");
        assert_eq!(letterbox((100, 1), (64, 48)), [0, 23, 64, 1], "never thinner than a row");
    }

    /// On a machine without DMA-BUF import (llvmpipe in CI) opening fails, naming each extension
    /// the display lacks: the capture keeps its CPU mapping and says why. Where the display lists
    /// them all (the NVIDIA driver), opening succeeds.
    #[test]
    fn opening_says_what_is_missing() {
        let _egl = crate::render::egl::egl_test_lock();
        assert!(DmaBufFrames::open(642, 360).err().unwrap().to_string().contains("multiple of 8"));
        let lacking = dmabuf::default_display_import_missing();
        match DmaBufFrames::open(640, 360) {
            Ok(_) => assert!(lacking.is_empty(), "opened although the display lacks {lacking:?}"),
            Err(e) => {
                assert!(!lacking.is_empty(), "the display lists every import extension, yet: {e:#}");
                for ext in lacking {
                    assert!(format!("{e:#}").contains(ext), "{e:#} does not name {ext}");
                }
            }
        }
    }

    /// Hardware: a 4:3 grey picture exported as a DMA-BUF goes through the capture's GPU path into
    /// a 16:9 I420 frame: borders black (luma 16), the picture's luma and chroma as BT.709 limited
    /// range says, and the buffer released before the readback.
    #[test]
    #[ignore = "needs an EGL display with EGL_EXT_image_dma_buf_import and EGL_MESA_image_dma_buf_export (the NVIDIA driver)"]
    fn dmabuf_frames_are_letterboxed_into_i420() {
        let _egl = crate::render::egl::egl_test_lock();
        let mut frames = DmaBufFrames::open(640, 360).unwrap_or_else(|e| panic!("{e:#}"));
        let gl = frames.ctx().gl.clone();
        let grey = Program::fullscreen(&gl, "#version 300 es\nprecision highp float;\nout vec4 o;\nvoid main() { o = vec4(200.0 / 255.0, 200.0 / 255.0, 200.0 / 255.0, 1.0); }\n").unwrap();
        let source = Target::new(&gl, 320, 240).unwrap();
        Pass { program: &grey, target: &source, source: None, uniforms: &[], scissor: None }.draw().unwrap();
        let exported = dmabuf::export(frames.ctx(), &source).unwrap();
        let format = match exported.fourcc {
            drm_fourcc::DrmFourcc::Abgr8888 => PixFmt::Rgba,
            drm_fourcc::DrmFourcc::Xbgr8888 => PixFmt::Rgb0,
            drm_fourcc::DrmFourcc::Argb8888 => PixFmt::Bgra,
            drm_fourcc::DrmFourcc::Xrgb8888 => PixFmt::Bgr0,
            other => panic!("the driver exported {other}, not an RGB format a node sends"),
        };
        let mut buf = exported.dma_buf();
        // The capture passes no modifier (GStreamer 1.22 has none to give): try it as the node's
        // buffers come, and fall back to the explicit one only where the export is not linear.
        if exported.modifier != u64::from(drm_fourcc::DrmModifier::Linear) {
            eprintln!("the export is tiled (modifier {:#018x}): imported with it", exported.modifier);
        } else {
            buf.modifier = None;
        }
        let mut out = vec![0u8; PixFmt::I420.frame_bytes(640, 360)];
        frames.draw(format, &buf).unwrap();
        drop(buf);
        drop(exported); // released after the draw, before the readback, as the capture does
        frames.read(&mut out).unwrap();
        let y = |x: usize, row: usize| out[row * 640 + x];
        let want = 16 + (200u32 * 219 / 255) as u8;
        for row in [0, 180, 359] {
            assert!(y(40, row).abs_diff(16) <= 1 && y(600, row).abs_diff(16) <= 1, "borders at row {row}");
            assert!(y(320, row).abs_diff(want) <= 1, "luma {} at (320, {row}), want {want}", y(320, row));
            assert!(y(90, row).abs_diff(want) <= 1 && y(550, row).abs_diff(want) <= 1, "the picture spans 80..560");
        }
        let (u, v) = (out[640 * 360 + 90 * 320 + 160], out[640 * 360 + 320 * 180 + 90 * 320 + 160]);
        assert!(u.abs_diff(128) <= 1 && v.abs_diff(128) <= 1, "grey has neutral chroma: U {u} V {v}");
    }
}
