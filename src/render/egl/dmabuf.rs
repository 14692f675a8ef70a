//! DMA-BUF <-> GL through EGL images, so that frames another process rendered on the GPU (a
//! PipeWire node's DMA-BUF buffers) can be drawn without a trip through host memory.
//!
//! - [`drm_fourcc`]: the DRM format of each pixel format a PipeWire node sends.
//! - [`Importer`]: DMA-BUF planes (fd, offset, pitch), size, fourcc and modifier ->
//!   `eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT)` (EGL_EXT_image_dma_buf_import; explicit modifiers
//!   only where EGL_EXT_image_dma_buf_import_modifiers is present) -> a `GL_TEXTURE_EXTERNAL_OES`
//!   texture through glEGLImageTargetTexture2DOES (GL_OES_EGL_image_external). External textures
//!   take every layout the driver imports, RGB and YUV alike: the driver converts YUV to RGB when
//!   sampling, told BT.709 limited range. [`ExternalBlit`] draws one into a render target, scaled
//!   into a rectangle. [`Importer::supports`] says whether a fourcc/modifier can be imported
//!   (eglQueryDmaBufFormatsEXT/eglQueryDmaBufModifiersEXT where present).
//! - [`export`]: a render target's texture -> EGL image (EGL_KHR_gl_texture_2D_image) -> DMA-BUF
//!   fds, fourcc, strides, offsets, modifier (EGL_MESA_image_dma_buf_export), for tests and
//!   diagnostics.
//!
//! Ownership: the caller keeps the DMA-BUF fds it imports (EGL takes its own reference, so they may
//! be closed as soon as [`Importer::import`] returns); an [`Imported`] destroys its texture and EGL
//! image in `Drop`; exported fds are [`OwnedFd`]s. Like every GL object here, importers and
//! imported textures belong to the thread of their [`Context`] and must be dropped before it.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use anyhow::{Context as _, anyhow, bail};
use drm_fourcc::{DrmFourcc, DrmModifier};
use khronos_egl as egl;

use super::gl::{ExternalTexture, Gl, Pass, Program, Sampled, Target, Uniform};
use super::{Context, Display, proc};
use crate::frame::PixFmt;

type EglImage = *mut c_void;

const LINUX_DMA_BUF_EXT: egl::Enum = 0x3270;
const LINUX_DRM_FOURCC_EXT: egl::Int = 0x3271;
/// Per plane: fd, offset, pitch, modifier low and high 32 bits (EGL_EXT_image_dma_buf_import and
/// _modifiers). Plane 3 is left out: no format taken here has four planes.
const PLANE_ATTRIBS: [[egl::Int; 5]; 3] = [
    [0x3272, 0x3273, 0x3274, 0x3443, 0x3444],
    [0x3275, 0x3276, 0x3277, 0x3445, 0x3446],
    [0x3278, 0x3279, 0x327A, 0x3447, 0x3448],
];
const YUV_COLOR_SPACE_HINT_EXT: egl::Int = 0x327B;
const SAMPLE_RANGE_HINT_EXT: egl::Int = 0x327C;
const ITU_REC709_EXT: egl::Int = 0x3280;
const YUV_NARROW_RANGE_EXT: egl::Int = 0x3283;
const GL_TEXTURE_2D_KHR: egl::Enum = 0x30B1;
const GL_TEXTURE_LEVEL_KHR: egl::Int = 0x30BC;

type CreateImageKhr =
    unsafe extern "system" fn(egl::EGLDisplay, egl::EGLContext, egl::Enum, *mut c_void, *const egl::Int) -> EglImage;
type DestroyImageKhr = unsafe extern "system" fn(egl::EGLDisplay, EglImage) -> egl::Boolean;
type ImageTargetTexture2dOes = unsafe extern "system" fn(u32, EglImage);
type QueryDmaBufFormatsExt =
    unsafe extern "system" fn(egl::EGLDisplay, egl::Int, *mut egl::Int, *mut egl::Int) -> egl::Boolean;
