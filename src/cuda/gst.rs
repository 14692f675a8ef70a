//! CUDA memory into GStreamer, through GStreamer's own CUDA library (libgstcuda-1.0, shipped in
//! Debian 12's libgstreamer-plugins-bad1.0-0, which gstreamer1.0-plugins-bad needs anyway).
//!
//! gstreamer-rs has no binding for it, so the handful of entry points used are declared here and
//! loaded at run time (the library exists on machines without CUDA; it loads libcuda itself, lazily,
//! in `gst_cuda_load_library`):
//! - `gst_cuda_context_new_wrapped`: wraps *our* CUDA context (cudarc's primary context on the
//!   `--gpu` device), so the encoder, the buffers and the GL interop share one context;
//! - `gst_context_new_cuda_context`: the `gst.cuda.context` GstContext set on the pipeline, which the
//!   nvcodec elements adopt instead of creating their own;
//! - `gst_cuda_buffer_pool_new`: pitched device buffers with a GstVideoMeta giving the plane layout.
//!
//! Why this route and not GstGL memory into nvh264enc (the other way to get frames there without a
//! readback): here the interop is ours, so it can be checked on GPUs without NVENC (H100/H200/A100)
//! by copying the CUDA buffer back, and by feeding `cudadownload ! x264enc`; with GstGL the interop
//! would happen inside nvh264enc, which those GPUs do not have, so it could be verified nowhere we
//! have hardware. It would also need our EGL context shared with GStreamer's GL thread.
//!
//! Checked against GStreamer 1.22's sources (gst-libs/gst/cuda, sys/nvcodec), not yet on a GPU:
//! - the pool adds a GstVideoMeta to every buffer it allocates, asked or not
//!   (`gst_cuda_buffer_pool_alloc`; the installed library carries its "adding GstVideoMeta" log
//!   line), with both NV12 planes at the allocation's pitch and the chroma plane at `pitch * height`;
//! - a context set on the pipeline reaches the encoder: `GstBin` hands `set_context` to every child,
//!   and the nvcodec encoders adopt it through `gst_cuda_handle_set_context` when its
//!   `cuda-device-id` (the CUdevice given to `gst_cuda_context_new_wrapped`) is theirs; at open,
//!   `gst_cuda_ensure_element_context` then keeps it instead of creating a context;
//! - `GST_MAP_WRITE | GST_MAP_CUDA` hands out the device pointer and marks the memory for download,
//!   so a later CPU map (cudadownload, a software encoder) sees what the copies wrote.

use std::ffi::c_void;
use std::sync::OnceLock;

use gstreamer as gst;
use gstreamer::glib::translate::{FromGlibPtrFull, ToGlibPtr};

/// `GST_MAP_CUDA` (`GST_MAP_FLAG_LAST << 1`): map a CUDA memory as a device pointer.
const MAP_CUDA: u32 = (1 << 16) << 1;
pub const CAPS_FEATURE: &str = "memory:CUDAMemory";

type Gboolean = i32;
type LoadLibrary = unsafe extern "C" fn() -> Gboolean;
type ContextNewWrapped = unsafe extern "C" fn(cudarc::driver::sys::CUcontext, i32) -> *mut gst::ffi::GstObject;
type ContextNewCudaContext = unsafe extern "C" fn(*mut gst::ffi::GstObject) -> *mut gst::ffi::GstContext;
type BufferPoolNew = unsafe extern "C" fn(*mut gst::ffi::GstObject) -> *mut gst::ffi::GstBufferPool;
type MemoryInitOnce = unsafe extern "C" fn();
type IsCudaMemory = unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> Gboolean;

/// libgstcuda-1.0's entry points. Loaded once and never unloaded: GObjects it creates (contexts,
/// pools, allocators) point into it for the rest of the process.
pub struct GstCuda {
    load_library: LoadLibrary,
    context_new_wrapped: ContextNewWrapped,
    context_new_cuda_context: ContextNewCudaContext,
    buffer_pool_new: BufferPoolNew,
    memory_init_once: MemoryInitOnce,
    is_cuda_memory: IsCudaMemory,
    _lib: libloading::Library,
}

pub const LIBRARY: &str = "libgstcuda-1.0.so.0";

