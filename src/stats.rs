//! Per-stage latency and the JSON stats line (`--stats-interval`, `--stats-file`).
//!
//! Each frame's times are noted as it passes the stages: the frame loop notes render start and end
//! and when the frame was handed to the encoder; the sink notes when its access unit came out of the
//! encoder and when it was written. Frames are matched by their stream index (the PTS from the
//! frame clock, recovered from the sample's running time). Every interval the samples become p50/p99
//! figures and are cleared.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// Frames whose times are remembered while they travel (older ones are forgotten).
const IN_FLIGHT: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Frame {
    render_start: Instant,
    pushed: Option<Instant>,
}

/// `--frame-log`: one `FRAME MONOTONIC_NS` line per rendered frame, written as it happens (a
/// line-buffered file costs one small write per frame), so it is complete even if we are killed.
pub struct FrameLog {
    path: std::path::PathBuf,
    out: Option<std::io::LineWriter<std::fs::File>>,
}

impl FrameLog {
    pub fn create(path: &std::path::Path) -> std::io::Result<FrameLog> {
        let file = std::fs::File::create(path)?;
        Ok(FrameLog { path: path.to_path_buf(), out: Some(std::io::LineWriter::new(file)) })
    }

    /// Frame `index` started rendering at `at_ns` (CLOCK_MONOTONIC). A write error is logged once
    /// and ends the log; it never stops the stream.
    pub fn note(&mut self, index: u64, at_ns: u64) {
        use std::io::Write;
        if let Some(out) = &mut self.out
            && let Err(e) = writeln!(out, "{index} {at_ns}")
        {
            log::warn!("--frame-log {}: {e}; no more frames are logged", self.path.display());
            self.out = None;
        }
    }
}

/// Parses a frame log: (frame number, CLOCK_MONOTONIC ns) per line. Bad lines are an error naming
/// the line.
pub fn parse_frame_log(text: &str) -> Result<Vec<(u64, u64)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let mut it = line.split_ascii_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(frame)), Some(Ok(ns)), None) => Ok((frame, ns)),
                _ => Err(format!("line {}: expected 'FRAME MONOTONIC_NS', got {line:?}", n + 1)),
            }
        })
        .collect()
}

/// Latency samples, in milliseconds, per stage.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    pub render: Vec<f64>,
    pub readback: Vec<f64>,
    pub encode: Vec<f64>,
    pub write: Vec<f64>,
    pub render_to_write: Vec<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    frames: HashMap<u64, Frame>,
    order: VecDeque<u64>,
    samples: Samples,
}

/// Shared between the frame loop and the sink thread.
#[derive(Debug, Default)]
pub struct Timings {
    inner: Mutex<Inner>,
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

impl Timings {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The frame loop drew frame `index` between `start` and `end`.
    pub fn rendered(&self, index: u64, start: Instant, end: Instant) {
        self.with(|i| {
            i.samples.render.push(ms(start, end));
            i.frames.insert(index, Frame { render_start: start, pushed: None });
            i.order.push_back(index);
            while i.order.len() > IN_FLIGHT {
                if let Some(old) = i.order.pop_front() {
                    i.frames.remove(&old);
                }
            }
        });
    }

    /// Frame `index` was read back (from `start`) and handed to the encoder at `at`.
    pub fn pushed(&self, index: u64, start: Instant, at: Instant) {
        self.with(|i| {
            i.samples.readback.push(ms(start, at));
            if let Some(f) = i.frames.get_mut(&index) {
                f.pushed = Some(at);
            }
        });
    }

    /// Frame `index`'s access unit left the encoder at `out` and was written from `out` to `done`.
    pub fn written(&self, index: u64, out: Instant, done: Instant) {
        self.with(|i| {
            i.samples.write.push(ms(out, done));
            if let Some(f) = i.frames.remove(&index) {
                if let Some(p) = f.pushed {
                    i.samples.encode.push(ms(p, out));
                }
                i.samples.render_to_write.push(ms(f.render_start, done));
            }
        });
    }

    /// Takes the samples gathered since the last call.
    pub fn take(&self) -> Samples {
        self.with(|i| std::mem::take(&mut i.samples))
    }

    /// A copy of the samples gathered since the last [`Timings::take`], leaving them in place.
    pub fn peek(&self) -> Samples {
        self.with(|i| i.samples.clone())
    }
}

/// The p-th percentile (0..=100) by nearest rank; `None` for no samples.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    Some(values[rank.min(values.len()) - 1])
}

/// Latency over some samples, in milliseconds rounded to 0.01: `{"p50", "p99", "max", "n"}`, the
/// figures null when there were no samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// How many samples.
    pub n: usize,
}

/// The [`Summary`] of `values` (sorts them).
pub fn summary(values: &mut [f64]) -> Summary {
    let round = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
    Summary {
        p50: round(percentile(values, 50.0)),
        p99: round(percentile(values, 99.0)),
        max: round(percentile(values, 100.0)),
        n: values.len(),
    }
}

/// Resident memory of this process (VmRSS), in KiB. Never VMS: virtual size counts every mapping
/// (GPU drivers map gigabytes they never touch) and reads as a leak when there is none.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// NVML (libnvidia-ml.so.1), loaded at run time on first use; the error says why it is not there.
fn nvml() -> Result<&'static nvml_wrapper::Nvml, &'static str> {
    static NVML: std::sync::OnceLock<Result<nvml_wrapper::Nvml, String>> = std::sync::OnceLock::new();
    NVML.get_or_init(|| nvml_wrapper::Nvml::init().map_err(|e| nvml_error(&e))).as_ref().map_err(String::as_str)
}

