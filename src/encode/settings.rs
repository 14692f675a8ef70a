//! The one encoder settings table: our settings (CBR bitrate, GOP, VBV, QP bound, no B-frames, one
//! slice per picture, low-latency tuning, profile) mapped onto each GStreamer element's properties.
//!
//! Pure data, so the table is unit-tested without GStreamer. `pipeline.rs` applies it, checking each
//! property against the element and logging any the installed version lacks.

use std::fmt;

use crate::frame::RawFormat;

/// An H.264 encoder element. The order of [`Backend::AUTO_ORDER`] is the order `--encoder auto`
/// tries them in: NVENC, VA-API, x264, openh264. Each family (`--encoder nvenc`, ...) may have
/// several elements; the newer one is tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// NVENC through GStreamer's CUDA-based encoder (GStreamer 1.22+).
    NvencCuda,
    /// NVENC through the older nvh264enc.
    Nvenc,
    /// VA-API through the `va` plugin (GStreamer 1.22+).
    Va,
    /// VA-API through gstreamer-vaapi.
    Vaapi,
    X264,
    OpenH264,
}

impl Backend {
    pub const AUTO_ORDER: [Backend; 6] =
        [Backend::NvencCuda, Backend::Nvenc, Backend::Va, Backend::Vaapi, Backend::X264, Backend::OpenH264];

    /// The family's name, as used by `--encoder`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::NvencCuda | Backend::Nvenc => "nvenc",
            Backend::Va | Backend::Vaapi => "vaapi",
            Backend::X264 => "x264",
            Backend::OpenH264 => "openh264",
        }
    }

    /// The GStreamer element factory.
    pub fn element(self) -> &'static str {
        match self {
            Backend::NvencCuda => "nvcudah264enc",
            Backend::Nvenc => "nvh264enc",
            Backend::Va => "vah264enc",
            Backend::Vaapi => "vaapih264enc",
            Backend::X264 => "x264enc",
            Backend::OpenH264 => "openh264enc",
        }
    }

    /// What to install for the element (the hardware ones register only where the driver works).
    pub fn package(self) -> &'static str {
        match self {
            Backend::NvencCuda | Backend::Nvenc => "gstreamer1.0-plugins-bad and an NVIDIA driver with NVENC",
            Backend::Va => "gstreamer1.0-plugins-bad and a VA-API driver with H.264 encode",
            Backend::Vaapi => "gstreamer1.0-vaapi and a VA-API driver with H.264 encode",
            Backend::X264 => "gstreamer1.0-plugins-ugly",
            Backend::OpenH264 => "gstreamer1.0-plugins-bad",
        }
    }

    /// NVENC (either element): takes CUDA memory, opens per GPU, and is bound by session leases.
    pub fn is_nvenc(self) -> bool {
        matches!(self, Backend::NvencCuda | Backend::Nvenc)
    }

    /// Whether it encodes on a GPU (and so may be missing, full or hung at run time).
    pub fn hardware(self) -> bool {
        matches!(self, Backend::NvencCuda | Backend::Nvenc | Backend::Va | Backend::Vaapi)
    }

    /// Input layouts the element accepts, preferred first.
    pub fn raw_formats(self) -> &'static [RawFormat] {
        match self {
            // x264 and the hardware encoders work in NV12 internally.
            Backend::X264 | Backend::NvencCuda | Backend::Nvenc | Backend::Vaapi => &[RawFormat::Nv12, RawFormat::I420],
            Backend::Va => &[RawFormat::Nv12],
            Backend::OpenH264 => &[RawFormat::I420],
        }
    }

    /// The elements of a family, in the order they are tried.
    pub fn family(name: &str) -> Vec<Backend> {
        Backend::AUTO_ORDER.into_iter().filter(|b| b.name() == name).collect()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.element())
    }
}

