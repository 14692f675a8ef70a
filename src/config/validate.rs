//! From what a client asked for to a validated [`Config`]: [`ConfigBuilder`] holds the settings in
//! the library's own types (the CLI maps its flags onto it, the Python package its keywords), and
//! [`ConfigBuilder::build`] runs every check, single-field and cross-field, in a fixed order so
//! the first mistake is the one reported. A failure is a [`ConfigError`] that names the flag at
//! fault; its Display is the one line the CLI prints (after `agentcast: `) and exits 2 with.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    BITRATE_RANGE, Config, FPS_RANGE, GOP_RANGE, LeasePolicy, MAX_EDGE, MAX_LAG_RANGE, MAX_MACROBLOCKS, MIN_EDGE,
    QP_MAX_RANGE, SourceSpec, StopAfter,
};
use crate::encode::settings::{EncoderSettings, Profile};
use crate::faults::Faults;
use crate::frame::PixFmt;
use crate::register::{self, Register};
use crate::settings::{BuiltinScene, Convert, DEFAULT_BITRATE, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_MAX_LAG_MS};
use crate::settings::{DEFAULT_QP_MAX, DEFAULT_SOURCE_TIMEOUT, DEFAULT_WIDTH, EncoderChoice, FramePath, Idle};
use crate::settings::{Mux, OnBusy};
use crate::sink::output::{self, Output};
use crate::stamp::StampLayout;

/// A setting the library refuses. Each names its flag ([`ConfigError::flag`]; the Python
/// keyword is the same name in snake_case), and its Display is the CLI's message for it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} must be between {min} and {max}, got {value}")]
    OutOfRange { flag: &'static str, min: u32, max: u32, value: u32 },
    #[error("{flag} must be even (4:2:0 chroma needs pixel pairs), got {value}")]
    Odd { flag: &'static str, value: u32 },
    #[error(
        "--width {width} x --height {height} is {macroblocks} macroblocks, more than H.264 level 5.2 allows ({max})",
        max = MAX_MACROBLOCKS
    )]
    TooManyMacroblocks { width: u32, height: u32, macroblocks: u32 },
    /// `fix` is how to drop the stamp: "add --no-stamp" for scenes, "drop --stamp" for agent frames.
    #[error(
        "--width {width} x --height {height} is too small for the frame stamp (needs at least {min} pixels wide); {fix}",
        min = StampLayout::min_width()
    )]
    TooSmallForStamp { width: u32, height: u32, fix: &'static str },
    #[error("--frame-log maps frame stamps to render times; it needs the stamp ({fix})")]
    FrameLogNeedsStamp { fix: &'static str },
    #[error("--pix-fmt {pix_fmt} describes frames from the agent (--source raw:, unix: or shm:), not --source {spec}")]
    PixFmtWithoutAgentFrames { pix_fmt: PixFmt, spec: SourceSpec },
    #[error(
        "--path zero-copy keeps frames agentcast renders on the GPU; frames from --source {0} arrive in host memory"
    )]
    ZeroCopyOfAgentFrames(SourceSpec),
    #[error(
        "--convert gpu converts frames agentcast renders; frames from --source {0} are converted on the CPU where the encoder needs it"
    )]
    GpuConvertOfAgentFrames(SourceSpec),
    #[error("--duration must be a positive number of seconds, got {0}")]
    Duration(f64),
    #[error("--output tcp:{0} listens beyond this machine; use a loopback address (127.0.0.1) or add --allow-remote")]
    RemoteListen(SocketAddr),
    #[error("--allow-remote only applies to --output tcp:ADDR:PORT, not --output {0}")]
    AllowRemoteWithoutTcp(Output),
    #[error(
        "--mux mpegts works with --output stdout only (FIFO/TCP readers start at an H.264 IDR; RTSP carries H.264 in RTP), not --output {0}"
    )]
    MpegtsWithoutStdout(Output),
    #[error(
        "--idle only applies to --output fifo:PATH, tcp:ADDR:PORT or rtsp-listen: (stdout and rtsp:// always have a reader)"
    )]
    IdleWithoutDemand,
    #[error("--max-lag only applies to --output fifo:PATH or tcp:ADDR:PORT")]
    MaxLagWithoutFifoOrTcp,
    #[error("{flag} names this stream for go2rtc; it needs --register URL")]
    NeedsRegister { flag: &'static str },
    /// `--register URL` that is not go2rtc's API address; the message names `--register` itself.
    #[error("{0}")]
    RegisterUrl(String),
    #[error("--register with --output tcp: needs --name (the name go2rtc lists it under)")]
    TcpRegisterNeedsName,
    #[error(
        "--register announces a stream go2rtc pulls: --output rtsp-listen:HOST:PORT/NAME or tcp:ADDR:PORT, not --output {0}"
    )]
    RegisterWithoutListener(Output),
    #[error("--path zero-copy needs the GPU conversion; --convert cpu reads RGBA back (drop one of them)")]
    ZeroCopyWithCpuConvert,
    /// A value refused for a reason of its own: a name template that does not expand, a name
    /// go2rtc cannot serve, an --advertise that is no host, a source beside pushed frames.
    #[error("{flag} {value}: {reason}")]
    Invalid { flag: &'static str, value: String, reason: String },
}

