//! The zero-copy frame path: the shader-packed NV12 texture, registered with CUDA once, is copied
//! device-to-device into a GstCudaMemory buffer per frame. Nothing crosses to the host.
//!
//! One CUDA context (the primary context of the `--gpu` device, through cudarc) is shared by the
//! interop, the buffer pool and the encoder: it is wrapped as a GstCudaContext and handed to the
//! pipeline as its `gst.cuda.context` (see [`ZeroCopy::gst_context`]).

use std::sync::Arc;

use anyhow::Context as _;
use cudarc::driver::{CudaContext, CudaStream};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

use super::gst::{CAPS_FEATURE, GstCuda};
use super::interop::{GlEntryPoints, Registered};
use super::layout::Nv12Layout;

/// Buffers the pool keeps ready (the encoder's queue holds a few in flight).
const POOL_MIN_BUFFERS: u32 = 4;

/// Caps of the frames handed to the encoder: NV12 in CUDA memory.
pub fn caps(width: u32, height: u32, fps: u32) -> gst::Caps {
    let mut caps = crate::gst_util::caps_for("NV12", width, height, fps, "bt709");
    caps.make_mut().set_features(0, Some(gst::CapsFeatures::new([CAPS_FEATURE])));
    caps
}

/// The CUDA side of the zero-copy path, for one stream.
pub struct ZeroCopy {
    // Field order is drop order: the registration and the pool go before the stream and context.
    registered: Registered,
    pool: gst::BufferPool,
    gst_context: gst::Context,
    gst_cuda: &'static GstCuda,
    /// The wrapped GstCudaContext; must not outlive `ctx`.
    _gst_cuda_ctx: gst::Object,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    width: u32,
    height: u32,
}

impl ZeroCopy {
    /// Sets up interop for `texture`, the packed NV12 target (`width / 4` x `height * 3 / 2` RGBA8
    /// texels) of the GL context current on this thread, on CUDA device `ordinal`.
    pub fn new(ordinal: u32, texture: u32, width: u32, height: u32, fps: u32) -> anyhow::Result<ZeroCopy> {
        Nv12Layout::new(width, height, 1).map_err(anyhow::Error::msg)?;
        let gst_cuda = GstCuda::get().map_err(anyhow::Error::msg)?;
        let entry = gl_entry_points().map_err(anyhow::Error::msg)?;
        let ctx = CudaContext::new(ordinal as usize).map_err(|e| anyhow::anyhow!("CUDA device {ordinal}: {e:?}"))?;
        let stream = ctx.new_stream().map_err(|e| anyhow::anyhow!("a CUDA stream: {e:?}"))?;
        let registered = Registered::texture(entry, &ctx, texture).context("registering the GL texture with CUDA")?;
        let gst_cuda_ctx = gst_cuda.wrap_context(&ctx)?;
        let gst_context = gst_cuda.gst_context(&gst_cuda_ctx)?;
        let pool = gst_cuda.buffer_pool(&gst_cuda_ctx, &caps(width, height, fps), POOL_MIN_BUFFERS)?;
        Ok(ZeroCopy {
            registered,
            pool,
            gst_context,
            gst_cuda,
            _gst_cuda_ctx: gst_cuda_ctx,
            stream,
            ctx,
            width,
            height,
        })
    }

    /// The `gst.cuda.context` to set on the encoder's pipeline, so nvcodec uses our context.
    pub fn gst_context(&self) -> &gst::Context {
        &self.gst_context
    }

    /// Copies the texture's current content into a new CUDA-memory buffer. GL must have been
    /// flushed after drawing it (see `interop` for the synchronisation).
    pub fn copy_frame(&mut self) -> anyhow::Result<gst::Buffer> {
        self.ctx.bind_to_thread().map_err(|e| anyhow::anyhow!("binding the CUDA context: {e:?}"))?;
        let mut buffer = self.pool.acquire_buffer(None).map_err(|e| anyhow::anyhow!("CUDA buffer pool: {e}"))?;
        {
            let b = buffer.get_mut().context("a pooled buffer is shared")?;
            let meta = b.meta::<gst_video::VideoMeta>().context("the CUDA pool's buffer has no video meta")?;
            let (strides, offsets) = (meta.stride(), meta.offset());
            anyhow::ensure!(strides.len() >= 2 && offsets.len() >= 2, "an NV12 video meta with one plane");
            let (pitches, uv_offset) = ([strides[0] as usize, strides[1] as usize], offsets[1]);
            let device = self.gst_cuda.map_device(b)?;
            // Checked against the mapped allocation itself: every copy must land inside it.
            let layout = Nv12Layout::with_planes(self.width, self.height, pitches, uv_offset, device.size())
                .map_err(|e| anyhow::anyhow!("CUDA buffer layout: {e}"))?;
            let mapped = self.registered.map(&self.stream)?;
            for copy in layout.copies_from_packed() {
                mapped.copy_to_device(&copy, device.device_ptr())?;
            }
            drop(mapped);
            self.stream.synchronize().map_err(|e| anyhow::anyhow!("CUDA stream: {e:?}"))?;
        }
        Ok(buffer)
    }
}

pub(super) fn gl_entry_points() -> Result<&'static GlEntryPoints, String> {
    static LOADED: std::sync::OnceLock<Result<GlEntryPoints, String>> = std::sync::OnceLock::new();
    LOADED.get_or_init(GlEntryPoints::load).as_ref().map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_encoders_caps_are_nv12_in_cuda_memory() {
        crate::gst_util::init().unwrap();
        assert_eq!(
            super::caps(64, 32, 30).to_string(),
            "video/x-raw(memory:CUDAMemory), format=(string)NV12, width=(int)64, height=(int)32, \
             framerate=(fraction)30/1, pixel-aspect-ratio=(fraction)1/1, interlace-mode=(string)progressive, \
             colorimetry=(string)bt709"
        );
    }
}
