//! GL -> CUDA without the host: a GL texture registered with CUDA once, mapped per frame as a CUDA
//! array, copied device-to-device, unmapped.
//!
//! cudarc binds the graphics-interop calls of `cuda.h` (map, unmap, mapped array, unregister) but not
//! `cudaGL.h`'s `cuGraphicsGLRegisterImage`, so that one entry point is declared here and loaded
//! from the same libcuda at run time (agentcast must start where there is no libcuda at all).
//!
//! Guards: [`Registered`] unregisters on drop and [`Mapped`] unmaps on drop, so every error path
//! (a failed copy, a panic unwinding) gives the texture back to GL.
//!
//! Synchronisation (chosen: `glFlush` + map-ordering, not `glFinish` or a GL fence): the CUDA driver
//! API guarantees that `cuGraphicsMapResources` orders all GL work issued before the map ahead of
//! any CUDA work issued after it in the same stream, and that `cuGraphicsUnmapResources` orders the
//! stream's work before any GL work issued after the unmap. The caller flushes GL so the commands
//! that drew the texture are submitted; the copies run on our stream between map and unmap; the
//! stream is synchronised before the buffer is handed to GStreamer (whose encoder uses its own
//! stream). A `glFinish` would stall the render thread for the whole GPU frame, and a fence would
//! only re-state what the map already guarantees.

use std::ffi::c_uint;
use std::sync::Arc;

use cudarc::driver::sys::{self, CUarray, CUgraphicsResource, CUresult, CUstream};
use cudarc::driver::{CudaContext, CudaStream};

use super::layout::Copy2d;

const GL_TEXTURE_2D: u32 = 0x0DE1;
/// `CU_GRAPHICS_REGISTER_FLAGS_READ_ONLY`: CUDA only reads the texture, GL may keep writing it.
const REGISTER_READ_ONLY: c_uint = 0x01;

/// `CUresult cuGraphicsGLRegisterImage(CUgraphicsResource*, GLuint image, GLenum target, unsigned int flags)`.
type RegisterImage = unsafe extern "C" fn(*mut CUgraphicsResource, u32, u32, c_uint) -> CUresult;

/// The entry points cudarc lacks, from libcuda.so.1.
pub struct GlEntryPoints {
    register_image: RegisterImage,
    /// Keeps the functions above loaded.
    _lib: libloading::Library,
}

impl GlEntryPoints {
    pub fn load() -> Result<GlEntryPoints, String> {
        // SAFETY: libcuda.so.1 is the NVIDIA driver's CUDA library, made to be dlopened; cudarc has
        // loaded it already when CUDA is in use, so this only takes another reference.
        let lib = unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|e| format!("libcuda.so.1: {e}"))?;
        // SAFETY: the symbol's C signature is the one `RegisterImage` declares (cudaGL.h, CUDA 3.0+).
        let register_image = unsafe { lib.get::<RegisterImage>(b"cuGraphicsGLRegisterImage\0") }
            .map(|f| *f)
            .map_err(|e| format!("libcuda.so.1 has no cuGraphicsGLRegisterImage: {e}"))?;
        Ok(GlEntryPoints { register_image, _lib: lib })
    }
}

/// A CUDA error as one line: the call and the driver's name for the code.
pub fn check(call: &str, r: CUresult) -> anyhow::Result<()> {
    if r == CUresult::CUDA_SUCCESS { Ok(()) } else { Err(anyhow::anyhow!("{call} failed: {r:?}")) }
}

/// A GL texture registered with CUDA; unregistered on drop.
pub struct Registered {
    resource: CUgraphicsResource,
    /// The context the resource belongs to, kept alive (and made current to unregister).
    ctx: Arc<CudaContext>,
}