fn nvml_error(e: &nvml_wrapper::error::NvmlError) -> String {
    use nvml_wrapper::error::NvmlError;
    match e {
        NvmlError::LibloadingError(_) => "libnvidia-ml.so.1 is not installed (no NVIDIA driver)".into(),
        NvmlError::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".into(),
        NvmlError::NoPermission => "NVML has no permission to talk to the driver".into(),
        other => format!("NVML does not initialise: {other}"),
    }
}

/// Whether NVML answers here, for `doctor`: the driver and device count, or why not.
pub fn nvml_status() -> Result<String, String> {
    let nvml = nvml().map_err(str::to_string)?;
    let driver = nvml.sys_driver_version().unwrap_or_else(|_| "?".into());
    let devices = nvml.device_count().map_err(|e| nvml_error(&e))?;
    Ok(format!("NVML answers: driver {driver}, {devices} device(s)"))
}

/// GPU memory this process holds on its GPUs, in MiB, from NVML's per-process accounting (compute
/// and graphics contexts on every device). `None` where there is no NVML, or NVML does not list
/// this process: it holds no GPU memory (llvmpipe), or NVML sees other pids (a container without
/// the host's pid namespace).
pub fn gpu_memory_mib() -> Option<u64> {
    let nvml = nvml().ok()?;
    let mut entries = Vec::new();
    for index in 0..nvml.device_count().ok()? {
        let Ok(device) = nvml.device_by_index(index) else { continue };
        for list in [device.running_compute_processes(), device.running_graphics_processes()] {
            entries.extend(list.unwrap_or_default().into_iter().map(|p| {
                let bytes = match p.used_gpu_memory {
                    nvml_wrapper::enums::device::UsedGpuMemory::Used(b) => Some(b),
                    nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
                };
                (index, p.pid, bytes)
            }));
        }
    }
    own_usage_mib(std::process::id(), &entries)
}

/// The MiB `pid` holds from NVML's lists of `(device, pid, bytes)`: per device the largest figure
/// (a process with compute and graphics contexts on one device is listed in both lists, with the
/// same memory), summed over devices. `None` when `pid` is not listed with a figure.
pub fn own_usage_mib(pid: u32, entries: &[(u32, u32, Option<u64>)]) -> Option<u64> {
    let mut per_device = std::collections::BTreeMap::<u32, u64>::new();
    for (device, p, bytes) in entries {
        if *p == pid
            && let Some(b) = bytes
        {
            let slot = per_device.entry(*device).or_default();
            *slot = (*slot).max(*b);
        }
    }
    if per_device.is_empty() {
        return None;
    }
    Some((per_device.values().sum::<u64>() as f64 / (1024.0 * 1024.0)).round() as u64)
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then rename.
pub fn write_atomic(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn frame_log_round_trips_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("agentcast-framelog-{}", std::process::id()));
        let mut log = FrameLog::create(&dir).unwrap();
        log.note(0, 100);
        log.note(1, 33_433_433);
        drop(log);
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(parse_frame_log(&text).unwrap(), vec![(0, 100), (1, 33_433_433)]);
        assert_eq!(parse_frame_log("0 1\n1 x\n").unwrap_err(), "line 2: expected 'FRAME MONOTONIC_NS', got \"1 x\"");
        assert!(parse_frame_log("0 1 2").is_err());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut [7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn a_frame_is_followed_through_every_stage() {
        let t = Timings::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        t.rendered(5, t0, ms(10));
        t.pushed(5, ms(10), ms(12));
        t.written(5, ms(40), ms(41));
        let s = t.take();
        assert_eq!((s.render.len(), s.readback.len(), s.encode.len(), s.write.len()), (1, 1, 1, 1));
        assert!((s.encode[0] - 28.0).abs() < 1e-6);
        assert!((s.render_to_write[0] - 41.0).abs() < 1e-6);
        assert!(t.take().render.is_empty(), "take clears");
        // An access unit for a forgotten frame still counts its write time.
        t.written(99, ms(50), ms(52));
        assert_eq!(t.take().render_to_write.len(), 0);
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats.json");
        write_atomic(&p, "{\"a\":1}").unwrap();
        write_atomic(&p, "{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn own_gpu_memory_is_summed_from_nvml_lists() {
        let mib = 1024 * 1024;
        let entries = [(0, 7, Some(300 * mib)), (0, 8, Some(999 * mib)), (0, 7, None), (0, 7, Some(300 * mib))];
        // Listed as compute and as graphics on one device with the same figure: counted once.
        assert_eq!(own_usage_mib(7, &entries), Some(300));
        // Another device adds.
        assert_eq!(own_usage_mib(7, &[&entries[..], &[(1, 7, Some(300 * mib))]].concat()), Some(600));
        assert_eq!(own_usage_mib(9, &entries), None, "not listed: no GPU memory known");
        assert_eq!(own_usage_mib(7, &[(0, 7, None)]), None, "listed without a figure");
        assert_eq!(own_usage_mib(7, &[(0, 7, Some(mib / 2 + 1))]), Some(1));
    }

    #[test]
    fn nvml_failures_say_why_in_words() {
        use nvml_wrapper::error::NvmlError;
        assert_eq!(nvml_error(&NvmlError::DriverNotLoaded), "the NVIDIA kernel driver is not loaded");
        assert_eq!(nvml_error(&NvmlError::NoPermission), "NVML has no permission to talk to the driver");
        assert!(nvml_error(&NvmlError::Unknown).starts_with("NVML does not initialise: "));
    }

    #[test]
    fn rss_is_read() {
        assert!(rss_kib().unwrap() > 0);
    }
}
