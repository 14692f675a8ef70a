//! Headless EGL: loads libEGL at run time, picks a platform, creates an OpenGL ES 3 context and makes
//! it current on the calling thread.
//!
//! All of the crate's EGL and GL `unsafe` lives under this module (`gl.rs` holds the GL object
//! wrappers); the rest of the renderer uses the safe types exported here.
//!
//! Platforms are tried in order, and the reason each one was passed over is logged:
//! 1. `EGL_EXT_platform_device`: a real GPU (NVIDIA's EGL device platform); Mesa's software device
//!    is skipped unless `--egl-device` names it;
//! 2. `EGL_MESA_platform_surfaceless`: Mesa, llvmpipe on machines without a GPU;
//! 3. the default display with a pbuffer surface, as a last resort.
#![allow(unsafe_code)]

pub mod dmabuf;
pub mod gl;

use std::ffi::{CStr, c_char, c_void};
use std::fmt;
use std::rc::Rc;

use anyhow::{Context as _, anyhow, bail};
use khronos_egl as egl;
use log::{debug, info, warn};

use crate::device::{self, CudaIds, EglIds, PciAddress};
use crate::exit::{Exit, ExitExt, fail};

type Instance = egl::DynamicInstance<egl::EGL1_4>;

const PLATFORM_DEVICE_EXT: egl::Enum = 0x313F;
const PLATFORM_SURFACELESS_MESA: egl::Enum = 0x31DD;
const DRM_DEVICE_FILE_EXT: egl::Int = 0x3233;
const CUDA_DEVICE_NV: egl::Int = 0x323A;

type QueryDevicesExt = unsafe extern "system" fn(egl::Int, *mut *mut c_void, *mut egl::Int) -> egl::Boolean;
type QueryDeviceStringExt = unsafe extern "system" fn(*mut c_void, egl::Int) -> *const c_char;
type QueryDeviceAttribExt = unsafe extern "system" fn(*mut c_void, egl::Int, *mut egl::Attrib) -> egl::Boolean;
type GetPlatformDisplayExt = unsafe extern "system" fn(egl::Enum, *mut c_void, *const egl::Int) -> egl::EGLDisplay;

/// Which platform the display came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// `EGL_EXT_platform_device`, device index and a description; `cuda` is the CUDA device it is
    /// (`EGL_CUDA_DEVICE_NV`), on NVIDIA.
    Device { index: usize, description: String, software: bool, cuda: Option<i64> },
    /// `EGL_MESA_platform_surfaceless`.
    Surfaceless,
    /// `eglGetDisplay(EGL_DEFAULT_DISPLAY)` with a pbuffer.
    Default,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Platform::Device { index, description, .. } => write!(f, "EGL device {index} ({description})"),
            Platform::Surfaceless => write!(f, "Mesa surfaceless platform"),
            Platform::Default => write!(f, "default EGL display"),
        }
    }
}

/// An initialised EGL display. Terminated when the last reference (the contexts hold one) goes.
pub struct Display {
    egl: Instance,
    raw: egl::Display,
    pub platform: Platform,
    pub version: (i32, i32),
    extensions: String,
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Err(e) = self.egl.terminate(self.raw) {
            warn!("eglTerminate failed: {e}");
        }
    }
}

fn has_ext(list: &str, name: &str) -> bool {
    list.split_ascii_whitespace().any(|e| e == name)
}

/// Reads a proc address as a typed function pointer.
fn proc<F: Copy>(egl: &Instance, name: &str) -> Option<F> {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<extern "system" fn()>());
    let f = egl.get_proc_address(name)?;
    // SAFETY: F is one of the extension function pointer types declared above, whose signatures
    // match the Khronos registry for `name`; a function pointer has the same size and ABI whatever
    // its signature (asserted above).
    Some(unsafe { std::mem::transmute_copy::<extern "system" fn(), F>(&f) })
}

/// One EGL device as enumerated by `eglQueryDevicesEXT`.
struct DeviceInfo {
    raw: *mut c_void,
    extensions: String,
    drm_file: Option<String>,
    ids: EglIds,
}

impl DeviceInfo {
    fn software(&self) -> bool {
        has_ext(&self.extensions, "EGL_MESA_device_software")
    }

    fn describe(&self) -> String {
        let kind = if has_ext(&self.extensions, "EGL_NV_device_cuda") {
            "NVIDIA"
        } else if self.software() {
            "Mesa software"
        } else {
            "GPU"
        };
        let mut out = kind.to_string();
        if let Some(c) = self.ids.cuda {
            out += &format!(", CUDA device {c}");
        }
        if let Some(f) = &self.drm_file {
            out += &format!(", {f}");
        }
        if let Some(p) = self.ids.pci {
            out += &format!(", PCI {p}");
        }
        out
    }
}