type QueryDmaBufModifiersExt = unsafe extern "system" fn(
    egl::EGLDisplay,
    egl::Int,
    egl::Int,
    *mut u64,
    *mut egl::Boolean,
    *mut egl::Int,
) -> egl::Boolean;
type ExportQueryMesa =
    unsafe extern "system" fn(egl::EGLDisplay, EglImage, *mut i32, *mut i32, *mut u64) -> egl::Boolean;
type ExportMesa =
    unsafe extern "system" fn(egl::EGLDisplay, EglImage, *mut i32, *mut egl::Int, *mut egl::Int) -> egl::Boolean;

/// What importing needs from the EGL display.
pub const IMPORT_EGL: [&str; 2] = ["EGL_KHR_image_base", "EGL_EXT_image_dma_buf_import"];
/// What importing needs from the GL context: external textures, sampled from ES 3 shaders.
pub const IMPORT_GL: [&str; 2] = ["GL_OES_EGL_image_external", "GL_OES_EGL_image_external_essl3"];
/// What exporting a texture needs from the EGL display.
pub const EXPORT_EGL: [&str; 3] =
    ["EGL_KHR_image_base", "EGL_KHR_gl_texture_2D_image", "EGL_MESA_image_dma_buf_export"];
/// Explicit modifiers and the format queries.
const MODIFIERS_EXT: &str = "EGL_EXT_image_dma_buf_import_modifiers";

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

/// One plane of a DMA-BUF: its fd (borrowed: the caller keeps it), byte offset and row pitch.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub fd: BorrowedFd<'a>,
    pub offset: u32,
    pub pitch: u32,
}

/// A DMA-BUF picture to import.
#[derive(Debug, Clone)]
pub struct DmaBuf<'a> {
    pub width: u32,
    pub height: u32,
    pub fourcc: DrmFourcc,
    /// The layout modifier (`DRM_FORMAT_MOD_*`); `None` or DRM_FORMAT_MOD_INVALID: the driver's
    /// implicit layout.
    pub modifier: Option<u64>,
    pub planes: Vec<Plane<'a>>,
}

/// The DMA-BUF planes of a GStreamer buffer laid out as `info` says (its `VideoMeta` where it has
/// one: offsets and strides of each plane), or why it cannot be imported: a plane that is not in
/// DMA-BUF memory. The fds are borrowed from the buffer's memories for as long as the buffer is.
pub fn gst_planes<'a>(
    buffer: &'a gstreamer::BufferRef,
    info: &gstreamer_video::VideoInfo,
) -> Result<Vec<Plane<'a>>, String> {
    use gstreamer_allocators::DmaBufMemory;
    let meta = buffer.meta::<gstreamer_video::VideoMeta>();
    let (offsets, strides) = match &meta {
        Some(m) => (m.offset().to_vec(), m.stride().to_vec()),
        None => (info.offset().to_vec(), info.stride().to_vec()),
    };
    let planes = info.n_planes() as usize;
    if offsets.len() < planes || strides.len() < planes {
        return Err(format!("a buffer with {} plane offsets for a {}-plane format", offsets.len(), planes));
    }
    (0..planes)
        .map(|i| {
            let at = offsets[i];
            let (range, skip) = buffer
                .find_memory(at..at + 1)
                .ok_or_else(|| format!("plane {i} at byte {at} is outside the buffer"))?;
            let mem = buffer.peek_memory(range.start);
            let dmabuf = mem
                .downcast_memory_ref::<DmaBufMemory>()
                .ok_or_else(|| format!("plane {i} is not in DMA-BUF memory"))?;
            let raw = dmabuf.fd();
            if raw < 0 {
                return Err(format!("plane {i}'s DMA-BUF memory has no fd"));
            }
            // SAFETY: the fd belongs to the memory, which the buffer holds for at least 'a (the
            // borrow of `buffer`), so it stays open for the life of the BorrowedFd.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let offset = u32::try_from(mem.offset() + skip).map_err(|_| format!("plane {i}'s offset"))?;
            let pitch = u32::try_from(strides[i]).map_err(|_| format!("plane {i}'s stride {}", strides[i]))?;
            Ok(Plane { fd, offset, pitch })
        })
        .collect()
}

