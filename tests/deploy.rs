//! The docker deployment: compose files parse, and the Dockerfile, the compose files and the
//! generated go2rtc config agree on paths, users and ports. Nothing here builds or starts the image:
//! scripts/container-check.sh does, with buildah (`.ci/run` runs it after the tests).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn repo(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn yaml_file(file: &str) -> yaml_rust2::Yaml {
    yaml_rust2::YamlLoader::load_from_str(&read(file)).unwrap().remove(0)
}

/// The arguments that generate docker/go2rtc.exec.yaml.
const DOCKER_CONFIG_ARGS: [&str; 8] = ["go2rtc-config", "--agents", "4", "--listen", "0.0.0.0", "--", "--fps", "30"];

#[test]
fn compose_files_parse() {
    assert!(on_path("docker-compose"), "docker-compose is not installed; run scripts/setup.sh");
    for file in
        ["docker/docker-compose.go2rtc.exec.yml", "docker/docker-compose.cpu.yml", "docker/docker-compose.pipewire.yml"]
    {
        let out = Command::new("docker-compose").arg("-f").arg(repo(file)).arg("config").output_within(DEADLINE);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let gpu = text.contains("driver: nvidia");
        assert_eq!(gpu, file.ends_with("exec.yml"), "{file}: GPU reservation only in the exec file:\n{text}");
    }
}

/// The arguments that generate docker/go2rtc.pipewire.yaml.
const DOCKER_PIPEWIRE_ARGS: [&str; 10] =
    ["go2rtc-config", "--name", "game", "--listen", "0.0.0.0", "--", "--source", "pipewire:gamescope", "--fps", "60"];

#[test]
fn docker_go2rtc_config_is_in_sync_with_the_generator() {
    for (args, file) in [
        (&DOCKER_CONFIG_ARGS[..], "docker/go2rtc.exec.yaml"),
        (&DOCKER_PIPEWIRE_ARGS[..], "docker/go2rtc.pipewire.yaml"),
    ] {
        let out = run(args);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout) == read(file),
            "{file} is out of date; regenerate it with: agentcast {} > {file}",
            args.join(" ")
        );
    }
}

#[test]
fn dockerfile_compose_and_go2rtc_config_agree() {
    let dockerfile = read("docker/Dockerfile");
    let base = yaml_file("docker/compose.base.yml");
    let config = yaml_file("docker/go2rtc.exec.yaml");
    let service = &base["services"]["go2rtc"];

    // The binary: where the Dockerfile puts it, what go2rtc may run, what each stream runs.
    let bin = "/usr/local/bin/agentcast";
    assert!(dockerfile.contains(&format!("COPY --from=build /src/target/release/agentcast {bin}")));
    assert_eq!(config["exec"]["allow_paths"][0].as_str(), Some(bin));
    for (_, source) in config["streams"].as_hash().unwrap() {
        assert!(source.as_str().unwrap().starts_with(&format!("exec:{bin} ")), "{source:?}");
    }

    // The config file: where go2rtc reads it and where compose mounts it.
    let entry = "\"-config\", \"/etc/go2rtc/go2rtc.yaml\"";
    assert!(dockerfile.contains(entry), "ENTRYPOINT reads /etc/go2rtc/go2rtc.yaml");
    let mounts: Vec<&str> = service["volumes"].as_vec().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(mounts.contains(&"./go2rtc.exec.yaml:/etc/go2rtc/go2rtc.yaml:ro"), "{mounts:?}");

    // The lock dir: the same path in the image, the environment and the shared volume.
    let lock = "/run/agentcast";
    assert!(dockerfile.contains(&format!("AGENTCAST_LOCK_DIR={lock}")));
    assert_eq!(service["environment"]["AGENTCAST_LOCK_DIR"].as_str(), Some(lock));
    assert!(mounts.contains(&"agentcast-run:/run/agentcast"), "{mounts:?}");

    // The user: created in the image, owning the lock dir, and the one compose runs.
    assert!(dockerfile.contains("useradd --system --uid 10001"));
    assert!(dockerfile.contains("chown agentcast:agentcast /run/agentcast"));
    assert!(dockerfile.contains("\nUSER agentcast\n"));
    assert_eq!(service["user"].as_str(), Some("agentcast"));

    // Ports: go2rtc listens inside the container on what compose publishes (on host loopback), and
    // the health check asks the API port.
    let ports: Vec<&str> = service["ports"].as_vec().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for (module, port) in [("api", 1984), ("rtsp", 8554), ("webrtc", 8555)] {
        assert_eq!(config[module]["listen"].as_str(), Some(format!("0.0.0.0:{port}").as_str()));
        assert!(ports.iter().any(|p| p.starts_with(&format!("127.0.0.1:{port}:{port}"))), "{ports:?}");
        assert!(dockerfile.contains(&port.to_string()), "EXPOSE {port}");
    }
    assert!(dockerfile.contains("http://127.0.0.1:1984/api/streams"));
    assert!(dockerfile.contains("NVIDIA_DRIVER_CAPABILITIES=compute,video,graphics,utility"));
}