fn query_devices(egl: &Instance) -> anyhow::Result<Vec<DeviceInfo>> {
    let query: QueryDevicesExt = proc(egl, "eglQueryDevicesEXT").context("no eglQueryDevicesEXT")?;
    let query_string: Option<QueryDeviceStringExt> = proc(egl, "eglQueryDeviceStringEXT");
    let query_attrib: Option<QueryDeviceAttribExt> = proc(egl, "eglQueryDeviceAttribEXT");
    let mut count: egl::Int = 0;
    // SAFETY: a null device array asks only for the count, written to `count`.
    if unsafe { query(0, std::ptr::null_mut(), &mut count) } != egl::TRUE {
        bail!("eglQueryDevicesEXT failed");
    }
    let mut raw = vec![std::ptr::null_mut(); usize::try_from(count).unwrap_or(0)];
    // SAFETY: `raw` has room for `count` device handles.
    if unsafe { query(count, raw.as_mut_ptr(), &mut count) } != egl::TRUE {
        bail!("eglQueryDevicesEXT failed");
    }
    raw.truncate(usize::try_from(count).unwrap_or(0));
    let string = |dev: *mut c_void, name: egl::Int| -> Option<String> {
        let f = query_string?;
        // SAFETY: `dev` came from eglQueryDevicesEXT; the returned string is owned by EGL and
        // copied out at once.
        let s = unsafe { f(dev, name) };
        // SAFETY: non-null results are NUL-terminated strings (EGL_EXT_device_query).
        (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    };
    let attrib = |dev: *mut c_void, name: egl::Int| -> Option<egl::Attrib> {
        let f = query_attrib?;
        let mut value: egl::Attrib = 0;
        // SAFETY: `dev` came from eglQueryDevicesEXT and `value` is a valid EGLAttrib to write.
        (unsafe { f(dev, name, &mut value) } == egl::TRUE).then_some(value)
    };
    Ok(raw
        .into_iter()
        .map(|dev| {
            let extensions = string(dev, egl::EXTENSIONS).unwrap_or_default();
            let drm_file = string(dev, DRM_DEVICE_FILE_EXT);
            let cuda = if has_ext(&extensions, "EGL_NV_device_cuda") {
                attrib(dev, CUDA_DEVICE_NV).map(|c| c as i64)
            } else {
                None
            };
            let ids = EglIds { cuda, pci: drm_file.as_deref().and_then(pci_of_drm_file) };
            DeviceInfo { raw: dev, extensions, drm_file, ids }
        })
        .collect())
}

/// The PCI address behind a DRM device file, from sysfs (`/sys/class/drm/card1/device` links to
/// `.../0000:65:00.0`).
fn pci_of_drm_file(file: &str) -> Option<PciAddress> {
    let name = std::path::Path::new(file).file_name()?;
    let link = std::fs::canonicalize(std::path::Path::new("/sys/class/drm").join(name).join("device")).ok()?;
    PciAddress::parse(&link.file_name()?.to_string_lossy())
}

/// Picks the device that is CUDA device `cuda` where the devices say which CUDA device they are,
/// and checks an explicit `--egl-device` against it.
fn pick_for_cuda(devices: &[DeviceInfo], requested: Option<usize>, cuda: &CudaIds) -> anyhow::Result<Option<usize>> {
    if !devices.iter().any(|d| d.ids.cuda.is_some()) {
        if devices.iter().any(|d| !d.software()) {
            warn!(
                "EGL: no EGL device reports EGL_NV_device_cuda, so the renderer cannot be matched to CUDA device {}; it may \
                 render on another GPU than the encoder uses",
                cuda.ordinal
            );
        }
        return Ok(None);
    }
    let ids: Vec<EglIds> = devices.iter().map(|d| d.ids.clone()).collect();
    match (device::match_device(&ids, cuda), requested) {
        (Ok((i, how)), None) => {
            info!("EGL: device {i} is CUDA device {} (matched by {how})", cuda.ordinal);
            Ok(Some(i))
        }
        (Ok((i, _)), Some(n)) if i == n => Ok(Some(n)),
        (Ok((i, how)), Some(n)) => Err(fail(
            Exit::Usage,
            format!(
                "--egl-device {n} is not CUDA device {} (--gpu): that is EGL device {i} ({how}); rendering and encoding \
                 would run on different GPUs",
                cuda.ordinal
            ),
        )),
        (Err(e), _) => Err(fail(Exit::Unavailable, format!("--gpu {}: {e}", cuda.ordinal))),
    }
}

/// Loads libEGL: the system's, or the one `AGENTCAST_EGL_LIB` names (a vendor's, or a broken one
/// for tests).
fn load_egl() -> anyhow::Result<Instance> {
    let lib = std::env::var("AGENTCAST_EGL_LIB").unwrap_or_else(|_| "libEGL.so.1".into());
    // SAFETY: loading libEGL runs its initialisers; it is the system's EGL loader (glvnd or Mesa),
    // or the one the user named, which is made to be loaded this way.
    unsafe { Instance::load_required_from_filename(&lib) }
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("loading {lib} (install libegl1 and libegl-mesa0, or the NVIDIA driver)"))
        .exit(Exit::Unavailable)
}