impl Registered {
    /// Registers 2D texture `texture` of the GL context current on this thread. The CUDA context
    /// must be on the same GPU (see `render::device`), and current on this thread.
    pub fn texture(entry: &GlEntryPoints, ctx: &Arc<CudaContext>, texture: u32) -> anyhow::Result<Registered> {
        ctx.bind_to_thread().map_err(|e| anyhow::anyhow!("binding the CUDA context: {e:?}"))?;
        let mut resource: CUgraphicsResource = std::ptr::null_mut();
        // SAFETY: `resource` is a valid out-pointer; `texture` names a complete GL_TEXTURE_2D of the
        // current GL context (the caller's target), whose storage does not change while registered.
        let r = unsafe { (entry.register_image)(&mut resource, texture, GL_TEXTURE_2D, REGISTER_READ_ONLY) };
        check("cuGraphicsGLRegisterImage", r)?;
        Ok(Registered { resource, ctx: ctx.clone() })
    }

    /// Maps the texture for CUDA on `stream` until the guard drops.
    pub fn map<'a>(&'a mut self, stream: &'a CudaStream) -> anyhow::Result<Mapped<'a>> {
        let s = stream.cu_stream();
        // SAFETY: one registered, currently unmapped resource (`&mut self` rules out a second map).
        check("cuGraphicsMapResources", unsafe { sys::cuGraphicsMapResources(1, &mut self.resource, s) })?;
        let mut mapped = Mapped { resource: &mut self.resource, stream: s, array: std::ptr::null_mut() };
        // SAFETY: the resource is mapped (unmapped by `mapped`'s drop on every path from here); a
        // 2D texture has array index 0 and mip level 0.
        let r = unsafe { sys::cuGraphicsSubResourceGetMappedArray(&mut mapped.array, *mapped.resource, 0, 0) };
        check("cuGraphicsSubResourceGetMappedArray", r)?;
        Ok(mapped)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: the resource was registered by us and is not mapped (a `Mapped` borrows `self`).
        let r = unsafe { sys::cuGraphicsUnregisterResource(self.resource) };
        if r != CUresult::CUDA_SUCCESS {
            log::warn!("cuGraphicsUnregisterResource failed: {r:?}");
        }
    }
}

/// A mapped texture: its CUDA array is valid until the guard drops, which unmaps it.
pub struct Mapped<'a> {
    resource: &'a mut CUgraphicsResource,
    stream: CUstream,
    array: CUarray,
}

impl Mapped<'_> {
    /// Queues `copy` from the texture's rows (the copy's source offset and pitch are in bytes of the
    /// packed texture, whose rows are `src_pitch` bytes) to device memory at `dst` on the stream.
    pub fn copy_to_device(&self, copy: &Copy2d, dst: sys::CUdeviceptr) -> anyhow::Result<()> {
        anyhow::ensure!(
            copy.src_pitch > 0 && copy.src_offset.is_multiple_of(copy.src_pitch),
            "a copy from a CUDA array must start on a row ({copy:?})"
        );
        let params = sys::CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: copy.src_offset / copy.src_pitch,
            srcMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_ARRAY,
            srcHost: std::ptr::null(),
            srcDevice: 0,
            srcArray: self.array,
            srcPitch: 0,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            dstHost: std::ptr::null_mut(),
            dstDevice: dst + copy.dst_offset as u64,
            dstArray: std::ptr::null_mut(),
            dstPitch: copy.dst_pitch,
            WidthInBytes: copy.row_bytes,
            Height: copy.rows,
        };
        // SAFETY: the array is mapped for the guard's lifetime; the caller's `dst` allocation holds
        // the copy (`Nv12Layout` checks every copy lands inside it); the stream outlives the call.
        check("cuMemcpy2DAsync", unsafe { sys::cuMemcpy2DAsync_v2(&params, self.stream) })
    }
}

impl Drop for Mapped<'_> {
    fn drop(&mut self) {
        // SAFETY: the resource was mapped on this stream by `Registered::map` and not unmapped since.
        let r = unsafe { sys::cuGraphicsUnmapResources(1, self.resource, self.stream) };
        if r != CUresult::CUDA_SUCCESS {
            log::warn!("cuGraphicsUnmapResources failed: {r:?}");
        }
    }
}