impl ConfigError {
    /// The flag at fault (for two-flag conflicts, the first one the message names).
    pub fn flag(&self) -> &'static str {
        use ConfigError::*;
        match self {
            OutOfRange { flag, .. } | Odd { flag, .. } | NeedsRegister { flag } | Invalid { flag, .. } => flag,
            TooManyMacroblocks { .. } | TooSmallForStamp { .. } => "--width",
            FrameLogNeedsStamp { .. } => "--frame-log",
            PixFmtWithoutAgentFrames { .. } => "--pix-fmt",
            ZeroCopyOfAgentFrames(_) | ZeroCopyWithCpuConvert => "--path",
            GpuConvertOfAgentFrames(_) => "--convert",
            Duration(_) => "--duration",
            RemoteListen(_) => "--output",
            AllowRemoteWithoutTcp(_) => "--allow-remote",
            MpegtsWithoutStdout(_) => "--mux",
            IdleWithoutDemand => "--idle",
            MaxLagWithoutFifoOrTcp => "--max-lag",
            RegisterUrl(_) | TcpRegisterNeedsName | RegisterWithoutListener(_) => "--register",
        }
    }
}

/// The settings as asked for, in the library's types, before any check. [`Default`] is the CLI's
/// defaults; the units are the flags' (seconds with 0 = off, kbit/s, milliseconds of lag) so
/// that every client spells a setting the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigBuilder {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Keyframe interval in frames; `None` = one second of frames.
    pub gop: Option<u32>,
    pub qp_max: u32,
    pub profile: Profile,
    pub encoder: EncoderChoice,
    /// Encoder element properties set after the built-in ones, in order.
    pub encoder_opts: Vec<(String, String)>,
    /// NVENC sessions across processes sharing `lock_dir`; 0 = no limit.
    pub nvenc_sessions: u32,
    /// `None` = [`crate::slots::default_dir`].
    pub lock_dir: Option<PathBuf>,
    pub on_busy: OnBusy,
    /// Seconds `OnBusy::Wait` waits for a slot.
    pub wait_timeout_s: u64,
    /// `None` = `agentcast-PID`.
    pub stream: Option<String>,
    /// Seconds between stats lines; 0 = never.
    pub stats_interval_s: u64,
    pub stats_file: Option<PathBuf>,
    /// Seconds without progress before the stream fails as stalled; 0 = never.
    pub stall_timeout_s: u64,
    pub faults: Faults,
    pub convert: Convert,
    pub path: FramePath,
    /// `None` = `scene:demo`.
    pub source: Option<SourceSpec>,
    /// The agent's frames' layout; `None` = rgb24. Only for sources that carry the agent's frames.
    pub pix_fmt: Option<PixFmt>,
    /// Seconds without a frame from the agent before the stream ends; 0 = never.
    pub source_timeout_s: u64,
    /// Draw the frame stamp; `None` = on for scenes, off for the agent's frames.
    pub stamp: Option<bool>,
    pub frame_log: Option<PathBuf>,
    pub frames: Option<u64>,
    /// Seconds of stream before a clean stop (fractions allowed).
    pub duration_s: Option<f64>,
    pub pace: bool,
    pub output: Output,
    pub mux: Mux,
    /// Let a tcp: output listen beyond loopback.
    pub allow_remote: bool,
    /// go2rtc's API URL to register with.
    pub register: Option<String>,
    /// The name to register (and serve over rtsp-listen:); may hold `{...}` templates.
    pub name: Option<String>,
    /// The host go2rtc should dial; may hold `{...}` templates.
    pub advertise: Option<String>,
    pub idle: Idle,
    pub max_lag_ms: u32,
    pub egl_device: Option<u32>,
    pub gpu: Option<u32>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            bitrate_kbps: DEFAULT_BITRATE,
            gop: None,
            qp_max: DEFAULT_QP_MAX,
            profile: Profile::High,
            encoder: EncoderChoice::Auto,
            encoder_opts: Vec::new(),
            nvenc_sessions: 0,
            lock_dir: None,
            on_busy: OnBusy::Fallback,
            wait_timeout_s: 30,
            stream: None,
            stats_interval_s: 5,
            stats_file: None,
            stall_timeout_s: 5,
            faults: Faults { fail_times: 1, ..Faults::default() },
            convert: Convert::Auto,
            path: FramePath::Auto,
            source: None,
            pix_fmt: None,
            source_timeout_s: DEFAULT_SOURCE_TIMEOUT,
            stamp: None,
            frame_log: None,
            frames: None,
            duration_s: None,
            pace: true,
            output: Output::Stdout,
            mux: Mux::Raw,
            allow_remote: false,
            register: None,
            name: None,
            advertise: None,
            idle: Idle::Pause,
            max_lag_ms: DEFAULT_MAX_LAG_MS,
            egl_device: None,
            gpu: None,
        }
    }
}

