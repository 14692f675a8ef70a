//! Bad invocations and `--help`: a usage error (or a missing EGL vendor) fails with its exit code,
//! one `agentcast:` line and no stream bytes; `--help` teaches the go2rtc use.

use crate::util::*;

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
fn no_egl_vendor_is_unavailable() {
    let out = agentcast(&["--frames", "1"])
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl_vendor.json")
        .output_within(DEADLINE);
    assert_usage_error(&out, 69, "no usable EGL display");
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
