//! `agentcast doctor`: one line per check, ok/warn/fail with a fix hint, for what the default path
//! needs (GStreamer, EGL, an encoder that opens, writable lock and FIFO directories) and what the
//! fast paths would use (a real GPU, CUDA, NVENC, VA-API). Exits 69 when the default path cannot work.

use std::path::{Path, PathBuf};

use crate::cuda::Cuda;
use crate::encode::select;
use crate::encode::settings::Backend;
use crate::exit::Exit;
use crate::frame::PixFmt;
use crate::render::GpuInfo;

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

/// One check's result: a line of `agentcast doctor` (a row of `--json`).
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Check {
    /// The check's lines as `agentcast doctor` prints them: status, name, detail; then the fix,
    /// where the check is not ok and has one.
    fn lines(&self) -> String {
        let mut text = format!("{:<4}  {:<9} {}\n", self.status.word(), self.name, self.detail);
        if self.status != Status::Ok
            && let Some(fix) = &self.fix
        {
            text += &format!("{:<4}  {:<9} fix: {fix}\n", "", "");
        }
        text
    }

    /// The check as a row of `doctor --json`.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "check": self.name, "status": self.status.word().to_lowercase(), "detail": self.detail, "fix": self.fix,
        })
    }
}

/// Whether the default path cannot work: some check failed.
fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

/// `agentcast doctor`'s whole text output: every check's lines, then the verdict.
fn text(checks: &[Check]) -> String {
    let mut out: String = checks.iter().map(Check::lines).collect();
    out += if failed(checks) {
        "the default path cannot work here (see FAIL above)\n"
    } else {
        "the default path works here\n"
    };
    out
}

/// `agentcast doctor`'s exit: 69 when the default path cannot work.
fn exit(checks: &[Check]) -> Exit {
    if failed(checks) { Exit::Unavailable } else { Exit::Ok }
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

/// GStreamer: whether it initialised (`initialised`), its version, the required elements missing
/// (as "element (package)"), and the optional elements found.
fn gstreamer(initialised: bool) -> Check {
    if !initialised {
        return gstreamer_line(None, &[], false, false);
    }
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(e, _)| !crate::gst_util::element_installed(e))
        .map(|(e, p)| format!("{e} ({p})"))
        .collect();
    let version = gstreamer::version_string().to_string();
    let (ts, pw) = (crate::gst_util::element_installed("mpegtsmux"), crate::gst_util::element_installed("pipewiresrc"));
    gstreamer_line(Some(&version), &missing, ts, pw)
}

/// The `gstreamer` line: `version` is `None` where GStreamer does not initialise.
fn gstreamer_line(version: Option<&str>, missing: &[String], mpegtsmux: bool, pipewiresrc: bool) -> Check {
    let Some(version) = version else {
        return check("gstreamer", Status::Fail, "GStreamer does not initialise", Some("run scripts/setup.sh"));
    };
    if missing.is_empty() {
        let ts = if mpegtsmux { "; mpegtsmux for --mux mpegts" } else { "" };
        let pw = if pipewiresrc { "; pipewiresrc for --source pipewire:" } else { "" };
        check("gstreamer", Status::Ok, format!("{version}; all required elements{ts}{pw}"), None)
    } else {
        check(
            "gstreamer",
            Status::Fail,
            format!("{version}; missing {}", missing.join(", ")),
            Some("install the packages named, or run scripts/setup.sh"),
        )
    }
}

/// EGL and the GL renderer: the `egl` line, and the `gl` line where EGL opens.
fn egl(opened: &anyhow::Result<GpuInfo>) -> Vec<Check> {
    match opened {
        Ok(info) => vec![check("egl", Status::Ok, info.platform.clone(), None), gl(info)],
        Err(e) => vec![check(
            "egl",
            Status::Fail,
            format!("{e:#}"),
            Some("install libegl1 and libegl-mesa0 (Mesa) or the NVIDIA driver; check AGENTCAST_EGL_LIB"),
        )],
    }
}

/// The `gl` line: a software renderer is a warning.
fn gl(info: &GpuInfo) -> Check {
    if info.software {
        check(
            "gl",
            Status::Warn,
            format!("{} renders on the CPU (software); --convert auto reads back RGBA", info.renderer),
            Some("fine without a GPU; on an NVIDIA machine install the driver's EGL (libnvidia-egl)"),
        )
    } else {
        check("gl", Status::Ok, format!("{} ({})", info.renderer, info.version), None)
    }
}

