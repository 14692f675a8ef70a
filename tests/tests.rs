//! Integration tests: run the real binary (Mesa llvmpipe renders where there is no GPU) and check
//! its bytes with real decoders.

mod bad_input;
mod deploy;
mod fleet;
mod fuzz;
mod go2rtc_e2e;
mod kill_matrix;
mod leases;
mod measure;
mod outputs;
mod pipewire;
mod shm;
mod sources;
mod startup;
mod util;
mod zero_copy;

use std::io::Read;
use std::time::{Duration, Instant};

use agentcast::annexb::{self, nal_type};
use agentcast::stamp;
use util::*;

/// Slices per picture, from the crate's parser (the check command uses the same rules).
fn slices_per_picture(buf: &[u8]) -> Vec<usize> {
    let nals: Vec<_> = annexb::nals(buf).collect();
    annexb::access_units(&nals).into_iter().map(|r| nals[r].iter().filter(|n| n.is_vcl()).count()).collect()
}

fn check_ok(path: &std::path::Path) {
    let out = run(&["check", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "agentcast check failed:\n{text}");
    assert!(text.contains("OK: the stream follows go2rtc's raw H.264 rules"), "{text}");
}

/// The go2rtc byte rules, checked here independently of `agentcast check`.
fn assert_go2rtc_bytes(buf: &[u8]) {
    assert!(buf.len() > 256, "stream too short");
    assert_eq!(&buf[..4], &[0, 0, 0, 1], "stream must start with a 4-byte start code");
    let codes = start_codes(buf);
    assert!(codes.iter().all(|(_, four)| *four), "3-byte start code at {:?}", codes.iter().find(|c| !c.1));
    // First NAL after AUDs is an SPS with header 0x67; SPS and PPS complete within 256 bytes.
    let headers: Vec<(usize, u8)> = codes.iter().map(|(off, _)| (*off, buf[off + 3])).collect();
    let first = headers.iter().find(|(_, h)| h & 0x1f != nal_type::AUD).unwrap();
    assert_eq!(first.1, 0x67, "first NAL after AUDs must be an SPS with header 0x67");
    let pps = headers.iter().position(|(_, h)| h & 0x1f == nal_type::PPS).unwrap();
    let after_pps = headers.get(pps + 1).map_or(buf.len(), |(off, _)| *off - 1);
    assert!(after_pps <= 256, "SPS+PPS end at byte {after_pps}, beyond go2rtc's 256-byte probe");
    // SPS and PPS before every IDR, inside its access unit (SEI may sit between them).
    for (i, (off, h)) in headers.iter().enumerate() {
        if h & 0x1f == nal_type::IDR {
            let before: Vec<u8> =
                headers[..i].iter().rev().map(|(_, h)| h & 0x1f).take_while(|t| !(1..=5).contains(t)).collect();
            assert!(
                before.contains(&nal_type::SPS) && before.contains(&nal_type::PPS),
                "IDR at byte {off} lacks SPS+PPS before it (NAL types before it: {before:?})"
            );
        }
    }
    let slices = slices_per_picture(buf);
    assert!(slices.iter().all(|&n| n == 1), "pictures with several slices: {slices:?}");
}

#[test]
fn stream_decodes_with_the_right_codec_size_frames_and_gop() {
    let dir = tempdir();
    let buf = stream(&["--frames", "45", "--gop", "15", "--no-pace"]);
    let path = write(dir.path(), "out.h264", &buf);
    let p = probe(&path);
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 1280, 720));
    assert_eq!(p.profile, "High");
    assert_eq!(p.has_b_frames, 0);
    assert_eq!(p.frames.len(), 45, "exactly --frames pictures");
    assert!(p.frames.iter().all(|(t, _)| t != "B"), "B-frames in {:?}", p.frames);
    let keys: Vec<usize> = p.frames.iter().enumerate().filter(|(_, f)| f.1).map(|(i, _)| i).collect();
    assert_eq!(keys, vec![0, 15, 30], "an IDR every --gop frames");
    assert_eq!(decode_errors(&path), "");
}