impl GstCuda {
    /// The library, loaded on first use; the error names what is missing.
    pub fn get() -> Result<&'static GstCuda, String> {
        static LOADED: OnceLock<Result<GstCuda, String>> = OnceLock::new();
        LOADED.get_or_init(GstCuda::load).as_ref().map_err(Clone::clone)
    }

    fn load() -> Result<GstCuda, String> {
        // SAFETY: libgstcuda is GStreamer's CUDA helper library, made to be loaded; its initialisers
        // only register GTypes lazily.
        let lib = unsafe { libloading::Library::new(LIBRARY) }
            .map_err(|e| format!("{LIBRARY} (libgstreamer-plugins-bad1.0-0): {e}"))?;
        macro_rules! sym {
            ($name:literal, $ty:ty) => {
                // SAFETY: the type is the symbol's C signature from GStreamer 1.22's gst/cuda headers.
                *unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{LIBRARY} has no {} (GStreamer older than 1.22?): {e}", $name))?
            };
        }
        Ok(GstCuda {
            load_library: sym!("gst_cuda_load_library", LoadLibrary),
            context_new_wrapped: sym!("gst_cuda_context_new_wrapped", ContextNewWrapped),
            context_new_cuda_context: sym!("gst_context_new_cuda_context", ContextNewCudaContext),
            buffer_pool_new: sym!("gst_cuda_buffer_pool_new", BufferPoolNew),
            memory_init_once: sym!("gst_cuda_memory_init_once", MemoryInitOnce),
            is_cuda_memory: sym!("gst_is_cuda_memory", IsCudaMemory),
            _lib: lib,
        })
    }

    /// Whether libgstcuda finds libcuda (it loads it itself).
    pub fn cuda_loads(&self) -> bool {
        // SAFETY: no arguments; idempotent.
        unsafe { (self.load_library)() != 0 }
    }

    /// Wraps an existing CUDA context (not owned: it must outlive every user of the wrapper) as a
    /// GstCudaContext.
    pub fn wrap_context(&self, ctx: &cudarc::driver::CudaContext) -> anyhow::Result<gst::Object> {
        anyhow::ensure!(self.cuda_loads(), "{LIBRARY} cannot load libcuda");
        // SAFETY: our retained primary context and its device; the wrapper does not destroy a
        // wrapped context, and `ZeroCopy` keeps the cudarc context alive longer than it.
        let raw = unsafe { (self.context_new_wrapped)(ctx.cu_ctx(), ctx.cu_device()) };
        anyhow::ensure!(!raw.is_null(), "gst_cuda_context_new_wrapped failed");
        // SAFETY: a new GstObject we own; sunk first if it came back floating.
        Ok(unsafe { gst::Object::from_glib_full(sink_floating(raw)) })
    }

    /// The `gst.cuda.context` GstContext for a wrapped context.
    pub fn gst_context(&self, cuda_ctx: &gst::Object) -> anyhow::Result<gst::Context> {
        // SAFETY: `cuda_ctx` is a GstCudaContext from `wrap_context`; the call takes its own reference.
        let raw = unsafe { (self.context_new_cuda_context)(cuda_ctx.to_glib_none().0) };
        anyhow::ensure!(!raw.is_null(), "gst_context_new_cuda_context failed");
        // SAFETY: a new reference we own.
        Ok(unsafe { gst::Context::from_glib_full(raw) })
    }

    /// A pool of CUDA-memory buffers on `cuda_ctx`, configured for `caps` with video meta.
    pub fn buffer_pool(&self, cuda_ctx: &gst::Object, caps: &gst::Caps, min: u32) -> anyhow::Result<gst::BufferPool> {
        // SAFETY: no arguments; registers the CUDA allocator once.
        unsafe { (self.memory_init_once)() };
        // SAFETY: `cuda_ctx` is a GstCudaContext; the pool takes its own reference.
        let raw = unsafe { (self.buffer_pool_new)(cuda_ctx.to_glib_none().0) };
        anyhow::ensure!(!raw.is_null(), "gst_cuda_buffer_pool_new failed");
        // SAFETY: a new GstBufferPool we own; sunk first if it came back floating.
        let pool = unsafe { gst::BufferPool::from_glib_full(sink_floating(raw)) };
        use gst::prelude::*;
        let info = gstreamer_video::VideoInfo::from_caps(caps)?;
        let mut config = pool.config();
        config.set_params(Some(caps), info.size() as u32, min, 0);
        config.add_option(gstreamer_video::BUFFER_POOL_OPTION_VIDEO_META.as_ref());
        pool.set_config(config).map_err(|e| anyhow::anyhow!("CUDA buffer pool config: {e}"))?;
        pool.set_active(true).map_err(|e| anyhow::anyhow!("CUDA buffer pool: {e}"))?;
        Ok(pool)
    }

    /// Maps `buffer`'s (only) memory as a CUDA device pointer for writing, until the guard drops.
    pub fn map_device<'a>(&self, buffer: &'a mut gst::BufferRef) -> anyhow::Result<DeviceMap<'a>> {
        anyhow::ensure!(buffer.n_memory() == 1, "a CUDA frame buffer has {} memories, not 1", buffer.n_memory());
        // SAFETY: index 0 exists (checked); the memory is borrowed, not taken.
        let is_cuda = unsafe { (self.is_cuda_memory)(gst::ffi::gst_buffer_peek_memory(buffer.as_mut_ptr(), 0)) };
        anyhow::ensure!(is_cuda != 0, "the pool's buffer is not CUDA memory");
        let mut info = std::mem::MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
        // SAFETY: a writable buffer (`&mut BufferRef`) and a map-info out-parameter; GST_MAP_CUDA
        // makes CUDA memory hand out its device pointer instead of a staging copy.
        let ok = unsafe {
            gst::ffi::gst_buffer_map(buffer.as_mut_ptr(), info.as_mut_ptr(), gst::ffi::GST_MAP_WRITE | MAP_CUDA)
        };
        anyhow::ensure!(ok != 0, "mapping a CUDA buffer (GST_MAP_CUDA) failed");
        // SAFETY: initialised by the successful map.
        let info = unsafe { info.assume_init() };
        Ok(DeviceMap { buffer, info })
    }
}

