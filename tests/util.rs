//! Helpers shared by the integration tests: run the real binary, and look at its bytes with real
//! decoders (ffmpeg/ffprobe).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentcast");

/// A command for the binary with a quiet, deterministic environment.
pub fn agentcast(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("AGENTCAST_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs to completion with stdout captured; panics with stderr if it fails to start.
pub fn run(args: &[&str]) -> Output {
    agentcast(args).stdin(Stdio::null()).output().expect("running agentcast")
}

/// Runs and insists on exit 0, returning stdout.
pub fn stream(args: &[&str]) -> Vec<u8> {
    let out = run(args);
    assert!(
        out.status.success(),
        "agentcast {args:?} failed with {:?}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn spawn(args: &[&str]) -> Child {
    agentcast(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning agentcast")
}

/// Waits for a child with a bound, so a hang fails the test instead of CI.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("agentcast did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

pub fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().expect("kill");
    assert!(st.success());
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("writing a temp file");
    p
}

pub fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(found.is_ok(), "{name} is not installed; run scripts/setup.sh");
    Command::new(name)
}

/// ffprobe's view of the stream: codec, size, and per frame (pict_type, key_frame).
pub struct Probe {
    pub codec: String,
    pub profile: String,
    pub width: u32,
    pub height: u32,
    pub has_b_frames: u32,
    pub frames: Vec<(String, bool)>,
}

pub fn probe(path: &Path) -> Probe {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,profile,width,height,has_b_frames")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| -> String {
        text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_default().to_string()
    };
    let frames_out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_frames", "-show_entries"])
        .arg("frame=pict_type,key_frame")
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&frames_out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split(',');
            let key = it.next().unwrap_or("0").trim() == "1";
            let pict = it.next().unwrap_or("?").trim().to_string();
            (pict, key)
        })
        .collect();
    Probe {
        codec: field("codec_name"),
        profile: field("profile"),
        width: field("width").parse().unwrap_or(0),
        height: field("height").parse().unwrap_or(0),
        has_b_frames: field("has_b_frames").parse().unwrap_or(99),
        frames,
    }
}

/// Decodes with ffmpeg; returns its error output (empty when the stream decodes cleanly).
pub fn decode_errors(path: &Path) -> String {
    let out =
        tool("ffmpeg").args(["-v", "error", "-f", "h264", "-i"]).arg(path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Decodes every picture with ffmpeg into raw `pix_fmt` pictures of `bytes_per_picture` each.
fn decode_raw(path: &Path, pix_fmt: &str, bytes_per_picture: usize) -> Vec<Vec<u8>> {
    let out = tool("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len() % bytes_per_picture, 0, "decoded size is not a whole number of pictures");
    out.stdout.chunks(bytes_per_picture).map(<[u8]>::to_vec).collect()
}

/// Decodes every picture to 8-bit luma planes.
pub fn decode_luma(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    decode_raw(path, "gray", (width * height) as usize)
}

/// Decodes every picture and keeps its luma plane as coded (`decode_luma`'s gray conversion
/// stretches limited-range luma to full range, which is fine for comparing two decodes but not for
/// comparing with a picture rendered elsewhere).
pub fn decode_coded_luma(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    let picture = w * h + 2 * w.div_ceil(2) * h.div_ceil(2);
    let mut pictures = decode_raw(path, "yuv420p", picture);
    pictures.iter_mut().for_each(|p| p.truncate(w * h));
    pictures
}

/// Decodes every picture as RGB24.
pub fn decode_rgb(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    decode_raw(path, "rgb24", (width * height * 3) as usize)
}

/// A stream from ffmpeg's own libx264, for checking `agentcast check` against a foreign encoder.
pub fn ffmpeg_x264(dir: &Path, name: &str, x264_params: &str, bframes: u32) -> PathBuf {
    let path = dir.join(name);
    let st = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-frames:v", "30"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", &bframes.to_string()])
        .args(["-x264-params", x264_params, "-f", "h264"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    path
}

/// Byte offsets of every `00 00 01` and whether a zero precedes it (a 4-byte start code), scanned
/// independently of the crate's parser.
pub fn start_codes(buf: &[u8]) -> Vec<(usize, bool)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            v.push((i, i > 0 && buf[i - 1] == 0));
            i += 3;
        } else {
            i += 1;
        }
    }
    v
}

/// Mean absolute difference of two equally sized planes.
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (i32::from(*x) - i32::from(*y)).unsigned_abs() as u64).sum::<u64>() as f64
        / a.len() as f64
}

/// Whether this machine has the NVIDIA driver's CUDA library (tests of the CUDA-free behaviour skip
/// there; hardware tests skip everywhere else).
pub fn nvidia_present() -> bool {
    let ldconfig = Command::new("/sbin/ldconfig").arg("-p").output();
    Path::new("/proc/driver/nvidia/version").exists()
        || ldconfig.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1"))
}

/// Whether GStreamer has this element here (gst-inspect-1.0 exits 0).
pub fn has_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0").args(["--exists", name]).status().is_ok_and(|s| s.success())
}

/// The JSON stats lines in a run's stderr, each parsed (a line that does not parse fails the test).
pub fn stats_lines(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stats line does not parse ({e}): {l}")))
        .collect()
}
