//! `agentcast doctor`: one line per check, ok/warn/fail with a fix hint, for what the default path
//! needs (GStreamer, EGL, an encoder that opens, writable lock and FIFO directories) and what the
//! fast paths would use (a real GPU, CUDA, NVENC, VA-API). Exits 69 when the default path cannot work.

use std::path::PathBuf;

use crate::encode::select;
use crate::encode::settings::Backend;
use crate::exit::Exit;
use crate::frame::PixFmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

/// What the machine has, as facts for scripts and tests (`doctor --json`'s `facts`): the answers
/// that tests of machine-dependent behaviour ask for instead of assuming a CPU-only machine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facts {
    /// The GL renderer string; `None` where EGL does not open.
    pub renderer: Option<String>,
    /// The renderer runs on the CPU (llvmpipe, softpipe).
    pub software_gl: Option<bool>,
    /// CUDA devices (0 where there is no libcuda or it does not initialise).
    pub cuda_devices: usize,
    /// Every encoder element probed, and whether it opened.
    pub encoders: std::collections::BTreeMap<String, bool>,
    /// The element `--encoder auto` picks.
    pub auto_encoder: Option<String>,
    /// The frame path `--path auto` takes with the defaults: "zero-copy" or "readback".
    pub auto_path: Option<String>,
    /// Bytes per frame that cross to the host on that path at the size checked.
    pub host_bytes_per_frame: Option<usize>,
    /// NVML answers (the stats' `gpu_memory_mib` comes from it); `false` means that figure is null.
    pub nvml: bool,
    /// The PipeWire node formats whose DMA-BUFs this EGL display imports (empty: none, they take
    /// the CPU mapping).
    pub dmabuf_import: Vec<String>,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check { name, status, detail: detail.into(), fix: fix.map(str::to_string) }
}

