//! `agentcast check`: our streams pass, and streams that break go2rtc's rules are flagged with the
//! rule they break; it reads stdin and reports missing files.

use agentcast::annexb;

use crate::util::*;

pub(crate) fn check_ok(path: &std::path::Path) {
    let out = run(&["check", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "agentcast check failed:\n{text}");
    assert!(text.contains("OK: the stream follows go2rtc's raw H.264 rules"), "{text}");
}

fn check_fails_with(bytes: &[u8], rule: &str) {
    let dir = tempdir();
    let path = write(dir.path(), "bad.h264", bytes);
    let out = run(&["check", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("[{rule}]")), "want [{rule}] in:\n{text}");
}

fn our_stream() -> Vec<u8> {
    stream(&["--frames", "20", "--gop", "10", "--no-pace", "--width", "640", "--height", "360", "--no-stamp"])
}

/// Offsets (of the start codes) of NALs with a type.
fn offsets(buf: &[u8], t: u8) -> Vec<usize> {
    annexb::nals(buf).filter(|n| n.nal_type() == t).map(|n| n.offset).collect()
}

#[test]
fn check_flags_a_three_byte_start_code_at_the_start() {
    check_fails_with(&our_stream()[1..], "start");
}

#[test]
fn check_flags_pps_first() {
    let buf = our_stream();
    let (sps, pps, idr) = (offsets(&buf, 7)[0], offsets(&buf, 8)[0], offsets(&buf, 5)[0]);
    let mut bad = buf[pps..idr].to_vec();
    bad.extend_from_slice(&buf[sps..pps]);
    bad.extend_from_slice(&buf[idr..]);
    check_fails_with(&bad, "first-nal");
}

#[test]
fn check_flags_an_idr_without_sps() {
    let buf = our_stream();
    let (sps2, pps2) = (offsets(&buf, 7)[1], offsets(&buf, 8)[1]);
    let after_pps2 = annexb::nals(&buf).find(|n| n.offset > pps2).unwrap().offset;
    let mut bad = buf[..sps2].to_vec();
    bad.extend_from_slice(&buf[after_pps2..]);
    check_fails_with(&bad, "idr-params");
}

#[test]
fn check_flags_two_slices_per_picture_and_b_slices_from_ffmpeg() {
    let dir = tempdir();
    let sliced = ffmpeg_x264(dir.path(), "sliced.h264", "slices=2:repeat-headers=1", 0);
    check_fails_with(&std::fs::read(sliced).unwrap(), "one-slice");
    let bframes = ffmpeg_x264(dir.path(), "b.h264", "repeat-headers=1", 2);
    check_fails_with(&std::fs::read(bframes).unwrap(), "b-slice");
}

#[test]
fn check_reads_stdin_and_reports_missing_files() {
    let mut child = agentcast(&["check", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn_within(DEADLINE);
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &our_stream()).unwrap();
    let out = child.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["check", "/nonexistent.h264"]);
    assert_eq!(out.status.code(), Some(66));
}
