//! `--source pipewire:TARGET` against a real PipeWire: `scripts/pipewire-headless.sh` starts
//! PipeWire and WirePlumber in a private runtime directory per test, and a stand-in for gamescope
//! (`gst-launch-1.0 videotestsrc ! pipewiresink mode=provide`) publishes the video node. Every
//! process has a deadline, and each test checks that nothing it started is left behind.
//!
//! Without PipeWire installed (scripts/setup.sh installs it) a test says "skipped: ..." on stderr
//! and passes, except under `CI=true`, where it fails naming what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agentcast::annexb::{self, nal_type};
use agentcast::measure::metrics::psnr;

use crate::check_command::check_ok;
use crate::cli::assert_usage_error;
use crate::util::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pipewire-headless.sh");
/// The stream's size; the stand-ins send 4:3, so the pictures get borders left and right.
const W: u32 = 640;
const H: u32 = 360;
const SCRIPT_LIMIT: Duration = Duration::from_secs(30);
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs a command to completion within `limit` (killed and failed past it).
fn output_bounded(mut cmd: Command, limit: Duration) -> Output {
    Running::start(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn_within(DEADLINE))
        .finish(limit)
}

/// A child whose stdout and stderr are read on threads from the start, so it never blocks on a
/// full pipe (a stream writer that blocks backs its encoder up).
struct Running {
    child: Proc,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
}

impl Running {
    fn start(mut child: Proc) -> Running {
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut p) = pipe {
                    p.read_to_end(&mut v).ok();
                }
                v
            })
        };
        let out = read(child.stdout.take().map(|p| Box::new(p) as _));
        let err = read(child.stderr.take().map(|p| Box::new(p) as _));
        Running { child, out, err }
    }

    /// Waits for the exit within `limit` (kills the child and fails past it).
    fn finish(mut self, limit: Duration) -> Output {
        let status = wait_bounded(&mut self.child, limit);
        Output { status, stdout: self.out.join().unwrap(), stderr: self.err.join().unwrap() }
    }
}

/// PipeWire (+ WirePlumber) for one test, in its own runtime directory. Dropping it stops them.
struct Daemons {
    dir: tempfile::TempDir,
    stopped: bool,
}