/// Turns a floating reference into a full one (GstObject constructors differ between versions in
/// whether they sink before returning), so `from_glib_full` always takes exactly one reference.
///
/// # Safety
/// `ptr` must be a valid GObject whose one (possibly floating) reference the caller owns.
unsafe fn sink_floating<T>(ptr: *mut T) -> *mut T {
    let object = ptr.cast::<gst::glib::gobject_ffi::GObject>();
    // SAFETY: a valid GObject (the caller's contract); ref_sink on a floating reference converts
    // it in place without adding one.
    unsafe {
        if gst::glib::gobject_ffi::g_object_is_floating(object) != 0 {
            gst::glib::gobject_ffi::g_object_ref_sink(object);
        }
    }
    ptr
}

/// A buffer mapped as device memory; unmapped on drop.
pub struct DeviceMap<'a> {
    buffer: &'a mut gst::BufferRef,
    info: gst::ffi::GstMapInfo,
}

impl DeviceMap<'_> {
    pub fn device_ptr(&self) -> cudarc::driver::sys::CUdeviceptr {
        self.info.data as *mut c_void as cudarc::driver::sys::CUdeviceptr
    }

    pub fn size(&self) -> usize {
        self.info.size
    }
}

impl Drop for DeviceMap<'_> {
    fn drop(&mut self) {
        // SAFETY: mapped by `map_device` with this info, not unmapped since.
        unsafe { gst::ffi::gst_buffer_unmap(self.buffer.as_mut_ptr(), &mut self.info) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::ObjectExt as _;

    #[test]
    fn floating_and_full_references_both_end_up_owned_once() {
        gst::init().unwrap();
        for already_sunk in [false, true] {
            // SAFETY: a new element (floating, as GStreamer's constructors return them), sunk here
            // for the second case; `sink_floating` then hands exactly one owned reference on.
            let element = unsafe {
                let raw = gst::ffi::gst_element_factory_make(c"queue".as_ptr(), std::ptr::null());
                if already_sunk {
                    gst::ffi::gst_object_ref_sink(raw.cast());
                }
                gst::Element::from_glib_full(sink_floating(raw))
            };
            assert_eq!(element.ref_count(), 1, "already sunk: {already_sunk}");
            let raw: *mut gst::ffi::GstElement = element.to_glib_none().0;
            // SAFETY: a live GObject.
            let floating = unsafe { gst::glib::gobject_ffi::g_object_is_floating(raw.cast()) };
            assert_eq!(floating, 0, "an owned reference, not a floating one (already sunk: {already_sunk})");
        }
    }

    #[test]
    fn every_entry_point_resolves_in_the_installed_libgstcuda() {
        // libgstreamer-plugins-bad1.0-0 is installed wherever h264parse is (scripts/setup.sh).
        let lib = GstCuda::get().expect("libgstcuda-1.0 and its 1.22 entry points");
        if crate::cuda::probe() == crate::cuda::Cuda::Absent {
            assert!(!lib.cuda_loads(), "without libcuda, libgstcuda cannot load CUDA");
        }
    }
}
