//! The GStreamer pipeline of one link to the node: `pipewiresrc` ! the node formats !
//! `videoconvert` ! `videoscale add-borders=true` ! I420 at the stream's size ! `appsink`, a probe
//! on `pipewiresrc`'s pad that logs the node's format and hands DMA-BUF buffers to the GPU route,
//! and the copy of a scaled sample into the rawvideo layout.

use std::sync::Arc;

use anyhow::Context;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use log::info;

use super::node::Node;
use super::{FORMAT, Memory, NODE_FORMATS, Shared, describe, gpu};
use crate::gst_util::make;

/// `pipewiresrc` linked to `node`, scaled into `width` x `height` by [`add_scaler`], its pad
/// watched by [`watch_node_pad`]. `what` names the source in logs.
pub(super) fn build(
    node: &Node,
    what: &str,
    width: u32,
    height: u32,
    shared: &Arc<Shared>,
    gpu: &Arc<gpu::GpuRoute>,
) -> anyhow::Result<(gst::Pipeline, gst_app::AppSink)> {
    let src = make("pipewiresrc", "gstreamer1.0-pipewire")?;
    src.set_property("target-object", node.target_object());
    src.set_property("client-name", "agentcast");
    // media.type lets the session manager match us with video nodes.
    src.set_property("stream-properties", gst::Structure::builder("props").field("media.type", "Video").build());
    let pipeline = gst::Pipeline::with_name("pipewire-capture");
    let appsink = add_scaler(&pipeline, &src, width, height)?;
    watch_node_pad(&src, what, width, height, shared, gpu);
    Ok((pipeline, appsink))
}

/// Logs the node's format and size once per change, and the memory type of its buffers.
fn watch_node_pad(
    src: &gst::Element,
    what: &str,
    width: u32,
    height: u32,
    shared: &Arc<Shared>,
    gpu: &Arc<gpu::GpuRoute>,
) {
    let Some(pad) = src.static_pad("src") else { return };
    let (shared, gpu, what) = (shared.clone(), gpu.clone(), what.to_string());
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER, move |pad, info| {
        match &info.data {
            Some(gst::PadProbeData::Event(ev)) => {
                if let gst::EventView::Caps(c) = ev.view()
                    && let Ok(v) = gst_video::VideoInfo::from_caps(c.caps())
                {
                    let neg = format!("{} {}x{}", v.format(), v.width(), v.height());
                    let mut s = shared.state();
                    if s.negotiated.as_deref() != Some(neg.as_str()) {
                        let how = if (v.width(), v.height()) == (width, height) {
                            "the stream's size".to_string()
                        } else {
                            format!("scaled to {width}x{height}, aspect kept with borders")
                        };
                        info!("{what}: the node sends {neg} ({how})");
                        s.negotiated = Some(neg);
                    }
                }
            }
            Some(gst::PadProbeData::Buffer(buf)) => {
                return on_buffer(&shared, &gpu, buf, pad.current_caps().as_ref());
            }
            _ => {}
        }
        gst::PadProbeReturn::Ok
    });
}

/// A buffer from the node (on its pad, `caps` the pad's): records its memory type, hands a
/// DMA-BUF to the GPU route where it can take it (dropped from the CPU branch then), and says a
/// change of memory type or DMA-BUF route in a `path:` line.
pub(super) fn on_buffer(
    shared: &Shared,
    gpu: &Arc<gpu::GpuRoute>,
    buf: &gst::Buffer,
    caps: Option<&gst::Caps>,
) -> gst::PadProbeReturn {
    let mem = Memory::of(buf);
    let routed = match (mem, caps) {
        (Some(Memory::DmaBuf), Some(caps)) => Some(match gst_video::VideoInfo::from_caps(caps) {
            // GStreamer 1.22's caps carry no DRM modifier: the driver's implicit layout.
            Ok(info) => gpu.route(buf, &info, None),
            Err(_) => gpu::Routed::Cpu("the node's caps are not raw video".into()),
        }),
        _ => None,
    };
    let mut s = shared.state();
    let mut changed = false;
    if let Some(gpu::Routed::Cpu(why)) = &routed
        && s.dmabuf.is_none()
    {
        s.dmabuf = Some(Err(why.clone()));
        changed = true;
    }
    if let Some(mem) = mem
        && s.memory != Some(mem)
    {
        s.memory = Some(mem);
        // A DMA-BUF taken by the GPU is said once its first frame is drawn.
        changed |= !(routed == Some(gpu::Routed::Gpu) && s.dmabuf.is_none());
    }
    if changed {
        info!("path: {}", describe(&shared.target, shared.width, shared.height, &s));
    }
    if routed == Some(gpu::Routed::Gpu) { gst::PadProbeReturn::Drop } else { gst::PadProbeReturn::Ok }
}