/// DMA-BUF import for PipeWire nodes, on a display of its own (the one [`egl`] used is closed:
/// displays of one platform share one EGLDisplay, which the first to close terminates).
fn dmabuf(width: u32, height: u32, facts: &mut Facts) -> Check {
    match crate::render::import::DmaBufFrames::open(width, height) {
        Ok(frames) => {
            let formats = crate::source::pipewire::NODE_FORMATS;
            let (yes, no): (Vec<PixFmt>, Vec<PixFmt>) = formats.iter().partition(|&&f| frames.supports(f).is_ok());
            facts.dmabuf_import = yes.iter().map(|f| f.to_string()).collect();
            dmabuf_line(&yes, &no)
        }
        Err(e) => check(
            "dmabuf",
            Status::Warn,
            format!("{e:#}: PipeWire DMA-BUF buffers are read through a CPU mapping"),
            Some(
                "matters only for --source pipewire: with nodes that send DMA-BUFs; the NVIDIA driver's EGL imports them",
            ),
        ),
    }
}

/// The `dmabuf` line, from the node formats EGL imports (`yes`) and those it does not (`no`).
fn dmabuf_line(yes: &[PixFmt], no: &[PixFmt]) -> Check {
    let listed = |v: &[PixFmt]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
    match (yes.is_empty(), no.is_empty()) {
        (true, _) => check(
            "dmabuf",
            Status::Warn,
            format!("EGL imports none of a PipeWire node's formats ({}) as DMA-BUF", listed(no)),
            Some("matters only for --source pipewire: with nodes that send DMA-BUFs, read through a CPU mapping here"),
        ),
        (false, true) => check(
            "dmabuf",
            Status::Ok,
            format!("EGL imports PipeWire DMA-BUFs as images ({}): they stay on the GPU", listed(yes)),
            None,
        ),
        (false, false) => check(
            "dmabuf",
            Status::Ok,
            format!("EGL imports PipeWire DMA-BUFs of {} as images; {} take the CPU mapping", listed(yes), listed(no)),
            None,
        ),
    }
}

/// The `cuda` line, from what [`crate::cuda::probe`] found.
fn cuda(found: &Cuda) -> Check {
    match found {
        Cuda::Absent => check(
            "cuda",
            Status::Warn,
            "no libcuda (no NVIDIA driver): the zero-copy GPU path is unavailable",
            Some("only needed on NVIDIA machines"),
        ),
        Cuda::Broken(why) => check("cuda", Status::Warn, format!("libcuda loads but does not initialise: {why}"), None),
        Cuda::Devices(n) => check("cuda", Status::Ok, format!("{n} CUDA device(s)"), None),
    }
}

/// The `nvml` line (where the stats' real GPU memory comes from), from
/// [`crate::stats::nvml_status`].
fn nvml(status: &Result<String, String>) -> Check {
    match status {
        Ok(detail) => check("nvml", Status::Ok, format!("{detail}; the stats report gpu_memory_mib"), None),
        Err(why) => check(
            "nvml",
            Status::Warn,
            format!("{why}: the stats' gpu_memory_mib stays null"),
            Some("only NVIDIA machines have NVML (libnvidia-ml.so.1, from the driver)"),
        ),
    }
}

/// The fast encoder families, with the line each gets and the hint where none of it opens.
const FAMILIES: [(&str, &str); 2] = [
    ("nvenc", "NVIDIA GeForce/RTX/L4/T4 only: H100, H200 and A100 have no NVENC"),
    ("vaapi", "needs a VA-API driver with H.264 encode (Intel/AMD)"),
];

/// The line of one encoder family (`nvenc`, `vaapi`), from every backend probed: the element that
/// opens, else what became of each.
fn family(family: &'static str, hint: &str, report: &[(Backend, select::Outcome)]) -> Check {
    let rows: Vec<&(Backend, select::Outcome)> = report.iter().filter(|(b, _)| b.name() == family).collect();
    let opened = rows.iter().find(|(_, o)| *o == select::Outcome::Opened);
    let detail = rows.iter().map(|(b, o)| format!("{} {o}", b.element())).collect::<Vec<_>>().join("; ");
    match opened {
        Some((b, _)) => check(family, Status::Ok, format!("{} opens", b.element()), None),
        None => check(family, Status::Warn, detail, Some(hint)),
    }
}

