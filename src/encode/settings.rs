//! The one encoder settings table: our settings (CBR bitrate, GOP, VBV, QP bound, no B-frames, one
//! slice per picture, low-latency tuning, profile) mapped onto each GStreamer element's properties.
//!
//! Pure data, so the table is unit-tested without GStreamer. `pipeline.rs` applies it, checking each
//! property against the element and logging any the installed version lacks.

use std::fmt;

/// An H.264 encoder backend. The order of [`Backend::AUTO_ORDER`] is the order `--encoder auto`
/// tries them in; hardware backends (NVENC, VA-API) slot in ahead of x264 here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    X264,
    OpenH264,
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

impl Backend {
    pub const AUTO_ORDER: [Backend; 2] = [Backend::X264, Backend::OpenH264];

    /// Our name for it, as used by `--encoder`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::X264 => "x264",
            Backend::OpenH264 => "openh264",
        }
    }

    /// The GStreamer element factory.
    pub fn element(self) -> &'static str {
        match self {
            Backend::X264 => "x264enc",
            Backend::OpenH264 => "openh264enc",
        }
    }

    /// The Debian package that ships the element.
    pub fn package(self) -> &'static str {
        match self {
            Backend::X264 => "gstreamer1.0-plugins-ugly",
            Backend::OpenH264 => "gstreamer1.0-plugins-bad",
        }
    }

    /// Input layouts the element accepts, preferred first.
    pub fn raw_formats(self) -> &'static [RawFormat] {
        match self {
            // x264 works in NV12 internally; I420 costs it a repack.
            Backend::X264 => &[RawFormat::Nv12, RawFormat::I420],
            Backend::OpenH264 => &[RawFormat::I420],
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.element())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    ConstrainedBaseline,
    Main,
    High,
}

impl Profile {
    /// The `profile=` value in `video/x-h264` caps.
    pub fn caps_name(self) -> &'static str {
        match self {
            Profile::ConstrainedBaseline => "constrained-baseline",
            Profile::Main => "main",
            Profile::High => "high",
        }
    }
}

/// The encoder-independent settings. VBV is expressed in frames so it scales with the frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub bitrate_kbps: u32,
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    pub qp_max: u32,
    pub profile: Profile,
    /// VBV (coded picture buffer) size in frames of the target bitrate.
    pub vbv_frames: u32,
}

/// About 1-2 frames of buffer: a frame can exceed its share of the bitrate a little (an IDR), but
/// the decoder never has to wait more than two frame intervals for a picture.
pub const DEFAULT_VBV_FRAMES: u32 = 2;

impl EncoderSettings {
    pub fn new(bitrate_kbps: u32, fps: u32, gop: u32, qp_max: u32, profile: Profile) -> Self {
        Self { bitrate_kbps, fps, gop, qp_max, profile, vbv_frames: DEFAULT_VBV_FRAMES }
    }

    /// VBV size in milliseconds, rounded up.
    pub fn vbv_ms(&self) -> u32 {
        (self.vbv_frames * 1000).div_ceil(self.fps)
    }
}

/// One property assignment, in the string form GStreamer deserialises (`gst-launch` syntax), so
/// enums and flags are set by nick.
pub type Prop = (&'static str, String);

/// The table: element properties for a backend.
pub fn properties(backend: Backend, s: &EncoderSettings) -> Vec<Prop> {
    let p = |name: &'static str, v: &dyn fmt::Display| (name, v.to_string());
    match backend {
        Backend::X264 => vec![
            p("pass", &"cbr"),
            p("bitrate", &s.bitrate_kbps),
            p("vbv-buf-capacity", &s.vbv_ms()),
            p("key-int-max", &s.gop),
            p("bframes", &0),
            p("b-adapt", &false),
            p("speed-preset", &"superfast"),
            // zerolatency: no lookahead, no frame delay. It also turns on sliced threads, which
            // writes several slices per picture on small machines and breaks go2rtc, so the
            // option-string below turns them back off after the tune is applied.
            p("tune", &"zerolatency"),
            p("sliced-threads", &false),
            p("qp-max", &s.qp_max),
            p("byte-stream", &true),
            p("aud", &false),
            p("insert-vui", &true),
            // Applied last by x264 itself: one slice, no sliced threads, HRD filler so the stream
            // really is constant bitrate, and no scene-cut keyframes so IDRs come every --gop frames.
            p("option-string", &"sliced-threads=0:slices=1:nal-hrd=cbr:filler=1:scenecut=0"),
        ],
        Backend::OpenH264 => vec![
            p("rate-control", &"bitrate"),
            p("bitrate", &(s.bitrate_kbps * 1000)),
            p("max-bitrate", &(s.bitrate_kbps * 1000)),
            p("gop-size", &s.gop),
            p("slice-mode", &"n-slices"),
            p("num-slices", &1),
            p("complexity", &"high"),
            p("usage-type", &"camera"),
            p("enable-frame-skip", &false),
            p("scene-change-detection", &false),
            p("qp-max", &s.qp_max),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(props: &[Prop], name: &str) -> String {
        props.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    fn settings() -> EncoderSettings {
        EncoderSettings::new(4000, 30, 30, 34, Profile::High)
    }

    #[test]
    fn x264_is_cbr_single_slice_without_b_frames() {
        let p = properties(Backend::X264, &settings());
        assert_eq!(get(&p, "pass"), "cbr");
        assert_eq!(get(&p, "bitrate"), "4000");
        assert_eq!(get(&p, "bframes"), "0");
        assert_eq!(get(&p, "key-int-max"), "30");
        assert_eq!(get(&p, "sliced-threads"), "false");
        assert!(get(&p, "option-string").contains("sliced-threads=0"));
        assert!(get(&p, "option-string").contains("slices=1"));
        assert_eq!(get(&p, "vbv-buf-capacity"), "67");
        assert_eq!(get(&p, "qp-max"), "34");
    }

    #[test]
    fn openh264_uses_bits_per_second_and_one_slice() {
        let p = properties(Backend::OpenH264, &settings());
        assert_eq!(get(&p, "bitrate"), "4000000");
        assert_eq!(get(&p, "rate-control"), "bitrate");
        assert_eq!(get(&p, "slice-mode"), "n-slices");
        assert_eq!(get(&p, "num-slices"), "1");
        assert_eq!(get(&p, "gop-size"), "30");
    }

    #[test]
    fn every_backend_sets_bitrate_gop_and_qp_bound() {
        for b in Backend::AUTO_ORDER {
            let p = properties(b, &settings());
            for needed in ["bitrate", "qp-max"] {
                assert!(!get(&p, needed).is_empty(), "{b} lacks {needed}");
            }
            assert!(!b.raw_formats().is_empty());
            let names: Vec<_> = p.iter().map(|(n, _)| n).collect();
            let mut dedup = names.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(names.len(), dedup.len(), "{b} sets a property twice");
        }
    }

    #[test]
    fn vbv_scales_with_fps() {
        let mut s = settings();
        s.fps = 60;
        assert_eq!(s.vbv_ms(), 34);
    }
}