/// Adds `src ! (node formats) ! videoconvert ! videoscale add-borders=true ! I420 WxH, PAR 1/1 !
/// appsink` to `pipeline` (src included): any size in, the stream's size out, aspect kept.
fn add_scaler(
    pipeline: &gst::Pipeline,
    src: &gst::Element,
    width: u32,
    height: u32,
) -> anyhow::Result<gst_app::AppSink> {
    let formats = gst::List::new(NODE_FORMATS.iter().map(|f| f.caps_name()));
    let from_node = make("capsfilter", "gstreamer1.0-plugins-base")?;
    from_node.set_property("caps", gst::Caps::builder("video/x-raw").field("format", formats).build());
    let convert = make("videoconvert", "gstreamer1.0-plugins-base")?;
    let scale = make("videoscale", "gstreamer1.0-plugins-base")?;
    scale.set_property("add-borders", true);
    let out_caps = gst::Caps::builder("video/x-raw")
        .field("format", FORMAT.caps_name())
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let appsink = gst_app::AppSink::builder().caps(&out_caps).max_buffers(1).drop(true).sync(false).build();
    pipeline.add_many([src, &from_node, &convert, &scale, appsink.upcast_ref()])?;
    gst::Element::link_many([src, &from_node, &convert, &scale, appsink.upcast_ref()])
        .context("linking pipewiresrc ! videoconvert ! videoscale ! appsink")?;
    Ok(appsink)
}

