//! Command-line definitions (clap derive). Raw values only: `cli/validate.rs` maps them onto a
//! [`crate::config::ConfigBuilder`], which checks them; the value enums are the library's own
//! [`crate::settings`] (they derive `clap::ValueEnum`). Every flag also reads an `AGENTCAST_*`
//! environment variable, which is how docker and go2rtc configs usually set them.

mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{BITRATE_RANGE, FPS_RANGE, GOP_RANGE, MAX_LAG_RANGE, QP_MAX_RANGE};
use crate::encode::settings::Profile;
use crate::settings::{BuiltinScene, Convert, EncoderChoice, FramePath, Idle, Mux, OnBusy};
use crate::settings::{DEFAULT_BITRATE, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_MAX_LAG_MS, DEFAULT_QP_MAX};
use crate::settings::{DEFAULT_SOURCE_TIMEOUT, DEFAULT_WIDTH};

const ABOUT: &str = "Render a headless EGL scene and stream go2rtc-ready H.264 (Annex-B) on stdout";

const LONG_ABOUT: &str = "\
Render a headless EGL scene and stream go2rtc-ready H.264 (Annex-B) on stdout.

agentcast is the per-agent producer for go2rtc's exec: source. It renders through EGL (NVIDIA's
device platform, Mesa's surfaceless platform, or a pbuffer), encodes low-latency CBR H.264 with one
slice per picture and no B-frames, and writes each access unit whole and flushed, paced in real time.
Logs go to stderr only.";