/// The names in `needed` that `has` does not list.
fn missing<'a>(needed: &[&'a str], has: impl Fn(&str) -> bool) -> Vec<&'a str> {
    needed.iter().copied().filter(|e| !has(e)).collect()
}

/// The extensions importing needs that this context's display or GL lacks (empty: it can import).
pub fn import_missing(ctx: &Context) -> Vec<&'static str> {
    let mut out = missing(&IMPORT_EGL, |e| ctx.display.has_extension(e));
    out.extend(missing(&IMPORT_GL, |e| ctx.gl.has_extension(e)));
    out
}

/// The extensions exporting needs that this context's display lacks (empty: it can export).
pub fn export_missing(ctx: &Context) -> Vec<&'static str> {
    missing(&EXPORT_EGL, |e| ctx.display.has_extension(e))
}

fn lacks(what: &str, ctx: &Context, missing: &[&str]) -> anyhow::Error {
    anyhow!("{what} needs {}, which this EGL display ({}) lacks", missing.join(", "), ctx.display.platform)
}

/// Looks up an extension entry point that the extension check promised.
fn entry<F: Copy>(display: &Display, name: &str) -> anyhow::Result<F> {
    proc(&display.egl, name).with_context(|| format!("eglGetProcAddress({name}) returned NULL"))
}

/// The EGL attribute list that imports `buf`; `explicit_modifiers`: the display has
/// EGL_EXT_image_dma_buf_import_modifiers. Pure, so it is tested without a GPU.
fn import_attribs(buf: &DmaBuf<'_>, explicit_modifiers: bool) -> Result<Vec<egl::Int>, String> {
    let n = buf.planes.len();
    if n == 0 || n > PLANE_ATTRIBS.len() {
        return Err(format!("a {} DMA-BUF with {n} planes (1 to {} are taken)", buf.fourcc, PLANE_ATTRIBS.len()));
    }
    if let Some(want) = plane_count(buf.fourcc)
        && want != n
    {
        return Err(format!("a {} DMA-BUF has {want} planes, not {n}", buf.fourcc));
    }
    let int = |v: u32, what: &str| egl::Int::try_from(v).map_err(|_| format!("{what} {v} does not fit an EGLint"));
    if buf.width == 0 || buf.height == 0 {
        return Err(format!("a {}x{} DMA-BUF", buf.width, buf.height));
    }
    let mut a = vec![
        egl::WIDTH,
        int(buf.width, "width")?,
        egl::HEIGHT,
        int(buf.height, "height")?,
        LINUX_DRM_FOURCC_EXT,
        buf.fourcc as u32 as egl::Int,
    ];
    let modifier = buf.modifier.filter(|&m| m != invalid_modifier());
    let explicit = match modifier {
        Some(m) if explicit_modifiers => Some(m),
        // Without the modifiers extension a linear buffer goes as an implicit one: drivers take
        // implicit to mean linear for buffers shared across processes.
        Some(m) if m == linear_modifier() => None,
        Some(m) => {
            return Err(format!(
                "a {} DMA-BUF with modifier {m:#018x} needs {MODIFIERS_EXT}, which this EGL display lacks",
                buf.fourcc
            ));
        }
        None => None,
    };
    for (p, names) in buf.planes.iter().zip(PLANE_ATTRIBS) {
        a.extend([names[0], p.fd.as_raw_fd(), names[1], int(p.offset, "offset")?, names[2], int(p.pitch, "pitch")?]);
        if let Some(m) = explicit {
            a.extend([names[3], m as u32 as egl::Int, names[4], (m >> 32) as u32 as egl::Int]);
        }
    }
    if is_yuv(buf.fourcc) {
        a.extend([YUV_COLOR_SPACE_HINT_EXT, ITU_REC709_EXT, SAMPLE_RANGE_HINT_EXT, YUV_NARROW_RANGE_EXT]);
    }
    a.push(egl::NONE);
    Ok(a)
}

