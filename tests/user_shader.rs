//! `--shader FILE`: a missing file, a file that does not compile (the driver's log, with the
//! user's line numbers), and one that renders.

use agentcast::stamp;

use crate::cli::assert_usage_error;
use crate::util::*;

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
