//! From the command line's raw values to the library's settings: [`StreamArgs::builder`] maps
//! each flag onto a [`ConfigBuilder`] (folding `--scene`, `--shader` and `--source` into one
//! source, `--stamp`/`--no-stamp` into one choice), and the library's checks do the rest. Their
//! [`ConfigError`]s name the flag, in the words the CLI prints.

use super::StreamArgs;
use crate::config::{Config, ConfigBuilder, ConfigError, SourceSpec};
use crate::faults::Faults;

impl StreamArgs {
    /// The flags as the library's settings, unchecked.
    pub fn builder(&self) -> ConfigBuilder {
        let a = self.clone();
        let source = match (a.source, a.shader) {
            (Some(s), _) => s,
            (None, Some(path)) => SourceSpec::Shader(path),
            (None, None) => SourceSpec::Scene(a.scene),
        };
        ConfigBuilder {
            width: a.width,
            height: a.height,
            fps: a.fps,
            bitrate_kbps: a.bitrate,
            gop: a.gop,
            qp_max: a.qp_max,
            profile: a.profile,
            encoder: a.encoder,
            encoder_opts: a.encoder_opts,
            nvenc_sessions: a.nvenc_sessions,
            lock_dir: a.lock_dir,
            on_busy: a.on_busy,
            wait_timeout_s: a.wait_timeout,
            stream: a.stream,
            stats_interval_s: a.stats_interval,
            stats_file: a.stats_file,
            stall_timeout_s: a.stall_timeout,
            faults: Faults {
                stall_after: a.debug_stall_after,
                fail_after: a.debug_fail_after,
                fail_times: a.debug_fail_times,
                lease_element: a.debug_lease_encoder,
                cuda_download: a.debug_cuda_download,
            },
            convert: a.convert,
            path: a.path,
            source: Some(source),
            pix_fmt: a.pix_fmt,
            source_timeout_s: a.source_timeout,
            // clap makes them exclusive; neither leaves it to the source.
            stamp: if a.stamp { Some(true) } else { a.no_stamp.then_some(false) },
            frame_log: a.frame_log,
            frames: a.frames,
            duration_s: a.duration,
            pace: !a.no_pace,
            output: a.output,
            mux: a.mux,
            allow_remote: a.allow_remote,
            register: a.register,
            name: a.name,
            advertise: a.advertise,
            idle: a.idle,
            max_lag_ms: a.max_lag,
            egl_device: a.egl_device,
            gpu: a.gpu,
        }
    }

    /// The flags for a stream whose frames a library user pushes, unchecked: `--scene` and
    /// `--shader` give way to the pushed frames, and a `--source` is refused by
    /// [`ConfigBuilder::build_push`].
    pub fn push_builder(&self) -> ConfigBuilder {
        ConfigBuilder { source: self.source.clone(), ..self.builder() }
    }

    /// Validates the raw arguments for a stream whose frames a library user pushes
    /// ([`crate::stream::Handle::push`]): as [`StreamArgs::config`] with `--source push`.
    pub fn push_config(&self) -> Result<Config, ConfigError> {
        self.push_builder().build_push()
    }

    /// Validates the raw arguments. The error is one line that names the flag.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.builder().build()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::Cli;
    use crate::encode::settings::Profile;
    use crate::frame::PixFmt;
    use crate::settings::{BuiltinScene, Convert, EncoderChoice, FramePath, Idle, Mux, OnBusy};
    use crate::sink::output::Output;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["agentcast"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().stream.config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.width, c.height, c.fps), (1280, 720, 30));
        assert_eq!(c.encoder_settings.gop, 30);
        assert_eq!(c.encoder_settings.bitrate_kbps, 4000);
        assert!(c.stamp && c.pace);
        assert_eq!(c.source, SourceSpec::Scene(BuiltinScene::Demo));
        assert_eq!(c.duration_frames(), None);
    }

    #[test]
    fn value_enums_map_onto_the_settings() {
        let c = parse(&["--encoder", "openh264", "--profile", "baseline", "--convert", "cpu", "--path", "readback"])
            .unwrap();
        assert_eq!((c.encoder, c.encoder_settings.profile), (EncoderChoice::Openh264, Profile::ConstrainedBaseline));
        assert_eq!((c.convert, c.path), (Convert::Cpu, FramePath::Readback));
        let c =
            parse(&["--output", "fifo:/tmp/a.h264", "--idle", "render", "--on-busy", "wait", "--scene", "gradient"]);
        let c = c.unwrap();
        assert_eq!((c.idle, c.leases.on_busy, c.mux), (Idle::Render, OnBusy::Wait, Mux::Raw));
        assert_eq!(c.source, SourceSpec::Scene(BuiltinScene::Gradient));
        assert_eq!(parse(&["--mux", "mpegts"]).unwrap().mux, Mux::Mpegts);
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
