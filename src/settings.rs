//! The library's setting values and defaults: plain enums that [`crate::config::Config`] holds and
//! the stream, source, render, encode and convert stages branch on. They derive `clap::ValueEnum`
//! (a derive, no parsing here) so the command line takes them as they are: each variant's doc
//! comment is its line in `--help`, and `#[value(name)]` its spelling there. Other clients build a
//! [`crate::config::ConfigBuilder`] from them directly. The H.264 profile is
//! [`crate::encode::settings::Profile`].

pub const DEFAULT_WIDTH: u32 = 1280;
pub const DEFAULT_HEIGHT: u32 = 720;
pub const DEFAULT_FPS: u32 = 30;
/// kbit/s; enough for the demo scene at 720p30 without visible banding.
pub const DEFAULT_BITRATE: u32 = 4000;
/// Highest quantiser the encoder may use; above about 34 smooth gradients band visibly.
pub const DEFAULT_QP_MAX: u32 = 34;
/// How far a FIFO/TCP reader may fall behind, in milliseconds of stream.
pub const DEFAULT_MAX_LAG_MS: u32 = 500;
/// Seconds without a frame from the agent before the stream ends.
pub const DEFAULT_SOURCE_TIMEOUT: u64 = 10;

/// A built-in scene (`scene:NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuiltinScene {
    /// Moving shapes over a slowly animated full-range gradient (where banding shows).
    Demo,
    /// Smooth gradients only, for quality work.
    Gradient,
}

impl BuiltinScene {
    /// The name as `--scene` and `scene:NAME` spell it.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinScene::Demo => "demo",
            BuiltinScene::Gradient => "gradient",
        }
    }
}

/// Which encoder backends to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncoderChoice {
    /// The first that really opens, in the order nvenc, vaapi, x264, openh264.
    Auto,
    /// NVIDIA NVENC: nvcudah264enc or nvh264enc (gstreamer1.0-plugins-bad; not on H100/H200/A100).
    Nvenc,
    /// VA-API: vah264enc (gstreamer1.0-plugins-bad) or vaapih264enc (gstreamer1.0-vaapi).
    Vaapi,
    /// GStreamer's x264enc (gstreamer1.0-plugins-ugly).
    X264,
    /// GStreamer's openh264enc (gstreamer1.0-plugins-bad).
    Openh264,
}

/// Where rendered RGBA becomes YUV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Convert {
    /// cpu on software renderers (llvmpipe), gpu on real GPUs.
    Auto,
    /// A shader packs RGBA into I420/NV12; 1.5 bytes per pixel are read back.
    Gpu,
    /// RGBA is read back and GStreamer's videoconvert converts it on all cores.
    Cpu,
}

/// How rendered frames reach the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FramePath {
    /// zero-copy where CUDA, the renderer on that GPU, libgstcuda and an NVENC that opens are all
    /// present; readback otherwise.
    Auto,
    /// GL texture -> CUDA -> NVENC on the GPU: no frame bytes cross to the host (an error where
    /// that is not possible).
    ZeroCopy,
    /// Read frames back to the host (1.5 B/px with --convert gpu, 4 B/px with --convert cpu).
    Readback,
}

/// The container on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mux {
    /// Raw Annex-B H.264: go2rtc times frames by arrival and passes each on when the next starts.
    Raw,
    /// MPEG-TS from GStreamer's mpegtsmux, with PTS from the frame clock: go2rtc uses them and
    /// passes each frame on as soon as it is in (what `go2rtc-config --mode exec` writes).
    Mpegts,
}

/// FIFO/TCP outputs: what to do while no reader is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Idle {
    /// Neither render nor encode while no reader is attached (CPU falls to near zero).
    Pause,
    /// Keep rendering (for agents that need the frame loop), but do not encode.
    Render,
}

/// What to do when every NVENC slot is busy, or NVENC refuses another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnBusy {
    /// Use the next encoder backend and say so in the log.
    Fallback,
    /// Wait for a slot until --wait-timeout, then exit 75.
    Wait,
    /// Exit 75 (temporary failure) at once, for a supervisor to retry.
    Fail,
}