/// Copies a mapped frame's planes, row by row (its strides may be padded), into the packed
/// rawvideo layout of [`FORMAT`].
pub(super) fn copy_planes(frame: &gst_video::VideoFrameRef<&gst::BufferRef>, out: &mut [u8]) -> anyhow::Result<()> {
    let layout = FORMAT.planes(frame.width(), frame.height());
    for (i, plane) in layout.iter().enumerate() {
        let stride = frame.plane_stride()[i] as usize;
        let data = frame.plane_data(i as u32).context("reading a plane")?;
        for row in 0..plane.rows {
            let src =
                data.get(row * stride..row * stride + plane.row_bytes).context("a plane shorter than its rows")?;
            let at = plane.offset + row * plane.stride;
            out[at..at + plane.row_bytes].copy_from_slice(src);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::State;
    use super::*;
    use crate::source::live::{Latest, Overrun};

    /// A DMA-BUF buffer on a display that cannot import (llvmpipe in CI) goes on to the CPU
    /// mapping, and the source says so with the reason; shared memory says nothing of DMA-BUF.
    /// Where the display can import (the NVIDIA driver), the source does not blame a missing
    /// extension; the hardware tests follow a real DMA-BUF there.
    #[test]
    fn dma_bufs_that_cannot_be_imported_are_mapped_and_said_so() {
        let _egl = crate::render::egl::egl_test_lock();
        gst::init().unwrap();
        let lacking = crate::render::egl::dmabuf::default_display_import_missing();
        let shared = Shared::for_tests("gamescope", 640, 360);
        let gpu = gpu::GpuRoute::new(640, 360, Arc::new(Latest::new(Overrun::Replace)), shared.clone());
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, 320, 240).build().unwrap();
        let caps = info.to_caps().unwrap();
        {
            let mut s = shared.state();
            (s.connected, s.negotiated) = (true, Some("BGRx 320x240".into()));
        }
        let plain = gst::Buffer::with_size(info.size()).unwrap();
        assert_eq!(on_buffer(&shared, &gpu, &plain, Some(&caps)), gst::PadProbeReturn::Ok);
        let said = describe("gamescope", 640, 360, &shared.state());
        assert_eq!(said, "pipewire:gamescope: BGRx 320x240 in MemPtr buffers -> i420 640x360");

        let mut dmabuf = gst::Buffer::new();
        dmabuf.get_mut().unwrap().append_memory(crate::render::egl::dmabuf::dmabuf_memory_for_tests(info.size()));
        let ret = on_buffer(&shared, &gpu, &dmabuf, Some(&caps));
        gpu.close();
        let s = shared.state().clone();
        assert_eq!(s.memory, Some(Memory::DmaBuf));
        let said = describe("gamescope", 640, 360, &s);
        if lacking.is_empty() {
            assert!(!said.contains("which this EGL display"), "the display lists every import extension, yet: {said}");
            return;
        }
        assert_eq!(ret, gst::PadProbeReturn::Ok, "the CPU branch gets the buffer");
        assert!(
            said.starts_with("pipewire:gamescope: BGRx 320x240 in DmaBuf buffers -> i420 640x360, DMA-BUF read through a CPU mapping (")
                && lacking.iter().all(|e| said.contains(e)),
            "want {lacking:?} named: {said}"
        );
        let imported = State { dmabuf: Some(Ok(())), ..s };
        assert!(describe("gamescope", 640, 360, &imported).ends_with(
            "in DmaBuf buffers -> i420 640x360, DMA-BUF imported as EGL images (letterboxed and packed to I420 on the GPU)"
        ));
    }

    /// A node that changes size mid-stream (new caps on the same pad): the output keeps its size,
    /// and both pictures are scaled into it with borders. PipeWire 0.3.65's pipewiresink cannot do
    /// this (see tests/pipewire.rs), so an appsrc stands in for pipewiresrc here.
    #[test]
    fn a_size_change_mid_stream_is_scaled_into_the_same_output() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
        let appsink = add_scaler(&pipeline, src.upcast_ref(), 640, 360).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        // BGRx frames of one grey level: 4:3 in a 16:9 output leaves 80-pixel borders.
        let mut luma_rows = Vec::new();
        for (i, (w, h, grey)) in [(320u32, 240u32, 200u8), (640, 480, 100)].into_iter().enumerate() {
            let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgrx, w, h).build().unwrap();
            src.set_caps(Some(&info.to_caps().unwrap()));
            let mut buffer = gst::Buffer::from_mut_slice(vec![grey; info.size()]);
            buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(i as u64 * 33));
            src.push_buffer(buffer).unwrap();
            let sample = appsink.try_pull_sample(gst::ClockTime::from_seconds(10)).expect("a scaled frame");
            let out = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            assert_eq!((out.format(), out.width(), out.height()), (gst_video::VideoFormat::I420, 640, 360));
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &out).unwrap();
            let mut packed = vec![0u8; FORMAT.frame_bytes(640, 360)];
            copy_planes(&frame, &mut packed).unwrap();
            luma_rows.push(packed[180 * 640..181 * 640].to_vec());
        }
        pipeline.set_state(gst::State::Null).unwrap();
        for (row, grey) in luma_rows.iter().zip([200u8, 100]) {
            // Limited-range luma of that grey in the middle, black (16) in the borders.
            let want = 16 + (u32::from(grey) * 219 / 255) as u8;
            assert!(row[320].abs_diff(want) <= 2, "centre {} for grey {grey}, want {want}", row[320]);
            assert!(row[40].abs_diff(16) <= 2 && row[600].abs_diff(16) <= 2, "borders {} {}", row[40], row[600]);
            assert!(row[90].abs_diff(want) <= 2 && row[550].abs_diff(want) <= 2, "picture spans 80..560");
        }
    }

    #[test]
    fn padded_strides_are_packed_into_the_rawvideo_layout() {
        gst::init().unwrap();
        let (w, h) = (6u32, 4u32);
        // A buffer with each row padded to 16 bytes, as a pool may hand out.
        let strides = [16i32, 16, 16];
        let offsets = [0usize, 16 * 4, 16 * 4 + 16 * 2];
        let padded = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
            .stride(&strides)
            .offset(&offsets)
            .build()
            .unwrap();
        let mut bytes = vec![0u8; offsets[2] + 16 * 2];
        for (plane, (&off, rows)) in offsets.iter().zip([4usize, 2, 2]).enumerate() {
            for r in 0..rows {
                for c in 0..16 {
                    bytes[off + r * 16 + c] = (plane * 100 + r * 10 + c) as u8;
                }
            }
        }
        let buffer = gst::Buffer::from_mut_slice(bytes);
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &padded).unwrap();
        let mut out = vec![0u8; FORMAT.frame_bytes(w, h)];
        copy_planes(&frame, &mut out).unwrap();
        assert_eq!(out.len(), 6 * 4 + 2 * 3 * 2);
        assert_eq!(&out[..6], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(&out[6..12], &[10, 11, 12, 13, 14, 15]);
        assert_eq!(&out[24..27], &[100, 101, 102]);
        assert_eq!(&out[27..30], &[110, 111, 112]);
        assert_eq!(&out[30..33], &[200, 201, 202]);
    }
}
