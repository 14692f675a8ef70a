//! The bad-input matrix: every flag's bad values, bad AGENTCAST_* variables, missing and unreadable
//! files, output paths that cannot be used, and `check` inputs that are empty, truncated or not
//! H.264. Each must give exactly one `agentcast:` line naming the culprit, as the FIRST line of
//! stderr (go2rtc shows a viewer only the first 512 bytes of a failed producer's stderr), its
//! documented exit code, no panic or backtrace, and no stray stdout bytes.

use std::time::Instant;

use crate::util::*;

/// One bad invocation.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdin: Option<Vec<u8>>,
    code: i32,
    /// Must appear in the `agentcast:` line: the flag, variable or file at fault.
    culprit: String,
}

fn case(name: &'static str, args: &[&str], code: i32, culprit: &str) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        stdin: None,
        code,
        culprit: culprit.to_string(),
    }
}

fn env_case(name: &'static str, var: &'static str, value: &str, code: i32, culprit: &str) -> Case {
    Case { env: vec![(var, value.to_string())], ..case(name, &["--frames", "1"], code, culprit) }
}

/// How a case went: (exit code, ms, offset of the `agentcast:` line in stderr), or what was wrong.
fn judge(c: &Case) -> Result<(i32, u128, usize), String> {
    let mut cmd = agentcast(&c.args.iter().map(String::as_str).collect::<Vec<_>>());
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = match &c.stdin {
        None => cmd.output_within(DEADLINE),
        Some(bytes) => {
            use std::process::Stdio;
            let mut child =
                cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn_within(DEADLINE);
            let mut pipe = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut pipe, bytes).unwrap();
            drop(pipe);
            child.wait_with_output()
        }
    };
    let ms = start.elapsed().as_millis();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let code = out.status.code().unwrap_or(-1);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("agentcast:")).collect();
    let offset = if err.starts_with("agentcast:") { Some(0) } else { err.find("\nagentcast:").map(|i| i + 1) };
    let offset = offset.unwrap_or(usize::MAX);
    let is_check = c.args.first().is_some_and(|a| a == "check");
    let mut wrong = Vec::new();
    if code != c.code {
        wrong.push(format!("exit {code}, want {}", c.code));
    }
    if lines.len() != 1 {
        wrong.push(format!("{} agentcast: lines, want 1", lines.len()));
    }
    if offset != 0 {
        wrong.push(format!("the agentcast: line starts at byte {offset} of stderr, want 0 (and < 512 for go2rtc)"));
    }
    if !lines.first().is_some_and(|l| l.contains(&c.culprit)) {
        wrong.push(format!("the line does not name {:?}", c.culprit));
    }
    if err.contains("panicked") || err.to_lowercase().contains("backtrace") {
        wrong.push("a panic or backtrace".into());
    }
    // `check` reports on stdout by design, under the input's name (when it could read the input);
    // everything else writes nothing there.
    let stdout_ok = if is_check && !out.stdout.is_empty() {
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{}:", c.args[1]))
    } else {
        out.stdout.is_empty()
    };
    if !stdout_ok {
        wrong.push(format!("{} stray stdout bytes", out.stdout.len()));
    }
    if wrong.is_empty() {
        Ok((code, ms, offset))
    } else {
        Err(format!("{}; stderr:\n{}", wrong.join("; "), tail(&out.stderr)))
    }
}

