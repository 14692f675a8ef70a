//! Validated settings, built once at start-up from the raw [`StreamArgs`].

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ConvertArg, EncoderArg, IdleArg, MuxArg, PathArg, ProfileArg, StreamArgs};
use crate::encode::settings::EncoderSettings;
use crate::frame::PixFmt;
use crate::sink::output::{self, Output};
pub use crate::source::SourceSpec;
use crate::stamp::StampLayout;

/// Largest picture edge we accept; H.264 level 5.2 allows 4096 pixels on a side at most in practice.
pub const MAX_EDGE: u32 = 4096;
pub const MIN_EDGE: u32 = 32;
/// H.264 level 5.2 limit on macroblocks per picture (MaxFS), the highest level x264 and openh264
/// encode and browsers decode.
pub const MAX_MACROBLOCKS: u32 = 36_864;

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
    pub encoder: EncoderArg,
    pub encoder_settings: EncoderSettings,
    /// `--encoder-opt` overrides, in order.
    pub encoder_opts: Vec<(String, String)>,
    pub convert: ConvertArg,
    pub path: PathArg,
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
    pub mux: MuxArg,
    pub idle: IdleArg,
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
    pub on_busy: crate::cli::OnBusyArg,
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

    /// Validates the raw arguments for a stream whose frames a library user pushes
    /// ([`crate::stream::Handle::push`]): as [`Config::from_args`] with `--source push`.
    pub fn for_push(a: &StreamArgs) -> Result<Config, String> {
        if let Some(s) = &a.source {
            return Err(format!("--source {s}: a stream that takes pushed frames has no other source"));
        }
        Config::from_args(&StreamArgs { source: Some(SourceSpec::Push), ..a.clone() })
    }

    /// Validates the raw arguments. The error is one line that names the flag.
    pub fn from_args(a: &StreamArgs) -> Result<Config, String> {
        for (flag, v) in [("--width", a.width), ("--height", a.height)] {
            if !(MIN_EDGE..=MAX_EDGE).contains(&v) {
                return Err(format!("{flag} must be between {MIN_EDGE} and {MAX_EDGE}, got {v}"));
            }
            if v % 2 != 0 {
                return Err(format!("{flag} must be even (4:2:0 chroma needs pixel pairs), got {v}"));
            }
        }
        let mbs = a.width.div_ceil(16) * a.height.div_ceil(16);
        if mbs > MAX_MACROBLOCKS {
            return Err(format!(
                "--width {} x --height {} is {mbs} macroblocks, more than H.264 level 5.2 allows ({MAX_MACROBLOCKS})",
                a.width, a.height
            ));
        }
        let source = match (&a.source, &a.shader) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => SourceSpec::Shader(path.clone()),
            (None, None) => SourceSpec::Scene(a.scene),
        };
        let external = source.is_external();
        let stamp = if external { a.stamp } else { !a.no_stamp };
        if stamp && StampLayout::for_size(a.width, a.height).is_none() {
            return Err(format!(
                "--width {} x --height {} is too small for the frame stamp (needs at least {} pixels wide); {}",
                a.width,
                a.height,
                StampLayout::min_width(),
                if external { "drop --stamp" } else { "add --no-stamp" }
            ));
        }
        if !stamp && a.frame_log.is_some() {
            return Err(format!(
                "--frame-log maps frame stamps to render times; it needs the stamp ({})",
                if external { "add --stamp" } else { "drop --no-stamp" }
            ));
        }
        if let Some(f) = a.pix_fmt
            && !matches!(source, SourceSpec::Raw(_) | SourceSpec::Unix(_) | SourceSpec::Shm(_) | SourceSpec::Push)
        {
            return Err(format!(
                "--pix-fmt {f} describes frames from the agent (--source raw:, unix: or shm:), not --source {source}"
            ));
        }
        if external {
            if a.path == PathArg::ZeroCopy {
                return Err(format!(
                    "--path zero-copy keeps frames agentcast renders on the GPU; frames from --source {source} arrive in host memory"
                ));
            }
            if a.convert == ConvertArg::Gpu {
                return Err(format!(
                    "--convert gpu converts frames agentcast renders; frames from --source {source} are converted on the CPU where the encoder needs it"
                ));
            }
        }
        let duration = match a.duration {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some(Duration::from_secs_f64(s)),
            Some(s) => return Err(format!("--duration must be a positive number of seconds, got {s}")),
        };
        output::check_remote(&a.output, a.allow_remote)?;
        if a.allow_remote && !matches!(a.output, Output::Tcp(_)) {
            return Err(format!("--allow-remote only applies to --output tcp:ADDR:PORT, not --output {}", a.output));
        }
        if a.mux == MuxArg::Mpegts && a.output != Output::Stdout {
            return Err(format!(
                "--mux mpegts works with --output stdout only (FIFO/TCP readers start at an H.264 IDR; RTSP carries H.264 in RTP), not --output {}",
                a.output
            ));
        }
        if !a.output.demand_paged() {
            if a.idle != IdleArg::Pause {
                return Err(
                    "--idle only applies to --output fifo:PATH or tcp:ADDR:PORT (stdout and rtsp:// always have a reader)"
                        .into()
                );
            }
            if a.max_lag != crate::cli::DEFAULT_MAX_LAG_MS {
                return Err("--max-lag only applies to --output fifo:PATH or tcp:ADDR:PORT".into());
            }
        }
        if a.path == PathArg::ZeroCopy && a.convert == ConvertArg::Cpu {
            return Err(
                "--path zero-copy needs the GPU conversion; --convert cpu reads RGBA back (drop one of them)".into()
            );
        }
        let gop = a.gop.unwrap_or(a.fps);
        Ok(Config {
            width: a.width,
            height: a.height,
            fps: a.fps,
            encoder: a.encoder,
            encoder_opts: a.encoder_opts.clone(),
            encoder_settings: EncoderSettings::new(a.bitrate, a.fps, gop, a.qp_max, profile(a.profile)),
            convert: a.convert,
            path: a.path,
            source,
            pix_fmt: a.pix_fmt.unwrap_or(PixFmt::Rgb24),
            source_timeout: (a.source_timeout > 0).then(|| Duration::from_secs(a.source_timeout)),
            stamp,
            stop: StopAfter { frames: a.frames, duration },
            pace: !a.no_pace,
            egl_device: a.egl_device,
            gpu: a.gpu,
            output: a.output.clone(),
            mux: a.mux,
            idle: a.idle,
            max_lag: Duration::from_millis(u64::from(a.max_lag)),
            leases: LeasePolicy {
                sessions: a.nvenc_sessions,
                dir: a.lock_dir.clone().unwrap_or_else(crate::slots::default_dir),
                on_busy: a.on_busy,
                wait_timeout: Duration::from_secs(a.wait_timeout),
            },
            stream: a.stream.clone().unwrap_or_else(|| format!("agentcast-{}", std::process::id())),
            stats_interval: (a.stats_interval > 0).then(|| Duration::from_secs(a.stats_interval)),
            stats_file: a.stats_file.clone(),
            frame_log: a.frame_log.clone(),
            stall_timeout: (a.stall_timeout > 0).then(|| Duration::from_secs(a.stall_timeout)),
            faults: crate::faults::Faults::from_args(a),
        })
    }
}

