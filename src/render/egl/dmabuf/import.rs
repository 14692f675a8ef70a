//! DMA-BUF import: planes (fd, offset, pitch), size, fourcc and modifier ->
//! `eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT)` (EGL_EXT_image_dma_buf_import; explicit modifiers
//! only where EGL_EXT_image_dma_buf_import_modifiers is present) -> a `GL_TEXTURE_EXTERNAL_OES`
//! texture through glEGLImageTargetTexture2DOES (GL_OES_EGL_image_external). External textures
//! take every layout the driver imports, RGB and YUV alike: the driver converts YUV to RGB when
//! sampling, told BT.709 limited range. [`ExternalBlit`] draws one into a render target, scaled
//! into a rectangle. [`Importer::supports`] says whether a fourcc/modifier can be imported
//! (eglQueryDmaBufFormatsEXT/eglQueryDmaBufModifiersEXT where present).
//!
//! Ownership: the caller keeps the DMA-BUF fds it imports (EGL takes its own reference, so they may
//! be closed as soon as [`Importer::import`] returns); an [`Imported`] destroys its texture and EGL
//! image in `Drop`.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;

use anyhow::{Context as _, anyhow, bail};
use drm_fourcc::DrmFourcc;
use khronos_egl as egl;

pub use super::super::gl::Filter;
use super::super::gl::{ExternalTexture, Gl, Pass, Program, Sampled, Target, Uniform};
use super::super::{Context, Display};
use super::{
    CreateImageKhr, DestroyImageKhr, EglImage, Image, entry, invalid_modifier, is_yuv, lacks, linear_modifier, missing,
    plane_count,
};

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

/// What importing needs from the EGL display.
pub const IMPORT_EGL: [&str; 2] = ["EGL_KHR_image_base", "EGL_EXT_image_dma_buf_import"];
/// What importing needs from the GL context: external textures, sampled from ES 3 shaders.
pub const IMPORT_GL: [&str; 2] = ["GL_OES_EGL_image_external", "GL_OES_EGL_image_external_essl3"];
/// Explicit modifiers and the format queries.
const MODIFIERS_EXT: &str = "EGL_EXT_image_dma_buf_import_modifiers";

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

/// The extensions importing needs that this context's display or GL lacks (empty: it can import).
pub fn import_missing(ctx: &Context) -> Vec<&'static str> {
    let mut out = missing(&IMPORT_EGL, |e| ctx.display.has_extension(e));
    out.extend(missing(&IMPORT_GL, |e| ctx.gl.has_extension(e)));
    out
}

/// The extensions importing needs that the default EGL display lacks (empty: it imports), asked on
/// a context of its own that is gone on return (displays of one platform share one EGLDisplay), so
/// a test can tell which of its two cases this machine is.
#[cfg(test)]
pub(crate) fn default_display_import_missing() -> Vec<&'static str> {
    let ctx = Context::new(Display::open(None, None).expect("an EGL display (llvmpipe in CI)")).unwrap();
    import_missing(&ctx)
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
        let texture = bind_external(&self.gl, self.target_texture, &image, filter).with_context(|| {
            format!("binding a {}x{} {} DMA-BUF image to a texture", buf.width, buf.height, buf.fourcc)
        })?;
        Ok(Imported { texture, _image: image, width: buf.width, height: buf.height, fourcc: buf.fourcc })
    }
}

/// A new external texture whose storage is `image`.
pub(super) fn bind_external(
    gl: &Rc<Gl>,
    target_texture: ImageTargetTexture2dOes,
    image: &Image,
    filter: Filter,
) -> anyhow::Result<ExternalTexture> {
    ExternalTexture::new(gl, filter, |target| {
        // SAFETY: ExternalTexture::new has a fresh texture bound on `target`
        // (GL_TEXTURE_EXTERNAL_OES) on this thread's current context, and `image.raw` is a live
        // EGL image of the same display; a failure is a GL error, which `new` reports.
        unsafe { target_texture(target, image.raw) }
    })
}

/// An imported DMA-BUF: an external texture over an EGL image, both released in `Drop` (texture
/// first).
pub struct Imported {
    pub(super) texture: ExternalTexture,
    pub(super) _image: Image,
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
        let program = Program::fullscreen(gl, include_str!("../../shaders/external.glsl"))
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::render::egl::dmabuf::dmabuf_memory_for_tests;

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
}