const AFTER_HELP: &str = concat!(
    "\
go2rtc (go2rtc.yaml):
  streams:
    agent_01: exec:/usr/local/bin/agentcast --mux mpegts --fps 30#killsignal=15#killtimeout=5

  With --mux mpegts go2rtc passes each frame on as soon as it is in; with raw H.264 it waits for
  the next frame to start (one frame interval, the first picture's too). Without #killsignal=15
  go2rtc stops the producer with SIGKILL. go2rtc cuts the command at the first '#', so no argument
  may contain one.

By hand, into MPEG-TS:
  agentcast --frames 300 | ffmpeg -f h264 -i - -c copy -f mpegts out.ts

Keep the producer running and let go2rtc attach on demand:
  agent_01: exec:cat /run/agentcast/agent_01.h264#killsignal=15#killtimeout=2
    with: agentcast --output fifo:/run/agentcast/agent_01.h264
  agent_02: tcp://127.0.0.1:9002
    with: agentcast --output tcp:127.0.0.1:9002

Check any H.264 stream against go2rtc's rules:
  agentcast --frames 90 > out.h264 && agentcast check out.h264

Signals: SIGTERM/SIGINT finish the current access unit and exit 0 (a second one exits at once);
SIGUSR1 makes the next frame an IDR with SPS/PPS.

Logging: --log-level or AGENTCAST_LOG_LEVEL, else RUST_LOG, else info.

",
    exit_codes_text!()
);

#[derive(Debug, Parser)]
#[command(
    name = "agentcast",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub stream: StreamArgs,

    /// Log filter: error, warn, info, debug, trace, or env_logger syntax (agentcast=debug,...).
    #[arg(long, global = true, env = "AGENTCAST_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

impl Cli {
    /// Parses `args` (program name first). Stream flags given on the command line together with
    /// a subcommand are an error rather than ignored; `--log-level` goes anywhere, and
    /// `AGENTCAST_*` variables do not count (they are meant to be set for every invocation).
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let mut cmd = Cli::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        if let Some((name, _)) = matches.subcommand() {
            let stray = cmd.get_arguments().find(|a| {
                !a.is_global_set()
                    && matches.try_contains_id(a.get_id().as_str()).unwrap_or(false)
                    && matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
            });
            if let Some(arg) = stray {
                let flag = arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                let message = format!("the subcommand '{name}' cannot be used with '{flag}' (a stream flag)");
                return Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, message));
            }
        }
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the H.264 encoder backends: installed or not, whether each really opens here (and why
    /// not), and which one `--encoder auto` would choose.
    Encoders(EncodersArgs),
    /// Print a go2rtc config (YAML) that serves a fleet of agents: exec (go2rtc runs agentcast),
    /// fifo (go2rtc runs `cat FIFO`), tcp (go2rtc connects to agentcast) or pull (no streams:
    /// agents serve rtsp-listen: and --register themselves). Producer arguments go
    /// after `--`.
    #[command(name = "go2rtc-config")]
    Go2rtcConfig(Go2rtcArgs),
    /// Check this machine: GStreamer, EGL and the GL renderer, CUDA, NVENC and VA-API (opened for
    /// real), the encoder `auto` picks, NVENC slots, lock and FIFO directories. One line per check;
    /// exits 69 when the default path cannot work.
    Doctor(DoctorArgs),
    /// Show the NVENC session slots in the lock directory: free, or held by which pid and stream.
    Slots(SlotsArgs),
    /// Check an Annex-B H.264 stream (ours, ffmpeg's, a camera's) against go2rtc's rules.
    ///
    /// Reports every violation with its byte offset: stream start, SPS/PPS in the first 256 bytes,
    /// 4-byte start codes, SPS+PPS before every IDR, one slice per picture, no B slices, one SPS.
    /// Exits 1 when the stream breaks a rule, 66 when FILE cannot be read.
    Check(CheckArgs),
    /// Measure end-to-end latency from outside: run a producer (the flags after `--`), timestamp
    /// every access unit as it arrives on its stdout, decode the frame stamps and report render ->
    /// arrival per frame (p50/p99/max), the extra frame go2rtc's framing adds, and the producer's own
    /// per-stage figures. Frames whose stamp cannot be read are counted as misreads, never guessed.
    /// With `--via rtsp://HOST:PORT/NAME --frame-log PATH` it runs no producer: it plays a go2rtc
    /// stream as a viewer would (rtspsrc latency=0, in-process decoder) and reports render ->
    /// viewer-decoded per frame, for a producer go2rtc runs with `--frame-log PATH`.
    Latency(LatencyArgs),
    /// Is it the encoder settings? Render the `gradient` and `demo` scenes (or the --scene/--shader
    /// after `--`), encode them with the producer's encoder and settings, decode in-process
    /// (avdec_h264, else openh264dec) and compare every picture with its source by frame stamp: PSNR, SSIM and a
    /// banding score (false contour steps per 10,000 positions where the source is smooth; 0 = none).
    /// `--sweep` varies bitrate and --qp-max per size and names the cheapest settings under
    /// --threshold.
    Quality(QualityArgs),
}

#[derive(Debug, Args)]
pub struct QualityArgs {
    /// Frames to render and encode per run.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub frames: u64,
    /// Vary bitrate and --qp-max for each size and print which settings keep banding under
    /// --threshold at the lowest bitrate.
    #[arg(long)]
    pub sweep: bool,
    /// With --sweep: bitrates to try, kbit/s [default: 500,1000,2000,4000,8000].
    #[arg(long, value_delimiter = ',', value_name = "KBPS,...")]
    pub bitrates: Option<Vec<u32>>,
    /// With --sweep: --qp-max values to try [default: 34,42,51].
    #[arg(long, value_delimiter = ',', value_name = "QP,...")]
    pub qp_max_values: Option<Vec<u32>>,
    /// With --sweep: sizes to try [default: 1280x720,1920x1080].
    #[arg(long, value_delimiter = ',', value_name = "WxH,...")]
    pub sizes: Option<Vec<String>>,
    /// Banding score that counts as visible banding (mean over the compared pictures).
    #[arg(long, default_value_t = 1.0)]
    pub threshold: f64,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Producer flags (after `--`): --scene/--shader, --width/--height, --fps, --bitrate, --qp-max,
    /// --gop, --profile, --encoder, --encoder-opt.
    #[arg(last = true, value_name = "PRODUCER ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Frames to stream and measure.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(2..))]
    pub frames: u64,
    /// Print JSON (with every frame's figures) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Also keep the captured stream in this file.
    #[arg(long, value_name = "PATH", conflicts_with = "via")]
    pub keep_stream: Option<PathBuf>,
    /// Measure as a viewer of this RTSP stream (e.g. go2rtc's rtsp://127.0.0.1:8554/NAME) instead of
    /// running a producer; needs --frame-log, the log the producer (run by go2rtc) writes.
    #[arg(long, value_name = "rtsp://HOST:PORT/NAME", requires = "frame_log")]
    pub via: Option<String>,
    /// With --via: the producer's --frame-log file (same machine: both sides use CLOCK_MONOTONIC).
    #[arg(long, value_name = "PATH", requires = "via")]
    pub frame_log: Option<PathBuf>,
    /// The producer's flags (after `--`), e.g. `-- --width 1920 --height 1080 --bitrate 6000`.
    #[arg(last = true, value_name = "PRODUCER ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EncodersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Probe at this size (the default stream size).
    #[arg(long, default_value_t = DEFAULT_WIDTH)]
    pub width: u32,
    #[arg(long, default_value_t = DEFAULT_HEIGHT)]
    pub height: u32,
}