/// Which EGL device to open: `--egl-device N` (checked against the list, and against the CUDA
/// device where there is one), else the one that is the CUDA device, else the first that is not
/// Mesa's software device. `None`: no device fits (the caller tries the next platform).
fn pick_device(
    devices: &[DeviceInfo],
    requested: Option<u32>,
    cuda: Option<&CudaIds>,
) -> anyhow::Result<Option<usize>> {
    let Some(n) = requested else {
        let for_cuda = match cuda {
            Some(c) => pick_for_cuda(devices, None, c)?,
            None => None,
        };
        return Ok(for_cuda.or_else(|| devices.iter().position(|d| !d.software())));
    };
    let n = n as usize;
    if n >= devices.len() {
        let list: Vec<String> = devices.iter().enumerate().map(|(i, d)| format!("{i}: {}", d.describe())).collect();
        return Err(fail(
            Exit::Unavailable,
            format!("--egl-device {n}: there are {} EGL device(s) ({})", devices.len(), list.join("; ")),
        ));
    }
    Ok(match cuda {
        Some(c) => pick_for_cuda(devices, Some(n), c)?.or(Some(n)),
        None => Some(n),
    })
}

fn no_display(passed_over: &[String]) -> String {
    format!("no usable EGL display (is libegl-mesa0 or the NVIDIA driver installed?): {}", passed_over.join("; "))
}

impl Display {
    /// Loads libEGL and opens the first platform that works (see the module docs).
    /// `cuda` is the CUDA device frames go to, where there is CUDA: on NVIDIA the device platform
    /// then renders on the EGL device that is that GPU.
    pub fn open(requested_device: Option<u32>, cuda: Option<CudaIds>) -> anyhow::Result<Rc<Display>> {
        let egl = load_egl()?;
        let client = egl.query_string(None, egl::EXTENSIONS).map(|s| s.to_string_lossy().into_owned());
        let client = client.unwrap_or_default();
        debug!("EGL client extensions: {client}");
        let get_platform_display: Option<GetPlatformDisplayExt> =
            if has_ext(&client, "EGL_EXT_platform_base") { proc(&egl, "eglGetPlatformDisplayEXT") } else { None };

        // Each platform that was tried and passed over, with why: the error if none opens.
        let mut passed_over: Vec<String> = Vec::new();

        // 1. Device platform.
        let device_ok = has_ext(&client, "EGL_EXT_platform_device")
            && (has_ext(&client, "EGL_EXT_device_enumeration") || has_ext(&client, "EGL_EXT_device_base"));
        match (device_ok, get_platform_display) {
            (true, Some(gpd)) => {
                if let Some(d) = Self::open_device(&egl, gpd, requested_device, cuda.as_ref(), &mut passed_over)? {
                    return Ok(d.finish(egl, &passed_over));
                }
            }
            _ => passed_over.push("device platform: EGL_EXT_platform_device is not supported".into()),
        }
        if requested_device.is_some() {
            return Err(fail(
                Exit::Unavailable,
                format!(
                    "--egl-device needs EGL_EXT_platform_device, which is unavailable ({})",
                    passed_over.join("; ")
                ),
            ));
        }

        // 2. Mesa surfaceless.
        match (has_ext(&client, "EGL_MESA_platform_surfaceless"), get_platform_display) {
            (true, Some(gpd)) => {
                // SAFETY: the surfaceless platform takes EGL_DEFAULT_DISPLAY as its native display.
                let raw = unsafe { gpd(PLATFORM_SURFACELESS_MESA, egl::DEFAULT_DISPLAY, std::ptr::null()) };
                match Self::init(&egl, raw, Platform::Surfaceless) {
                    Ok(d) => return Ok(d.finish(egl, &passed_over)),
                    Err(e) => passed_over.push(format!("surfaceless: {e:#}")),
                }
            }
            _ => passed_over.push("surfaceless: EGL_MESA_platform_surfaceless is not supported".into()),
        }

        // 3. Default display.
        // SAFETY: EGL_DEFAULT_DISPLAY is always a valid argument to eglGetDisplay.
        let raw = unsafe { egl.get_display(egl::DEFAULT_DISPLAY) };
        match raw.map(|d| Self::init(&egl, d.as_ptr(), Platform::Default)) {
            Some(Ok(d)) => Ok(d.finish(egl, &passed_over)),
            Some(Err(e)) => {
                passed_over.push(format!("default display: {e:#}"));
                Err(fail(Exit::Unavailable, no_display(&passed_over)))
            }
            None => {
                passed_over.push("default display: eglGetDisplay returned EGL_NO_DISPLAY".into());
                Err(fail(Exit::Unavailable, no_display(&passed_over)))
            }
        }
    }

