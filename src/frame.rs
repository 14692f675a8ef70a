//! What a frame is, whichever source made it: its stream index and timestamp, its pixel format,
//! and where its pixels live (host planes, a GL texture, CUDA memory).
//!
//! Host frames use ffmpeg's `rawvideo` layout: planes one after the other, rows tightly packed
//! (stride = width x bytes per pixel), no header. [`PixFmt::planes`] gives that layout, and the
//! shared-memory ring and the Python package use the same one.

use std::fmt;
use std::time::Instant;

use gstreamer as gst;

/// A pixel format of frames handed in by an agent (`--pix-fmt`), named as ffmpeg names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixFmt {
    Rgb24,
    Bgr24,
    Rgba,
    Bgra,
    /// RGB with an unused fourth byte (ffmpeg `rgb0`, GStreamer `RGBx`).
    Rgb0,
    /// BGR with an unused fourth byte (ffmpeg `bgr0`, GStreamer `BGRx`).
    Bgr0,
    /// 8-bit luma only.
    Gray,
    /// 4:2:0, a luma plane then interleaved UV.
    Nv12,
    /// 4:2:0, three planes Y, U, V (ffmpeg `yuv420p`).
    I420,
}

/// Where one plane sits in a host frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    pub offset: usize,
    pub stride: usize,
    pub rows: usize,
    /// Bytes of pixels in a row (at most `stride`).
    pub row_bytes: usize,
}

impl PixFmt {
    /// Every format, in `--help` order.
    pub const ALL: [PixFmt; 9] = [
        PixFmt::Rgb24,
        PixFmt::Bgr24,
        PixFmt::Rgba,
        PixFmt::Bgra,
        PixFmt::Rgb0,
        PixFmt::Bgr0,
        PixFmt::Gray,
        PixFmt::Nv12,
        PixFmt::I420,
    ];

    /// ffmpeg's name (`-pix_fmt`); `i420` is ffmpeg's `yuv420p`, which is accepted too.
    pub fn name(self) -> &'static str {
        match self {
            PixFmt::Rgb24 => "rgb24",
            PixFmt::Bgr24 => "bgr24",
            PixFmt::Rgba => "rgba",
            PixFmt::Bgra => "bgra",
            PixFmt::Rgb0 => "rgb0",
            PixFmt::Bgr0 => "bgr0",
            PixFmt::Gray => "gray",
            PixFmt::Nv12 => "nv12",
            PixFmt::I420 => "i420",
        }
    }

    pub fn parse(s: &str) -> Option<PixFmt> {
        let s = s.trim().to_ascii_lowercase();
        if s == "yuv420p" {
            return Some(PixFmt::I420);
        }
        PixFmt::ALL.into_iter().find(|f| f.name() == s)
    }

    /// GStreamer's caps `format` name.
    pub fn caps_name(self) -> &'static str {
        match self {
            PixFmt::Rgb24 => "RGB",
            PixFmt::Bgr24 => "BGR",
            PixFmt::Rgba => "RGBA",
            PixFmt::Bgra => "BGRA",
            PixFmt::Rgb0 => "RGBx",
            PixFmt::Bgr0 => "BGRx",
            PixFmt::Gray => "GRAY8",
            PixFmt::Nv12 => "NV12",
            PixFmt::I420 => "I420",
        }
    }

    /// The format with this GStreamer caps name.
    pub fn from_caps_name(s: &str) -> Option<PixFmt> {
        PixFmt::ALL.into_iter().find(|f| f.caps_name() == s)
    }

    /// The number stored in the shared-memory header (stable: never renumber).
    pub fn code(self) -> u32 {
        match self {
            PixFmt::Rgb24 => 1,
            PixFmt::Bgr24 => 2,
            PixFmt::Rgba => 3,
            PixFmt::Bgra => 4,
            PixFmt::Rgb0 => 5,
            PixFmt::Bgr0 => 6,
            PixFmt::Gray => 7,
            PixFmt::Nv12 => 8,
            PixFmt::I420 => 9,
        }
    }

    pub fn from_code(code: u32) -> Option<PixFmt> {
        PixFmt::ALL.into_iter().find(|f| f.code() == code)
    }

    /// 4:2:0 formats need an even width and height.
    pub fn subsampled(self) -> bool {
        matches!(self, PixFmt::Nv12 | PixFmt::I420)
    }

    /// Packed formats: bytes per pixel; planar ones: bytes per luma sample.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixFmt::Rgb24 | PixFmt::Bgr24 => 3,
            PixFmt::Rgba | PixFmt::Bgra | PixFmt::Rgb0 | PixFmt::Bgr0 => 4,
            PixFmt::Gray | PixFmt::Nv12 | PixFmt::I420 => 1,
        }
    }

    /// The rawvideo layout of a `width` x `height` frame: planes back to back, rows packed.
    pub fn planes(self, width: u32, height: u32) -> Vec<PlaneLayout> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let plane =
            |offset: usize, row_bytes: usize, rows: usize| PlaneLayout { offset, stride: row_bytes, rows, row_bytes };
        match self {
            PixFmt::Nv12 => vec![plane(0, w, h), plane(w * h, cw * 2, ch)],
            PixFmt::I420 => vec![plane(0, w, h), plane(w * h, cw, ch), plane(w * h + cw * ch, cw, ch)],
            _ => vec![plane(0, w * self.bytes_per_pixel(), h)],
        }
    }

    /// Bytes of one `width` x `height` frame in the rawvideo layout.
    pub fn frame_bytes(self, width: u32, height: u32) -> usize {
        self.planes(width, height).iter().map(|p| p.stride * p.rows).sum()
    }

    /// A list for messages: "rgb24, bgr24, ...".
    pub fn names() -> String {
        PixFmt::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for PixFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PixFmt {
    type Err = String;
    fn from_str(s: &str) -> Result<PixFmt, String> {
        PixFmt::parse(s).ok_or_else(|| format!("unknown pixel format '{s}' (one of {})", PixFmt::names()))
    }
}

/// A whole frame in host memory, in the rawvideo layout of its format.
#[derive(Debug, Clone)]
pub struct HostFrame {
    pub data: Vec<u8>,
    /// When its last byte arrived from the agent.
    pub arrived: Instant,
}

/// Raw picture layouts an encoder can take (what the converter must produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    I420,
    Nv12,
}

