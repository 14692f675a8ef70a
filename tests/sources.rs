//! The agent's frames as input (`--source raw:`, `unix:`): real ffmpeg frames through a pipe, a
//! Python agent on a socket, and the bad-input cases. Every spawned process has a deadline.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const W: u32 = 640;
const H: u32 = 360;

/// Runs ffmpeg's testsrc2 into raw frames of `pix_fmt` on stdout, piped into agentcast
/// `--source raw:-`; returns agentcast's output (status, stdout, stderr).
fn ffmpeg_into_agentcast(
    pix_fmt: &str,
    (width, height): (u32, u32),
    frames: u32,
    args: &[&str],
) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut ffmpeg = tool("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &format!("testsrc2=size={width}x{height}:rate=30")])
        .args(["-frames:v", &frames.to_string(), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .stdout(Stdio::piped())
        .spawn_within(DEADLINE);
    let ffmpeg_out = ffmpeg.stdout.take().unwrap();
    let (w, h) = (width.to_string(), height.to_string());
    let ours = if pix_fmt == "yuv420p" { "i420" } else { pix_fmt };
    let mut all = vec!["--source", "raw:-", "--width", &w, "--height", &h, "--pix-fmt", ours, "--stats-interval", "0"];
    all.extend_from_slice(args);
    let child = agentcast(&all)
        .stdin(Stdio::from(ffmpeg_out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_within(Duration::from_secs(60));
    let _ffmpeg = ffmpeg; // killed on drop, with agentcast
    finished(child)
}

/// Waits for the exit (under the child's own deadline) while draining its pipes.
fn finished(child: Proc) -> (std::process::ExitStatus, Vec<u8>, String) {
    let out = child.wait_with_output();
    (out.status, out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// ffmpeg's PSNR (average over planes and pictures) of two raw files of the same format.
fn psnr(a: &Path, b: &Path, pix_fmt: &str, (width, height): (u32, u32)) -> f64 {
    let size = format!("{width}x{height}");
    let out = tool("ffmpeg")
        .args(["-v", "info", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", &size, "-r", "30", "-i"])
        .arg(a)
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", &size, "-r", "30", "-i"])
        .arg(b)
        .args(["-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"])
        .output_within(DEADLINE);
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("PSNR")).unwrap_or_else(|| panic!("no PSNR line:\n{text}"));
    line.split("average:").nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
}

/// testsrc2 frames of `pix_fmt` and `size` through `--source raw:-`: the stream passes check, every
/// frame is encoded, and the decoded pictures match the source's. Returns the PSNR and the log.
fn through_a_pipe(dir: &Path, pix_fmt: &str, (width, height): (u32, u32)) -> (f64, String) {
    let (size, frames) = ((width, height), 45);
    let name = format!("{pix_fmt}-{width}x{height}");
    // Unpaced: a pipe read frame by frame, every frame encoded (frames align one to one).
    let (status, stdout, stderr) = ffmpeg_into_agentcast(pix_fmt, size, frames, &["--no-pace"]);
    assert!(status.success(), "{name}: {status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("path: host frames ({}", if pix_fmt == "yuv420p" { "i420" } else { pix_fmt })),
        "{stderr}"
    );
    assert!(stderr.contains("no GL"), "{stderr}");
    let out = write(dir, &format!("{name}.h264"), &stdout);
    let check = run(&["check", out.to_str().unwrap()]);
    assert!(check.status.success(), "{name}: {}", String::from_utf8_lossy(&check.stdout));
    assert_eq!(probe(&out).frames.len(), frames as usize, "{name}: every frame encoded");
    // The source pictures again, and ours decoded, in the same format.
    let src = dir.join(format!("{name}.raw"));
    let st = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc2=size={width}x{height}:rate=30")])
        .args(["-frames:v", &frames.to_string(), "-f", "rawvideo", "-pix_fmt", pix_fmt])
        .arg(&src)
        .output_within(DEADLINE)
        .status;
    assert!(st.success());
    let dec = dir.join(format!("{name}.dec"));
    let st = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "h264", "-i"])
        .arg(&out)
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt])
        .arg(&dec)
        .output_within(DEADLINE)
        .status;
    assert!(st.success());
    let db = psnr(&dec, &src, pix_fmt, size);
    eprintln!("{name}: PSNR {db:.1} dB over {frames} frames");
    (db, stderr)
}

#[test]
fn ffmpeg_frames_through_a_pipe_pass_check_and_decode_to_the_source_pictures() {
    let dir = tempdir();
    for pix_fmt in ["rgb24", "nv12", "yuv420p"] {
        let (db, _) = through_a_pipe(dir.path(), pix_fmt, (W, H));
        assert!(db >= 35.0, "{pix_fmt}: PSNR {db:.1} dB < 35");
    }
}

/// rgb24 at 642 pixels: 1926 bytes a row, which GStreamer's video layout pads to 1928, so the tight
/// rows from the pipe cannot be lent as they are; each is copied into the padded layout and
/// converted by videoconvert. A wrong stride would shear the picture and sink the PSNR.
#[test]
fn rows_that_gstreamer_pads_are_copied_into_its_layout_and_decode_to_the_source() {
    let dir = tempdir();
    let (db, stderr) = through_a_pipe(dir.path(), "rgb24", (642, 360));
    assert!(stderr.contains("-> videoconvert ->"), "{stderr}");
    assert!(db >= 35.0, "rgb24 at 642x360: PSNR {db:.1} dB < 35");
}

#[test]
fn eof_in_the_middle_of_a_frame_writes_the_whole_frames_then_exits_65() {
    let frame = (W * H * 3) as usize;
    let (w, h) = (W.to_string(), H.to_string());
    let mut child =
        agentcast(&["--source", "raw:-", "--width", &w, "--height", &h, "--no-pace", "--stats-interval", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_within(Duration::from_secs(30));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..3u8 {
            stdin.write_all(&vec![i * 60 + 20; frame]).unwrap();
        }
        stdin.write_all(&vec![7; 1000]).unwrap();
    });
    let (status, stdout, stderr) = finished(child);
    writer.join().unwrap();
    assert_eq!(status.code(), Some(65), "{stderr}");
    let last = stderr.lines().rev().find(|l| l.starts_with("agentcast: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(last.contains("ended 1000 bytes into frame 4"), "{last}");
    assert!(last.contains("the 3 whole frames before it were streamed"), "{last}");
    let dir = tempdir();
    let out = write(dir.path(), "partial.h264", &stdout);
    assert_eq!(probe(&out).frames.len(), 3, "every whole frame was written");
}

#[test]
fn sizes_and_formats_that_do_not_fit_name_the_flag() {
    let dir = tempdir();
    let file = write(dir.path(), "odd.rgb", &[0; 1000]);
    let source = format!("raw:{}", file.display());
    let out = run(&["--source", &source, "--width", "640", "--height", "360"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("agentcast: --width/--height/--pix-fmt: raw:")
            && err.contains("is 1000 bytes, not a whole number of 640x360 rgb24 frames"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = run(&["--source", "raw:-", "--pix-fmt", "yuv444p"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pix-fmt"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["--source", "raw:/nonexistent/frames.rgb"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("agentcast: --source raw:/nonexistent/frames.rgb: "));
    let out = run(&["--pix-fmt", "rgb24"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A Python agent that connects to `sock` and writes flat-colour rgb24 frames at `fps` for
/// `seconds`; with `die_mid_frame`, it then writes half a frame and kills itself.
fn python_agent(sock: &Path, fps: u32, seconds: f64, die_mid_frame: bool) -> Proc {
    let script = r#"
import os, signal, socket, sys, time
path, w, h, fps, secs, die = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6] == "1"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
deadline = time.monotonic() + 10
while True:
    try:
        s.connect(path); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.02)
start, n = time.monotonic(), 0
while time.monotonic() - start < secs:
    s.sendall(bytes([(n * 40) % 200 + 30]) * (w * h * 3))
    n += 1
    time.sleep(max(0.0, start + n / fps - time.monotonic()))
if die:
    s.sendall(bytes([250]) * (w * h * 3 // 2))
    os.kill(os.getpid(), signal.SIGKILL)
"#;
    Command::new("python3")
        .args(["-c", script, sock.to_str().unwrap(), &W.to_string(), &H.to_string(), &fps.to_string()])
        .args([seconds.to_string().as_str(), if die_mid_frame { "1" } else { "0" }])
        .spawn_within(DEADLINE)
}

/// agentcast on `unix:SOCK` for `duration` seconds of stream with a Python agent at `fps`; returns
/// the final stats and the stream.
fn socket_run(fps: u32, die_mid_frame: bool) -> (serde_json::Value, Vec<u8>, String) {
    let dir = tempdir();
    let sock = dir.path().join("agent.sock");
    let stats = dir.path().join("stats.json");
    let (w, h) = (W.to_string(), H.to_string());
    let source = format!("unix:{}", sock.display());
    let child = agentcast(&["--source", &source, "--width", &w, "--height", &h, "--duration", "3"])
        .args(["--stats-interval", "0", "--stats-file", stats.to_str().unwrap(), "--source-timeout", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_within(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _agent = python_agent(&sock, fps, 2.5, die_mid_frame);
    let (status, stdout, stderr) = finished(child);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(!sock.exists(), "the socket is removed on exit");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    (stats, stdout, stderr)
}

#[test]
fn a_fast_agent_on_a_socket_gives_the_stream_rate_with_superseded_frames_counted() {
    let (stats, stdout, stderr) = socket_run(120, false);
    let received = stats["frames"]["received"].as_u64().unwrap();
    let superseded = stats["dropped"]["superseded"].as_u64().unwrap();
    let written = stats["frames"]["written"].as_u64().unwrap();
    eprintln!(
        "120 fps agent: received {received}, superseded {superseded}, written {written}, repeated {}",
        stats["repeated"]
    );
    assert!(received > 150, "the agent sent about 300 frames: {stats}\n{stderr}");
    assert!(superseded > received / 2, "most of a 120 fps agent's frames are superseded at 30 fps: {stats}");
    // 3 s of stream at 30 fps, starting with the agent's first frame.
    assert!((70..=91).contains(&written), "{stats}");
    let dir = tempdir();
    let out = write(dir.path(), "fast.h264", &stdout);
    assert!(run(&["check", out.to_str().unwrap()]).status.success());
}

#[test]
fn a_slow_agent_on_a_socket_gives_the_stream_rate_with_repeats() {
    let (stats, _, _) = socket_run(5, false);
    let repeated = stats["repeated"].as_u64().unwrap();
    let received = stats["frames"]["received"].as_u64().unwrap();
    let written = stats["frames"]["written"].as_u64().unwrap();
    eprintln!("5 fps agent: received {received}, repeated {repeated}, written {written}");
    assert!((10..=16).contains(&received), "{stats}");
    assert!(repeated > 50, "the last frame repeats at 30 fps: {stats}");
    assert!((70..=91).contains(&written), "{stats}");
    assert_eq!(stats["dropped"]["superseded"], 0, "{stats}");
}

#[test]
fn an_agent_killed_in_the_middle_of_a_frame_never_shows_a_torn_picture() {
    let (stats, stdout, stderr) = socket_run(20, true);
    assert!(stderr.contains("the partial frame is dropped"), "{stderr}");
    let dir = tempdir();
    let out = write(dir.path(), "torn.h264", &stdout);
    let pictures = decode_rgb(&out, W, H);
    assert!(pictures.len() > 30, "{stats}");
    for (i, p) in pictures.iter().enumerate() {
        // Every frame is one flat colour: a torn one would hold two (or the half frame's 250).
        let (min, max) = p.iter().fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(max - min < 40, "picture {i} mixes colours: {min}..{max}");
        assert!(max < 245, "picture {i} shows the partial frame");
    }
}