impl Daemons {
    /// `None` (and "skipped: ..." on stderr) where PipeWire is not installed; under `CI=true`
    /// (where scripts/setup.sh has installed it) its absence fails the test instead.
    fn start(session_manager: bool) -> Option<Daemons> {
        for tool in ["pipewire", "wireplumber", "pw-cli", "dbus-daemon"] {
            if !on_path(tool) {
                return not_installed(&format!("{tool} is not installed (scripts/setup.sh installs PipeWire)"));
            }
        }
        // Not `gst-inspect-1.0 --exists`: it compares the plugin's version (PipeWire's 0.3.x) with
        // GStreamer's and says no.
        let inspect = Command::new("gst-inspect-1.0").arg("pipewiresrc").output_within(DEADLINE);
        if !inspect.status.success() {
            return not_installed("GStreamer's pipewiresrc is not installed (gstreamer1.0-pipewire)");
        }
        let daemons = Daemons { dir: tempdir(), stopped: false };
        let mut cmd = Command::new(SCRIPT);
        cmd.arg("start").arg(daemons.dir.path());
        if !session_manager {
            cmd.env("AGENTCAST_PIPEWIRE_NO_SESSION_MANAGER", "1");
        }
        let out = output_bounded(cmd, SCRIPT_LIMIT);
        assert!(out.status.success(), "pipewire-headless.sh start failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let exports = String::from_utf8_lossy(&out.stdout);
        assert!(exports.contains(&format!("export XDG_RUNTIME_DIR={}", daemons.dir.path().display())), "{exports}");
        Some(daemons)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a client of these daemons needs.
    fn env(&self) -> Vec<(&'static str, String)> {
        let d = self.dir().display();
        vec![
            ("XDG_RUNTIME_DIR", d.to_string()),
            ("PIPEWIRE_RUNTIME_DIR", d.to_string()),
            ("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={d}/bus")),
        ]
    }

    /// agentcast as a client of these daemons.
    fn agentcast(&self, args: &[&str]) -> Command {
        let mut cmd = agentcast(args);
        cmd.envs(self.env()).env_remove("PIPEWIRE_REMOTE");
        cmd
    }

    /// agentcast started as a client of these daemons, its output read as it comes.
    fn spawn(&self, args: &[&str]) -> Running {
        let mut cmd = self.agentcast(args);
        Running::start(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn_within(DEADLINE))
    }

    /// A gamescope stand-in: a live test pattern published as a Video/Source node `name`.
    fn standin(&self, name: &str, pattern: &str, format: &str, width: u32, height: u32) -> Standin {
        let caps = format!("video/x-raw,format={format},width={width},height={height},framerate=30/1");
        let props = format!("props,media.class=Video/Source,node.name={name}");
        let child = Command::new("gst-launch-1.0")
            .args(["-q", "videotestsrc", "is-live=true", &format!("pattern={pattern}"), "!", &caps, "!"])
            .args(["pipewiresink", "mode=provide", &format!("stream-properties={props}")])
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn_within(DEADLINE);
        let standin = Standin { child, name: name.to_string() };
        standin.wait_listed(self);
        standin
    }

    /// Node names PipeWire lists now.
    fn node_names(&self) -> String {
        let mut cmd = Command::new("pw-cli");
        cmd.args(["ls", "Node"]).envs(self.env());
        String::from_utf8_lossy(&output_bounded(cmd, Duration::from_secs(10)).stdout).into_owned()
    }

    /// Stops the daemons and checks that no process of this test's PipeWire is left.
    fn stop(mut self) {
        self.stop_quietly();
        let left = processes_using(self.dir());
        assert!(left.is_empty(), "processes left behind: {left:?}");
    }

    fn stop_quietly(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let mut cmd = Command::new(SCRIPT);
        cmd.arg("stop").arg(self.dir.path());
        let out = output_bounded(cmd, SCRIPT_LIMIT);
        if !out.status.success() {
            eprintln!("pipewire-headless.sh stop failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// What a test does without PipeWire: fails under `CI=true`, else says it skipped and why.
fn not_installed(what: &str) -> Option<Daemons> {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "no PipeWire: {what}; CI=true requires it");
    eprintln!("skipped: {what} (under CI=true this fails)");
    None
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

/// Live processes (not zombies) whose environment names `dir` as their runtime directory.
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = format!("XDG_RUNTIME_DIR={}", dir.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.split_whitespace().nth(2) == Some("Z") {
            continue;
        }
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push(format!("{pid} {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// A running stand-in; killed on drop.
struct Standin {
    child: Proc,
    name: String,
}

impl Standin {
    /// Waits (bounded) until PipeWire lists the node.
    fn wait_listed(&self, daemons: &Daemons) {
        let start = Instant::now();
        let want = format!("node.name = \"{}\"", self.name);
        while !daemons.node_names().contains(&want) {
            assert!(start.elapsed() < Duration::from_secs(20), "the stand-in node {} never appeared", self.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stand-in's pattern rendered directly, through the same scaling into W x H: its luma plane.
fn reference_luma(dir: &Path, pattern: &str, format: &str, width: u32, height: u32) -> Vec<u8> {
    let path = dir.join(format!("ref-{pattern}-{width}x{height}.yuv"));
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["-q", "videotestsrc", &format!("pattern={pattern}"), "num-buffers=1", "!"])
        .arg(format!("video/x-raw,format={format},width={width},height={height}"))
        .args(["!", "videoconvert", "!", "videoscale", "add-borders=true", "!"])
        .arg(format!("video/x-raw,format=I420,width={W},height={H},pixel-aspect-ratio=1/1"))
        .args(["!", "filesink"])
        .arg(format!("location={}", path.display()));
    let out = output_bounded(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "rendering the reference: {}", String::from_utf8_lossy(&out.stderr));
    let mut yuv = std::fs::read(&path).unwrap();
    yuv.truncate((W * H) as usize);
    assert_eq!(yuv.len(), (W * H) as usize);
    yuv
}

/// Runs agentcast to completion, with a deadline.
fn capture(daemons: &Daemons, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = output_bounded(daemons.agentcast(args), RUN_LIMIT);
    (out, start.elapsed())
}

fn final_stats(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the stats file");
    let line =
        text.lines().rev().find(|l| l.contains("\"final\"")).unwrap_or_else(|| panic!("no final stats in {text}"));
    serde_json::from_str(line).unwrap()
}

/// Distinct SPS NAL units in a stream (one per stream: the size never changes).
fn distinct_sps(buf: &[u8]) -> usize {
    let mut sps: Vec<&[u8]> = annexb::nals(buf).filter(|n| n.nal_type() == nal_type::SPS).map(|n| n.data).collect();
    sps.sort();
    sps.dedup();
    sps.len()
}

fn stream_file(dir: &Path, name: &str, out: &Output) -> PathBuf {
    assert!(out.status.success(), "agentcast failed ({:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let path = write(dir, name, &out.stdout);
    check_ok(&path);
    assert_eq!(decode_errors(&path), "");
    path
}

#[test]
fn pipewire_capture_passes_check_and_matches_the_pattern() {
    let Some(daemons) = Daemons::start(true) else { return };
    let standin = daemons.standin("standin-bars", "smpte100", "BGRx", 320, 240);
    let stats = daemons.dir().join("stats.json");
    let args =
        ["--source", "pipewire:standin-bars", "--frames", "90", "--no-stamp", "--width", "640", "--height", "360"];
    let (out, _) = capture(&daemons, &[&args[..], &["--stats-file", stats.to_str().unwrap()]].concat());
    let path = stream_file(daemons.dir(), "out.h264", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the node sends BGRx 320x240 (scaled to 640x360, aspect kept with borders)"), "{err}");
    assert!(err.contains("path: pipewire:standin-bars = standin-bars (serial"), "{err}");
    let p = probe(&path);
    assert_eq!((p.width, p.height, p.frames.len()), (W, H, 90));
    let reference = reference_luma(daemons.dir(), "smpte100", "BGRx", 320, 240);
    let pictures = decode_coded_luma(&path, W, H);
    let scores: Vec<f64> = [0, 45, 89].iter().map(|&i| psnr(&reference, &pictures[i])).collect();
    eprintln!("PSNR against the pattern rendered directly: {scores:.1?} dB");
    assert!(scores.iter().all(|&s| s >= 30.0), "PSNR {scores:.1?} dB, want >= 30");
    let s = final_stats(&stats);
    let source = s["source"].as_str().unwrap();
    assert!(source.contains("BGRx 320x240 in ") && source.contains(" buffers -> i420 640x360"), "{source}");
    standin.stop();
    daemons.stop();
}

#[test]
fn pipewire_node_gone_for_3_s_is_bridged_with_repeats_then_new_frames() {
    let Some(daemons) = Daemons::start(true) else { return };
    let first = daemons.standin("standin-game", "smpte100", "BGRx", 320, 240);
    let stats = daemons.dir().join("stats.json");
    let args = ["--source", "pipewire:standin-game", "--frames", "240", "--width", "640", "--height", "360"];
    let child = daemons.spawn(&[&args[..], &["--stats-file", stats.to_str().unwrap()]].concat());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    first.stop();
    std::thread::sleep(Duration::from_secs(3));
    let second = daemons.standin("standin-game", "colors", "BGRx", 320, 240);
    let gap = started.elapsed();
    let out = child.finish(RUN_LIMIT);
    eprintln!("the node was back {gap:?} after the start");
    let path = stream_file(daemons.dir(), "out.h264", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("went away; the last frame repeats"), "{err}");
    let s = final_stats(&stats);
    let repeated = s["repeated"].as_u64().unwrap();
    eprintln!("repeated {repeated} of 240 frames; final stats: {s}");
    // 3 s without the node at 30 fps is 90 slots; allow for the node's own start-up either side.
    assert!(repeated >= 60, "only {repeated} repeats for a 3 s gap");
    assert_eq!(s["frames"]["encoded"], 240, "every slot is encoded: the fps is kept");
    let pictures = decode_coded_luma(&path, W, H);
    assert_eq!(pictures.len(), 240);
    let bars = reference_luma(daemons.dir(), "smpte100", "BGRx", 320, 240);
    let colors = reference_luma(daemons.dir(), "colors", "BGRx", 320, 240);
    let (before, after) = (&pictures[10], &pictures[239]);
    eprintln!(
        "PSNR: frame 10 vs bars {:.1} dB, frame 239 vs colors {:.1} dB (vs bars {:.1} dB)",
        psnr(&bars, before),
        psnr(&colors, after),
        psnr(&bars, after)
    );
    assert!(psnr(&bars, before) >= 30.0);
    assert!(psnr(&colors, after) >= 30.0, "the new node's frames arrive after the gap");
    assert!(psnr(&bars, after) < 20.0);
    second.stop();
    daemons.stop();
}

/// pipewiresink 0.3.65 cannot renegotiate a running node's size (its buffers keep the first
/// size), so the stand-in changes size the way a game restarting at another resolution does: the
/// node goes and comes back bigger, in gamescope's other format.
#[test]
fn pipewire_size_change_keeps_one_sps_and_scales() {
    let Some(daemons) = Daemons::start(true) else { return };
    let small = daemons.standin("standin-resize", "smpte100", "BGRx", 320, 240);
    let args = ["--source", "pipewire:standin-resize", "--frames", "150", "--width", "640", "--height", "360"];
    let child = daemons.spawn(&args);
    std::thread::sleep(Duration::from_secs(2));
    small.stop();
    let big = daemons.standin("standin-resize", "colors", "NV12", 640, 480);
    let out = child.finish(RUN_LIMIT);
    let path = stream_file(daemons.dir(), "out.h264", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the node sends NV12 640x480 (scaled to 640x360, aspect kept with borders)"), "{err}");
    assert_eq!(distinct_sps(&out.stdout), 1, "one SPS for the whole stream");
    let p = probe(&path);
    assert_eq!((p.width, p.height, p.frames.len()), (W, H, 150));
    let pictures = decode_coded_luma(&path, W, H);
    let colors = reference_luma(daemons.dir(), "colors", "NV12", 640, 480);
    let score = psnr(&colors, &pictures[149]);
    eprintln!("PSNR of the last picture against the 640x480 pattern scaled directly: {score:.1} dB");
    assert!(score >= 30.0, "{score:.1} dB");
    big.stop();
    daemons.stop();
}

#[test]
fn pipewire_without_a_daemon_exits_69_with_the_hint() {
    let empty = tempdir();
    let out = output_bounded(
        {
            let mut cmd = agentcast(&["--source", "pipewire:gamescope", "--frames", "1"]);
            cmd.env("XDG_RUNTIME_DIR", empty.path()).env_remove("PIPEWIRE_RUNTIME_DIR").env_remove("PIPEWIRE_REMOTE");
            cmd
        },
        RUN_LIMIT,
    );
    assert_usage_error(&out, 69, "no PipeWire daemon answers at");
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/pipewire-headless.sh start"));
}

#[test]
fn pipewire_without_a_session_manager_exits_69_naming_it() {
    let Some(daemons) = Daemons::start(false) else { return };
    let standin = daemons.standin("standin-unlinked", "smpte100", "BGRx", 320, 240);
    let (out, took) = capture(&daemons, &["--source", "pipewire:standin-unlinked", "--frames", "30"]);
    eprintln!("exited after {took:?}");
    assert_usage_error(&out, 69, "nothing linked our stream to it within 5 s: no session manager? (WirePlumber");
    standin.stop();
    daemons.stop();
}

#[test]
fn pipewire_unknown_target_fails_after_the_source_timeout() {
    let Some(daemons) = Daemons::start(true) else { return };
    let args = ["--source", "pipewire:no-such-node", "--source-timeout", "2", "--frames", "30"];
    let (out, took) = capture(&daemons, &args);
    assert_usage_error(&out, 66, "no PipeWire video node with the name, serial or id no-such-node appeared within 2 s");
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    daemons.stop();
}
