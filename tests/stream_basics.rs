//! The stream itself: codec, size, frame count and GOP as ffprobe sees them, go2rtc's raw H.264
//! byte rules (checked here independently of `agentcast check`), the frame stamps, GPU and CPU
//! conversion agreeing, bitrate, duration, pacing, flags from the environment, and banding.

use std::time::{Duration, Instant};

use agentcast::annexb::{self, nal_type};
use agentcast::stamp;

use crate::check_command::check_ok;
use crate::util::*;

/// Slices per picture, from the crate's parser (the check command uses the same rules).
pub(crate) fn slices_per_picture(buf: &[u8]) -> Vec<usize> {
    let nals: Vec<_> = annexb::nals(buf).collect();
    annexb::access_units(&nals).into_iter().map(|r| nals[r].iter().filter(|n| n.is_vcl()).count()).collect()
}

/// The go2rtc byte rules, checked here independently of `agentcast check`.
pub(crate) fn assert_go2rtc_bytes(buf: &[u8]) {
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
fn output_is_paced_in_real_time() {
    // 30 frames at 30 fps: the last frame is due 29/30 s after the first. Only a lower bound is
    // checked; how close to real time it stays under load is a benchmark question.
    let start = Instant::now();
    let buf = stream(&["--frames", "30", "--fps", "30"]);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(960), "30 frames at 30 fps took only {elapsed:?}");
    assert_eq!(slices_per_picture(&buf).len(), 30);
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