    /// The device platform: the EGL device `--egl-device` names, else the one that is the CUDA
    /// device, else the first hardware device. `Ok(None)` (with the reason in `passed_over`) lets
    /// the caller try the next platform; an error ends the search (a device that was asked for).
    fn open_device(
        egl: &Instance,
        gpd: GetPlatformDisplayExt,
        requested_device: Option<u32>,
        cuda: Option<&CudaIds>,
        passed_over: &mut Vec<String>,
    ) -> anyhow::Result<Option<PendingDisplay>> {
        let devices = match query_devices(egl) {
            Ok(devices) => devices,
            Err(e) => {
                passed_over.push(format!("device platform: {e:#}"));
                return Ok(None);
            }
        };
        for (i, d) in devices.iter().enumerate() {
            debug!("EGL device {i}: {} [{}]", d.describe(), d.extensions);
        }
        let Some(index) = pick_device(&devices, requested_device, cuda)? else {
            passed_over.push(if devices.is_empty() {
                "device platform: no EGL devices".into()
            } else {
                format!(
                    "device platform: only Mesa's software device ({} device(s)); surfaceless is preferred for it",
                    devices.len()
                )
            });
            return Ok(None);
        };
        let dev = &devices[index];
        let platform =
            Platform::Device { index, description: dev.describe(), software: dev.software(), cuda: dev.ids.cuda };
        // SAFETY: `dev.raw` is a device handle from eglQueryDevicesEXT, the attribute list is empty
        // (NULL is allowed).
        let raw = unsafe { gpd(PLATFORM_DEVICE_EXT, dev.raw, std::ptr::null()) };
        match Self::init(egl, raw, platform) {
            Ok(d) => Ok(Some(d)),
            Err(e) if requested_device.is_some() => {
                Err(e.context(format!("--egl-device {index}"))).exit(Exit::Unavailable)
            }
            Err(e) => {
                passed_over.push(format!("EGL device {index}: {e:#}"));
                Ok(None)
            }
        }
    }

    fn init(egl: &Instance, raw: egl::EGLDisplay, platform: Platform) -> anyhow::Result<PendingDisplay> {
        if raw.is_null() {
            bail!("eglGetPlatformDisplay returned EGL_NO_DISPLAY ({:?})", egl.get_error());
        }
        // SAFETY: non-null display handle returned by eglGet(Platform)Display.
        let display = unsafe { egl::Display::from_ptr(raw) };
        let version = egl.initialize(display).map_err(|e| anyhow!("eglInitialize: {e}"))?;
        let extensions = egl.query_string(Some(display), egl::EXTENSIONS).map(|s| s.to_string_lossy().into_owned());
        Ok(PendingDisplay { raw: display, platform, version, extensions: extensions.unwrap_or_default() })
    }

    pub fn has_extension(&self, name: &str) -> bool {
        has_ext(&self.extensions, name)
    }
}

/// An initialised display not yet wrapped (so the instance can move into it).
struct PendingDisplay {
    raw: egl::Display,
    platform: Platform,
    version: (i32, i32),
    extensions: String,
}

impl PendingDisplay {
    fn finish(self, egl: Instance, passed_over: &[String]) -> Rc<Display> {
        for why in passed_over {
            info!("EGL: passed over {why}");
        }
        info!("EGL: using the {} (EGL {}.{})", self.platform, self.version.0, self.version.1);
        debug!("EGL display extensions: {}", self.extensions);
        Rc::new(Display {
            egl,
            raw: self.raw,
            platform: self.platform,
            version: self.version,
            extensions: self.extensions,
        })
    }
}