/// Whether `fourcc` with `modifier` can be imported, given what the display lists: `formats` and
/// the format's `modifiers` are `None` without EGL_EXT_image_dma_buf_import_modifiers (nothing to
/// ask: any format may be tried, with an implicit or linear layout). Pure, for the tests.
fn check_support(
    fourcc: DrmFourcc,
    modifier: Option<u64>,
    formats: Option<&[u32]>,
    modifiers: Option<&[u64]>,
) -> Result<(), String> {
    let explicit = modifier.filter(|&m| m != invalid_modifier());
    let Some(formats) = formats else {
        return match explicit {
            Some(m) if m != linear_modifier() => {
                Err(format!("{fourcc} with modifier {m:#018x} needs {MODIFIERS_EXT}, which this EGL display lacks"))
            }
            _ => Ok(()),
        };
    };
    if !formats.contains(&(fourcc as u32)) {
        let names: Vec<String> = formats
            .iter()
            .map(|&f| DrmFourcc::try_from(f).map_or_else(|_| format!("{f:#010x}"), |f| f.to_string()))
            .collect();
        return Err(format!("the EGL display does not import {fourcc} (it lists {})", names.join(" ")));
    }
    match (explicit, modifiers.unwrap_or_default()) {
        (Some(m), mods) if !(mods.contains(&m) || mods.is_empty() && m == linear_modifier()) => Err(format!(
            "the EGL display imports {fourcc} with modifiers [{}], not {m:#018x}",
            mods.iter().map(|m| format!("{m:#018x}")).collect::<Vec<_>>().join(", ")
        )),
        _ => Ok(()),
    }
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

/// Imports DMA-BUFs on one context (see the module doc). Create it once per context.
pub struct Importer {
    display: Rc<Display>,
    gl: Rc<Gl>,
    create: CreateImageKhr,
    destroy: DestroyImageKhr,
    target_texture: ImageTargetTexture2dOes,
    /// EGL_EXT_image_dma_buf_import_modifiers: explicit modifiers, and what the display lists.
    queries: Option<(QueryDmaBufFormatsExt, QueryDmaBufModifiersExt)>,
}

impl Importer {
    /// Fails, naming the extensions, where this context cannot import DMA-BUFs.
    pub fn new(ctx: &Context) -> anyhow::Result<Importer> {
        let missing = import_missing(ctx);
        if !missing.is_empty() {
            return Err(lacks("importing a DMA-BUF", ctx, &missing));
        }
        let display = &ctx.display;
        let queries = if display.has_extension(MODIFIERS_EXT) {
            Some((entry(display, "eglQueryDmaBufFormatsEXT")?, entry(display, "eglQueryDmaBufModifiersEXT")?))
        } else {
            None
        };
        Ok(Importer {
            display: display.clone(),
            gl: ctx.gl.clone(),
            create: entry(display, "eglCreateImageKHR")?,
            destroy: entry(display, "eglDestroyImageKHR")?,
            target_texture: entry(display, "glEGLImageTargetTexture2DOES")?,
            queries,
        })
    }

    /// Whether the display takes explicit modifiers (EGL_EXT_image_dma_buf_import_modifiers).
    pub fn explicit_modifiers(&self) -> bool {
        self.queries.is_some()
    }

    /// The fourccs the display imports, where it can say (EGL_EXT_image_dma_buf_import_modifiers).
    pub fn formats(&self) -> anyhow::Result<Option<Vec<u32>>> {
        let Some((query, _)) = self.queries else { return Ok(None) };
        let dpy = self.display.raw.as_ptr();
        let mut n: egl::Int = 0;
        // SAFETY: a zero max and NULL array ask for the count only, written to `n`.
        if unsafe { query(dpy, 0, std::ptr::null_mut(), &mut n) } != egl::TRUE {
            bail!("eglQueryDmaBufFormatsEXT failed: {:?}", self.display.egl.get_error());
        }
        let mut list = vec![0 as egl::Int; usize::try_from(n).unwrap_or(0)];
        // SAFETY: `list` has room for `n` formats, and `n` says so.
        if unsafe { query(dpy, n, list.as_mut_ptr(), &mut n) } != egl::TRUE {
            bail!("eglQueryDmaBufFormatsEXT failed: {:?}", self.display.egl.get_error());
        }
        list.truncate(usize::try_from(n).unwrap_or(0));
        Ok(Some(list.into_iter().map(|f| f as u32).collect()))
    }

    /// The modifiers the display imports `fourcc` with, each with whether it is external-only,
    /// where it can say.
    pub fn modifiers(&self, fourcc: DrmFourcc) -> anyhow::Result<Option<Vec<(u64, bool)>>> {
        let Some((_, query)) = self.queries else { return Ok(None) };
        let dpy = self.display.raw.as_ptr();
        let format = fourcc as u32 as egl::Int;
        let mut n: egl::Int = 0;
        // SAFETY: a zero max and NULL arrays ask for the count only, written to `n`.
        let ok = unsafe { query(dpy, format, 0, std::ptr::null_mut(), std::ptr::null_mut(), &mut n) };
        if ok != egl::TRUE {
            bail!("eglQueryDmaBufModifiersEXT({fourcc}) failed: {:?}", self.display.egl.get_error());
        }
        let len = usize::try_from(n).unwrap_or(0);
        let (mut mods, mut external) = (vec![0u64; len], vec![egl::FALSE; len]);
        // SAFETY: both arrays have room for `n` entries, and `n` says so.
        let ok = unsafe { query(dpy, format, n, mods.as_mut_ptr(), external.as_mut_ptr(), &mut n) };
        if ok != egl::TRUE {
            bail!("eglQueryDmaBufModifiersEXT({fourcc}) failed: {:?}", self.display.egl.get_error());
        }
        let len = usize::try_from(n).unwrap_or(0).min(mods.len());
        Ok(Some(mods.into_iter().zip(external).take(len).map(|(m, e)| (m, e == egl::TRUE)).collect()))
    }

    /// Whether a buffer of `fourcc` with `modifier` can be imported here; the reason when not.
    pub fn supports(&self, fourcc: DrmFourcc, modifier: Option<u64>) -> Result<(), String> {
        let formats = self.formats().map_err(|e| format!("{e:#}"))?;
        let modifiers = match &formats {
            Some(f) if f.contains(&(fourcc as u32)) => self
                .modifiers(fourcc)
                .map_err(|e| format!("{e:#}"))?
                .map(|m| m.into_iter().map(|(m, _)| m).collect::<Vec<_>>()),
            _ => None,
        };
        check_support(fourcc, modifier, formats.as_deref(), modifiers.as_deref())
    }

    /// Imports `buf` as an external texture, sampled as `filter` says. The fds stay the caller's.
    pub fn import(&self, buf: &DmaBuf<'_>, filter: Filter) -> anyhow::Result<Imported> {
        let attribs = import_attribs(buf, self.explicit_modifiers()).map_err(anyhow::Error::msg)?;
        // SAFETY: the display is initialised (the Rc keeps it so); EGL_LINUX_DMA_BUF_EXT takes
        // EGL_NO_CONTEXT and a NULL client buffer; `attribs` ends with EGL_NONE and its fds are
        // borrowed for the length of this call, in which EGL takes its own reference to them.
        let raw = unsafe {
            (self.create)(
                self.display.raw.as_ptr(),
                egl::NO_CONTEXT,
                LINUX_DMA_BUF_EXT,
                std::ptr::null_mut(),
                attribs.as_ptr(),
            )
        };
        if raw.is_null() {
            bail!(
                "eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT) of a {}x{} {} DMA-BUF (modifier {}, pitches {:?}) failed: {:?}",
                buf.width,
                buf.height,
                buf.fourcc,
                buf.modifier.map_or_else(|| "implicit".into(), |m| format!("{m:#018x}")),
                buf.planes.iter().map(|p| p.pitch).collect::<Vec<_>>(),
                self.display.egl.get_error()
            );
        }
        let image = Image { display: self.display.clone(), raw, destroy: self.destroy };
        let texture =
            bind_external(&self.gl, self.target_texture, &image, filter == Filter::Linear).with_context(|| {
                format!("binding a {}x{} {} DMA-BUF image to a texture", buf.width, buf.height, buf.fourcc)
            })?;
        Ok(Imported { texture, _image: image, width: buf.width, height: buf.height, fourcc: buf.fourcc })
    }
}

/// How an imported texture is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Linear filtering, for draws that scale the picture.
    Linear,
    /// Nearest texel, for exact copies.
    Nearest,
}