impl RawFormat {
    /// GStreamer caps `format=` name.
    pub fn caps_name(self) -> &'static str {
        match self {
            RawFormat::I420 => "I420",
            RawFormat::Nv12 => "NV12",
        }
    }
}

/// A frame offered to the encoder.
pub enum Frame<'a> {
    /// Read back to the host, in the input layout.
    Bytes(&'a [u8]),
    /// NV12 in CUDA memory (the zero-copy path).
    Cuda(gst::Buffer),
    /// An agent's frame in the rawvideo layout of the `Input::Host` format (copied in).
    Host(&'a [u8]),
    /// An agent's frame already in a buffer laid out as GStreamer lays it out (taken as it is; see
    /// `encode::pipeline::Encoder::takes_host_buffers`).
    Buffer(gst::Buffer),
}

impl Frame<'_> {
    /// The bytes of a frame read back to the host.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Bytes(b) | Frame::Host(b) => Some(b),
            Frame::Cuda(_) | Frame::Buffer(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ffmpeg_spellings_parse() {
        for f in PixFmt::ALL {
            assert_eq!(PixFmt::parse(f.name()), Some(f));
            assert_eq!(PixFmt::from_code(f.code()), Some(f));
            assert_eq!(PixFmt::from_caps_name(f.caps_name()), Some(f));
        }
        assert_eq!(PixFmt::parse("yuv420p"), Some(PixFmt::I420));
        assert_eq!(PixFmt::parse("RGB24"), Some(PixFmt::Rgb24));
        assert!("yuv444p".parse::<PixFmt>().unwrap_err().contains("rgb24, bgr24"));
    }

    #[test]
    fn frame_sizes_match_ffmpeg_rawvideo() {
        assert_eq!(PixFmt::Rgb24.frame_bytes(1280, 720), 1280 * 720 * 3);
        assert_eq!(PixFmt::Rgb0.frame_bytes(1280, 720), 1280 * 720 * 4);
        assert_eq!(PixFmt::Gray.frame_bytes(64, 48), 64 * 48);
        assert_eq!(PixFmt::I420.frame_bytes(1280, 720), 1280 * 720 * 3 / 2);
        assert_eq!(PixFmt::Nv12.frame_bytes(1280, 720), 1280 * 720 * 3 / 2);
        let p = PixFmt::I420.planes(64, 48);
        assert_eq!(p[1], PlaneLayout { offset: 64 * 48, stride: 32, rows: 24, row_bytes: 32 });
        assert_eq!(p[2].offset, 64 * 48 + 32 * 24);
    }
}