#[test]
fn go2rtc_rules_hold_at_the_default_size() {
    let dir = tempdir();
    let buf = stream(&["--frames", "40", "--no-pace"]);
    assert_go2rtc_bytes(&buf);
    check_ok(&write(dir.path(), "out.h264", &buf));
}

#[test]
fn go2rtc_rules_hold_at_1080p() {
    let dir = tempdir();
    let buf = stream(&["--width", "1920", "--height", "1080", "--frames", "35", "--no-pace"]);
    assert_go2rtc_bytes(&buf);
    let path = write(dir.path(), "out.h264", &buf);
    check_ok(&path);
    let p = probe(&path);
    assert_eq!((p.width, p.height, p.frames.len()), (1920, 1080, 35));
}

#[test]
fn openh264_follows_the_go2rtc_rules_too() {
    let dir = tempdir();
    let buf = stream(&["--encoder", "openh264", "--frames", "35", "--no-pace"]);
    assert_go2rtc_bytes(&buf);
    let path = write(dir.path(), "out.h264", &buf);
    check_ok(&path);
    assert_eq!(probe(&path).frames.len(), 35);
    assert_eq!(decode_errors(&path), "");
}

#[test]
fn decoded_pictures_carry_their_frame_stamps_in_order_and_move() {
    let dir = tempdir();
    let path = write(dir.path(), "out.h264", &stream(&["--frames", "60", "--no-pace"]));
    let frames = decode_luma(&path, 1280, 720);
    assert_eq!(frames.len(), 60);
    let stamps: Vec<Option<u32>> = frames.iter().map(|f| stamp::decode(f, 1280, 1280, 720)).collect();
    let expected: Vec<Option<u32>> = (0..60).map(Some).collect();
    assert_eq!(stamps, expected);
    // The scene moves: compare the picture below the stamp row.
    let below = |f: &Vec<u8>| f[1280 * 100..].to_vec();
    let diff = mean_abs_diff(&below(&frames[0]), &below(&frames[30]));
    assert!(diff > 2.0, "frames 0 and 30 are nearly identical (mean difference {diff:.2})");
}

#[test]
fn no_stamp_leaves_the_stamp_out() {
    let dir = tempdir();
    let path = write(dir.path(), "out.h264", &stream(&["--frames", "5", "--no-pace", "--no-stamp"]));
    let frames = decode_luma(&path, 1280, 720);
    assert!(frames.iter().all(|f| stamp::decode(f, 1280, 1280, 720).is_none()));
}

/// The GPU packing pass (NV12 for x264, I420 for openh264) must give the same picture as
/// videoconvert: same stamps, and colours within coding noise.
#[test]
fn gpu_and_cpu_conversion_agree() {
    let dir = tempdir();
    let mut pictures = Vec::new();
    for (encoder, convert) in [("x264", "cpu"), ("x264", "gpu"), ("openh264", "gpu")] {
        let args = ["--frames", "6", "--no-pace", "--encoder", encoder, "--convert", convert, "--scene", "gradient"];
        let path = write(dir.path(), &format!("{encoder}-{convert}.h264"), &stream(&args));
        let luma = decode_luma(&path, 1280, 720);
        let stamps: Vec<_> = luma.iter().map(|f| stamp::decode(f, 1280, 1280, 720)).collect();
        assert_eq!(stamps, (0..6).map(Some).collect::<Vec<_>>(), "{encoder} --convert {convert}");
        pictures.push((format!("{encoder}/{convert}"), decode_rgb(&path, 1280, 720).swap_remove(5)));
    }
    for (name, rgb) in &pictures[1..] {
        let diff = mean_abs_diff(&pictures[0].1, rgb);
        assert!(diff < 3.0, "{name} differs from x264/cpu by {diff:.2} per channel on average");
    }
}

