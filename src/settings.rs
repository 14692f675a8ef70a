//! The library's setting values and defaults: plain enums that [`crate::config::Config`] holds and
//! the stream, source, render, encode and convert stages branch on. The command line parses its
//! flags into types of its own and converts them into these, as any other client of the library
//! may build a `Config` without it. The H.264 profile is [`crate::encode::settings::Profile`].

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderChoice {
    /// The first that really opens, in the order nvenc, vaapi, x264, openh264.
    Auto,
    Nvenc,
    Vaapi,
    X264,
    Openh264,
}

/// Where rendered RGBA becomes YUV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// CPU on software renderers (llvmpipe), GPU on real GPUs.
    Auto,
    /// A shader packs RGBA into I420/NV12.
    Gpu,
    /// RGBA is read back and GStreamer's videoconvert converts it.
    Cpu,
}

/// How rendered frames reach the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePath {
    /// Zero-copy where it can work, readback otherwise.
    Auto,
    /// GL texture -> CUDA -> NVENC, no frame bytes on the host (an error where impossible).
    ZeroCopy,
    /// Frames are read back to the host.
    Readback,
}

/// The container on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mux {
    /// Raw Annex-B H.264.
    Raw,
    /// MPEG-TS with PTS from the frame clock.
    Mpegts,
}

/// FIFO/TCP outputs: what to do while no reader is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Neither render nor encode.
    Pause,
    /// Keep rendering, but do not encode.
    Render,
}

/// What to do when every NVENC slot is busy, or NVENC refuses another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBusy {
    /// Use the next encoder backend.
    Fallback,
    /// Wait for a slot, up to the lease policy's timeout.
    Wait,
    /// Fail at once with a temporary failure.
    Fail,
}

#[cfg(test)]
mod tests {
    /// The library's core modules use neither clap nor the CLI's types outside their tests (issue
    /// 13: the CLI and the Python package are clients of the library). Comment lines do not count.
    #[test]
    fn the_core_knows_nothing_of_clap() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let core =
            ["stream", "source", "encode", "render", "sink", "convert.rs", "config.rs", "settings.rs", "faults.rs"];
        let mut files = Vec::new();
        let mut paths: Vec<_> = core.iter().map(|c| src.join(c)).collect();
        while let Some(p) = paths.pop() {
            if p.is_dir() {
                paths.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
        assert!(files.len() > 20, "found only {} core files under {}", files.len(), src.display());
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for (n, line) in code.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
                assert!(
                    !line.contains("crate::cli") && !line.contains("clap"),
                    "{}:{}: the library core uses the CLI or clap outside its tests: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}
