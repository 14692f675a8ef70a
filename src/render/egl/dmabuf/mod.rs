//! DMA-BUF <-> GL through EGL images, so that frames another process rendered on the GPU (a
//! PipeWire node's DMA-BUF buffers) can be drawn without a trip through host memory.
//!
//! - [`drm_fourcc`]: the DRM format of each pixel format a PipeWire node sends.
//! - [`import`]: DMA-BUF planes -> an EGL image -> an external texture, drawn into a render target
//!   ([`Importer`], [`ExternalBlit`]); what the capture uses.
//! - `export` (tests only): a render target's texture -> DMA-BUF fds, so the import is tested
//!   against buffers the driver made; nothing else in the crate exports.
//!
//! Here: what both halves share, the EGL image they create and destroy, and the extension checks.
//! Like every GL object here, importers and imported textures belong to the thread of their
//! [`Context`] and must be dropped before it.
#![allow(unsafe_code)]

use std::ffi::c_void;
#[cfg(test)]
use std::os::fd::OwnedFd;
use std::rc::Rc;

use anyhow::{Context as _, anyhow};
use drm_fourcc::{DrmFourcc, DrmModifier};
use khronos_egl as egl;

use super::{Context, Display, proc};
use crate::frame::PixFmt;

#[cfg(test)]
mod export;
pub mod import;

#[cfg(test)]
pub use export::{EXPORT_EGL, Exported, ExportedPlane, export, export_missing};
#[cfg(test)]
pub(crate) use import::default_display_import_missing;
pub use import::{
    DmaBuf, ExternalBlit, Filter, IMPORT_EGL, IMPORT_GL, Imported, Importer, Plane, gst_planes, import_missing,
};

type EglImage = *mut c_void;

type CreateImageKhr =
    unsafe extern "system" fn(egl::EGLDisplay, egl::EGLContext, egl::Enum, *mut c_void, *const egl::Int) -> EglImage;
type DestroyImageKhr = unsafe extern "system" fn(egl::EGLDisplay, EglImage) -> egl::Boolean;

/// The DRM format of a pixel format a PipeWire node sends (`source::pipewire::NODE_FORMATS`):
/// GStreamer names bytes in memory order, DRM names a little-endian word, so BGRx is XRGB8888.
/// `None` for the formats no node sends here (packed 24-bit RGB, grey).
pub fn drm_fourcc(format: PixFmt) -> Option<DrmFourcc> {
    Some(match format {
        PixFmt::Bgr0 => DrmFourcc::Xrgb8888,
        PixFmt::Rgb0 => DrmFourcc::Xbgr8888,
        PixFmt::Bgra => DrmFourcc::Argb8888,
        PixFmt::Rgba => DrmFourcc::Abgr8888,
        PixFmt::Nv12 => DrmFourcc::Nv12,
        PixFmt::I420 => DrmFourcc::Yuv420,
        PixFmt::Rgb24 | PixFmt::Bgr24 | PixFmt::Gray => return None,
    })
}

/// How many planes a buffer of this format has, for the formats [`drm_fourcc`] gives.
fn plane_count(fourcc: DrmFourcc) -> Option<usize> {
    match fourcc {
        DrmFourcc::Xrgb8888 | DrmFourcc::Xbgr8888 | DrmFourcc::Argb8888 | DrmFourcc::Abgr8888 => Some(1),
        DrmFourcc::Nv12 => Some(2),
        DrmFourcc::Yuv420 => Some(3),
        _ => None,
    }
}

fn is_yuv(fourcc: DrmFourcc) -> bool {
    matches!(fourcc, DrmFourcc::Nv12 | DrmFourcc::Yuv420)
}

/// DRM_FORMAT_MOD_INVALID: no explicit modifier (the driver's implicit layout).
fn invalid_modifier() -> u64 {
    DrmModifier::Invalid.into()
}

fn linear_modifier() -> u64 {
    DrmModifier::Linear.into()
}

/// The names in `needed` that `has` does not list.
fn missing<'a>(needed: &[&'a str], has: impl Fn(&str) -> bool) -> Vec<&'a str> {
    needed.iter().copied().filter(|e| !has(e)).collect()
}

