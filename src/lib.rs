//! agentcast: a per-agent producer that renders headless through EGL and writes go2rtc-ready H.264.
//!
//! A frame flows one way, and so do the imports (tests/layers.rs holds the rule). From the bottom:
//! - **base**: `frame` (what a frame is: pixel formats, `RawFormat`, `Frame`), `gst_util` (the
//!   GStreamer helpers), `device` (GPU device ids), `annexb` and `check` (pure H.264 bytes), `stamp`
//!   (the machine-readable frame number), `clock`, `settings` (the plain setting values and
//!   defaults), `exit`, `faults`, `stats`, `stderr`, `fsutil`;
//! - `cuda` (the GPU runtime, all CUDA unsafe) and `plan` (where the conversion runs and which path
//!   a frame takes: pure policy over plain facts);
//! - **the stages**: `source` (the agent's frames) or `render` (scenes drawn through EGL) ->
//!   `encode` (backend choice, the settings table, the GStreamer pipeline) -> `sink` (normalised
//!   access units to stdout, a FIFO, TCP, RTSP); beside them `register` (go2rtc's API), `slots`
//!   (NVENC leases), `watchdog`. A stage imports no other stage, no config and no client;
//! - `config`: the validated settings a stream starts from ([`config::ConfigBuilder::build`]);
//! - `stream`: runs it all ([`stream::Stream`], the library's entry point), and `preflight`;
//! - **the clients**: the commands (`doctor`, `measure`, `go2rtc`), the command line (`cli`, clap)
//!   and [`cli_main`]; the Python package (python/) is a client of `stream` too.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The exit-code table, shared by `--help` and [`exit::EXIT_CODES_HELP`].
macro_rules! exit_codes_text {
    () => {
        "Exit codes:
  0   done: --frames/--duration reached, SIGTERM/SIGINT, or the reader left (BrokenPipe, or the
      RTSP server closed the session)
  1   check: the stream breaks go2rtc's rules
  2   usage: bad flag, value or AGENTCAST_* variable
  65  the shader does not compile or link (the driver's log is printed), or the agent's frames
      are malformed (a partial frame at EOF, a bad shared-memory header)
  66  an input file (--shader, check FILE) is missing or unreadable, or the PipeWire node never
      appeared within --source-timeout
  69  unavailable: no libEGL or EGL display, a GStreamer element/encoder is not installed, no
      PipeWire daemon / session manager (--source pipewire:), or the --output rtsp:// server
      cannot be reached or refuses the stream
  70  internal, GPU or encoder failure while running
  73  --output cannot be created: FIFO path taken or its directory missing, TCP or rtsp-listen:
      address in use or not this machine's; go2rtc already streams --name from a live agent;
      or --frame-log/--stats-file is a directory or in a missing one
  74  I/O error writing the output
  75  temporary: every NVENC slot is busy and --on-busy is fail (or wait timed out)
  128+N  a second SIGTERM/SIGINT (N = signal number) exits at once"
    };
}

pub mod annexb;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cuda;
pub mod device;
pub mod doctor;
pub mod encode;
mod entry;
pub mod exit;
pub mod faults;
pub mod frame;
pub mod fsutil;
pub mod go2rtc;
pub mod gst_util;
pub mod measure;
pub mod plan;
pub mod preflight;
pub mod register;
pub mod render;
pub mod settings;
pub mod sink;
pub mod slots;
pub mod source;
pub mod stamp;
pub mod stats;
pub mod stderr;
pub mod stream;
pub mod watchdog;

pub use entry::{cli_main, init_logging, usage_line};