/// The `path` line: the frame path `--path auto` takes here with the defaults, noted in `facts`.
fn path(gpu: &GpuInfo, cuda: Option<u32>, nvenc_opens: bool, (width, height): (u32, u32), facts: &mut Facts) -> Check {
    let takes_cuda = if nvenc_opens { Ok(()) } else { Err("no NVENC opens here".into()) };
    let path_facts = gpu.path_facts(cuda, takes_cuda, width, height);
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
    check("path", Status::Ok, line, None)
}

/// The `encoder` line: what `--encoder auto` picks, or that nothing opens.
fn encoder(chosen: Option<Backend>) -> Check {
    match chosen {
        Some(b) => check("encoder", Status::Ok, format!("--encoder auto picks {b}"), None),
        None => check(
            "encoder",
            Status::Fail,
            "no H.264 encoder opens",
            Some("install gstreamer1.0-plugins-ugly (x264) or gstreamer1.0-plugins-bad (openh264)"),
        ),
    }
}

/// The `lock-dir` line: the directory is writable, and how many NVENC slots are held in it.
fn lock_dir(dir: &Path) -> Check {
    match crate::slots::LockDir::open(dir, 0) {
        Ok(_) => {
            let held = || -> Option<(usize, u32)> {
                let n = std::fs::read_dir(dir)
                    .ok()?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("slot-"))
                    .count() as u32;
                let list = crate::slots::LockDir::open(dir, n).ok()?.list().ok()?;
                Some((list.iter().filter(|(_, s)| matches!(s, crate::slots::SlotState::Held { .. })).count(), n))
            };
            let (held, n) = held().unwrap_or((0, 0));
            check(
                "lock-dir",
                Status::Ok,
                format!("{} is writable; NVENC slots held: {held} of {n} slot files", dir.display()),
                None,
            )
        }
        Err(e) => check(
            "lock-dir",
            Status::Fail,
            e.to_string(),
            Some("pass --lock-dir (or AGENTCAST_LOCK_DIR) a directory this user can write"),
        ),
    }
}

/// The `fifo-dir` line: the directory FIFO outputs go in is writable.
fn fifo_dir(dir: &Path) -> Check {
    match crate::slots::writable_dir(dir, "FIFO dir") {
        Ok(()) => check("fifo-dir", Status::Ok, format!("{} is writable", dir.display()), None),
        Err(e) => check(
            "fifo-dir",
            Status::Fail,
            e.to_string(),
            Some("put --output fifo:PATH in a directory this user can write"),
        ),
    }
}

/// Runs every check, and notes the machine's [`Facts`] on the way.
pub fn run_checks(lock: PathBuf, fifo: PathBuf, width: u32, height: u32) -> (Vec<Check>, Facts) {
    let mut out = Vec::new();
    let mut facts = Facts::default();

    let gst_ok = crate::gst_util::init().is_ok();
    out.push(gstreamer(gst_ok));

    let cuda_device = crate::cuda::select(None).ok().flatten();
    // The context closes here, before the DMA-BUF check opens a display of its own.
    let renderer = crate::render::Gpu::open(None, cuda_device).map(|gpu| gpu.info.clone());
    if let Ok(info) = &renderer {
        facts.renderer = Some(info.renderer.clone());
        facts.software_gl = Some(info.software);
    }
    out.extend(egl(&renderer));
    let renderer = renderer.ok();
    if renderer.is_some() {
        out.push(dmabuf(width, height, &mut facts));
    }

    let found = crate::cuda::probe();
    if let Cuda::Devices(n) = found {
        facts.cuda_devices = n;
    }
    out.push(cuda(&found));

    let status = crate::stats::nvml_status();
    facts.nvml = status.is_ok();
    out.push(nvml(&status));

    // Encoders: every backend opened for real.
    if gst_ok {
        let (report, chosen) = crate::encode::probe_every_backend(width, height);
        facts.encoders = report.iter().map(|(b, o)| (b.element().to_string(), *o == select::Outcome::Opened)).collect();
        facts.auto_encoder = chosen.map(|b| b.element().to_string());
        out.extend(FAMILIES.iter().map(|(name, hint)| family(name, hint, &report)));
        let nvenc_opens = report.iter().any(|(b, o)| b.name() == "nvenc" && *o == select::Outcome::Opened);
        if let Some(gpu) = &renderer {
            out.push(path(gpu, cuda_device.map(|c| c.ordinal), nvenc_opens, (width, height), &mut facts));
        }
        out.push(encoder(chosen));
    }

    out.push(lock_dir(&lock));
    if fifo != lock {
        out.push(fifo_dir(&fifo));
    }
    (out, facts)
}