#[test]
fn bad_invocations_fail_first_clearly_and_with_their_code() {
    let dir = tempdir();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let dir_path = dir.path().to_str().unwrap().to_string();
    let regular = write(dir.path(), "regular.txt", b"not a fifo");
    let not_utf8 = write(dir.path(), "latin1.glsl", b"void mainImage(out vec4 c, in vec2 p) { c = vec4(\xe9); }");
    let syntax_error = write(dir.path(), "syntax.glsl", b"void mainImage(out vec4 c, in vec2 p) { c = vec4(1.0) +; }");
    let empty = write(dir.path(), "empty.h264", b"");
    let real = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/agentcast-x264-96x64.h264")).unwrap();
    let truncated = write(dir.path(), "truncated.h264", &real[..20]);
    let png = write(dir.path(), "picture.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0");
    let socket_path = d("agent.sock");
    let _socket = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = format!("tcp:{}", busy.local_addr().unwrap());
    let fifo = |p: &str| format!("fifo:{p}");

    let mut cases = vec![
        // Flag values refused by the parser or Config (usage, 2).
        case("odd width", &["--width", "1281"], 2, "--width"),
        case("tiny width", &["--width", "8"], 2, "--width"),
        case("odd height", &["--height", "721"], 2, "--height"),
        case("width not a number", &["--width", "abc"], 2, "--width"),
        case("too many macroblocks", &["--width", "4096", "--height", "4096"], 2, "macroblocks"),
        case("zero fps", &["--fps", "0"], 2, "--fps"),
        case("fps over 240", &["--fps", "241"], 2, "--fps"),
        case("bitrate 0", &["--bitrate", "0"], 2, "--bitrate"),
        case("gop 0", &["--gop", "0"], 2, "--gop"),
        case("qp-max 99", &["--qp-max", "99"], 2, "--qp-max"),
        case("unknown profile", &["--profile", "ultra"], 2, "--profile"),
        case("unknown encoder", &["--encoder", "vp8"], 2, "--encoder"),
        case("encoder-opt without =", &["--encoder-opt", "nonsense"], 2, "--encoder-opt"),
        case("encoder-opt no such property", &["--encoder-opt", "nosuchprop=1"], 2, "--encoder-opt nosuchprop=1"),
        case("encoder-opt bad value", &["--encoder", "x264", "--encoder-opt", "bitrate=abc"], 2, "bitrate=abc"),
        case("encoder-opt B-frames", &["--encoder-opt", "bframes=2"], 2, "--encoder-opt bframes=2"),
        case("encoder-opt slices", &["--encoder", "x264", "--encoder-opt", "sliced-threads=true"], 2, "sliced-threads"),
        case("duration 0", &["--duration", "0"], 2, "--duration"),
        case("duration NaN", &["--duration", "NaN"], 2, "--duration"),
        case("frames 0", &["--frames", "0"], 2, "--frames"),
        case("unknown output", &["--output", "udp:1.2.3.4:5"], 2, "--output"),
        case("tcp without a port", &["--output", "tcp:localhost"], 2, "--output"),
        case("empty fifo path", &["--output", "fifo:"], 2, "--output"),
        case("remote tcp", &["--output", "tcp:0.0.0.0:9000"], 2, "--allow-remote"),
        case("allow-remote on stdout", &["--allow-remote"], 2, "--allow-remote"),
        case("idle on stdout", &["--idle", "render"], 2, "--idle"),
        case("max-lag 0", &["--max-lag", "0"], 2, "--max-lag"),
        case("max-lag on stdout", &["--max-lag", "100"], 2, "--max-lag"),
        case("mpegts to a fifo", &["--mux", "mpegts", "--output", &fifo(&d("m.h264"))], 2, "--mux mpegts"),
        case("stamp too wide", &["--width", "320", "--height", "240"], 2, "--no-stamp"),
        case("frame-log without stamp", &["--no-stamp", "--frame-log", &d("f.log")], 2, "--frame-log"),
        case("zero-copy with cpu convert", &["--path", "zero-copy", "--convert", "cpu"], 2, "--path zero-copy"),
        case("stats-interval not a number", &["--stats-interval", "abc"], 2, "--stats-interval"),
        case("nvenc-sessions not a number", &["--nvenc-sessions", "abc"], 2, "--nvenc-sessions"),
        case("unknown on-busy", &["--on-busy", "maybe"], 2, "--on-busy"),
        case("negative wait-timeout", &["--wait-timeout=-1"], 2, "--wait-timeout"),
        case("unknown scene", &["--scene", "nope"], 2, "--scene"),
        case("shader and scene", &["--shader", "x.glsl", "--scene", "demo"], 2, "--shader"),
        case("unknown flag", &["--nope"], 2, "--nope"),
        case("stream flag with a subcommand", &["--fps", "60", "slots"], 2, "--fps"),
        // Environment variables: the message names the variable.
        env_case("AGENTCAST_WIDTH not a number", "AGENTCAST_WIDTH", "abc", 2, "AGENTCAST_WIDTH"),
        env_case("AGENTCAST_FPS 0", "AGENTCAST_FPS", "0", 2, "AGENTCAST_FPS"),
        env_case("AGENTCAST_OUTPUT unknown", "AGENTCAST_OUTPUT", "bogus", 2, "AGENTCAST_OUTPUT"),
        env_case("AGENTCAST_ENCODER unknown", "AGENTCAST_ENCODER", "vp8", 2, "AGENTCAST_ENCODER"),
        env_case("AGENTCAST_ENCODER_OPT no such property", "AGENTCAST_ENCODER_OPT", "foo=1", 2, "foo=1"),
        env_case("AGENTCAST_DURATION negative", "AGENTCAST_DURATION", "-1", 2, "--duration"),
        // Files the user gave (no input, 66).
        case("missing shader", &["--shader", "/nonexistent/scene.glsl"], 66, "--shader /nonexistent/scene.glsl"),
        case("shader is a directory", &["--shader", &dir_path], 66, "--shader"),
        case("shader not UTF-8", &["--shader", not_utf8.to_str().unwrap()], 66, "latin1.glsl"),
        // A shader that does not compile (65): compiled at start-up on the stream's own GL context,
        // its line first all the same (the start-up lines are held back).
        case("shader syntax error", &["--shader", syntax_error.to_str().unwrap()], 65, "syntax.glsl"),
        // Outputs and files we would create (can't create, 73).
        case("fifo path is a directory", &["--output", &fifo(&dir_path)], 73, "is a directory, not a FIFO"),
        case("fifo path is a file", &["--output", &fifo(regular.to_str().unwrap())], 73, "regular file"),
        case("fifo path is a socket", &["--output", &fifo(&socket_path)], 73, "socket"),
        case("fifo directory missing", &["--output", "fifo:/nonexistent/a.h264"], 73, "/nonexistent does not exist"),
        case("busy tcp port", &["--output", &busy_port], 73, "cannot listen"),
        case("frame-log is a directory", &["--frame-log", &dir_path], 73, "--frame-log"),
        case("frame-log directory missing", &["--frame-log", "/nonexistent/f.log"], 73, "--frame-log"),
        case(
            "stats-file directory missing",
            &["--stats-file", "/nonexistent/s.json"],
            73,
            "--stats-file /nonexistent/s.json",
        ),
        case("stats-file is a directory", &["--stats-file", &dir_path], 73, "--stats-file"),
        case("unusable lock dir", &["--nvenc-sessions", "2", "--lock-dir", "/proc/agentcast-locks"], 73, "/proc"),
        // check inputs.
        case("check a missing file", &["check", "/nonexistent.h264"], 66, "/nonexistent.h264"),
        case("check a directory", &["check", &dir_path], 66, &dir_path),
        case("check an empty file", &["check", empty.to_str().unwrap()], 1, "empty input"),
        case("check a truncated stream", &["check", truncated.to_str().unwrap()], 1, "truncated.h264"),
        case("check a PNG", &["check", png.to_str().unwrap()], 1, "picture.png"),
        Case { stdin: Some(Vec::new()), ..case("check empty stdin", &["check", "-"], 1, "check -: empty input") },
        Case { stdin: Some(b"hello".to_vec()), ..case("check text on stdin", &["check", "-"], 1, "check -") },
    ];
    // Stream cases stop after a frame if the error were missed, so nothing runs on.
    for c in &mut cases {
        let subcommand = c.args.iter().any(|a| !a.starts_with('-') && matches!(a.as_str(), "slots" | "check"));
        if !subcommand && !c.args.iter().any(|a| a == "--frames") {
            c.args.extend(["--frames".to_string(), "1".to_string()]);
        }
    }
    assert!(cases.len() >= 30);
    let mut failed = Vec::new();
    eprintln!("| case | exit | ms | agentcast: at byte |\n|---|---|---|---|");
    for c in &cases {
        match judge(c) {
            Ok((code, ms, at)) => eprintln!("| {} | {code} | {ms} | {at} |", c.name),
            Err(why) => {
                eprintln!("| {} | FAIL | | |", c.name);
                failed.push(format!("{} ({:?}): {why}", c.name, c.args));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} bad invocations misbehaved:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n\n")
    );
}

/// Failures of the machine rather than the invocation can only show once start-up runs; the log
/// lines of start-up are held back until it has succeeded, so the `agentcast:` line still comes
/// first, whatever this machine logs before it fails (on an H200, the CUDA device line and four
/// skipped encoders pushed it past go2rtc's 512 bytes), and the held lines follow it.
#[test]
fn start_up_failures_of_the_machine_come_first_then_the_start_up_lines() {
    let nvenc_opens = ["nvcudah264enc", "nvh264enc"].iter().any(|e| machine()["encoders"][e] == true);
    let mut cases = vec![(
        "no EGL vendor",
        agentcast(&["--frames", "1"])
            .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl_vendor.json")
            .output_within(DEADLINE),
        69,
    )];
    if !nvenc_opens {
        cases.push(("no NVENC", agentcast(&["--encoder", "nvenc", "--frames", "1"]).output_within(DEADLINE), 69));
    }
    for (name, out, code) in cases {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        let at = if err.starts_with("agentcast:") { Some(0) } else { err.find("\nagentcast:").map(|i| i + 1) };
        let at = at.unwrap_or(usize::MAX);
        eprintln!("{name}: the agentcast: line starts at byte {at} of stderr");
        assert_eq!(at, 0, "{name}: the agentcast: line is not first on stderr:\n{err}");
        if name == "no EGL vendor" {
            // The encoder was chosen before EGL failed: its lines come after the error, not never.
            assert!(err.contains("] encoder: "), "{name}: the start-up lines were lost:\n{err}");
        }
    }
}

/// A start-up failure keeps stdout open a moment after its `agentcast:` line only when stdout is a
/// pipe (go2rtc's case: its reader must get stderr before stdout ends); with stdout to a file or
/// /dev/null it exits at once. The debug log says when it waits.
#[test]
fn start_up_failure_waits_for_a_pipe_reader_only() {
    use std::process::Stdio;
    let dir = tempdir();
    let args = ["--shader", "/nonexistent/scene.glsl", "--log-level", "debug"];
    let waits = "keeping stdout (a pipe) open";
    let file = std::fs::File::create(dir.path().join("out.h264")).unwrap();
    let targets: [(&str, Stdio, bool); 3] =
        [("pipe", Stdio::piped(), true), ("file", Stdio::from(file), false), ("/dev/null", Stdio::null(), false)];
    for (name, stdout, wait) in targets {
        let started = Instant::now();
        let child = agentcast(&args).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped()).spawn_within(DEADLINE);
        let out = child.wait_with_output();
        let ms = started.elapsed().as_millis();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("stdout to {name}: exit {:?} after {ms} ms", out.status.code());
        assert_eq!(out.status.code(), Some(66), "{name}: {err}");
        assert!(err.starts_with("agentcast: --shader /nonexistent/scene.glsl: "), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: stray stdout bytes");
        assert_eq!(err.contains(waits), wait, "{name}: {err}");
        if wait {
            assert!(ms >= 200, "{name}: exited {ms} ms after start, before the 200 ms wait was over");
        }
    }
    assert!(std::fs::read(dir.path().join("out.h264")).unwrap().is_empty());
}