#[derive(Debug, Args)]
pub struct Go2rtcArgs {
    /// Number of agents, named agent_01, agent_02, ... [default: 1].
    #[arg(long, conflicts_with = "names")]
    pub agents: Option<u32>,
    /// An agent's stream name (repeatable) instead of --agents.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// How go2rtc gets each stream.
    #[arg(long, value_enum, default_value_t = crate::go2rtc::Mode::Exec)]
    pub mode: crate::go2rtc::Mode,
    /// The agentcast binary as go2rtc runs it (exec and rtsp modes) and as exec.allow_paths lists it.
    #[arg(long, default_value = "/usr/local/bin/agentcast")]
    pub bin: String,
    /// The address go2rtc's api, rtsp and webrtc listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: String,
    /// FIFO mode: each agent's FIFO; {name} is the stream name.
    #[arg(long, default_value = "/run/agentcast/{name}.h264")]
    pub fifo_path: String,
    /// TCP mode: the first agent's port; the others count up from it.
    #[arg(long, default_value_t = 9001)]
    pub tcp_port_base: u16,
    /// Extra arguments for every producer (after `--`), e.g. `-- --fps 30 --bitrate 3000`.
    #[arg(last = true, value_name = "PRODUCER ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    /// The NVENC lock directory to check [default: $XDG_RUNTIME_DIR/agentcast, else /run/agentcast].
    #[arg(long, env = "AGENTCAST_LOCK_DIR", value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// The directory FIFO outputs go in [default: the lock directory].
    #[arg(long, value_name = "DIR")]
    pub fifo_dir: Option<PathBuf>,
    /// Probe encoders at this size.
    #[arg(long, default_value_t = DEFAULT_WIDTH)]
    pub width: u32,
    #[arg(long, default_value_t = DEFAULT_HEIGHT)]
    pub height: u32,
}

#[derive(Debug, Args)]
pub struct SlotsArgs {
    /// The lock directory [default: $XDG_RUNTIME_DIR/agentcast, else /run/agentcast].
    #[arg(long, env = "AGENTCAST_LOCK_DIR", value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// How many slots to show [default: the slot files found].
    #[arg(long, env = "AGENTCAST_NVENC_SESSIONS", value_name = "N")]
    pub nvenc_sessions: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The stream to read; '-' reads standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: PathBuf,
}