/// The H.264 profile (`--profile`; the doc comments are its `--help` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Constrained baseline: every decoder, including WebRTC's OpenH264.
    #[value(name = "baseline")]
    ConstrainedBaseline,
    Main,
    /// Best quality per bit; all browsers decode it through MSE.
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

    /// VBV size in kbit, rounded up.
    pub fn vbv_kbits(&self) -> u32 {
        (self.bitrate_kbps * self.vbv_frames).div_ceil(self.fps)
    }
}

/// One property assignment, in the string form GStreamer deserialises (`gst-launch` syntax), so
/// enums and flags are set by nick.
pub type Prop = (&'static str, String);

/// The table: element properties for a backend.
pub fn properties(backend: Backend, s: &EncoderSettings) -> Vec<Prop> {
    let p = |name: &'static str, v: &dyn fmt::Display| (name, v.to_string());
    match backend {
        // NVENC writes one slice per picture unless told otherwise; neither element has a slice
        // property to set.
        Backend::NvencCuda => vec![
            p("preset", &"low-latency-hq"),
            p("rc-mode", &"cbr"),
            p("bitrate", &s.bitrate_kbps),
            p("max-bitrate", &s.bitrate_kbps),
            p("vbv-buffer-size", &s.vbv_kbits()),
            p("gop-size", &s.gop),
            p("strict-gop", &true),
            p("b-frames", &0),
            p("b-adapt", &false),
            p("rc-lookahead", &0),
            p("zero-reorder-delay", &true),
            p("max-qp-i", &s.qp_max),
            p("max-qp-p", &s.qp_max),
            p("aud", &false),
            p("repeat-sequence-header", &true),
        ],
        Backend::Nvenc => vec![
            p("preset", &"low-latency-hq"),
            p("rc-mode", &"cbr"),
            p("bitrate", &s.bitrate_kbps),
            p("max-bitrate", &s.bitrate_kbps),
            p("vbv-buffer-size", &s.vbv_kbits()),
            p("gop-size", &s.gop),
            p("strict-gop", &true),
            p("bframes", &0),
            p("b-adapt", &false),
            p("rc-lookahead", &0),
            p("zerolatency", &true),
            p("qp-max", &s.qp_max),
            p("aud", &false),
        ],
        Backend::Va => vec![
            p("rate-control", &"cbr"),
            p("bitrate", &s.bitrate_kbps),
            p("cpb-size", &s.vbv_kbits()),
            p("key-int-max", &s.gop),
            p("b-frames", &0),
            p("num-slices", &1),
            p("max-qp", &s.qp_max),
            p("aud", &false),
        ],
        Backend::Vaapi => vec![
            p("rate-control", &"cbr"),
            p("bitrate", &s.bitrate_kbps),
            p("cpb-length", &s.vbv_ms()),
            p("keyframe-period", &s.gop),
            p("max-bframes", &0),
            p("num-slices", &1),
            p("max-qp", &s.qp_max),
            p("aud", &false),
        ],
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
            // One encoding thread: x264's frame threads each hold a frame back. Measured on the
            // 2-core reference machine at 720p30: encoder latency p50 13 ms with 1 thread against
            // 71 ms with the automatic 3, at the same unpaced throughput (README, Performance).
            // `--encoder-opt threads=0` trades that latency for throughput on big machines.
            p("threads", &1),
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

/// Why an `--encoder-opt` must be refused: it would break go2rtc's byte rules (B-frames, several
/// slices per picture, no byte-stream). `None` when it is allowed.
pub fn refuse_option(name: &str, value: &str) -> Option<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    let nonzero = v.parse::<i64>() != Ok(0);
    let truthy = matches!(v.as_str(), "true" | "1" | "yes" | "on");
    match name {
        "bframes" | "b-frames" | "max-bframes" if nonzero => Some("go2rtc cannot play B-frames"),
        "num-slices" | "slices" if v != "1" => Some("go2rtc needs exactly one slice per picture"),
        "sliced-threads" if truthy => {
            Some("sliced threads write several slices per picture, which go2rtc cannot frame")
        }
        "slice-mode" if v != "n-slices" && v != "1" => Some("go2rtc needs exactly one slice per picture"),
        "max-slice-size" if nonzero => Some("a slice size limit splits pictures into several slices"),
        "byte-stream" if !truthy => Some("the sink needs Annex-B byte-stream output"),
        "b-pyramid" | "b-adapt" if truthy => Some("go2rtc cannot play B-frames"),
        "option-string" => {
            let lower = v.replace(' ', "");
            let bad =
                ["bframes=", "slices=", "sliced-threads=1", "sliced_threads=1", "slice-max-size", "slice-max-mbs"];
            bad.iter()
                .any(|b| lower.contains(b) && !lower.contains("bframes=0") && !lower.contains("slices=1"))
                .then_some("x264 options that add B-frames or slices break go2rtc")
        }
        _ => None,
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
        assert_eq!(get(&p, "threads"), "1", "frame threads add a frame of latency each");
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
    fn every_backend_sets_bitrate_and_a_qp_bound() {
        for b in Backend::AUTO_ORDER {
            let p = properties(b, &settings());
            assert!(!get(&p, "bitrate").is_empty(), "{b} lacks bitrate");
            assert!(p.iter().any(|(n, v)| n.contains("qp") && n.contains("max") && v == "34"), "{b} has no QP bound");
            assert!(!b.raw_formats().is_empty());
            let names: Vec<_> = p.iter().map(|(n, _)| n).collect();
            let mut dedup = names.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(names.len(), dedup.len(), "{b} sets a property twice");
        }
    }

    #[test]
    fn hardware_rows_set_cbr_no_b_frames_and_the_gop() {
        let s = settings();
        let nv = properties(Backend::NvencCuda, &s);
        assert_eq!(
            (get(&nv, "rc-mode"), get(&nv, "b-frames"), get(&nv, "gop-size")),
            ("cbr".into(), "0".into(), "30".into())
        );
        assert_eq!(get(&nv, "vbv-buffer-size"), "267", "two frames of 4000 kbit/s at 30 fps");
        let old = properties(Backend::Nvenc, &s);
        assert_eq!((get(&old, "bframes"), get(&old, "zerolatency")), ("0".into(), "true".into()));
        let va = properties(Backend::Va, &s);
        assert_eq!((get(&va, "num-slices"), get(&va, "b-frames")), ("1".into(), "0".into()));
        let vaapi = properties(Backend::Vaapi, &s);
        assert_eq!((get(&vaapi, "num-slices"), get(&vaapi, "max-bframes")), ("1".into(), "0".into()));
    }

    #[test]
    fn families() {
        assert_eq!(Backend::family("nvenc"), vec![Backend::NvencCuda, Backend::Nvenc]);
        assert_eq!(Backend::family("vaapi"), vec![Backend::Va, Backend::Vaapi]);
        assert_eq!(Backend::family("x264"), vec![Backend::X264]);
        assert!(Backend::AUTO_ORDER.iter().take(4).all(|b| b.hardware()));
    }

    #[test]
    fn encoder_options_that_break_go2rtc_are_refused() {
        assert!(refuse_option("bframes", "2").is_some());
        assert!(refuse_option("bframes", "0").is_none());
        assert!(refuse_option("b-frames", "1").is_some());
        assert!(refuse_option("num-slices", "4").is_some());
        assert!(refuse_option("num-slices", "1").is_none());
        assert!(refuse_option("sliced-threads", "true").is_some());
        assert!(refuse_option("slice-mode", "auto").is_some());
        assert!(refuse_option("byte-stream", "false").is_some());
        assert!(refuse_option("option-string", "bframes=3").is_some());
        assert!(refuse_option("option-string", "aq-mode=2").is_none());
        assert!(refuse_option("speed-preset", "veryfast").is_none());
        assert!(refuse_option("bitrate", "2000").is_none());
    }

    #[test]
    fn vbv_scales_with_fps() {
        let mut s = settings();
        s.fps = 60;
        assert_eq!(s.vbv_ms(), 34);
    }
}