/// `Err` when `value` is outside `range`, naming `flag`.
fn within(flag: &'static str, value: u32, range: RangeInclusive<u32>) -> Result<(), ConfigError> {
    match range.contains(&value) {
        true => Ok(()),
        false => Err(ConfigError::OutOfRange { flag, min: *range.start(), max: *range.end(), value }),
    }
}

impl ConfigBuilder {
    /// The settings for a stream whose frames the library user pushes
    /// ([`crate::stream::Handle::push`]): as [`ConfigBuilder::build`] with `SourceSpec::Push`,
    /// refusing any other source that was asked for.
    pub fn build_push(self) -> Result<Config, ConfigError> {
        match self.source {
            None | Some(SourceSpec::Push) => ConfigBuilder { source: Some(SourceSpec::Push), ..self }.build(),
            Some(s) => Err(ConfigError::Invalid {
                flag: "--source",
                value: s.to_string(),
                reason: "a stream that takes pushed frames has no other source".into(),
            }),
        }
    }

    /// Checks every setting, alone and against the others, and builds the [`Config`].
    pub fn build(self) -> Result<Config, ConfigError> {
        let a = self;
        for (flag, v) in [("--width", a.width), ("--height", a.height)] {
            within(flag, v, MIN_EDGE..=MAX_EDGE)?;
            if v % 2 != 0 {
                return Err(ConfigError::Odd { flag, value: v });
            }
        }
        let macroblocks = a.width.div_ceil(16) * a.height.div_ceil(16);
        if macroblocks > MAX_MACROBLOCKS {
            return Err(ConfigError::TooManyMacroblocks { width: a.width, height: a.height, macroblocks });
        }
        // The CLI's parser already holds these to the same ranges; other clients meet them here.
        within("--fps", a.fps, FPS_RANGE)?;
        within("--bitrate", a.bitrate_kbps, BITRATE_RANGE)?;
        if let Some(gop) = a.gop {
            within("--gop", gop, GOP_RANGE)?;
        }
        within("--qp-max", a.qp_max, QP_MAX_RANGE)?;
        within("--max-lag", a.max_lag_ms, MAX_LAG_RANGE)?;
        let source = a.source.clone().unwrap_or(SourceSpec::Scene(BuiltinScene::Demo));
        let external = source.is_external();
        let stamp = a.stamp.unwrap_or(!external);
        if stamp && StampLayout::for_size(a.width, a.height).is_none() {
            let fix = if external { "drop --stamp" } else { "add --no-stamp" };
            return Err(ConfigError::TooSmallForStamp { width: a.width, height: a.height, fix });
        }
        if !stamp && a.frame_log.is_some() {
            return Err(ConfigError::FrameLogNeedsStamp {
                fix: if external { "add --stamp" } else { "drop --no-stamp" },
            });
        }
        if let Some(pix_fmt) = a.pix_fmt
            && !matches!(source, SourceSpec::Raw(_) | SourceSpec::Unix(_) | SourceSpec::Shm(_) | SourceSpec::Push)
        {
            return Err(ConfigError::PixFmtWithoutAgentFrames { pix_fmt, spec: source });
        }
        if external {
            if a.path == FramePath::ZeroCopy {
                return Err(ConfigError::ZeroCopyOfAgentFrames(source));
            }
            if a.convert == Convert::Gpu {
                return Err(ConfigError::GpuConvertOfAgentFrames(source));
            }
        }
        let duration = match a.duration_s {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some(Duration::from_secs_f64(s)),
            Some(s) => return Err(ConfigError::Duration(s)),
        };
        a.check_output()?;
        let (output, register) = a.registration()?;
        if a.path == FramePath::ZeroCopy && a.convert == Convert::Cpu {
            return Err(ConfigError::ZeroCopyWithCpuConvert);
        }
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Ok(Config {
            width: a.width,
            height: a.height,
            fps: a.fps,
            encoder: a.encoder,
            encoder_settings: EncoderSettings::new(a.bitrate_kbps, a.fps, a.gop.unwrap_or(a.fps), a.qp_max, a.profile),
            encoder_opts: a.encoder_opts,
            convert: a.convert,
            path: a.path,
            source,
            pix_fmt: a.pix_fmt.unwrap_or(PixFmt::Rgb24),
            source_timeout: secs(a.source_timeout_s),
            stamp,
            stop: StopAfter { frames: a.frames, duration },
            pace: a.pace,
            egl_device: a.egl_device,
            gpu: a.gpu,
            output,
            register,
            mux: a.mux,
            idle: a.idle,
            max_lag: Duration::from_millis(u64::from(a.max_lag_ms)),
            leases: LeasePolicy {
                sessions: a.nvenc_sessions,
                dir: a.lock_dir.unwrap_or_else(crate::slots::default_dir),
                on_busy: a.on_busy,
                wait_timeout: Duration::from_secs(a.wait_timeout_s),
            },
            stream: a.stream.unwrap_or_else(|| format!("agentcast-{}", std::process::id())),
            stats_interval: secs(a.stats_interval_s),
            stats_file: a.stats_file,
            frame_log: a.frame_log,
            stall_timeout: secs(a.stall_timeout_s),
            faults: a.faults,
        })
    }