fn parse_encoder_opt(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.trim().to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

/// The streaming options (the default command).
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Picture width in pixels (even).
    #[arg(long, env = "AGENTCAST_WIDTH", default_value_t = DEFAULT_WIDTH)]
    pub width: u32,

    /// Picture height in pixels (even).
    #[arg(long, env = "AGENTCAST_HEIGHT", default_value_t = DEFAULT_HEIGHT)]
    pub height: u32,

    /// Frames per second; output is paced in real time at this rate.
    #[arg(long, env = "AGENTCAST_FPS", default_value_t = DEFAULT_FPS,
          value_parser = clap::value_parser!(u32).range(range(FPS_RANGE)))]
    pub fps: u32,

    /// Target bitrate in kbit/s (CBR).
    #[arg(long, env = "AGENTCAST_BITRATE", default_value_t = DEFAULT_BITRATE,
          value_parser = clap::value_parser!(u32).range(range(BITRATE_RANGE)))]
    pub bitrate: u32,

    /// Keyframe interval in frames [default: one second of frames, i.e. --fps].
    #[arg(long, env = "AGENTCAST_GOP", value_parser = clap::value_parser!(u32).range(range(GOP_RANGE)))]
    pub gop: Option<u32>,

    /// Upper bound on the quantiser, against banding in smooth gradients (1-51).
    #[arg(long, env = "AGENTCAST_QP_MAX", default_value_t = DEFAULT_QP_MAX,
          value_parser = clap::value_parser!(u32).range(range(QP_MAX_RANGE)))]
    pub qp_max: u32,

    /// H.264 profile.
    #[arg(long, env = "AGENTCAST_PROFILE", value_enum, default_value_t = Profile::High)]
    pub profile: Profile,

    /// Encoder backend. Each candidate is probed by really encoding a frame, never by name.
    #[arg(long, env = "AGENTCAST_ENCODER", value_enum, default_value_t = EncoderChoice::Auto)]
    pub encoder: EncoderChoice,

    /// Set an encoder element property, after the built-in settings (repeatable; the environment
    /// variable takes a comma-separated list). Checked against the element's real properties;
    /// settings that break go2rtc (B-frames, several slices) are refused.
    #[arg(long = "encoder-opt", env = "AGENTCAST_ENCODER_OPT", value_name = "NAME=VALUE", value_delimiter = ',',
          value_parser = parse_encoder_opt)]
    pub encoder_opts: Vec<(String, String)>,

    /// At most this many NVENC sessions across all agentcast processes sharing --lock-dir
    /// (GeForce cards allow about 8 per system); 0 = no limit.
    #[arg(long, env = "AGENTCAST_NVENC_SESSIONS", value_name = "N", default_value_t = 0)]
    pub nvenc_sessions: u32,

    /// Directory of the NVENC slot locks, shared by every agent on the machine (a shared volume in
    /// docker) [default: $XDG_RUNTIME_DIR/agentcast, else /run/agentcast].
    #[arg(long, env = "AGENTCAST_LOCK_DIR", value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,

    /// What to do when every NVENC slot is busy, or NVENC refuses another session.
    #[arg(long, env = "AGENTCAST_ON_BUSY", value_enum, default_value_t = OnBusy::Fallback)]
    pub on_busy: OnBusy,

    /// With --on-busy wait: how long to wait for a slot.
    #[arg(long, env = "AGENTCAST_WAIT_TIMEOUT", value_name = "SECONDS", default_value_t = 30)]
    pub wait_timeout: u64,

    /// This stream's name, for logs and the slot records [default: agentcast-PID].
    #[arg(long, env = "AGENTCAST_STREAM", value_name = "NAME")]
    pub stream: Option<String>,

    /// Log one JSON stats line to stderr this often (seconds; 0 = never): counters, fps, bitrate,
    /// p50/p99 latency per stage, NVENC slot, RSS.
    #[arg(long, env = "AGENTCAST_STATS_INTERVAL", value_name = "SECONDS", default_value_t = 5)]
    pub stats_interval: u64,

    /// Also keep the latest stats in this file, replaced atomically (for dashboards and scripts).
    #[arg(long, env = "AGENTCAST_STATS_FILE", value_name = "PATH")]
    pub stats_file: Option<PathBuf>,

    /// Exit 70 (so the supervisor restarts us) when frames go into the encoder but no access unit
    /// comes out for this long, or the frame loop stops coming round; 0 = never.
    #[arg(long, env = "AGENTCAST_STALL_TIMEOUT", value_name = "SECONDS", default_value_t = 5)]
    pub stall_timeout: u64,

    /// Testing aid: after this many access units the encoder's output is silently dropped, as if
    /// it had hung.
    #[arg(long, hide = true, env = "AGENTCAST_DEBUG_STALL_AFTER", value_name = "N")]
    pub debug_stall_after: Option<u64>,

    /// Testing aid: the encoder posts an error after this many access units.
    #[arg(long, hide = true, env = "AGENTCAST_DEBUG_FAIL_AFTER", value_name = "N")]
    pub debug_fail_after: Option<u64>,

    /// Testing aid: how many pipelines (the first ones built) get --debug-fail-after.
    #[arg(long, hide = true, env = "AGENTCAST_DEBUG_FAIL_TIMES", value_name = "K", default_value_t = 1)]
    pub debug_fail_times: u32,

    /// Testing aid: make this (software) encoder take NVENC slot leases as if it were NVENC.
    #[arg(long, hide = true, env = "AGENTCAST_DEBUG_LEASE_ENCODER", value_name = "ELEMENT")]
    pub debug_lease_encoder: Option<String>,

    /// Testing aid: let the zero-copy path feed a CPU encoder through cudadownload, to check the
    /// GL -> CUDA -> GStreamer handoff on GPUs without NVENC (H100/H200/A100).
    #[arg(long, hide = true, env = "AGENTCAST_DEBUG_CUDA_DOWNLOAD")]
    pub debug_cuda_download: bool,

    /// Where RGBA becomes YUV.
    #[arg(long, env = "AGENTCAST_CONVERT", value_enum, default_value_t = Convert::Auto)]
    pub convert: Convert,

    /// How frames reach the encoder: zero-copy keeps them on the GPU (NVIDIA with NVENC), readback
    /// copies them to the host. The stats' "path" and "host_bytes_per_frame" say which ran.
    #[arg(long, env = "AGENTCAST_PATH", value_enum, default_value_t = FramePath::Auto)]
    pub path: FramePath,

    /// Where frames come from. Drawn here through EGL: scene:demo, scene:gradient or shader:FILE.
    /// The agent's own frames: raw:PATH (raw frames in ffmpeg's rawvideo layout from a pipe, FIFO or
    /// file; raw:- is standard input), unix:PATH (a socket agentcast listens on; one agent
    /// connects and writes raw frames), shm:NAME (the shared-memory ring /dev/shm/NAME, see
    /// docs/SHM.md) or pipewire:TARGET (a PipeWire video node). Agent frames are --width x
    /// --height in --pix-fmt; the newest wins, the last one repeats while none comes
    /// [default: scene:demo].
    #[arg(long, env = "AGENTCAST_SOURCE", value_name = "KIND:WHAT", value_parser = crate::source::SourceSpec::parse,
          conflicts_with_all = ["scene", "shader"])]
    pub source: Option<crate::source::SourceSpec>,

    /// Pixel format of the agent's frames (raw:, unix:, shm:), named as ffmpeg's -pix_fmt:
    /// rgb24, bgr24, rgba, bgra, rgb0, bgr0, gray, nv12, i420 (= yuv420p) [default: rgb24].
    #[arg(long, env = "AGENTCAST_PIX_FMT", value_name = "FMT", value_parser = parse_pix_fmt)]
    pub pix_fmt: Option<crate::frame::PixFmt>,

    /// End the stream (exit 0) when the agent has sent no frame for this long (seconds; 0 =
    /// never). Until then the last frame repeats at --fps. pipewire: counts only while the node
    /// is missing (a silent node is a still picture); one that never appeared exits 66.
    #[arg(long, env = "AGENTCAST_SOURCE_TIMEOUT", value_name = "SECONDS", default_value_t = DEFAULT_SOURCE_TIMEOUT)]
    pub source_timeout: u64,

    /// Built-in scene (shorthand for --source scene:NAME).
    #[arg(long, env = "AGENTCAST_SCENE", value_enum, default_value_t = BuiltinScene::Demo)]
    pub scene: BuiltinScene,

    /// Render a Shadertoy-style fragment shader instead of a built-in scene (shorthand for
    /// --source shader:FILE): it defines
    /// `void mainImage(out vec4 fragColor, in vec2 fragCoord)` and may use iTime, iResolution,
    /// iFrame, iTimeDelta and iFrameRate (GLSL ES 3.00).
    #[arg(long, env = "AGENTCAST_SHADER", value_name = "FILE", conflicts_with = "scene")]
    pub shader: Option<PathBuf>,

    /// Leave out the frame-number stamp (the row of black and white blocks near the top) that
    /// scenes carry.
    #[arg(long, env = "AGENTCAST_NO_STAMP", conflicts_with = "stamp")]
    pub no_stamp: bool,

    /// Draw the frame-number stamp over the agent's frames too (for `agentcast latency` and
    /// quality measurements; scenes carry it unless --no-stamp).
    #[arg(long, env = "AGENTCAST_STAMP")]
    pub stamp: bool,

    /// Append one line per rendered frame to this file: its frame number (the stamp) and
    /// CLOCK_MONOTONIC in nanoseconds when its render started. `agentcast latency` maps decoded
    /// stamps back to render times with it.
    #[arg(long, env = "AGENTCAST_FRAME_LOG", value_name = "PATH")]
    pub frame_log: Option<PathBuf>,

    /// Stop cleanly after this many frames have been encoded.
    #[arg(long, env = "AGENTCAST_FRAMES", value_parser = clap::value_parser!(u64).range(1..))]
    pub frames: Option<u64>,

    /// Stop cleanly after this many seconds of stream (fractions allowed).
    #[arg(long, env = "AGENTCAST_DURATION", value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Render and encode as fast as possible instead of pacing at --fps (benchmarks, files).
    #[arg(long, env = "AGENTCAST_NO_PACE")]
    pub no_pace: bool,

    /// Where the stream goes: stdout, fifo:PATH (readers such as `cat PATH` attach and leave at any
    /// time; created with mode 0600 if missing), tcp:ADDR:PORT (listen; one reader at a time) or
    /// rtsp://HOST:PORT/PATH (publish over RTSP/TCP, e.g. go2rtc's `{output}`; ends with exit 0
    /// when the server closes the session) or rtsp-listen:HOST:PORT/NAME (serve RTSP as an IP camera
    /// does: any number of clients share one encoder; port 0 takes a free port; see --register).
    #[arg(long, env = "AGENTCAST_OUTPUT", default_value = "stdout",
          value_name = "stdout|fifo:PATH|tcp:ADDR:PORT|rtsp://HOST:PORT/PATH|rtsp-listen:HOST:PORT/NAME",
          value_parser = crate::sink::output::parse)]
    pub output: crate::sink::output::Output,

    /// Container for stdout: raw H.264, or MPEG-TS (go2rtc detects it by its 0x47 sync byte and
    /// then uses its timestamps instead of arrival times).
    #[arg(long, env = "AGENTCAST_MUX", value_enum, default_value_t = Mux::Raw)]
    pub mux: Mux,

    /// Allow --output tcp: to listen on an address other than loopback.
    #[arg(long, env = "AGENTCAST_ALLOW_REMOTE")]
    pub allow_remote: bool,

    /// Register this stream with go2rtc's API (http://[USER:PASS@]HOST:PORT) once the output
    /// listens (rtsp-listen: or tcp:), as a camera go2rtc pulls while someone watches; checked every
    /// 3 s (registered again after a go2rtc restart), removed on exit. A name another live agent
    /// streams under is refused (exit 73); go2rtc out of reach only warns, and streaming goes on.
    #[arg(long, env = "AGENTCAST_REGISTER", value_name = "URL")]
    pub register: Option<String>,

    /// The name to register (and, with rtsp-listen:, the RTSP path served) [default: the
    /// rtsp-listen: path]. May use {hostname}, {pid} and {env:VAR}, e.g. run7-{env:POD_NAME}.
    #[arg(long, env = "AGENTCAST_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// The host go2rtc should dial (an address or name; {env:VAR} allowed, e.g. {env:POD_IP})
    /// [default: the output's address, or for 0.0.0.0/:: this machine's address on the route to
    /// go2rtc].
    #[arg(long, env = "AGENTCAST_ADVERTISE", value_name = "HOST")]
    pub advertise: Option<String>,

    /// FIFO/TCP: what to do while no reader is attached.
    #[arg(long, env = "AGENTCAST_IDLE", value_enum, default_value_t = Idle::Pause)]
    pub idle: Idle,

    /// FIFO/TCP: how far (milliseconds of stream) a reader may fall behind before whole access units
    /// are dropped up to the next IDR.
    #[arg(long, env = "AGENTCAST_MAX_LAG", value_name = "MS", default_value_t = DEFAULT_MAX_LAG_MS,
          value_parser = clap::value_parser!(u32).range(range(MAX_LAG_RANGE)))]
    pub max_lag: u32,

    /// Render on this EGL device (index into eglQueryDevicesEXT; see --log-level debug). With CUDA,
    /// it must be the --gpu device.
    #[arg(long, env = "AGENTCAST_EGL_DEVICE", value_name = "N")]
    pub egl_device: Option<u32>,

    /// CUDA device (ordinal, as CUDA_VISIBLE_DEVICES leaves them) to render, convert and encode on:
    /// the NVIDIA EGL device that is this GPU is picked (by PCI bus id or EGL_CUDA_DEVICE_NV) and
    /// NVENC opens on it. Default 0 where there is CUDA; an error where there is none.
    #[arg(long, env = "AGENTCAST_GPU", value_name = "N")]
    pub gpu: Option<u32>,
}

