//! Validated settings, built once at start-up: a [`ConfigBuilder`] holds what a client asked for
//! (the CLI maps its flags onto one, the Python package its keywords, a library user sets its
//! fields) and [`ConfigBuilder::build`] runs every check, each failure a [`ConfigError`] that names
//! the flag at fault in the words the CLI prints.

mod validate;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::encode::settings::EncoderSettings;
use crate::frame::PixFmt;
use crate::settings::{Convert, EncoderChoice, FramePath, Idle, Mux, OnBusy};
use crate::sink::output::Output;
pub use crate::source::SourceSpec;
pub use validate::{ConfigBuilder, ConfigError};

/// Largest picture edge we accept; H.264 level 5.2 allows 4096 pixels on a side at most in practice.
pub const MAX_EDGE: u32 = 4096;
pub const MIN_EDGE: u32 = 32;
/// H.264 level 5.2 limit on macroblocks per picture (MaxFS), the highest level x264 and openh264
/// encode and browsers decode.
pub const MAX_MACROBLOCKS: u32 = 36_864;
/// Frames per second we pace and encode at.
pub const FPS_RANGE: RangeInclusive<u32> = 1..=240;
/// CBR target in kbit/s.
pub const BITRATE_RANGE: RangeInclusive<u32> = 64..=500_000;
/// Keyframe interval in frames.
pub const GOP_RANGE: RangeInclusive<u32> = 1..=3600;
/// H.264 quantisers.
pub const QP_MAX_RANGE: RangeInclusive<u32> = 1..=51;
/// FIFO/TCP lag budget in milliseconds of stream.
pub const MAX_LAG_RANGE: RangeInclusive<u32> = 1..=60_000;

/// When to stop on our own; none set means run until a signal or the reader leaves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StopAfter {
    pub frames: Option<u64>,
    pub duration: Option<Duration>,
}

/// Everything the stream needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub encoder: EncoderChoice,
    pub encoder_settings: EncoderSettings,
    /// `--encoder-opt` overrides, in order.
    pub encoder_opts: Vec<(String, String)>,
    pub convert: Convert,
    pub path: FramePath,
    /// Where frames come from.
    pub source: SourceSpec,
    /// The agent's frames' pixel format (external sources).
    pub pix_fmt: PixFmt,
    /// `--source-timeout`; `None` = never.
    pub source_timeout: Option<Duration>,
    /// Draw the frame stamp (scenes: unless --no-stamp; agent frames: with --stamp).
    pub stamp: bool,
    pub stop: StopAfter,
    pub pace: bool,
    pub egl_device: Option<u32>,
    /// `--gpu`: the CUDA device; `None` = device 0 where there is CUDA.
    pub gpu: Option<u32>,
    pub output: Output,
    /// `--register`: announce the stream to go2rtc's API.
    pub register: Option<crate::register::Register>,
    pub mux: Mux,
    pub idle: Idle,
    /// FIFO/TCP lag budget.
    pub max_lag: Duration,
    pub leases: LeasePolicy,
    /// Stream name for logs and slot records.
    pub stream: String,
    /// `--stats-interval`; `None` = off.
    pub stats_interval: Option<Duration>,
    pub stats_file: Option<PathBuf>,
    /// `--frame-log`: frame number -> render start (CLOCK_MONOTONIC), one line per frame.
    pub frame_log: Option<PathBuf>,
    /// `--stall-timeout`; `None` = off.
    pub stall_timeout: Option<Duration>,
    /// Testing aids (hidden `--debug-*` flags).
    pub faults: crate::faults::Faults,
}

/// NVENC session leasing, from --nvenc-sessions, --lock-dir, --on-busy, --wait-timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasePolicy {
    /// 0 = no limit (no leases taken).
    pub sessions: u32,
    pub dir: PathBuf,
    pub on_busy: OnBusy,
    pub wait_timeout: Duration,
}

impl Config {
    /// `--duration` as a number of frames of the stream (at least one).
    pub fn duration_frames(&self) -> Option<u64> {
        self.stop.duration.map(|d| (d.as_secs_f64() * f64::from(self.fps)).round().max(1.0) as u64)
    }

    /// The lag budget in access units (at least one).
    pub fn max_lag_frames(&self) -> usize {
        ((self.max_lag.as_secs_f64() * f64::from(self.fps)).ceil() as usize).max(1)
    }

    /// What a pipe's, socket's or `push`'s frame slot does with a frame that comes before the last
    /// was taken: unpaced, every frame the agent sends is encoded (the writer waits); paced, the
    /// newest wins. (A ring or a PipeWire node never waits for us, whatever the pace.)
    pub fn agent_overrun(&self) -> crate::source::live::Overrun {
        use crate::source::live::Overrun;
        if self.pace { Overrun::Replace } else { Overrun::Wait }
    }

    /// What the renderer draws and how, for a scene source (`scene:`, `shader:`); an error for the
    /// agent's own frames, which are not rendered.
    pub fn render_settings(&self) -> anyhow::Result<crate::render::RenderSettings> {
        let scene = match &self.source {
            SourceSpec::Scene(s) => crate::render::SceneSpec::Builtin(*s),
            SourceSpec::Shader(path) => crate::render::SceneSpec::Shader(path.clone()),
            other => anyhow::bail!("{other} is not a scene to render"),
        };
        Ok(crate::render::RenderSettings {
            scene,
            width: self.width,
            height: self.height,
            fps: self.fps,
            stamp: self.stamp,
            pace: self.pace,
        })
    }
}