/// A new external texture whose storage is `image`.
fn bind_external(
    gl: &Rc<Gl>,
    target_texture: ImageTargetTexture2dOes,
    image: &Image,
    linear: bool,
) -> anyhow::Result<ExternalTexture> {
    ExternalTexture::new(gl, linear, |target| {
        // SAFETY: ExternalTexture::new has a fresh texture bound on `target`
        // (GL_TEXTURE_EXTERNAL_OES) on this thread's current context, and `image.raw` is a live
        // EGL image of the same display; a failure is a GL error, which `new` reports.
        unsafe { target_texture(target, image.raw) }
    })
}

/// An imported DMA-BUF: an external texture over an EGL image, both released in `Drop` (texture
/// first).
pub struct Imported {
    texture: ExternalTexture,
    _image: Image,
    pub width: u32,
    pub height: u32,
    pub fourcc: DrmFourcc,
}

impl Imported {
    pub fn texture(&self) -> &ExternalTexture {
        &self.texture
    }
}

/// Draws imported pictures into render targets (`shaders/external.glsl`).
pub struct ExternalBlit {
    program: Program,
}

impl ExternalBlit {
    pub fn new(gl: &Rc<Gl>) -> anyhow::Result<ExternalBlit> {
        let program = Program::fullscreen(gl, include_str!("../shaders/external.glsl"))
            .map_err(|e| anyhow!("built-in external-texture shader: {e}"))?;
        Ok(ExternalBlit { program })
    }

