//! Encoder selection: `agentcast encoders`, `--encoder auto`'s order and its fallbacks (with the
//! reasons logged), a forced encoder that is not installed or does not open, and `--encoder-opt`.

use crate::cli::assert_usage_error;
use crate::stream_basics::assert_go2rtc_bytes;
use crate::util::*;

/// The hardware encoder elements, in `--encoder auto`'s order.
const HARDWARE_ENCODERS: [&str; 4] = ["nvcudah264enc", "nvh264enc", "vah264enc", "vaapih264enc"];

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
