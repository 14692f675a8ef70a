//! The measuring tools: `agentcast latency` and `agentcast quality`, on real streams decoded by
//! real decoders. Timings are never asserted here (they belong to scripts/bench.py); only that the
//! figures exist, add up, and come from stamps that were really read.

use crate::util::*;

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "exit {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

/// 300 paced frames at the default size and bitrate: every stamp is read back, every frame gets a
/// latency, and the go2rtc figure is the arrival figure plus the wait for the next frame.
#[test]
fn latency_reads_every_stamp_at_the_default_bitrate() {
    let dir = tempdir();
    let kept = dir.path().join("kept.h264");
    let r = json_of(&run(&["latency", "--frames", "300", "--json", "--keep-stream", kept.to_str().unwrap()]));
    let f = &r["frames"];
    assert_eq!(f["requested"], 300);
    assert_eq!(f["access_units"], 300, "{f}");
    assert_eq!(f["stamps_read"], 300, "{f}");
    assert_eq!(f["misreads"], 0, "{f}");
    let per_frame = r["per_frame"].as_array().unwrap();
    assert_eq!(per_frame.len(), 300);
    // Paced at 30 fps, a busy machine makes the loop skip frame slots it is late for (their numbers
    // never appear) or drop frames the encoder had no room for: the numbers read are exactly the
    // frames the producer says it wrote, in order, with gaps only where it says it skipped or dropped.
    let made = &r["producer_frames"];
    let count = |k: &str| made[k].as_u64().unwrap_or_else(|| panic!("no producer_frames.{k}: {r}"));
    let (written, dropped, late) = (count("written"), count("dropped"), count("skipped_late"));
    assert_eq!(written, 300, "{made}");
    let frames: Vec<u64> = per_frame.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "frame numbers out of order: {frames:?}");
    let missing = frames.last().unwrap() + 1 - frames.len() as u64;
    assert!(
        late <= missing && missing <= late + dropped,
        "{missing} frame numbers missing; the producer skipped {late} late and dropped {dropped}: {frames:?}"
    );
    eprintln!("latency: 300 frames read; the producer skipped {late} late slots and dropped {dropped} frames");
    for p in per_frame {
        let (arrival, go2rtc) = (p[1].as_f64().unwrap(), p[2].as_f64());
        assert!(arrival > 0.0 && arrival < 5000.0, "{p}");
        if let Some(g) = go2rtc {
            assert!(g >= arrival, "go2rtc cannot emit a frame before it arrived: {p}");
        }
    }
    let l = &r["latency_ms"];
    for key in ["render_to_arrival", "go2rtc_framing", "render_to_go2rtc"] {
        assert!(l[key]["p50"].as_f64().is_some() && l[key]["max"].as_f64().is_some(), "{key}: {l}");
    }
    assert_eq!(l["render_to_arrival"]["n"], 300);
    assert_eq!(l["render_to_go2rtc"]["n"], 299, "the last frame has no next frame to be emitted by");
    for stage in ["render", "readback", "encode", "write", "render_to_write"] {
        assert!(r["producer_ms"][stage]["p50"].as_f64().is_some(), "producer stage {stage}: {}", r["producer_ms"]);
    }
    assert!(r["join_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(r["encoder"], machine()["auto_encoder"]);
    // The kept stream is what was measured: a real decoder sees 300 pictures.
    assert_eq!(probe(&kept).frames.len(), 300);
}

/// The stamp survives every setting agentcast's encoders allow (QP is capped at 51, so x264
/// overshoots instead of skipping), so the misread path is driven by a foreign encoder that does
/// starve the picture: libx264 at 8 kbit/s with its default preset skips macroblocks and freezes or
/// smears the stamp. The reader must count those pictures as misreads, never give them a latency.
#[test]
fn latency_reports_misreads_at_a_very_low_bitrate() {
    use agentcast::measure::latency::analyse;
    let dir = tempdir();
    let frames = 90u64;
    let original = write(
        dir.path(),
        "orig.h264",
        &stream(&["--width", "640", "--height", "360", "--frames", &frames.to_string(), "--no-pace"]),
    );
    let low = dir.path().join("low.h264");
    let st = tool("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&original)
        .args(["-c:v", "libx264", "-b:v", "8k", "-maxrate", "8k", "-bufsize", "8k", "-bf", "0", "-f", "h264"])
        .arg(&low)
        .output_within(DEADLINE)
        .status;
    assert!(st.success());
    // A frame log as the producer writes it: frame i rendered at i * 33.3 ms; all bytes "arrived"
    // at 10 s (only the stamp reading is under test here).
    let log: Vec<(u64, u64)> = (0..frames).map(|i| (i, i * 33_333_333)).collect();
    let check = |path: &std::path::Path| {
        let bytes = std::fs::read(path).unwrap();
        let r = analyse(&bytes, &[(bytes.len(), 10_000_000_000)], 0, &log).unwrap();
        let f = r["frames"].clone();
        let read: Vec<u64> = r["per_frame"].as_array().unwrap().iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert!(read.windows(2).all(|w| w[0] < w[1]), "matched frames must be strictly increasing: {read:?}");
        assert!(read.iter().all(|&n| n < frames));
        assert_eq!(
            f["stamps_read"].as_u64().unwrap() + f["misreads"].as_u64().unwrap(),
            f["access_units"].as_u64().unwrap(),
            "every access unit is either read or a misread: {f}"
        );
        f
    };
    let control = check(&original);
    assert_eq!((control["stamps_read"].as_u64(), control["misreads"].as_u64()), (Some(frames), Some(0)), "{control}");
    let starved = check(&low);
    eprintln!("8 kbit/s: {starved}");
    assert!(starved["misreads"].as_u64().unwrap() > 0, "a starved stream must show misreads: {starved}");
}

#[test]
fn latency_refuses_producer_flags_it_cannot_measure() {
    for (args, needle) in [
        (vec!["latency", "--", "--no-stamp"], "drop --no-stamp"),
        (vec!["latency", "--", "--frames", "5"], "--frames is set by agentcast latency itself"),
        (vec!["latency", "--", "--output", "fifo:/tmp/x"], "drop --output"),
        (vec!["latency", "--", "--bogus"], "producer arguments after --"),
        (vec!["latency", "--frames", "1"], "--frames"),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

fn quality(extra: &[&str]) -> serde_json::Value {
    let mut args =
        vec!["quality", "--json", "--frames", "10", "--", "--scene", "gradient", "--width", "640", "--height", "360"];
    args.extend_from_slice(extra);
    json_of(&run(&args))
}

/// `quality` end to end on the gradient scene: every decoded picture is matched by stamp, and a
/// starved bitrate scores worse on every metric than a generous one.
#[test]
fn quality_scores_a_starved_bitrate_worse() {
    let high = quality(&["--bitrate", "8000"]);
    let low = quality(&["--bitrate", "64", "--qp-max", "51"]);
    let (h, l) = (&high["runs"][0], &low["runs"][0]);
    eprintln!("8000: {h}\n64: {l}");
    for r in [h, l] {
        assert_eq!(r["compared"], 10, "{r}");
        assert_eq!(r["misreads"], 0, "{r}");
        assert_eq!(r["scene"], "gradient");
    }
    assert!(l["banding"].as_f64().unwrap() > h["banding"].as_f64().unwrap(), "banding: {l} vs {h}");
    assert!(l["psnr_db"].as_f64().unwrap() < h["psnr_db"].as_f64().unwrap());
    assert!(l["ssim"].as_f64().unwrap() < h["ssim"].as_f64().unwrap());
    assert!(l["actual_kbps"].as_f64().unwrap() < h["actual_kbps"].as_f64().unwrap());
}

#[test]
fn quality_sweep_names_the_cheapest_settings_under_the_threshold() {
    let out = run(&[
        "quality",
        "--json",
        "--frames",
        "6",
        "--sweep",
        "--sizes",
        "640x360",
        "--bitrates",
        "64,4000",
        "--qp-max-values",
        "51",
        "--threshold",
        "1000",
        "--",
        "--scene",
        "gradient",
    ]);
    let r = json_of(&out);
    assert_eq!(r["runs"].as_array().unwrap().len(), 2);
    let best = &r["cheapest"][0];
    assert_eq!((best["width"].as_u64(), best["height"].as_u64()), (Some(640), Some(360)));
    assert_eq!(best["run"]["bitrate_kbps"], 64, "with a lax threshold the cheaper run wins: {r}");
}

#[test]
fn quality_refuses_sweep_flags_out_of_place() {
    for (args, needle) in [
        (vec!["quality", "--bitrates", "100"], "--bitrates only applies with --sweep"),
        (vec!["quality", "--sweep", "--", "--bitrate", "100"], "--bitrate after -- conflicts with --sweep"),
        (vec!["quality", "--sweep", "--sizes", "640"], "--sizes: size \"640\" is not WIDTHxHEIGHT"),
        (vec!["quality", "--", "--no-stamp"], "drop --no-stamp"),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// scripts/bench.py in a tiny configuration: it runs every contender, and its JSON has every field.
/// (Its numbers are not checked: timings stay out of the tests.)
#[test]
fn bench_runs_tiny_and_its_json_has_every_field() {
    let dir = tempdir();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.py");
    let out = std::process::Command::new("python3")
        .args([script, "--runs", "1", "--frames", "5", "--configs", "640x360@30", "--bin", BIN, "--out"])
        .arg(dir.path())
        .output_within(DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Not like for like (the scene is rendered), and labelled so.
    assert!(stdout.contains("| 640x360@30 | agentcast-paced (incl. render) |"), "{stdout}");
    assert!(stdout.contains("Not like for like"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("bench.json")).unwrap()).unwrap();
    for key in ["cpu_model", "cpus", "kernel", "date", "gstreamer", "ffmpeg"] {
        assert!(!r["machine"][key].is_null(), "machine.{key}");
    }
    let c = &r["configs"][0];
    assert_eq!((c["width"].as_u64(), c["height"].as_u64(), c["fps"].as_u64()), (Some(640), Some(360), Some(30)));
    assert!(c["keeps_up"].is_boolean());
    for name in ["agentcast-paced", "agentcast-unpaced", "gst-x264", "ffmpeg-paced", "ffmpeg-unpaced"] {
        let k = &c["contenders"][name];
        for metric in ["fps", "cpu_ms_per_frame", "peak_rss_mib", "join_ms", "exit_ms"] {
            for q in ["median", "min", "max"] {
                assert!(k[metric][q].as_f64().is_some(), "{name}.{metric}.{q}: {k}");
            }
            assert_eq!(k[metric]["runs"].as_array().unwrap().len(), 1, "{name}.{metric}");
        }
        assert!(k["go2rtc_ok"].is_boolean() && k["command"].is_array() && k["exit_status"].is_array());
    }
    assert_eq!(c["contenders"]["agentcast-paced"]["go2rtc_ok"], true);
    assert_eq!(c["contenders"]["agentcast-paced"]["exit_status"][0], "exit 0", "BrokenPipe is a clean exit");
    let l = &c["latency"];
    for key in ["render_to_arrival", "go2rtc_framing", "render_to_go2rtc"] {
        for q in ["p50", "p99", "max"] {
            assert!(l[key][q].as_f64().is_some(), "latency.{key}.{q}: {l}");
        }
    }
    for s in ["render", "readback", "encode", "write"] {
        assert!(l["producer"][s].as_f64().is_some(), "latency.producer.{s}");
    }
    assert_eq!(l["stamps_read"], 5);
    assert_eq!(l["misreads"], 0);
    let png = std::fs::read(dir.path().join("latency.png")).expect("latency.png (gnuplot-nox)");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(std::fs::read_to_string(dir.path().join("bench.md")).unwrap().contains("agentcast-unpaced"));
}

/// Where libav is not installed (a lean image, the GPU bundle), the measuring tools decode with
/// OpenH264's decoder instead, and read every stamp all the same. The plugin path here holds every
/// plugin of this machine but libav's, so avdec_h264 is really absent (asked of gst-inspect first).
#[test]
fn latency_decodes_with_openh264_where_libav_is_missing() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let system = std::process::Command::new("pkg-config")
        .args(["--variable=pluginsdir", "gstreamer-1.0"])
        .output_within(DEADLINE);
    let system = String::from_utf8(system.stdout).unwrap();
    let system = std::path::Path::new(system.trim());
    assert!(system.join("libgstlibav.so").exists(), "this test needs gstreamer1.0-libav installed to hide it");
    for entry in std::fs::read_dir(system).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "libgstlibav.so" {
            std::os::unix::fs::symlink(&path, plugins.join(path.file_name().unwrap())).unwrap();
        }
    }
    let registry = dir.path().join("registry.bin");
    let env = [
        ("GST_PLUGIN_SYSTEM_PATH", plugins.as_os_str()),
        ("GST_PLUGIN_PATH", std::ffi::OsStr::new("")),
        ("GST_REGISTRY", registry.as_os_str()),
    ];
    for name in ["avdec_h264", "openh264dec"] {
        let found = std::process::Command::new("gst-inspect-1.0")
            .args(["--exists", name])
            .envs(env)
            .output_within(DEADLINE)
            .status
            .success();
        assert_eq!(found, name == "openh264dec", "{name} with libav's plugin hidden");
    }
    let out = agentcast(&["latency", "--frames", "60", "--json", "--", "--width", "640", "--height", "360"])
        .envs(env)
        .output_within(DEADLINE);
    let r = json_of(&out);
    assert_eq!(r["frames"]["stamps_read"], 60, "{}", r["frames"]);
    assert_eq!(r["frames"]["misreads"], 0, "{}", r["frames"]);
}

/// `scripts/bench-join.py` at its smallest: two spawns of each contender, and two clicks through
/// go2rtc where there is one; every figure is in its JSON.
#[test]
fn bench_join_runs_tiny_and_its_json_has_every_field() {
    let dir = tempdir();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-join.py");
    let go2rtc = crate::go2rtc_e2e::go2rtc_binary();
    let mut cmd = std::process::Command::new("python3");
    cmd.args([script, "--spawns", "2", "--bin", BIN, "--out"]).arg(dir.path());
    cmd.arg("--go2rtc").arg(go2rtc.clone().unwrap_or_else(|| dir.path().join("no-go2rtc")));
    let out = cmd.output_within(DEADLINE);
    assert!(out.status.success(), "bench-join failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bench-join.json")).unwrap()).unwrap();
    let mut measures = vec!["spawn_to_idr_ms"];
    if go2rtc.is_some() {
        measures.push("click_to_mp4_ms");
    }
    for measure in measures {
        for name in ["agentcast", "gst-launch"] {
            let s = &r[measure][name];
            assert_eq!(s["n"], 2, "{measure}.{name}: {r}");
            assert!(
                s["p50"].as_f64().unwrap() > 0.0 && s["max"].as_f64() >= s["p50"].as_f64(),
                "{measure}.{name}: {s}"
            );
        }
    }
}