/// What `agentcast doctor` checks and how it answers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Print JSON instead of lines.
    pub json: bool,
    /// The NVENC lock directory; `None` = [`crate::slots::default_dir`].
    pub lock_dir: Option<PathBuf>,
    /// The directory FIFO outputs go in; `None` = the lock directory.
    pub fifo_dir: Option<PathBuf>,
    /// The size encoders are probed at.
    pub width: u32,
    pub height: u32,
}

/// `agentcast doctor`.
pub fn doctor(o: &Options) -> anyhow::Result<Exit> {
    let lock_dir = o.lock_dir.clone().unwrap_or_else(crate::slots::default_dir);
    let fifo_dir = o.fifo_dir.clone().unwrap_or_else(|| lock_dir.clone());
    let (checks, facts) = run_checks(lock_dir, fifo_dir, o.width, o.height);
    if o.json {
        let rows: Vec<serde_json::Value> = checks.iter().map(Check::json).collect();
        let doc = serde_json::json!({ "ok": !failed(&checks), "checks": rows, "facts": facts });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", text(&checks));
    }
    Ok(exit(&checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(software: bool) -> GpuInfo {
        GpuInfo {
            platform: "Mesa surfaceless platform".into(),
            renderer: if software { "llvmpipe (LLVM 15.0.6, 256 bits)" } else { "NVIDIA L4/PCIe/SSE2" }.into(),
            version: "OpenGL ES 3.2".into(),
            vendor: "Mesa".into(),
            software,
            cuda_device: None,
        }
    }

    #[test]
    fn a_check_is_one_line_and_a_fix_only_when_not_ok() {
        let warn = check("cuda", Status::Warn, "no libcuda", Some("only needed on NVIDIA machines"));
        assert_eq!(warn.lines(), "warn  cuda      no libcuda\n                fix: only needed on NVIDIA machines\n");
        let ok = check("egl", Status::Ok, "Mesa surfaceless platform", Some("never shown"));
        assert_eq!(ok.lines(), "ok    egl       Mesa surfaceless platform\n");
        let fail = check("encoder", Status::Fail, "no H.264 encoder opens", None);
        assert_eq!(fail.lines(), "FAIL  encoder   no H.264 encoder opens\n");
    }

    #[test]
    fn any_fail_means_exit_69_and_the_fail_verdict() {
        let ok = check("egl", Status::Ok, "x", None);
        let warn = check("cuda", Status::Warn, "y", Some("z"));
        let fail = check("lock-dir", Status::Fail, "w", None);
        let fine = [ok.clone(), warn.clone()];
        assert_eq!(exit(&fine), Exit::Ok, "warnings alone pass");
        assert!(text(&fine).ends_with("fix: z\nthe default path works here\n"), "{}", text(&fine));
        let broken = [ok, warn, fail];
        assert_eq!(exit(&broken), Exit::Unavailable);
        assert!(text(&broken).ends_with("\nthe default path cannot work here (see FAIL above)\n"));
    }

    #[test]
    fn json_rows_have_lower_case_status_and_a_null_fix() {
        let row = check("encoder", Status::Fail, "no H.264 encoder opens", None).json();
        assert_eq!(
            row,
            serde_json::json!({ "check": "encoder", "status": "fail", "detail": "no H.264 encoder opens", "fix": null })
        );
    }

    #[test]
    fn gstreamer_lines() {
        assert_eq!(gstreamer_line(None, &[], true, true).status, Status::Fail);
        let all = gstreamer_line(Some("GStreamer 1.22.0"), &[], true, false);
        assert_eq!(
            (all.status, all.detail.as_str()),
            (Status::Ok, "GStreamer 1.22.0; all required elements; mpegtsmux for --mux mpegts")
        );
        let missing =
            gstreamer_line(Some("GStreamer 1.22.0"), &["h264parse (gstreamer1.0-plugins-bad)".into()], true, true);
        assert_eq!(
            (missing.status, missing.detail.as_str()),
            (Status::Fail, "GStreamer 1.22.0; missing h264parse (gstreamer1.0-plugins-bad)")
        );
    }

    #[test]
    fn a_software_renderer_warns_and_a_failed_egl_fails() {
        let soft = egl(&Ok(info(true)));
        assert_eq!(
            soft.iter().map(|c| (c.name, c.status)).collect::<Vec<_>>(),
            [("egl", Status::Ok), ("gl", Status::Warn)]
        );
        assert_eq!(gl(&info(false)).detail, "NVIDIA L4/PCIe/SSE2 (OpenGL ES 3.2)");
        let failed = egl(&Err(anyhow::anyhow!("no libEGL")));
        assert_eq!((failed.len(), failed[0].status, failed[0].detail.as_str()), (1, Status::Fail, "no libEGL"));
    }

    #[test]
    fn dmabuf_lines_say_which_formats_stay_on_the_gpu() {
        let (a, b) = (PixFmt::Bgra, PixFmt::Nv12);
        assert_eq!(dmabuf_line(&[], &[a, b]).status, Status::Warn);
        assert_eq!(
            dmabuf_line(&[a], &[]).detail,
            format!("EGL imports PipeWire DMA-BUFs as images ({a}): they stay on the GPU")
        );
        assert_eq!(
            dmabuf_line(&[a], &[b]).detail,
            format!("EGL imports PipeWire DMA-BUFs of {a} as images; {b} take the CPU mapping")
        );
    }

    #[test]
    fn cuda_nvml_and_encoder_lines() {
        assert_eq!(cuda(&Cuda::Devices(2)), check("cuda", Status::Ok, "2 CUDA device(s)", None));
        assert_eq!(cuda(&Cuda::Absent).status, Status::Warn);
        assert_eq!(nvml(&Err("no NVML".into())).detail, "no NVML: the stats' gpu_memory_mib stays null");
        assert_eq!(nvml(&Ok("driver 550".into())).status, Status::Ok);
        assert_eq!(encoder(None).status, Status::Fail);
        assert_eq!(encoder(Some(Backend::X264)).detail, "--encoder auto picks x264 (x264enc)");
    }

    #[test]
    fn a_family_is_ok_when_one_of_its_elements_opens() {
        use select::Outcome;
        let report = [
            (Backend::NvencCuda, Outcome::NotInstalled),
            (Backend::Nvenc, Outcome::Failed("no device".into())),
            (Backend::X264, Outcome::Opened),
        ];
        let nvenc = family("nvenc", "hint", &report);
        assert_eq!(nvenc.status, Status::Warn);
        assert_eq!(nvenc.detail, "nvcudah264enc not installed; nvh264enc does not open: no device");
        assert_eq!(nvenc.fix.as_deref(), Some("hint"));
        let report = [(Backend::NvencCuda, Outcome::Opened)];
        assert_eq!(family("nvenc", "hint", &report).detail, "nvcudah264enc opens");
    }

    #[test]
    fn directories_are_named_as_the_user_knows_them() {
        let t = tempfile::tempdir().unwrap();
        let locks = t.path().join("locks");
        let dir = crate::slots::LockDir::open(&locks, 2).unwrap();
        let _lease = dir.try_acquire("agent_01").unwrap().unwrap();
        let _ = dir.list().unwrap(); // both slot files exist
        let line = lock_dir(&locks);
        assert_eq!(line.detail, format!("{} is writable; NVENC slots held: 1 of 2 slot files", locks.display()));
        assert_eq!(fifo_dir(&locks).detail, format!("{} is writable", locks.display()));

        let bad = Path::new("/proc/agentcast-doctor-test");
        let line = lock_dir(bad);
        assert_eq!(line.status, Status::Fail);
        assert!(
            line.detail.starts_with("--lock-dir /proc/agentcast-doctor-test: cannot create the directory"),
            "{}",
            line.detail
        );
        let line = fifo_dir(bad);
        assert_eq!(line.status, Status::Fail);
        assert!(
            line.detail.starts_with("FIFO dir /proc/agentcast-doctor-test: cannot create the directory"),
            "{}",
            line.detail
        );
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU with its driver (CUDA and NVML)"]
    fn an_nvidia_machine_has_cuda_nvml_and_a_gpu_renderer() {
        let t = tempfile::tempdir().unwrap();
        let (checks, facts) = run_checks(t.path().into(), t.path().into(), 1280, 720);
        let status = |name: &str| checks.iter().find(|c| c.name == name).map(|c| c.status);
        assert_eq!(status("cuda"), Some(Status::Ok), "{checks:#?}");
        assert_eq!(status("nvml"), Some(Status::Ok), "{checks:#?}");
        assert!(facts.cuda_devices > 0 && facts.nvml);
        assert_eq!(facts.software_gl, Some(false), "the NVIDIA driver's EGL renders: {checks:#?}");
    }
}
