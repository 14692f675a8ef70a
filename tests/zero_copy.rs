//! The frame path (`--path`): the refusals that must be clear on machines without CUDA (CI), and the
//! hardware legs, ignored unless asked for (`scripts/gpu-check.sh` runs them with --include-ignored).

use crate::util::*;

/// Where there is CUDA the refusal cannot happen; the rest of the test (readback's stats, the
/// one-line usage error) holds everywhere and runs everywhere.
#[test]
fn zero_copy_without_cuda_is_refused_in_one_line_and_readback_says_so_in_the_stats() {
    if machine()["cuda_devices"] == 0 {
        let out = run(&["--path", "zero-copy", "--frames", "5"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{err}");
        assert!(out.stdout.is_empty());
        assert_eq!(err.trim(), "agentcast: --path zero-copy is not possible here: there is no CUDA device", "at once");
    }

    let out = run(&["--path", "zero-copy", "--convert", "cpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--path zero-copy") && err.contains("--convert cpu"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = run(&["--path", "readback", "--convert", "gpu", "--frames", "10", "--log-level", "info"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = final_stats(&out.stderr);
    assert_eq!(stats["path"], "readback");
    assert_eq!(stats["host_bytes_per_frame"], 1280 * 720 * 3 / 2, "{stats}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("path: --path readback"));
    let out = run(&["--frames", "5", "--log-level", "info"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(final_stats(&out.stderr)["path"], machine()["auto_path"], "auto takes the path doctor predicts");
    if machine()["cuda_devices"] == 0 {
        assert!(err.contains("path: readback, because there is no CUDA device"), "auto says why: {err}");
    }
}

/// Hardware leg, on any NVIDIA GPU with the nvcodec plugin (no NVENC needed): the frames go
/// GL texture -> CUDA -> GstCudaMemory -> cudadownload -> x264enc, and every decoded picture's stamp
/// must read back as its frame number.
#[test]
#[ignore = "needs an NVIDIA GPU with CUDA and GStreamer's nvcodec plugin (cudadownload)"]
fn zero_copy_frames_survive_the_cuda_handoff_stamp_for_stamp() {
    assert!(nvidia_present(), "no NVIDIA driver here (libcuda.so.1, /proc/driver/nvidia)");
    assert!(has_element("cudadownload"), "GStreamer's nvcodec plugin (cudadownload) is not installed");
    let args = ["--path", "zero-copy", "--debug-cuda-download", "--encoder", "x264", "--width", "1920", "--height"];
    let out = run(&[&args[..], &["1080", "--frames", "60", "--log-level", "info"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("path: zero-copy") && err.contains("EGL: device"), "{err}");
    let stats = final_stats(&out.stderr);
    assert_eq!(stats["path"], "cuda-download", "{stats}");
    let mut latency = vec!["latency", "--frames", "90", "--json", "--"];
    latency.extend_from_slice(&args);
    latency.push("1080");
    let out = run(&latency);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["frames"]["stamps_read"], 90, "{}", r["frames"]);
    assert_eq!(r["frames"]["misreads"], 0, "{}", r["frames"]);
}