/// The build stage copies only some of the repository: every workspace member's manifest and
/// sources must be among it, or cargo cannot load the workspace (it once lacked `python/`).
/// scripts/container-check.sh builds the image for real.
#[test]
fn the_dockerfile_copies_every_workspace_member() {
    let dockerfile = read("docker/Dockerfile");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline", "--locked", "--manifest-path"])
        .arg(repo("Cargo.toml"))
        .output_within(DEADLINE);
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut members = 0;
    for package in metadata["packages"].as_array().unwrap() {
        let dir = Path::new(package["manifest_path"].as_str().unwrap()).parent().unwrap();
        let dir = dir.strip_prefix(root).unwrap().to_str().unwrap();
        let (manifest, src) = if dir.is_empty() {
            ("COPY Cargo.toml Cargo.lock ./".to_string(), "COPY src ./src".to_string())
        } else {
            (format!("COPY {dir}/Cargo.toml ./{dir}/"), format!("COPY {dir}/src ./{dir}/src"))
        };
        assert!(dockerfile.contains(&manifest), "docker/Dockerfile lacks `{manifest}`");
        assert!(dockerfile.contains(&src), "docker/Dockerfile lacks `{src}`");
        members += 1;
    }
    assert!(members >= 2, "the workspace has the binary's package and the Python package: {members}");
}

// agentcast doctor.

