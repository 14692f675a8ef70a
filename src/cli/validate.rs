//! From the command line's raw values to the library's settings: [`StreamArgs::config`] runs every
//! check whose message names a flag and builds the validated [`Config`]; clap's value enums convert
//! into their [`crate::settings`] counterparts.

use std::time::Duration;

use super::{ConvertArg, EncoderArg, IdleArg, MuxArg, OnBusyArg, PathArg, ProfileArg, SceneArg, StreamArgs};
use crate::config::{Config, LeasePolicy, MAX_EDGE, MAX_MACROBLOCKS, MIN_EDGE, SourceSpec, StopAfter};
use crate::encode::settings::{EncoderSettings, Profile};
use crate::faults::Faults;
use crate::frame::PixFmt;
use crate::register::{self, Register};
use crate::settings::{BuiltinScene, Convert, DEFAULT_MAX_LAG_MS, EncoderChoice, FramePath, Idle, Mux, OnBusy};
use crate::sink::output::{self, Output};
use crate::stamp::StampLayout;

impl StreamArgs {
    /// Validates the raw arguments for a stream whose frames a library user pushes
    /// ([`crate::stream::Handle::push`]): as [`StreamArgs::config`] with `--source push`.
    pub fn push_config(&self) -> Result<Config, String> {
        if let Some(s) = &self.source {
            return Err(format!("--source {s}: a stream that takes pushed frames has no other source"));
        }
        StreamArgs { source: Some(SourceSpec::Push), ..self.clone() }.config()
    }

    /// Validates the raw arguments. The error is one line that names the flag.
    pub fn config(&self) -> Result<Config, String> {
        let a = self;
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
            (None, None) => SourceSpec::Scene(a.scene.into()),
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
        if !a.output.demand_paged() && a.idle != IdleArg::Pause {
            return Err(
                "--idle only applies to --output fifo:PATH, tcp:ADDR:PORT or rtsp-listen: (stdout and rtsp:// always have a reader)"
                    .into(),
            );
        }
        if !matches!(a.output, Output::Fifo(_) | Output::Tcp(_)) && a.max_lag != DEFAULT_MAX_LAG_MS {
            return Err("--max-lag only applies to --output fifo:PATH or tcp:ADDR:PORT".into());
        }
        let (output, register) = self.registration()?;
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
            encoder: a.encoder.into(),
            encoder_opts: a.encoder_opts.clone(),
            encoder_settings: EncoderSettings::new(a.bitrate, a.fps, gop, a.qp_max, a.profile.into()),
            convert: a.convert.into(),
            path: a.path.into(),
            source,
            pix_fmt: a.pix_fmt.unwrap_or(PixFmt::Rgb24),
            source_timeout: (a.source_timeout > 0).then(|| Duration::from_secs(a.source_timeout)),
            stamp,
            stop: StopAfter { frames: a.frames, duration },
            pace: !a.no_pace,
            egl_device: a.egl_device,
            gpu: a.gpu,
            output,
            register,
            mux: a.mux.into(),
            idle: a.idle.into(),
            max_lag: Duration::from_millis(u64::from(a.max_lag)),
            leases: LeasePolicy {
                sessions: a.nvenc_sessions,
                dir: a.lock_dir.clone().unwrap_or_else(crate::slots::default_dir),
                on_busy: a.on_busy.into(),
                wait_timeout: Duration::from_secs(a.wait_timeout),
            },
            stream: a.stream.clone().unwrap_or_else(|| format!("agentcast-{}", std::process::id())),
            stats_interval: (a.stats_interval > 0).then(|| Duration::from_secs(a.stats_interval)),
            stats_file: a.stats_file.clone(),
            frame_log: a.frame_log.clone(),
            stall_timeout: (a.stall_timeout > 0).then(|| Duration::from_secs(a.stall_timeout)),
            faults: Faults {
                stall_after: a.debug_stall_after,
                fail_after: a.debug_fail_after,
                fail_times: a.debug_fail_times,
                lease_element: a.debug_lease_encoder.clone(),
                cuda_download: a.debug_cuda_download,
            },
        })
    }
}

impl StreamArgs {
    /// `--register`, `--name`, `--advertise`: the registration, and the output with its name's
    /// templates expanded (`--name` also names an rtsp-listen: path).
    fn registration(&self) -> Result<(Output, Option<Register>), String> {
        let expand = |flag: &str, v: &str| register::expand_name_here(v).map_err(|e| format!("{flag} {v}: {e}"));
        let name = match &self.name {
            Some(n) => {
                let expanded = expand("--name", n)?;
                output::check_name(&expanded).map_err(|e| format!("--name {n}: {e}"))?;
                Some(expanded)
            }
            None => None,
        };
        let output = match &self.output {
            Output::RtspListen(l) => {
                let served = match &name {
                    Some(n) => n.clone(),
                    None => {
                        let path = expand("--output", &l.name)?;
                        output::check_name(&path).map_err(|e| format!("--output {}: {e}", self.output))?;
                        path
                    }
                };
                Output::RtspListen(output::Listen { addr: l.addr, name: served })
            }
            other => other.clone(),
        };
        let Some(url) = &self.register else {
            for (flag, given) in [("--name", self.name.is_some()), ("--advertise", self.advertise.is_some())] {
                if given {
                    return Err(format!("{flag} names this stream for go2rtc; it needs --register URL"));
                }
            }
            return Ok((output, None));
        };
        let api = register::Api::parse(url)?;
        let name = match (&output, name) {
            (Output::RtspListen(l), _) => l.name.clone(),
            (Output::Tcp(_), Some(n)) => n,
            (Output::Tcp(_), None) => {
                return Err("--register with --output tcp: needs --name (the name go2rtc lists it under)".into());
            }
            (other, _) => {
                return Err(format!(
                    "--register announces a stream go2rtc pulls: --output rtsp-listen:HOST:PORT/NAME or tcp:ADDR:PORT, not --output {other}"
                ));
            }
        };
        let advertise = match &self.advertise {
            Some(h) => {
                let host = expand("--advertise", h)?;
                if host.is_empty() || host.contains(['/', ' ', '@']) {
                    return Err(format!("--advertise {h}: '{host}' is not a host name or address"));
                }
                Some(host)
            }
            None => None,
        };
        Ok((output, Some(Register { api, name, advertise })))
    }
}

/// `impl From<$arg> for $setting`, value by value.
macro_rules! into_setting {
    ($($arg:ident => $setting:ident { $($from:ident => $to:ident),+ })+) => {$(
        impl From<$arg> for $setting {
            fn from(value: $arg) -> Self {
                match value {
                    $($arg::$from => $setting::$to),+
                }
            }
        }
    )+};
}

into_setting! {
    SceneArg => BuiltinScene { Demo => Demo, Gradient => Gradient }
    EncoderArg => EncoderChoice { Auto => Auto, Nvenc => Nvenc, Vaapi => Vaapi, X264 => X264, Openh264 => Openh264 }
    ProfileArg => Profile { Baseline => ConstrainedBaseline, Main => Main, High => High }
    ConvertArg => Convert { Auto => Auto, Gpu => Gpu, Cpu => Cpu }
    PathArg => FramePath { Auto => Auto, ZeroCopy => ZeroCopy, Readback => Readback }
    MuxArg => Mux { Raw => Raw, Mpegts => Mpegts }
    IdleArg => Idle { Pause => Pause, Render => Render }
    OnBusyArg => OnBusy { Fallback => Fallback, Wait => Wait, Fail => Fail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["agentcast"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().stream.config()
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
