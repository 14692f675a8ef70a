//! MPEG-TS: in-process (`--mux mpegts`) and through the ffmpeg wrapper script
//! (scripts/go2rtc_exec_mpegts.sh): continuous PTS, PES lengths, broken pipes and no orphans.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::cli::assert_usage_error;
use crate::util::*;

/// (packets, PTS steps outside 2999..=3001 at 90 kHz for 30 fps) of a TS file's video stream.
fn ts_packets(path: &std::path::Path) -> (usize, usize) {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=pts", "-of", "csv=p=0"])
        .arg(path)
        .output_within(DEADLINE);
    let pts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let irregular = pts.windows(2).filter(|w| !(2999..=3001).contains(&(w[1] - w[0]))).count();
    (pts.len(), irregular)
}

#[test]
fn mux_mpegts_has_continuous_pts_and_the_frame_count() {
    let dir = tempdir();
    let buf = stream(&["--mux", "mpegts", "--frames", "60", "--no-pace"]);
    assert_eq!(buf[0], 0x47, "MPEG-TS starts with its sync byte");
    let path = write(dir.path(), "out.ts", &buf);
    assert_eq!(ts_packets(&path), (60, 0));
    assert_usage_error(&run(&["--mux", "mpegts", "--output", "fifo:/tmp/x.h264"]), 2, "--mux mpegts");
}

/// One PES packet of a TS stream's H.264 video: the length its header declares, the bytes that
/// follow that field, and whether it carries an IDR slice. Parsed here from the bytes, independently
/// of GStreamer and ffmpeg.
#[derive(Debug)]
struct Pes {
    declared: usize,
    real: usize,
    idr: bool,
}

fn video_pes(ts: &[u8]) -> Vec<Pes> {
    assert_eq!(ts.len() % 188, 0, "whole 188-byte TS packets");
    let mut video_pid = None;
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    for p in ts.chunks(188) {
        assert_eq!(p[0], 0x47, "sync byte");
        let (pusi, pid, afc) = (p[1] & 0x40 != 0, (usize::from(p[1] & 0x1f) << 8) | usize::from(p[2]), p[3] >> 4);
        let start = if afc & 2 != 0 { 5 + usize::from(p[4]) } else { 4 };
        if afc & 1 == 0 || start >= 188 {
            continue;
        }
        let payload = &p[start..];
        if pusi && video_pid.is_none() && payload.starts_with(&[0, 0, 1, 0xe0]) {
            video_pid = Some(pid);
        }
        if Some(pid) != video_pid {
            continue;
        }
        if pusi {
            let declared = (usize::from(payload[4]) << 8) | usize::from(payload[5]);
            out.push((declared, payload[6..].to_vec()));
        } else if let Some((_, body)) = out.last_mut() {
            body.extend_from_slice(payload);
        }
    }
    out.into_iter()
        .map(|(declared, body)| {
            let es = &body[3 + usize::from(body[2])..]; // after the optional header (flags, length)
            let idr = es.windows(4).any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5);
            Pes { declared, real: body.len(), idr }
        })
        .collect()
}

/// go2rtc finishes a PES as soon as its bytes are in when the header carries a length; only a
/// length of 0 (allowed for video, and the only choice past 65535 bytes) makes it wait for the next
/// PES. mpegtsmux sets the length wherever the frame fits.
#[test]
fn mux_mpegts_pes_lengths_are_set_wherever_the_frame_fits() {
    // 4 Mbit/s at 30 fps: about 17 KB a frame, every PES fits.
    let pes = video_pes(&stream(&["--mux", "mpegts", "--frames", "40", "--no-pace"]));
    assert_eq!(pes.len(), 40, "one PES per frame");
    let p_frames = pes.iter().filter(|p| !p.idr).count();
    assert!(p_frames >= 35, "{pes:?}");
    for p in &pes {
        assert!(p.real <= 65535, "{p:?}");
        assert_eq!(p.declared, p.real, "the PES length is the real size: {p:?}");
    }
    // 40 Mbit/s: frames past 65535 bytes carry 0 (unbounded); any that fit still carry their length.
    let pes = video_pes(&stream(&["--mux", "mpegts", "--frames", "10", "--no-pace", "--bitrate", "40000"]));
    assert_eq!(pes.len(), 10);
    assert!(pes.iter().any(|p| p.real > 65535), "{pes:?}");
    for p in &pes {
        let want = if p.real > 65535 { 0 } else { p.real };
        assert_eq!(p.declared, want, "{p:?}");
    }
}

#[test]
fn mux_mpegts_broken_pipe_exits_zero() {
    let script = format!("'{BIN}' --mux mpegts | head -c 100000 > /dev/null; echo \"${{PIPESTATUS[0]}}\"");
    let out = std::process::Command::new("bash").arg("-c").arg(&script).output_within(DEADLINE);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{}", String::from_utf8_lossy(&out.stderr));
}

fn wrapper() -> std::process::Command {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/go2rtc_exec_mpegts.sh");
    let mut cmd = std::process::Command::new(script);
    cmd.env("AGENTCAST_BIN", BIN).env_remove("RUST_LOG");
    cmd
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("pgrep").args(["-P", &pid.to_string()]).output_within(DEADLINE);
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn assert_gone(pids: &[u32]) {
    let start = Instant::now();
    for pid in pids {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.split_whitespace().nth(2) == Some("Z") {
                break; // a zombie is dead, waiting for its parent
            }
            assert!(start.elapsed() < Duration::from_secs(5), "process {pid} was left behind");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn wrapper_script_makes_valid_mpegts() {
    let dir = tempdir();
    let out = wrapper().args(["--frames", "60", "--no-pace"]).output_within(DEADLINE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = write(dir.path(), "wrapped.ts", &out.stdout);
    assert_eq!(ts_packets(&path), (60, 0));
}

#[test]
fn wrapper_script_exits_zero_on_broken_pipe_and_leaves_nothing_behind() {
    let mut child =
        wrapper().stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn_within(DEADLINE);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 100_000];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(first[0], 0x47);
    let kids = children_of(child.id());
    assert_eq!(kids.len(), 2, "agentcast and ffmpeg: {kids:?}");
    drop(stdout);
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut child));
    assert_gone(&kids);
}

#[test]
fn wrapper_script_killed_with_sigkill_leaves_no_orphans() {
    let mut child =
        wrapper().stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn_within(DEADLINE);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 50_000];
    stdout.read_exact(&mut first).unwrap();
    let kids = children_of(child.id());
    assert_eq!(kids.len(), 2, "{kids:?}");
    child.kill().unwrap(); // SIGKILL, go2rtc's default
    let _ = child.wait();
    drop(stdout);
    assert_gone(&kids);
}