#[test]
fn doctor_passes_here_and_reports_what_is_missing_without_failing() {
    let out = run(&["doctor", "--lock-dir", tempdir().path().join("locks").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"))
            .to_string()
    };
    // The lines agree with what the machine has, found out independently where that can be done.
    assert!(line("egl").starts_with("ok"), "{text}");
    let software = line("gl").contains("software");
    assert_eq!(line("gl").starts_with("warn"), software, "{text}");
    assert_eq!(line("cuda").starts_with("warn"), !nvidia_present(), "{text}");
    if !nvidia_present() {
        assert!(line("nvenc").starts_with("warn") && line("path").contains("there is no CUDA device"), "{text}");
    }
    let facts = machine();
    assert_eq!(facts["software_gl"], software, "{facts}");
    let auto = facts["auto_encoder"].as_str().expect("an encoder opens here");
    assert!(line("encoder").contains(auto), "{text}");
    assert!(has_element(auto), "doctor's auto encoder {auto} is not installed");
    let path = line("path");
    let expected = match facts["auto_path"].as_str() {
        Some("zero-copy") => "--path auto takes zero-copy",
        _ if software => "RGBA, 4 B/px",
        _ => "shader-packed YUV, 1.5 B/px",
    };
    assert!(path.contains(expected), "{text}");
    let pixels = 1280 * 720;
    let bytes = facts["host_bytes_per_frame"].as_u64().unwrap();
    assert!([0, pixels * 3 / 2, pixels * 4].contains(&bytes), "{facts}");
    assert!(text.ends_with("the default path works here\n"), "{text}");
    // DMA-BUF import: ok exactly where the facts list node formats the display imports; Mesa's
    // surfaceless platform (llvmpipe) lacks the extension.
    let imports = facts["dmabuf_import"].as_array().expect("dmabuf_import in the facts");
    assert_eq!(line("dmabuf").starts_with("ok"), !imports.is_empty(), "{text}\n{facts}");
    if text.contains("Mesa surfaceless platform") {
        let dmabuf = line("dmabuf");
        assert!(dmabuf.contains("needs EGL_EXT_image_dma_buf_import") && dmabuf.contains("lacks"), "{text}");
    }
    let json = run(&["doctor", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("doctor --json parses");
    assert_eq!(doc["ok"], true);
    let cuda = if nvidia_present() { "ok" } else { "warn" };
    assert!(doc["checks"].as_array().unwrap().iter().any(|c| c["check"] == "cuda" && c["status"] == cuda));
}

#[test]
fn doctor_fails_the_right_line_in_a_broken_environment() {
    let out = agentcast(&["doctor"]).env("AGENTCAST_EGL_LIB", "/nonexistent/libEGL.so.1").output_within(DEADLINE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{text}");
    assert!(text.lines().any(|l| l.starts_with("FAIL  egl") && l.contains("/nonexistent/libEGL.so.1")), "{text}");
    let out = run(&["doctor", "--lock-dir", "/proc/agentcast-locks"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{text}");
    assert!(text.lines().any(|l| l.starts_with("FAIL  lock-dir")), "{text}");
}

// The JSON stats.

#[test]
fn stats_lines_parse_grow_and_add_up() {
    let out = run(&["--frames", "100", "--stats-interval", "1"]);
    assert!(out.status.success());
    let lines = stats_lines(&out.stderr);
    assert!(lines.len() >= 3, "expected a line a second and a final one, got {}", lines.len());
    let counter = |v: &serde_json::Value, a: &str, b: &str| v[a][b].as_u64().unwrap();
    for pair in lines.windows(2) {
        for (a, b) in [("frames", "rendered"), ("frames", "encoded"), ("frames", "written"), ("dropped", "total")] {
            assert!(counter(&pair[1], a, b) >= counter(&pair[0], a, b), "{a}.{b} went down");
        }
    }
    let last = lines.last().unwrap();
    assert_eq!(last["stats"], "final");
    assert_eq!(
        counter(last, "frames", "written") + counter(last, "dropped", "total"),
        counter(last, "frames", "rendered"),
        "{last}"
    );
    let mid = &lines[1];
    assert_eq!(mid["backend"], machine()["auto_encoder"]);
    assert!(mid["latency_ms"]["render_to_write"]["p50"].as_f64().unwrap() > 0.0, "{mid}");
    assert!(mid["rss_kib"].as_u64().unwrap() > 0);
    assert!(mid.get("vms").is_none());
    // Real GPU memory: null where doctor finds no NVML; a number where NVML lists this process.
    if machine()["nvml"] == false {
        assert!(mid["gpu_memory_mib"].is_null(), "{mid}");
    } else {
        assert!(mid["gpu_memory_mib"].is_null() || mid["gpu_memory_mib"].is_u64(), "{mid}");
    }
    // Proof of the path, as doctor predicts it for this machine: on llvmpipe, auto converts on the
    // CPU, so RGBA (4 B/px) crosses to the host; on a real GPU the shader packs YUV (1.5 B/px).
    assert_eq!(mid["path"], machine()["auto_path"], "{mid}");
    assert_eq!(mid["host_bytes_per_frame"], machine()["host_bytes_per_frame"], "{mid}");
}

#[test]
fn the_stats_file_is_always_complete_json() {
    let dir = tempdir();
    let file = dir.path().join("stats.json");
    let mut child = agentcast(&["--frames", "75", "--stats-interval", "1", "--stats-file", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn_within(DEADLINE);
    let mut reads = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("a partial stats file ({e}): {text:?}"));
            assert!(v["frames"]["rendered"].is_u64());
            reads += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(reads > 10, "the file should have been read while it was being replaced ({reads} reads)");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["stats"], "final");
}

/// With the shader pass packing YUV on the GPU, 1.5 bytes per pixel cross to the host, not 4 (the
/// path is pinned to readback, so this holds on every machine).
#[test]
fn stats_show_the_host_bytes_of_the_gpu_packed_path() {
    let dir = tempdir();
    let file = dir.path().join("stats.json");
    let args = ["--frames", "10", "--no-pace", "--convert", "gpu", "--path", "readback", "--stats-file"];
    let out = run(&[&args[..], &[file.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stats["path"], "readback");
    assert_eq!(stats["host_bytes_per_frame"], 1280 * 720 * 3 / 2, "{stats}");
}

// --gpu: the CUDA device; never silently ignored.

/// Without CUDA, `--gpu 0` is refused in one line; with it, device 0 streams and device 99 is refused.
#[test]
fn gpu_without_cuda_is_a_one_line_error_naming_the_flag() {
    let devices = machine()["cuda_devices"].as_u64().unwrap();
    if devices > 0 {
        let out = run(&["--gpu", "0", "--frames", "5", "--no-pace"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = run(&["--gpu", "99", "--frames", "5"]);
        crate::cli::assert_usage_error(&out, 69, &format!("--gpu 99: there are {devices} CUDA device(s)"));
        return;
    }
    let out = run(&["--gpu", "0", "--frames", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(out.stdout.is_empty(), "nothing streamed");
    assert_eq!(err.trim(), "agentcast: --gpu 0: there is no CUDA here (libcuda.so.1 is not installed)");
}