/// A library range as clap's integer parsers take it.
fn range(r: std::ops::RangeInclusive<u32>) -> std::ops::RangeInclusive<i64> {
    i64::from(*r.start())..=i64::from(*r.end())
}

fn parse_pix_fmt(s: &str) -> Result<crate::frame::PixFmt, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn after_help_lists_the_documented_exit_codes() {
        assert!(AFTER_HELP.ends_with(crate::exit::EXIT_CODES_HELP));
    }

    #[test]
    fn log_level_goes_anywhere_but_stream_flags_do_not_mix_with_subcommands() {
        for argv in
            [&["agentcast", "--log-level", "debug", "slots"][..], &["agentcast", "slots", "--log-level", "debug"]]
        {
            let cli = Cli::parse_args(argv).unwrap();
            assert!(matches!(cli.command, Some(Command::Slots(_))), "{argv:?}");
            assert_eq!(cli.log_level.as_deref(), Some("debug"), "{argv:?}");
        }
        let e = Cli::parse_args(["agentcast", "--fps", "60", "slots"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(e.to_string().contains("the subcommand 'slots' cannot be used with '--fps'"), "{e}");
        let cli = Cli::parse_args(["agentcast", "--fps", "60", "--log-level", "warn"]).unwrap();
        assert!(cli.command.is_none() && cli.stream.fps == 60);
    }

    #[test]
    fn subcommand_and_flags() {
        let cli = Cli::try_parse_from(["agentcast", "check", "x.h264"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Check(ref a)) if a.input.as_os_str() == "x.h264"));
        let cli = Cli::try_parse_from(["agentcast", "--fps", "60", "--encoder", "openh264"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!((cli.stream.fps, cli.stream.encoder), (60, EncoderChoice::Openh264));
        assert!(Cli::try_parse_from(["agentcast", "--fps", "0"]).is_err());
        assert!(Cli::try_parse_from(["agentcast", "--encoder", "vp8"]).is_err());
    }
}