/// An OpenGL ES 3 context, current on the thread that created it for as long as it lives.
pub struct Context {
    display: Rc<Display>,
    raw: egl::Context,
    surface: Option<egl::Surface>,
    /// The GL function table; GL objects hold clones and must be dropped before the context.
    pub gl: Rc<gl::Gl>,
}

impl Context {
    /// Creates the context and makes it current: surfaceless where the display supports
    /// EGL_KHR_surfaceless_context, else with a small pbuffer.
    pub fn new(display: Rc<Display>) -> anyhow::Result<Context> {
        let egl = &display.egl;
        egl.bind_api(egl::OPENGL_ES_API).map_err(|e| anyhow!("eglBindAPI(OpenGL ES): {e}"))?;
        let surfaceless = display.has_extension("EGL_KHR_surfaceless_context");
        let base = [
            egl::RED_SIZE,
            8,
            egl::GREEN_SIZE,
            8,
            egl::BLUE_SIZE,
            8,
            egl::ALPHA_SIZE,
            8,
            egl::RENDERABLE_TYPE,
            egl::OPENGL_ES3_BIT,
        ];
        let choose = |surface_type: egl::Int| {
            let mut attrs = base.to_vec();
            attrs.extend_from_slice(&[egl::SURFACE_TYPE, surface_type, egl::NONE]);
            egl.choose_first_config(display.raw, &attrs).ok().flatten()
        };
        let config = choose(egl::PBUFFER_BIT)
            .or_else(|| if surfaceless { choose(0) } else { None })
            .ok_or_else(|| anyhow!("no EGL config with 8-bit RGBA and OpenGL ES 3 on the {}", display.platform))?;
        let attrs = [egl::CONTEXT_MAJOR_VERSION, 3, egl::NONE];
        let raw = egl
            .create_context(display.raw, config, None, &attrs)
            .map_err(|e| anyhow!("eglCreateContext (OpenGL ES 3): {e}"))?;
        let surface = if surfaceless {
            None
        } else {
            info!("EGL: no EGL_KHR_surfaceless_context, rendering with a pbuffer surface bound");
            let attrs = [egl::WIDTH, 16, egl::HEIGHT, 16, egl::NONE];
            match egl.create_pbuffer_surface(display.raw, config, &attrs) {
                Ok(s) => Some(s),
                Err(e) => {
                    let _ = egl.destroy_context(display.raw, raw);
                    bail!("eglCreatePbufferSurface: {e}");
                }
            }
        };
        if let Err(e) = egl.make_current(display.raw, surface, surface, Some(raw)) {
            if let Some(s) = surface {
                let _ = egl.destroy_surface(display.raw, s);
            }
            let _ = egl.destroy_context(display.raw, raw);
            bail!("eglMakeCurrent: {e}");
        }
        let loader = |name: &str| egl.get_proc_address(name).map_or(std::ptr::null(), |f| f as *const c_void);
        // SAFETY: the context was just made current on this thread, and the loader returns entry
        // points of that context's client API (EGL 1.5 / EGL_KHR_get_all_proc_addresses).
        let table = unsafe { glow::Context::from_loader_function(loader) };
        let gl = Rc::new(gl::Gl::new(table));
        Ok(Context { display, raw, surface, gl })
    }

    pub fn platform(&self) -> &Platform {
        &self.display.platform
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if Rc::strong_count(&self.gl) > 1 {
            warn!("GL objects outlive their EGL context; they are released with it");
        }
        self.gl.release();
        let egl = &self.display.egl;
        if let Err(e) = egl.make_current(self.display.raw, None, None, None) {
            warn!("eglMakeCurrent(none) failed: {e}");
        }
        if let Some(s) = self.surface.take()
            && let Err(e) = egl.destroy_surface(self.display.raw, s)
        {
            warn!("eglDestroySurface failed: {e}");
        }
        if let Err(e) = egl.destroy_context(self.display.raw, self.raw) {
            warn!("eglDestroyContext failed: {e}");
        }
    }
}

/// Held by tests that open a [`Display`]: displays of one platform share one EGLDisplay, which
/// the first of them to drop terminates, so such tests must not overlap (CI runs tests one at a
/// time anyway; this keeps a parallel `cargo test` honest).
#[cfg(test)]
pub(crate) fn egl_test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_lists_match_whole_words() {
        let list = "EGL_EXT_platform_base EGL_EXT_platform_device EGL_MESA_platform_surfaceless";
        assert!(has_ext(list, "EGL_EXT_platform_device"));
        assert!(!has_ext(list, "EGL_EXT_platform"));
        assert!(!has_ext("", "EGL_EXT_platform_base"));
    }
}
