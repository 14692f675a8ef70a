//! GStreamer helpers every stage shares: initialising GStreamer, creating an element with an error
//! that names its package, whether an element is installed, one line for a bus error, raw-video caps,
//! and copying a rawvideo frame into GStreamer's plane layout. The bottom layer: it knows no stage.

use anyhow::Context as _;
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::exit::{Exit, ExitExt};
use crate::frame::PlaneLayout;

/// Initialises GStreamer once; a failure means the libraries are broken or missing.
pub fn init() -> anyhow::Result<()> {
    gst::init().context("initialising GStreamer").exit(Exit::Unavailable)
}

/// Whether the element factory `name` is in GStreamer's registry.
pub fn element_installed(name: &str) -> bool {
    gst::ElementFactory::find(name).is_some()
}

/// Creates an element; the error names the Debian package that provides it (exit 69).
pub fn make(factory: &str, package: &str) -> anyhow::Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .with_context(|| format!("creating GStreamer element {factory} (is {package} installed?)"))
        .exit(Exit::Unavailable)
}

/// One line for a bus error: `element: message (debug)`.
pub fn bus_error_line(msg: &gst::Message, e: &gst::message::Error) -> String {
    let src = msg.src().map(|s| s.name().to_string()).unwrap_or_else(|| "pipeline".into());
    let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
    let debug = debug.lines().next().unwrap_or_default().to_string();
    if debug.is_empty() { format!("{src}: {}", e.error()) } else { format!("{src}: {} ({debug})", e.error()) }
}

/// Progressive raw-video caps with square pixels: `format` (GStreamer's name), size, frame rate and
/// colorimetry (grey has no colour matrix, so none is named for `GRAY8`).
pub fn caps_for(format: &str, width: u32, height: u32, fps: u32, colorimetry: &str) -> gst::Caps {
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .field("interlace-mode", "progressive");
    if format == "GRAY8" { caps.build() } else { caps.field("colorimetry", colorimetry).build() }
}

/// Copies a rawvideo frame (`planes`) into a buffer laid out at `offsets`/`strides` (GStreamer's
/// layout), row by row where the strides differ and in one copy where they do not.
pub fn copy_planes(src: &[u8], planes: &[PlaneLayout], dst: &mut [u8], offsets: &[usize], strides: &[i32]) {
    for (p, (&offset, &stride)) in planes.iter().zip(offsets.iter().zip(strides)) {
        let stride = stride as usize;
        if stride == p.stride {
            let n = p.stride * p.rows;
            dst[offset..offset + n].copy_from_slice(&src[p.offset..p.offset + n]);
            continue;
        }
        for row in 0..p.rows {
            let from = p.offset + row * p.stride;
            let to = offset + row * stride;
            dst[to..to + p.row_bytes].copy_from_slice(&src[from..from + p.row_bytes]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PixFmt;
    use gstreamer_video as gst_video;

    #[test]
    fn host_frames_are_copied_into_gstreamers_padded_rows() {
        init().unwrap();
        // RGB rows of 3 x 6 = 18 bytes are padded to 20 in GStreamer's layout.
        let caps = caps_for("RGB", 6, 2, 30, "sRGB");
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        assert_eq!(info.stride()[0], 20);
        let src: Vec<u8> = (0..36).collect();
        let mut dst = vec![0xee; info.size()];
        copy_planes(&src, &PixFmt::Rgb24.planes(6, 2), &mut dst, info.offset(), info.stride());
        assert_eq!(&dst[..18], &src[..18]);
        assert_eq!(&dst[20..38], &src[18..]);
        // I420 at an odd-ish width: every plane lands at GStreamer's offsets.
        let caps = caps_for("I420", 34, 4, 30, "bt709");
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let planes = PixFmt::I420.planes(34, 4);
        let src: Vec<u8> = (0..PixFmt::I420.frame_bytes(34, 4)).map(|i| i as u8).collect();
        let mut dst = vec![0; info.size()];
        copy_planes(&src, &planes, &mut dst, info.offset(), info.stride());
        for (p, (&off, &stride)) in planes.iter().zip(info.offset().iter().zip(info.stride())) {
            for row in 0..p.rows {
                let (a, b) = (p.offset + row * p.stride, off + row * stride as usize);
                assert_eq!(&dst[b..b + p.row_bytes], &src[a..a + p.row_bytes], "row {row}");
            }
        }
    }
}