/// The elements the default pipeline needs, with the package that ships each.
const REQUIRED: [(&str, &str); 6] = [
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("queue", "libgstreamer1.0-0"),
    ("capsfilter", "libgstreamer1.0-0"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
];

/// Runs every check, and notes the machine's [`Facts`] on the way.
pub fn run_checks(lock_dir: PathBuf, fifo_dir: PathBuf, width: u32, height: u32) -> (Vec<Check>, Facts) {
    let mut out = Vec::new();
    let mut facts = Facts::default();

    // GStreamer.
    let gst_ok = crate::gst_util::init().is_ok();
    if !gst_ok {
        out.push(check("gstreamer", Status::Fail, "GStreamer does not initialise", Some("run scripts/setup.sh")));
    } else {
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|(e, _)| !crate::gst_util::element_installed(e))
            .map(|(e, p)| format!("{e} ({p})"))
            .collect();
        let version = gstreamer::version_string().to_string();
        if missing.is_empty() {
            let ts = if crate::gst_util::element_installed("mpegtsmux") { "; mpegtsmux for --mux mpegts" } else { "" };
            let pw = if crate::gst_util::element_installed("pipewiresrc") {
                "; pipewiresrc for --source pipewire:"
            } else {
                ""
            };
            out.push(check("gstreamer", Status::Ok, format!("{version}; all required elements{ts}{pw}"), None));
        } else {
            out.push(check(
                "gstreamer",
                Status::Fail,
                format!("{version}; missing {}", missing.join(", ")),
                Some("install the packages named, or run scripts/setup.sh"),
            ));
        }
    }

    // EGL and the GL renderer.
    let mut renderer = None;
    let cuda_device = crate::cuda::select(None).ok().flatten();
    match crate::render::Gpu::open(None, cuda_device) {
        Ok(gpu) => {
            renderer = Some(gpu.info.clone());
            facts.renderer = Some(gpu.info.renderer.clone());
            facts.software_gl = Some(gpu.info.software);
            out.push(check("egl", Status::Ok, gpu.info.platform.clone(), None));
            if gpu.info.software {
                out.push(check(
                    "gl",
                    Status::Warn,
                    format!("{} renders on the CPU (software); --convert auto reads back RGBA", gpu.info.renderer),
                    Some("fine without a GPU; on an NVIDIA machine install the driver's EGL (libnvidia-egl)"),
                ));
            } else {
                out.push(check("gl", Status::Ok, format!("{} ({})", gpu.info.renderer, gpu.info.version), None));
            }
        }
        Err(e) => out.push(check(
            "egl",
            Status::Fail,
            format!("{e:#}"),
            Some("install libegl1 and libegl-mesa0 (Mesa) or the NVIDIA driver; check AGENTCAST_EGL_LIB"),
        )),
    }

    // DMA-BUF import for PipeWire nodes, on a display of its own (the one above is closed: displays
    // of one platform share one EGLDisplay, which the first to close terminates).
    if renderer.is_some() {
        out.push(match crate::render::import::DmaBufFrames::open(width, height) {
            Ok(frames) => {
                let formats = crate::source::pipewire::NODE_FORMATS;
                let (yes, no): (Vec<&PixFmt>, Vec<&PixFmt>) = formats.iter().partition(|&&f| frames.supports(f).is_ok());
                facts.dmabuf_import = yes.iter().map(|f| f.to_string()).collect();
                let listed = |v: &[&PixFmt]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
                match (yes.is_empty(), no.is_empty()) {
                    (true, _) => check(
                        "dmabuf",
                        Status::Warn,
                        format!("EGL imports none of a PipeWire node's formats ({}) as DMA-BUF", listed(&no)),
                        Some("matters only for --source pipewire: with nodes that send DMA-BUFs, read through a CPU mapping here"),
                    ),
                    (false, true) => check(
                        "dmabuf",
                        Status::Ok,
                        format!("EGL imports PipeWire DMA-BUFs as images ({}): they stay on the GPU", listed(&yes)),
                        None,
                    ),
                    (false, false) => check(
                        "dmabuf",
                        Status::Ok,
                        format!(
                            "EGL imports PipeWire DMA-BUFs of {} as images; {} take the CPU mapping",
                            listed(&yes),
                            listed(&no)
                        ),
                        None,
                    ),
                }
            }
            Err(e) => check(
                "dmabuf",
                Status::Warn,
                format!("{e:#}: PipeWire DMA-BUF buffers are read through a CPU mapping"),
                Some("matters only for --source pipewire: with nodes that send DMA-BUFs; the NVIDIA driver's EGL imports them"),
            ),
        });
    }

    // CUDA.
    let cuda = crate::cuda::probe();
    if let crate::cuda::Cuda::Devices(n) = cuda {
        facts.cuda_devices = n;
    }
    out.push(match cuda.clone() {
        crate::cuda::Cuda::Absent => check(
            "cuda",
            Status::Warn,
            "no libcuda (no NVIDIA driver): the zero-copy GPU path is unavailable",
            Some("only needed on NVIDIA machines"),
        ),
        crate::cuda::Cuda::Broken(why) => {
            check("cuda", Status::Warn, format!("libcuda loads but does not initialise: {why}"), None)
        }
        crate::cuda::Cuda::Devices(n) => check("cuda", Status::Ok, format!("{n} CUDA device(s)"), None),
    });

    // NVML: where the stats' real GPU memory comes from.
    out.push(match crate::stats::nvml_status() {
        Ok(detail) => {
            facts.nvml = true;
            check("nvml", Status::Ok, format!("{detail}; the stats report gpu_memory_mib"), None)
        }
        Err(why) => check(
            "nvml",
            Status::Warn,
            format!("{why}: the stats' gpu_memory_mib stays null"),
            Some("only NVIDIA machines have NVML (libnvidia-ml.so.1, from the driver)"),
        ),
    });

    // Encoders: every backend opened for real.
    if gst_ok {
        let (report, chosen) = crate::encode::probe_every_backend(width, height);
        facts.encoders = report.iter().map(|(b, o)| (b.element().to_string(), *o == select::Outcome::Opened)).collect();
        facts.auto_encoder = chosen.map(|b| b.element().to_string());
        for (family, name, hint) in [
            ("nvenc", "nvenc", "NVIDIA GeForce/RTX/L4/T4 only: H100, H200 and A100 have no NVENC"),
            ("vaapi", "vaapi", "needs a VA-API driver with H.264 encode (Intel/AMD)"),
        ] {
            let rows: Vec<&(Backend, select::Outcome)> = report.iter().filter(|(b, _)| b.name() == family).collect();
            let opened = rows.iter().find(|(_, o)| *o == select::Outcome::Opened);
            let detail = rows.iter().map(|(b, o)| format!("{} {o}", b.element())).collect::<Vec<_>>().join("; ");
            out.push(match opened {
                Some((b, _)) => check(name, Status::Ok, format!("{} opens", b.element()), None),
                None => check(name, Status::Warn, detail, Some(hint)),
            });
        }
        let nvenc_opens = report.iter().any(|(b, o)| b.name() == "nvenc" && *o == select::Outcome::Opened);
        if let Some(gpu) = renderer {
            let takes_cuda = if nvenc_opens { Ok(()) } else { Err("no NVENC opens here".into()) };
            let path_facts = gpu.path_facts(cuda_device.map(|c| c.ordinal), takes_cuda, width, height);
            let (auto, convert) = (crate::settings::FramePath::Auto, crate::settings::Convert::Auto);
            let line = match crate::plan::choose_path(auto, convert, &path_facts) {
                Ok(crate::plan::PathChoice { route: crate::plan::Route::ZeroCopy, why }) => {
                    (facts.auto_path, facts.host_bytes_per_frame) = (Some("zero-copy".into()), Some(0));
                    format!("--path auto takes zero-copy (0 host bytes per frame): {why}")
                }
                Ok(crate::plan::PathChoice { route: crate::plan::Route::Readback, why }) => {
                    let pixels = width as usize * height as usize;
                    facts.auto_path = Some("readback".into());
                    facts.host_bytes_per_frame = Some(if gpu.software { pixels * 4 } else { pixels * 3 / 2 });
                    let bytes = if gpu.software { "RGBA, 4 B/px" } else { "shader-packed YUV, 1.5 B/px" };
                    format!("--path auto takes {why}; frames cross to the host as {bytes}")
                }
                Err(e) => e.to_string(),
            };
            out.push(check("path", Status::Ok, line, None));
        }
        out.push(match chosen {
            Some(b) => check("encoder", Status::Ok, format!("--encoder auto picks {b}"), None),
            None => check(
                "encoder",
                Status::Fail,
                "no H.264 encoder opens",
                Some("install gstreamer1.0-plugins-ugly (x264) or gstreamer1.0-plugins-bad (openh264)"),
            ),
        });
    }

    // Lock dir (NVENC slots) and FIFO dir.
    match crate::slots::LockDir::open(&lock_dir, 0) {
        Ok(_) => {
            let held = || -> Option<(usize, u32)> {
                let n = std::fs::read_dir(&lock_dir)
                    .ok()?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("slot-"))
                    .count() as u32;
                let list = crate::slots::LockDir::open(&lock_dir, n).ok()?.list().ok()?;
                Some((list.iter().filter(|(_, s)| matches!(s, crate::slots::SlotState::Held { .. })).count(), n))
            };
            let (held, n) = held().unwrap_or((0, 0));
            out.push(check(
                "lock-dir",
                Status::Ok,
                format!("{} is writable; NVENC slots held: {held} of {n} slot files", lock_dir.display()),
                None,
            ));
        }
        Err(e) => out.push(check(
            "lock-dir",
            Status::Fail,
            e,
            Some("pass --lock-dir (or AGENTCAST_LOCK_DIR) a directory this user can write"),
        )),
    }
    if fifo_dir != lock_dir {
        out.push(match crate::slots::LockDir::open(&fifo_dir, 0) {
            Ok(_) => check("fifo-dir", Status::Ok, format!("{} is writable", fifo_dir.display()), None),
            Err(e) => check(
                "fifo-dir",
                Status::Fail,
                e.replace("--lock-dir", "FIFO dir"),
                Some("put --output fifo:PATH in a directory this user can write"),
            ),
        });
    }
    (out, facts)
}

/// `agentcast doctor`.
pub fn doctor(args: &crate::cli::DoctorArgs) -> anyhow::Result<Exit> {
    let lock_dir = args.lock_dir.clone().unwrap_or_else(crate::slots::default_dir);
    let fifo_dir = args.fifo_dir.clone().unwrap_or_else(|| lock_dir.clone());
    let (checks, facts) = run_checks(lock_dir, fifo_dir, args.width, args.height);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let rows: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "check": c.name, "status": c.status.word().to_lowercase(), "detail": c.detail, "fix": c.fix,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": !failed, "checks": rows, "facts": facts }))?
        );
    } else {
        for c in &checks {
            println!("{:<4}  {:<9} {}", c.status.word(), c.name, c.detail);
            if c.status != Status::Ok
                && let Some(fix) = &c.fix
            {
                println!("{:<4}  {:<9} fix: {fix}", "", "");
            }
        }
        println!(
            "{}",
            if failed { "the default path cannot work here (see FAIL above)" } else { "the default path works here" }
        );
    }
    Ok(if failed { Exit::Unavailable } else { Exit::Ok })
}