fn lacks(what: &str, ctx: &Context, missing: &[&str]) -> anyhow::Error {
    anyhow!("{what} needs {}, which this EGL display ({}) lacks", missing.join(", "), ctx.display.platform)
}

/// Looks up an extension entry point that the extension check promised.
fn entry<F: Copy>(display: &Display, name: &str) -> anyhow::Result<F> {
    proc(&display.egl, name).with_context(|| format!("eglGetProcAddress({name}) returned NULL"))
}

/// An EGL image, destroyed in `Drop`.
struct Image {
    display: Rc<Display>,
    raw: EglImage,
    destroy: DestroyImageKhr,
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: `raw` is a live image created on this display (which the Rc keeps initialised),
        // destroyed exactly once, here.
        if unsafe { (self.destroy)(self.display.raw.as_ptr(), self.raw) } != egl::TRUE {
            log::warn!("eglDestroyImageKHR failed: {:?}", self.display.egl.get_error());
        }
    }
}

/// A memory of GStreamer's DMA-BUF allocator over a fresh `size`-byte temporary file: the allocator
/// wraps any fd, so code that walks DMA-BUF memories is tested without a GPU.
#[cfg(test)]
pub(crate) fn dmabuf_memory_for_tests(size: usize) -> gstreamer::Memory {
    let file = tempfile::tempfile().unwrap();
    file.set_len(size as u64).unwrap();
    dmabuf_memory_of_fd_for_tests(file.into(), size)
}

/// A memory of GStreamer's DMA-BUF allocator over `fd` (`size` bytes), e.g. an exported one.
#[cfg(test)]
pub(crate) fn dmabuf_memory_of_fd_for_tests(fd: OwnedFd, size: usize) -> gstreamer::Memory {
    use gstreamer_allocators::prelude::*;
    // SAFETY: the allocator takes ownership of the fd, which is ours alone (an OwnedFd).
    unsafe { gstreamer_allocators::DmaBufAllocator::new().alloc_dmabuf(fd, size) }.unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pipewire::NODE_FORMATS;

    #[test]
    fn every_node_format_has_its_drm_fourcc_and_plane_count() {
        let names: Vec<(PixFmt, String)> =
            NODE_FORMATS.iter().map(|&f| (f, drm_fourcc(f).expect("a node format").to_string())).collect();
        let want = ["XR24", "NV12", "XB24", "AR24", "AB24", "YU12"];
        assert_eq!(names.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), want, "{names:?}");
        for f in NODE_FORMATS {
            let planes = plane_count(drm_fourcc(f).unwrap());
            assert_eq!(planes, Some(f.planes(64, 48).len()), "{f}");
        }
        // The numbers themselves, as drm_fourcc.h defines them (little-endian 'X' 'R' '2' '4').
        assert_eq!(DrmFourcc::Xrgb8888 as u32, u32::from_le_bytes(*b"XR24"));
        assert_eq!(DrmFourcc::Yuv420 as u32, u32::from_le_bytes(*b"YU12"));
        assert_eq!(drm_fourcc(PixFmt::Rgb24), None);
    }

    #[test]
    fn the_measured_nvidia_display_has_what_import_and_export_need() {
        // The H200's EGL display extensions (driver 580.159.04), and llvmpipe's surfaceless ones.
        let nvidia = "EGL_EXT_image_dma_buf_import EGL_EXT_image_dma_buf_import_modifiers \
                      EGL_MESA_image_dma_buf_export EGL_KHR_image_base EGL_KHR_gl_texture_2D_image \
                      EGL_KHR_surfaceless_context";
        let has = |e: &str| super::super::has_ext(nvidia, e);
        assert!(missing(&IMPORT_EGL, has).is_empty() && missing(&EXPORT_EGL, has).is_empty());
        let llvmpipe = "EGL_KHR_image_base EGL_KHR_gl_texture_2D_image EGL_KHR_surfaceless_context";
        let has = |e: &str| super::super::has_ext(llvmpipe, e);
        assert_eq!(missing(&IMPORT_EGL, has), ["EGL_EXT_image_dma_buf_import"]);
        assert_eq!(missing(&EXPORT_EGL, has), ["EGL_MESA_image_dma_buf_export"]);
    }
}