pub fn profile(p: ProfileArg) -> crate::encode::settings::Profile {
    use crate::encode::settings::Profile;
    match p {
        ProfileArg::Baseline => Profile::ConstrainedBaseline,
        ProfileArg::Main => Profile::Main,
        ProfileArg::High => Profile::High,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["agentcast"];
        v.extend_from_slice(args);
        Config::from_args(&Cli::try_parse_from(v).unwrap().stream)
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.width, c.height, c.fps), (1280, 720, 30));
        assert_eq!(c.encoder_settings.gop, 30);
        assert_eq!(c.encoder_settings.bitrate_kbps, 4000);
        assert!(c.stamp && c.pace);
        assert_eq!(c.source, SourceSpec::Scene(crate::cli::SceneArg::Demo));
        assert_eq!(c.duration_frames(), None);
    }

    #[test]
    fn gop_defaults_to_one_second_of_frames() {
        assert_eq!(parse(&["--fps", "60"]).unwrap().encoder_settings.gop, 60);
        assert_eq!(parse(&["--fps", "60", "--gop", "15"]).unwrap().encoder_settings.gop, 15);
    }

    #[test]
    fn rejects_odd_and_out_of_range_sizes() {
        let e = parse(&["--width", "1281"]).unwrap_err();
        assert!(e.starts_with("--width must be even"), "{e}");
        let e = parse(&["--height", "721"]).unwrap_err();
        assert!(e.starts_with("--height must be even"), "{e}");
        assert!(parse(&["--width", "8192"]).unwrap_err().starts_with("--width must be between"));
        let e = parse(&["--width", "4096", "--height", "4096"]).unwrap_err();
        assert!(e.contains("macroblocks"), "{e}");
        assert!(parse(&["--width", "3840", "--height", "2160"]).is_ok());
    }

    #[test]
    fn small_sizes_need_no_stamp() {
        let e = parse(&["--width", "320", "--height", "240"]).unwrap_err();
        assert!(e.contains("--no-stamp"), "{e}");
        assert!(parse(&["--width", "320", "--height", "240", "--no-stamp"]).is_ok());
    }

    #[test]
    fn duration_must_be_positive() {
        assert!(parse(&["--duration", "0"]).is_err());
        assert!(parse(&["--duration=-1"]).is_err());
        assert!(parse(&["--duration", "NaN"]).is_err());
        assert_eq!(parse(&["--duration", "1.5"]).unwrap().stop.duration, Some(Duration::from_millis(1500)));
        assert_eq!(parse(&["--duration", "1.5"]).unwrap().duration_frames(), Some(45));
        assert_eq!(parse(&["--duration", "0.001"]).unwrap().duration_frames(), Some(1));
    }

    #[test]
    fn output_flags() {
        let c = parse(&["--output", "fifo:/tmp/a.h264", "--max-lag", "1000", "--fps", "30"]).unwrap();
        assert_eq!(c.output, Output::Fifo("/tmp/a.h264".into()));
        assert_eq!(c.max_lag_frames(), 30);
        assert_eq!(parse(&["--output", "tcp:127.0.0.1:9000"]).unwrap().max_lag_frames(), 15);
        assert!(parse(&["--output", "tcp:0.0.0.0:9000"]).unwrap_err().contains("--allow-remote"));
        assert!(parse(&["--output", "tcp:0.0.0.0:9000", "--allow-remote"]).is_ok());
        assert!(parse(&["--allow-remote"]).unwrap_err().starts_with("--allow-remote only applies"));
        assert!(parse(&["--idle", "render"]).unwrap_err().starts_with("--idle only applies"));
        assert!(parse(&["--max-lag", "100"]).unwrap_err().starts_with("--max-lag only applies"));
        let rtsp = ["--output", "rtsp://127.0.0.1:8554/a"];
        assert!(matches!(parse(&rtsp).unwrap().output, Output::Rtsp(_)));
        let e = parse(&[&rtsp[..], &["--mux", "mpegts"]].concat()).unwrap_err();
        assert!(e.starts_with("--mux mpegts works with --output stdout only") && e.contains("RTSP"), "{e}");
        assert!(parse(&[&rtsp[..], &["--idle", "render"]].concat()).unwrap_err().starts_with("--idle only"));
        assert!(parse(&[&rtsp[..], &["--allow-remote"]].concat()).unwrap_err().starts_with("--allow-remote"));
    }

    #[test]
    fn shader_replaces_the_scene() {
        let c = parse(&["--shader", "x.glsl"]).unwrap();
        assert_eq!(c.source, SourceSpec::Shader("x.glsl".into()));
        assert_eq!(parse(&["--source", "shader:y.glsl"]).unwrap().source, SourceSpec::Shader("y.glsl".into()));
    }

    #[test]
    fn agent_frames_take_a_pixel_format_and_no_stamp_unless_asked() {
        let c = parse(&["--source", "raw:-", "--pix-fmt", "nv12"]).unwrap();
        assert_eq!((c.source.clone(), c.pix_fmt, c.stamp), (SourceSpec::Raw("-".into()), PixFmt::Nv12, false));
        assert_eq!(c.source_timeout, Some(Duration::from_secs(10)));
        assert!(parse(&["--source", "unix:/tmp/a.sock", "--stamp"]).unwrap().stamp);
        assert_eq!(parse(&["--source", "raw:-", "--source-timeout", "0"]).unwrap().source_timeout, None);
        assert_eq!(parse(&["--source", "shm:a"]).unwrap().pix_fmt, PixFmt::Rgb24);
        let e = parse(&["--pix-fmt", "rgb24"]).unwrap_err();
        assert!(e.starts_with("--pix-fmt rgb24 describes frames from the agent"), "{e}");
        let e = parse(&["--source", "raw:-", "--frame-log", "/tmp/x"]).unwrap_err();
        assert!(e.contains("add --stamp"), "{e}");
        let e = parse(&["--source", "raw:-", "--path", "zero-copy"]).unwrap_err();
        assert!(e.starts_with("--path zero-copy keeps frames agentcast renders"), "{e}");
        assert!(parse(&["--source", "raw:-", "--convert", "gpu"]).unwrap_err().starts_with("--convert gpu"));
        let mut v = vec!["agentcast", "--source", "raw:-", "--scene", "gradient"];
        assert!(Cli::try_parse_from(&v).is_err(), "--source and --scene conflict");
        v.truncate(3);
        v.extend(["--pix-fmt", "yuv444p"]);
        let e = Cli::try_parse_from(&v).unwrap_err().to_string();
        assert!(e.contains("unknown pixel format 'yuv444p'"), "{e}");
    }
}