    /// Draws `src` into `rect` (x, y, width, height in target pixels) of `target`, black around it.
    pub fn draw(&self, src: &Imported, target: &Target, rect: [u32; 4]) -> anyhow::Result<()> {
        let [x, y, w, h] = rect.map(|v| v as f32);
        Pass {
            program: &self.program,
            target,
            source: Some(("u_src", Sampled::External(&src.texture))),
            uniforms: &[("u_rect", Uniform::Vec4([x, y, w, h]))],
            scissor: None,
        }
        .draw()
    }
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

    fn nv12(fd: BorrowedFd<'_>, modifier: Option<u64>) -> DmaBuf<'_> {
        DmaBuf {
            width: 1280,
            height: 720,
            fourcc: DrmFourcc::Nv12,
            modifier,
            planes: vec![Plane { fd, offset: 0, pitch: 1536 }, Plane { fd, offset: 1536 * 720, pitch: 1536 }],
        }
    }

    /// The value after `name` in an EGL attribute list.
    fn attr(list: &[egl::Int], name: egl::Int) -> Option<egl::Int> {
        list.chunks(2).find(|c| c[0] == name).map(|c| c[1])
    }

    #[test]
    fn import_attributes_carry_every_plane_and_the_modifier_only_where_taken() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_fd();
        let tiled = 0x0300_0000_0060_6014_u64; // an NVIDIA block-linear modifier
        let a = import_attribs(&nv12(fd, Some(tiled)), true).unwrap();
        assert_eq!(a.last(), Some(&egl::NONE));
        assert_eq!(a.len() % 2, 1, "name/value pairs, then EGL_NONE");
        assert_eq!(attr(&a, egl::WIDTH), Some(1280));
        assert_eq!(attr(&a, LINUX_DRM_FOURCC_EXT), Some(u32::from_le_bytes(*b"NV12") as i32));
        assert_eq!(attr(&a, PLANE_ATTRIBS[1][0]), Some(fd.as_raw_fd()));
        assert_eq!(attr(&a, PLANE_ATTRIBS[1][1]), Some(1536 * 720));
        assert_eq!(attr(&a, PLANE_ATTRIBS[1][2]), Some(1536));
        for plane in &PLANE_ATTRIBS[..2] {
            assert_eq!(attr(&a, plane[3]), Some(0x0060_6014), "modifier low bits");
            assert_eq!(attr(&a, plane[4]), Some(0x0300_0000), "modifier high bits");
        }
        assert_eq!(attr(&a, PLANE_ATTRIBS[2][0]), None, "NV12 has two planes");
        assert_eq!(attr(&a, YUV_COLOR_SPACE_HINT_EXT), Some(ITU_REC709_EXT));
        assert_eq!(attr(&a, SAMPLE_RANGE_HINT_EXT), Some(YUV_NARROW_RANGE_EXT));

        // Implicit (None or DRM_FORMAT_MOD_INVALID) and, without the extension, linear: no modifier.
        for (modifier, ext) in [(None, true), (Some(invalid_modifier()), true), (Some(linear_modifier()), false)] {
            let a = import_attribs(&nv12(fd, modifier), ext).unwrap();
            assert_eq!(attr(&a, PLANE_ATTRIBS[0][3]), None, "{modifier:?} {ext}");
        }
        let e = import_attribs(&nv12(fd, Some(tiled)), false).unwrap_err();
        assert!(e.contains(MODIFIERS_EXT) && e.contains("0x0300000000606014"), "{e}");

        let mut one_plane = nv12(fd, None);
        one_plane.planes.truncate(1);
        assert!(import_attribs(&one_plane, true).unwrap_err().contains("has 2 planes, not 1"));
        let mut rgb = one_plane.clone();
        rgb.fourcc = DrmFourcc::Xrgb8888;
        let a = import_attribs(&rgb, true).unwrap();
        assert_eq!(attr(&a, YUV_COLOR_SPACE_HINT_EXT), None, "no YUV hints for RGB");
        rgb.width = 0;
        assert!(import_attribs(&rgb, true).is_err());
    }