#[test]
fn cbr_bitrate_is_within_15_percent_over_10_seconds() {
    let buf = stream(&["--frames", "300", "--no-pace"]);
    let kbps = buf.len() as f64 * 8.0 / 10.0 / 1000.0;
    eprintln!("measured {kbps:.0} kbit/s for --bitrate 4000");
    assert!((3400.0..=4600.0).contains(&kbps), "measured {kbps:.0} kbit/s, want 4000 +-15%");
}

#[test]
fn duration_stops_after_that_much_stream() {
    let dir = tempdir();
    let path = write(dir.path(), "out.h264", &stream(&["--duration", "0.5", "--no-pace"]));
    assert_eq!(probe(&path).frames.len(), 15);
}

#[test]
fn environment_variables_set_flags() {
    let out = agentcast(&["--frames", "3", "--no-pace", "--no-stamp"])
        .env("AGENTCAST_WIDTH", "640")
        .env("AGENTCAST_HEIGHT", "360")
        .output_within(DEADLINE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempdir();
    let p = probe(&write(dir.path(), "out.h264", &out.stdout));
    assert_eq!((p.width, p.height), (640, 360));
}

#[test]
fn broken_pipe_exits_zero_without_a_panic() {
    let mut child = spawn(&[]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 100_000];
    stdout.read_exact(&mut first).expect("reading the first 100000 bytes");
    assert_eq!(&first[..4], &[0, 0, 0, 1]);
    drop(stdout);
    let gone = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    eprintln!("exited {:?} after the reader left", gone.elapsed());
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn broken_pipe_through_head_exits_zero() {
    let script = format!("'{BIN}' | head -c 100000 > /dev/null; echo \"${{PIPESTATUS[0]}}\"");
    let out = std::process::Command::new("bash").arg("-c").arg(&script).env_remove("RUST_LOG").output_within(DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Reads a child's stdout: the first `first` bytes now (so the stream is known to be flowing), the
/// rest on a thread until EOF. The handle returns everything.
fn collect_stdout(child: &mut std::process::Child, first: usize) -> std::thread::JoinHandle<Vec<u8>> {
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; first];
    stdout.read_exact(&mut buf).expect("reading the start of the stream");
    std::thread::spawn(move || {
        stdout.read_to_end(&mut buf).unwrap();
        buf
    })
}

#[test]
fn sigterm_mid_stream_exits_zero_on_a_complete_access_unit() {
    let mut child = spawn(&[]);
    let reader = collect_stdout(&mut child, 50_000);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, "TERM");
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    let buf = reader.join().unwrap();
    let dir = tempdir();
    let path = write(dir.path(), "out.h264", &buf);
    assert_eq!(decode_errors(&path), "", "the stream must end on a whole access unit");
    check_ok(&path);
    // Every access unit we wrote decodes to a picture: nothing was cut off.
    assert_eq!(probe(&path).frames.len(), slices_per_picture(&buf).len());
    assert!(slices_per_picture(&buf).len() >= 10, "expected some stream before SIGTERM");
}

#[test]
fn sigusr1_forces_an_idr() {
    let mut child = spawn(&["--gop", "3000"]);
    let reader = collect_stdout(&mut child, 50_000);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "USR1");
    std::thread::sleep(Duration::from_millis(600));
    signal(&child, "TERM");
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(10)).code(), Some(0));
    let buf = reader.join().unwrap();
    let idrs = annexb::nals(&buf).filter(|n| n.nal_type() == nal_type::IDR).count();
    assert_eq!(idrs, 2, "one IDR at the start and one for SIGUSR1 (GOP 3000)");
    assert_go2rtc_bytes(&buf);
}

/// Asserts a bad invocation fails with `code`, one `agentcast:` error line naming `needle`, and no
/// stream bytes.
pub(crate) fn assert_usage_error(out: &std::process::Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("agentcast:")).collect();
    assert_eq!(lines.len(), 1, "want one error line, got:\n{err}");
    assert!(lines[0].contains(needle), "error line {:?} does not name {needle:?}", lines[0]);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "no stream bytes on failure");
}

#[test]
fn odd_width_is_a_usage_error() {
    assert_usage_error(&run(&["--width", "1281"]), 2, "--width");
}