    /// The output's own settings: who may connect, the container, and the reader-only settings
    /// (idle, lag) where there is no reader to wait for.
    fn check_output(&self) -> Result<(), ConfigError> {
        match self.output {
            Output::Tcp(addr) if !addr.ip().is_loopback() && !self.allow_remote => {
                return Err(ConfigError::RemoteListen(addr));
            }
            Output::Tcp(_) => {}
            ref other if self.allow_remote => return Err(ConfigError::AllowRemoteWithoutTcp(other.clone())),
            _ => {}
        }
        if self.mux == Mux::Mpegts && self.output != Output::Stdout {
            return Err(ConfigError::MpegtsWithoutStdout(self.output.clone()));
        }
        if !self.output.demand_paged() && self.idle != Idle::Pause {
            return Err(ConfigError::IdleWithoutDemand);
        }
        if !matches!(self.output, Output::Fifo(_) | Output::Tcp(_)) && self.max_lag_ms != DEFAULT_MAX_LAG_MS {
            return Err(ConfigError::MaxLagWithoutFifoOrTcp);
        }
        Ok(())
    }

    /// `register`, `name`, `advertise`: the registration, and the output with its name's
    /// templates expanded (`name` also names an rtsp-listen: path).
    fn registration(&self) -> Result<(Output, Option<Register>), ConfigError> {
        let invalid = |flag, value: &str, reason| ConfigError::Invalid { flag, value: value.into(), reason };
        let expand = |flag, v: &str| register::expand_name_here(v).map_err(|e| invalid(flag, v, e));
        let name = match &self.name {
            Some(n) => {
                let expanded = expand("--name", n)?;
                output::check_name(&expanded).map_err(|e| invalid("--name", n, e))?;
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
                        output::check_name(&path).map_err(|e| invalid("--output", &self.output.to_string(), e))?;
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
                    return Err(ConfigError::NeedsRegister { flag });
                }
            }
            return Ok((output, None));
        };
        let api = register::Api::parse(url).map_err(ConfigError::RegisterUrl)?;
        let name = match (&output, name) {
            (Output::RtspListen(l), _) => l.name.clone(),
            (Output::Tcp(_), Some(n)) => n,
            (Output::Tcp(_), None) => return Err(ConfigError::TcpRegisterNeedsName),
            (other, _) => return Err(ConfigError::RegisterWithoutListener(other.clone())),
        };
        let advertise = match &self.advertise {
            Some(h) => {
                let host = expand("--advertise", h)?;
                if host.is_empty() || host.contains(['/', ' ', '@']) {
                    return Err(invalid("--advertise", h, format!("'{host}' is not a host name or address")));
                }
                Some(host)
            }
            None => None,
        };
        Ok((output, Some(Register { api, name, advertise })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with `change` applied, built.
    fn build(change: impl FnOnce(&mut ConfigBuilder)) -> Result<Config, ConfigError> {
        let mut b = ConfigBuilder::default();
        change(&mut b);
        b.build()
    }

    /// The error for `change`, checked to name `flag` and to print `message` exactly.
    fn refused(change: impl FnOnce(&mut ConfigBuilder), flag: &str, message: &str) {
        let e = build(change).unwrap_err();
        assert_eq!((e.flag(), e.to_string().as_str()), (flag, message), "{e:?}");
    }

    fn tcp(s: &str) -> Output {
        output::parse(&format!("tcp:{s}")).unwrap()
    }

    #[test]
    fn the_defaults_build() {
        let c = ConfigBuilder::default().build().unwrap();
        assert_eq!((c.width, c.height, c.fps, c.encoder_settings.gop), (1280, 720, 30, 30));
        assert_eq!((c.source, c.stamp, c.pace), (SourceSpec::Scene(BuiltinScene::Demo), true, true));
        assert_eq!((c.stats_interval, c.stall_timeout), (Some(Duration::from_secs(5)), Some(Duration::from_secs(5))));
        assert_eq!(c.faults.fail_times, 1);
    }

    #[test]
    fn sizes() {
        refused(|b| b.width = 8192, "--width", "--width must be between 32 and 4096, got 8192");
        refused(|b| b.height = 16, "--height", "--height must be between 32 and 4096, got 16");
        refused(|b| b.width = 1281, "--width", "--width must be even (4:2:0 chroma needs pixel pairs), got 1281");
        refused(
            |b| (b.width, b.height) = (4096, 4096),
            "--width",
            "--width 4096 x --height 4096 is 65536 macroblocks, more than H.264 level 5.2 allows (36864)",
        );
        let min = StampLayout::min_width();
        refused(
            |b| (b.width, b.height) = (32, 32),
            "--width",
            &format!(
                "--width 32 x --height 32 is too small for the frame stamp (needs at least {min} pixels wide); add --no-stamp"
            ),
        );
        refused(
            |b| ((b.width, b.height), b.source, b.stamp) = ((32, 32), Some(SourceSpec::Push), Some(true)),
            "--width",
            &format!(
                "--width 32 x --height 32 is too small for the frame stamp (needs at least {min} pixels wide); drop --stamp"
            ),
        );
        assert!(build(|b| ((b.width, b.height), b.stamp) = ((32, 32), Some(false))).is_ok());
    }

    /// The CLI's parser holds these to the same ranges before the library sees them.
    #[test]
    fn ranges_other_clients_could_miss() {
        refused(|b| b.fps = 0, "--fps", "--fps must be between 1 and 240, got 0");
        refused(|b| b.bitrate_kbps = 10, "--bitrate", "--bitrate must be between 64 and 500000, got 10");
        refused(|b| b.gop = Some(0), "--gop", "--gop must be between 1 and 3600, got 0");
        refused(|b| b.qp_max = 52, "--qp-max", "--qp-max must be between 1 and 51, got 52");
        refused(|b| b.max_lag_ms = 0, "--max-lag", "--max-lag must be between 1 and 60000, got 0");
    }

    #[test]
    fn stamps_sources_and_paths() {
        refused(
            |b| (b.stamp, b.frame_log) = (Some(false), Some("/tmp/x".into())),
            "--frame-log",
            "--frame-log maps frame stamps to render times; it needs the stamp (drop --no-stamp)",
        );
        refused(
            |b| (b.source, b.frame_log) = (Some(SourceSpec::Push), Some("/tmp/x".into())),
            "--frame-log",
            "--frame-log maps frame stamps to render times; it needs the stamp (add --stamp)",
        );
        refused(
            |b| b.pix_fmt = Some(PixFmt::Nv12),
            "--pix-fmt",
            "--pix-fmt nv12 describes frames from the agent (--source raw:, unix: or shm:), not --source scene:demo",
        );
        let raw = || Some(SourceSpec::Raw("-".into()));
        refused(
            |b| (b.source, b.path) = (raw(), FramePath::ZeroCopy),
            "--path",
            "--path zero-copy keeps frames agentcast renders on the GPU; frames from --source raw:- arrive in host memory",
        );
        refused(
            |b| (b.source, b.convert) = (raw(), Convert::Gpu),
            "--convert",
            "--convert gpu converts frames agentcast renders; frames from --source raw:- are converted on the CPU where the encoder needs it",
        );
        refused(
            |b| (b.path, b.convert) = (FramePath::ZeroCopy, Convert::Cpu),
            "--path",
            "--path zero-copy needs the GPU conversion; --convert cpu reads RGBA back (drop one of them)",
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = build(|b| b.duration_s = Some(bad)).unwrap_err();
            assert_eq!(
                (e.flag(), e.to_string()),
                ("--duration", format!("--duration must be a positive number of seconds, got {bad}"))
            );
        }
        let e = ConfigBuilder { source: raw(), ..ConfigBuilder::default() }.build_push().unwrap_err();
        assert_eq!(
            (e.flag(), e.to_string().as_str()),
            ("--source", "--source raw:-: a stream that takes pushed frames has no other source")
        );
        assert_eq!(ConfigBuilder::default().build_push().unwrap().source, SourceSpec::Push);
    }

    #[test]
    fn outputs() {
        refused(
            |b| b.output = tcp("0.0.0.0:9000"),
            "--output",
            "--output tcp:0.0.0.0:9000 listens beyond this machine; use a loopback address (127.0.0.1) or add --allow-remote",
        );
        assert!(build(|b| (b.output, b.allow_remote) = (tcp("0.0.0.0:9000"), true)).is_ok());
        assert!(build(|b| b.output = tcp("127.0.0.1:9001")).is_ok());
        assert!(build(|b| b.output = tcp("[::1]:9001")).is_ok());
        refused(
            |b| b.allow_remote = true,
            "--allow-remote",
            "--allow-remote only applies to --output tcp:ADDR:PORT, not --output stdout",
        );
        refused(
            |b| (b.output, b.mux) = (Output::Fifo("/tmp/a".into()), Mux::Mpegts),
            "--mux",
            "--mux mpegts works with --output stdout only (FIFO/TCP readers start at an H.264 IDR; RTSP carries H.264 in RTP), not --output fifo:/tmp/a",
        );
        refused(
            |b| b.idle = Idle::Render,
            "--idle",
            "--idle only applies to --output fifo:PATH, tcp:ADDR:PORT or rtsp-listen: (stdout and rtsp:// always have a reader)",
        );
        refused(|b| b.max_lag_ms = 100, "--max-lag", "--max-lag only applies to --output fifo:PATH or tcp:ADDR:PORT");
    }

    #[test]
    fn registration() {
        let api = || Some("http://127.0.0.1:1984".to_string());
        refused(
            |b| b.name = Some("a".into()),
            "--name",
            "--name names this stream for go2rtc; it needs --register URL",
        );
        refused(
            |b| b.advertise = Some("h".into()),
            "--advertise",
            "--advertise names this stream for go2rtc; it needs --register URL",
        );
        let e = build(|b| (b.output, b.register) = (tcp("127.0.0.1:9000"), Some("ftp://x".into()))).unwrap_err();
        assert_eq!(e.flag(), "--register");
        assert_eq!(e.to_string(), register::Api::parse("ftp://x").unwrap_err());
        refused(
            |b| (b.output, b.register) = (tcp("127.0.0.1:9000"), api()),
            "--register",
            "--register with --output tcp: needs --name (the name go2rtc lists it under)",
        );
        refused(
            |b| b.register = api(),
            "--register",
            "--register announces a stream go2rtc pulls: --output rtsp-listen:HOST:PORT/NAME or tcp:ADDR:PORT, not --output stdout",
        );
        refused(
            |b| (b.register, b.name) = (api(), Some("a b".into())),
            "--name",
            "--name a b: ' ' is not allowed in a name (use A-Z a-z 0-9 . _ -)",
        );
        refused(
            |b| {
                (b.output, b.register, b.name, b.advertise) =
                    (tcp("127.0.0.1:9000"), api(), Some("a".into()), Some("x/y".into()))
            },
            "--advertise",
            "--advertise x/y: 'x/y' is not a host name or address",
        );
        let c = build(|b| (b.output, b.register, b.name) = (tcp("127.0.0.1:9000"), api(), Some("cam".into()))).unwrap();
        assert_eq!(c.register.map(|r| r.name), Some("cam".into()));
    }
}