    #[test]
    fn support_follows_what_the_display_lists() {
        let (xr24, ab24) = (DrmFourcc::Xrgb8888, DrmFourcc::Abgr8888);
        let tiled = 0x0300_0000_0060_6014_u64;
        // Without the modifiers extension nothing is listed: implicit and linear may be tried.
        assert!(check_support(xr24, None, None, None).is_ok());
        assert!(check_support(xr24, Some(linear_modifier()), None, None).is_ok());
        assert!(check_support(xr24, Some(tiled), None, None).unwrap_err().contains(MODIFIERS_EXT));
        let formats = [ab24 as u32, DrmFourcc::Nv12 as u32];
        let e = check_support(xr24, None, Some(&formats), Some(&[])).unwrap_err();
        assert!(e.contains("does not import XR24") && e.contains("AB24 NV12"), "{e}");
        assert!(check_support(ab24, Some(tiled), Some(&formats), Some(&[tiled, 0])).is_ok());
        let e = check_support(ab24, Some(tiled + 1), Some(&formats), Some(&[tiled])).unwrap_err();
        assert!(e.contains("0x0300000000606015"), "{e}");
        assert!(check_support(ab24, Some(invalid_modifier()), Some(&formats), Some(&[tiled])).is_ok());
        assert!(check_support(ab24, Some(linear_modifier()), Some(&formats), Some(&[])).is_ok());
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

    /// GStreamer's DMA-BUF allocator wraps any fd (here a temporary file's), so the plane walk is
    /// tested without a GPU: one memory for all planes (VideoMeta offsets), then one per plane.
    #[test]
    fn gst_dma_buf_memories_give_each_plane_its_fd_offset_and_pitch() {
        gstreamer::init().unwrap();
        let memory = dmabuf_memory_for_tests;
        let info = gstreamer_video::VideoInfo::builder(gstreamer_video::VideoFormat::Nv12, 64, 48).build().unwrap();
        // One memory: planes at the meta's (padded) offsets and strides.
        let mut one = gstreamer::Buffer::new();
        one.get_mut().unwrap().append_memory(memory(128 * 48 * 2));
        gstreamer_video::VideoMeta::add_full(
            one.get_mut().unwrap(),
            gstreamer_video::VideoFrameFlags::empty(),
            gstreamer_video::VideoFormat::Nv12,
            64,
            48,
            &[0, 128 * 48],
            &[128, 128],
        )
        .unwrap();
        let planes = gst_planes(&one, &info).unwrap();
        assert_eq!(planes.len(), 2);
        assert_eq!((planes[0].offset, planes[0].pitch, planes[1].offset, planes[1].pitch), (0, 128, 128 * 48, 128));
        assert_eq!(planes[0].fd.as_raw_fd(), planes[1].fd.as_raw_fd());
        // One memory per plane: each plane has its own fd, at offset 0 of it.
        let mut two = gstreamer::Buffer::new();
        two.get_mut().unwrap().append_memory(memory(64 * 48));
        two.get_mut().unwrap().append_memory(memory(64 * 24));
        let planes = gst_planes(&two, &info).unwrap();
        assert_eq!((planes[1].offset, planes[1].pitch), (0, 64));
        assert_ne!(planes[0].fd.as_raw_fd(), planes[1].fd.as_raw_fd());
        // System memory is not importable.
        let plain = gstreamer::Buffer::with_size(info.size()).unwrap();
        assert_eq!(gst_planes(&plain, &info).unwrap_err(), "plane 0 is not in DMA-BUF memory");
    }

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
            super::super::gl::Readback::new(gl, 1, target.width as usize * target.height as usize * 4).unwrap();
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
        let needed = ["EGL_KHR_image_base", "EGL_KHR_gl_texture_2D_image"];
        let mut lacking = missing(&needed, |e| ctx.display.has_extension(e));
        lacking.extend(missing(&IMPORT_GL, |e| ctx.gl.has_extension(e)));
        if !lacking.is_empty() {
            eprintln!("skipped: this EGL display ({}) lacks {}", ctx.display.platform, lacking.join(", "));
            return;
        }
        let gl = ctx.gl.clone();
        let (w, h) = (250u32, 130u32);
        let want: Vec<u8> = (0..h).flat_map(|y| (0..w).flat_map(move |x| pattern(x, y))).collect();
        let drawn = draw_pattern(&gl, w, h);
        assert_eq!(first_difference(&read(&gl, &drawn), &want, w as usize), None, "the pattern as drawn");
        let image = texture_image(&ctx, &drawn).unwrap();
        let target_texture = entry(&ctx.display, "glEGLImageTargetTexture2DOES").unwrap();
        let texture = bind_external(&gl, target_texture, &image, false).unwrap();
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