#[test]
fn zero_fps_is_a_usage_error() {
    assert_usage_error(&run(&["--fps", "0"]), 2, "--fps");
}

#[test]
fn a_stream_flag_with_a_subcommand_is_a_usage_error_but_log_level_goes_anywhere() {
    assert_usage_error(&run(&["--fps", "60", "slots"]), 2, "the subcommand 'slots' cannot be used with '--fps'");
    let out = run(&["--log-level", "debug", "slots", "--lock-dir", tempdir().path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn unknown_encoder_is_a_usage_error() {
    assert_usage_error(&run(&["--encoder", "vp8"]), 2, "--encoder");
}

#[test]
fn missing_shader_file_is_no_input() {
    assert_usage_error(&run(&["--shader", "/nonexistent/scene.glsl"]), 66, "--shader /nonexistent/scene.glsl");
}

#[test]
fn shader_syntax_error_gives_the_driver_log_with_line_numbers() {
    let dir = tempdir();
    let path = write(dir.path(), "bad.glsl", b"void mainImage(out vec4 c, in vec2 p) {\n    c = vec4(1.0)\n}\n");
    let out = run(&["--shader", path.to_str().unwrap(), "--frames", "1"]);
    assert_usage_error(&out, 65, "bad.glsl");
    let err = String::from_utf8_lossy(&out.stderr);
    // Mesa reports "0:LINE(COL): error: ..."; the missing ';' is found on line 3 of the user's file.
    assert!(err.contains("0:3("), "the log should point into the user's file:\n{err}");
}

#[test]
fn a_valid_user_shader_renders() {
    let dir = tempdir();
    let path = write(
        dir.path(),
        "ok.glsl",
        b"void mainImage(out vec4 c, in vec2 p) { c = vec4(p / iResolution.xy, 0.5 + 0.5 * sin(iTime), 1.0); }\n",
    );
    let buf = stream(&["--shader", path.to_str().unwrap(), "--frames", "10", "--no-pace"]);
    let out = write(dir.path(), "out.h264", &buf);
    let frames = decode_luma(&out, 1280, 720);
    assert_eq!(stamp::decode(&frames[9], 1280, 1280, 720), Some(9));
}

/// A plugin directory with every system plugin except x264, so "not installed" is real.
fn plugins_without_x264() -> tempfile::TempDir {
    let out = std::process::Command::new("pkg-config")
        .args(["--variable=pluginsdir", "gstreamer-1.0"])
        .output_within(DEADLINE);
    let system = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let dir = tempdir();
    for entry in std::fs::read_dir(&system).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "libgstx264.so" {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

#[test]
fn a_forced_encoder_that_is_not_installed_is_unavailable_and_auto_falls_back() {
    let plugins = plugins_without_x264();
    let with_env = |args: &[&str]| {
        agentcast(args)
            .env("GST_PLUGIN_SYSTEM_PATH_1_0", plugins.path())
            .env("GST_PLUGIN_PATH_1_0", "")
            .env("GST_REGISTRY_1_0", plugins.path().join("registry.bin"))
            .output_within(DEADLINE)
    };
    assert_usage_error(&with_env(&["--encoder", "x264", "--frames", "1"]), 69, "x264enc");
    let out = with_env(&["--frames", "10", "--no-pace"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Without x264, auto takes what this machine opens first otherwise: openh264 on a CPU machine.
    let want = match machine()["auto_encoder"].as_str() {
        Some("x264enc") | None => "openh264enc",
        Some(hardware) => hardware,
    };
    assert_eq!(final_stats(&out.stderr)["backend"], want, "auto should fall back to {want}:\n{err}");
    assert_go2rtc_bytes(&out.stdout);
}

#[test]
fn no_egl_vendor_is_unavailable() {
    let out = agentcast(&["--frames", "1"])
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl_vendor.json")
        .output_within(DEADLINE);
    assert_usage_error(&out, 69, "no usable EGL display");
}

#[test]
fn output_is_paced_in_real_time() {
    // 30 frames at 30 fps: the last frame is due 29/30 s after the first. Only a lower bound is
    // checked; how close to real time it stays under load is a benchmark question.
    let start = Instant::now();
    let buf = stream(&["--frames", "30", "--fps", "30"]);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(960), "30 frames at 30 fps took only {elapsed:?}");
    assert_eq!(slices_per_picture(&buf).len(), 30);
}

#[test]
fn help_teaches_go2rtc_use_env_vars_and_exit_codes() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["exec:/usr/local/bin/agentcast", "#killsignal=15#killtimeout=5", "AGENTCAST_FPS", "Exit codes", "65"]
    {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

// `agentcast check` on streams that break the rules.

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

// Encoder selection.

/// The hardware encoder elements, in `--encoder auto`'s order.
const HARDWARE_ENCODERS: [&str; 4] = ["nvcudah264enc", "nvh264enc", "vah264enc", "vaapih264enc"];

#[test]
fn encoders_lists_every_backend_and_what_auto_picks() {
    let out = run(&["encoders"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row = |element: &str| {
        text.lines().find(|l| l.contains(element)).unwrap_or_else(|| panic!("no {element} row:\n{text}"))
    };
    // What the machine has, asked independently (gst-inspect) and through doctor.
    let auto = machine()["auto_encoder"].as_str().expect("an encoder opens here").to_string();
    assert!(row(&auto).contains("<-"), "auto ({auto}, by doctor) is not marked:\n{text}");
    assert!(row("x264enc").ends_with("yes"), "{text}");
    assert!(row("openh264enc").ends_with("yes"), "{text}");
    for hw in HARDWARE_ENCODERS {
        if !has_element(hw) {
            assert!(row(hw).contains("no"), "{hw} is not installed and should be reported so:\n{text}");
        }
    }
    let out = run(&["encoders", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("encoders --json parses");
    assert_eq!(doc["auto"], auto.as_str());
    let rows = doc["encoders"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    // auto is the first in order that opens; every row agrees with gst-inspect on "installed".
    let first_open = rows.iter().find(|r| r["opens"] == true).map(|r| r["element"].clone());
    assert_eq!(first_open, Some(serde_json::Value::from(auto.as_str())), "{doc}");
    for r in rows {
        assert_eq!(r["installed"], has_element(r["element"].as_str().unwrap()), "{r}");
    }
    let x264 = rows.iter().find(|r| r["element"] == "x264enc").unwrap();
    assert_eq!((x264["installed"].as_bool(), x264["opens"].as_bool()), (Some(true), Some(true)));
}

#[test]
fn nvenc_without_nvenc_is_unavailable() {
    let nvenc_opens = ["nvcudah264enc", "nvh264enc"].iter().any(|e| machine()["encoders"][e] == true);
    let out = run(&["--encoder", "nvenc", "--frames", "1", "--no-pace"]);
    if nvenc_opens {
        assert!(out.status.success(), "doctor says NVENC opens here: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        assert_usage_error(&out, 69, "--encoder nvenc: no H.264 encoder opens");
    }
}

#[test]
fn auto_logs_why_hardware_encoders_were_skipped() {
    let out = run(&["--frames", "2", "--no-pace"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let auto = machine()["auto_encoder"].as_str().unwrap();
    let families =
        [("nvcudah264enc", "nvenc"), ("nvh264enc", "nvenc"), ("vah264enc", "vaapi"), ("vaapih264enc", "vaapi")];
    // Every hardware encoder before the one chosen was tried and skipped, with the reason logged.
    for (element, family) in families.iter().take_while(|(e, _)| *e != auto) {
        let skipped = format!("skipped {family} ({element})");
        assert!(err.contains(&skipped), "no {skipped:?} in:\n{err}");
    }
    assert!(err.contains(&format!("({auto})")) && err.contains("encoder: "), "{err}");
    assert_eq!(final_stats(&out.stderr)["backend"], auto);
}

#[test]
fn encoder_opt_errors_are_usage_errors() {
    let cases = [
        ("foo=1", "x264enc has no property 'foo'"),
        ("bitrate=abc", "not a valid value for x264enc's bitrate"),
        ("bframes=2", "refused, go2rtc cannot play B-frames"),
        ("sliced-threads=true", "refused"),
        ("nonsense", "is not NAME=VALUE"),
    ];
    for (opt, needle) in cases {
        let out = run(&["--encoder", "x264", "--encoder-opt", opt, "--frames", "1", "--no-pace"]);
        assert_usage_error(&out, 2, needle);
    }
}

#[test]
fn encoder_opt_applies_a_valid_setting() {
    let dir = tempdir();
    let buf = stream(&["--encoder-opt", "key-int-max=10", "--gop", "10", "--frames", "25", "--no-pace"]);
    let p = probe(&write(dir.path(), "out.h264", &buf));
    let keys: Vec<usize> = p.frames.iter().enumerate().filter(|(_, f)| f.1).map(|(i, _)| i).collect();
    assert_eq!(keys, vec![0, 10, 20]);
}

/// A paced loop that is always late (240 fps at 1080p is more than this machine renders) must still
/// see SIGTERM promptly.
#[test]
fn sigterm_reaches_a_loop_that_is_always_late() {
    let mut child = spawn(&["--fps", "240", "--width", "1920", "--height", "1080"]);
    let reader = collect_stdout(&mut child, 50_000);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "TERM");
    let start = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?} on an overloaded loop");
    drop(reader.join());
}

#[test]
fn an_injected_encoder_stall_exits_70_naming_the_stage() {
    let mut child = spawn(&["--debug-stall-after", "20", "--stall-timeout", "2"]);
    // Timed from the last byte of output (however long start-up took on this machine): the 2 s
    // timeout, plus at most 1 s.
    let mut out = child.stdout.take().unwrap();
    let (mut last, mut buf) = (Instant::now(), vec![0u8; 1 << 16]);
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        last = Instant::now();
    }
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let took = last.elapsed();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(70), "{err}");
    let auto = machine()["auto_encoder"].as_str().unwrap();
    assert!(err.contains(&format!("agentcast: stalled: encoder {auto}:")), "{err}");
    assert!(took < Duration::from_secs(3), "exited {took:?} after the last output");
    assert!(!err.contains("panicked"), "{err}");
}

// go2rtc configs.

/// The checked-in examples and the arguments that generate them.
const GO2RTC_EXAMPLES: [(&str, &[&str]); 4] = [
    ("go2rtc/exec.yaml", &["go2rtc-config", "--agents", "4", "--", "--fps", "30"]),
    ("go2rtc/fifo.yaml", &["go2rtc-config", "--mode", "fifo", "--agents", "4"]),
    ("go2rtc/tcp.yaml", &["go2rtc-config", "--mode", "tcp", "--agents", "4"]),
    ("go2rtc/rtsp.yaml", &["go2rtc-config", "--mode", "rtsp", "--agents", "4", "--", "--fps", "30"]),
];

fn yaml(text: &str) -> yaml_rust2::Yaml {
    let mut docs = yaml_rust2::YamlLoader::load_from_str(text).expect("the config is valid YAML");
    docs.remove(0)
}

#[test]
fn go2rtc_configs_parse_back_for_every_mode_and_listen_on_loopback() {
    for (_, args) in GO2RTC_EXAMPLES {
        let out = run(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc = yaml(&String::from_utf8_lossy(&out.stdout));
        for module in ["api", "rtsp", "webrtc"] {
            let listen = doc[module]["listen"].as_str().unwrap();
            assert!(listen.starts_with("127.0.0.1:"), "{module} listens on {listen}");
        }
        assert!(doc["webrtc"]["ice_servers"].as_vec().unwrap().is_empty());
        let streams = doc["streams"].as_hash().unwrap();
        assert_eq!(streams.len(), 4);
        let first = doc["streams"]["agent_01"].as_str().unwrap();
        match args[2] {
            "fifo" => {
                assert_eq!(first, "exec:/usr/bin/cat /run/agentcast/agent_01.h264#killsignal=15#killtimeout=2");
                assert_eq!(doc["exec"]["allow_paths"][0].as_str(), Some("/usr/bin/cat"));
            }
            "tcp" => assert_eq!(first, "tcp://127.0.0.1:9001"),
            "rtsp" => {
                assert_eq!(
                    first,
                    "exec:/usr/local/bin/agentcast --output {output} --stream agent_01 --fps 30#killsignal=15#killtimeout=5"
                );
                assert_eq!(doc["exec"]["allow_paths"][0].as_str(), Some("/usr/local/bin/agentcast"));
            }
            _ => {
                assert_eq!(
                    first,
                    "exec:/usr/local/bin/agentcast --stream agent_01 --fps 30#killsignal=15#killtimeout=5"
                );
                assert_eq!(doc["exec"]["allow_paths"][0].as_str(), Some("/usr/local/bin/agentcast"));
            }
        }
    }
}

#[test]
fn go2rtc_config_quotes_arguments_and_refuses_hash() {
    let out = run(&["go2rtc-config", "--", "--shader", "/my scenes/a.glsl"]);
    let doc = yaml(&String::from_utf8_lossy(&out.stdout));
    let line = doc["streams"]["agent_01"].as_str().unwrap();
    let command = line.strip_prefix("exec:").unwrap().split('#').next().unwrap();
    assert_eq!(
        agentcast::go2rtc::split_like_go2rtc(command),
        ["/usr/local/bin/agentcast", "--stream", "agent_01", "--shader", "/my scenes/a.glsl"]
    );
    assert_usage_error(&run(&["go2rtc-config", "--", "--shader", "a#b.glsl"]), 2, "contains '#'");
    let out = run(&["go2rtc-config", "--listen", "0.0.0.0", "--name", "cam-1"]);
    let doc = yaml(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["api"]["listen"].as_str(), Some("0.0.0.0:1984"));
    assert!(doc["streams"]["cam-1"].as_str().is_some());
}

#[test]
fn go2rtc_examples_are_in_sync_with_the_generator() {
    let pull: (&str, &[&str]) = ("go2rtc/pull.yaml", &["go2rtc-config", "--mode", "pull", "--", "--fps", "30"]);
    for (file, args) in GO2RTC_EXAMPLES.into_iter().chain([pull]) {
        let out = run(args);
        let want = String::from_utf8(out.stdout).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{file} is out of date; regenerate it with: agentcast {} > {file}", args.join(" "));
    }
}

// MPEG-TS: in-process (--mux mpegts) and through the ffmpeg wrapper script.

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

/// The banding metric on real encodes of the `gradient` scene: against a near-lossless reference
/// (constant QP 1; High profile cannot do lossless), a starved bitrate bands more than a generous one.
#[test]
fn banding_score_rises_when_the_bitrate_falls() {
    use agentcast::measure::metrics::{banding_score, psnr};
    let dir = tempdir();
    let encode = |name: &str, extra: &[&str]| {
        let mut args = vec!["--scene", "gradient", "--frames", "12", "--no-pace", "--width", "640", "--height", "360"];
        args.extend_from_slice(extra);
        let path = write(dir.path(), name, &stream(&args));
        decode_luma(&path, 640, 360).swap_remove(11)
    };
    let reference = encode("ref.h264", &["--encoder-opt", "pass=quant", "--encoder-opt", "quantizer=1"]);
    let high = encode("high.h264", &["--bitrate", "8000"]);
    let low = encode("low.h264", &["--bitrate", "100", "--qp-max", "51"]);
    let (b_high, b_low) = (banding_score(&reference, &high, 640, 360), banding_score(&reference, &low, 640, 360));
    eprintln!("banding: 8000 kbit/s {b_high:.1}, 100 kbit/s {b_low:.1}");
    assert!(b_low > b_high, "100 kbit/s should band more than 8000 kbit/s: {b_low:.1} vs {b_high:.1}");
    assert!(psnr(&reference, &low) < psnr(&reference, &high));
}
