//! What the stream reports: the counters the frame loop keeps, the JSON stats line (stderr,
//! `--stats-file`, [`super::Handle::stats`]) and the closing log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use log::info;
use serde::Serialize;

use crate::config::Config;
use crate::sink::SinkStats;
use crate::stats::{Summary, Timings};

/// The frame loop's counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Frame slots filled: frames drawn, or (agent frames) taken fresh or repeated.
    pub rendered: u64,
    pub encoded: u64,
    /// Deadlines passed over because the loop was late.
    pub late: u64,
    /// Frames the encoder had no room for.
    pub encoder_busy: u64,
    /// Frame slots passed while no reader was attached (FIFO/TCP, --idle pause): never rendered.
    pub idle: u64,
    /// Frames rendered with no reader attached (--idle render): rendered, not encoded.
    pub idle_rendered: u64,
}

/// The agent's frames at the time of a report.
#[derive(Debug, Clone, Default)]
pub(super) struct AgentFrames<'a> {
    /// The source, as `--source` names it (or the socket/ring it resolved to).
    pub what: std::borrow::Cow<'a, str>,
    /// Frames the agent sent.
    pub received: u64,
    /// Frames a newer one replaced before they were taken.
    pub superseded: u64,
    /// Frame slots that repeated the last frame (none came in time).
    pub repeated: u64,
}

/// Facts about the frames' path and source at the time of a report.
pub(super) struct Facts<'a> {
    pub backend: &'a str,
    pub slot: Option<u32>,
    /// How frames reach the encoder ("readback", "zero-copy", "host", ...) and what crosses to the
    /// host per frame.
    pub path: &'a str,
    pub host_bytes: usize,
    /// Agent frames: where they come from and what became of them; `None` for rendered frames.
    pub source: Option<AgentFrames<'a>>,
    /// A shared-memory ring's reader counters (`shm:` sources).
    pub ring: Option<&'a crate::source::shm::Counters>,
}

/// One stats line: the schema of the JSON on stderr, in `--stats-file` and from
/// [`super::Handle::stats`] (the README's "Stats" table says the same). Counters count since the
/// start and only grow; `fps`, `bitrate_kbps` and `latency_ms` cover the last interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// `interval`, or `final` for the last line of a run (`now` from [`super::Handle::stats`]).
    pub stats: String,
    /// `--stream`.
    pub stream: String,
    /// `--source` (for the agent's frames, the source they come from).
    pub source: String,
    /// The encoder element.
    pub backend: String,
    pub width: u32,
    pub height: u32,
    /// `--fps`.
    pub fps_target: u32,
    /// Seconds since the start, to 0.1.
    pub uptime_s: f64,
    pub frames: FrameCounts,
    pub dropped: Dropped,
    /// Frame slots filled by repeating the agent's last frame (the agent is slower than `--fps`,
    /// or paused).
    pub repeated: u64,
    pub skipped: Skipped,
    /// Frames rendered per second over the last interval, to 0.1.
    pub fps: f64,
    /// Bytes written over the last interval, in kbit/s, rounded.
    pub bitrate_kbps: f64,
    pub latency_ms: Latency,
    /// How frames reach the encoder: `zero-copy`, `readback`, `cuda-download`, `host`, ...
    pub path: String,
    /// What each frame moves from the GPU to the host: 0 on `zero-copy`; on `readback` 4 bytes per
    /// pixel (RGBA, converted on the CPU) or 1.5 (YUV packed by the GPU shader).
    pub host_bytes_per_frame: usize,
    /// The NVENC slot held, or null.
    pub nvenc_slot: Option<u32>,
    /// Resident memory. Never VMS: virtual size counts every mapping (GPU drivers map gigabytes
    /// they never touch) and reads as a leak when there is none. Null where /proc says nothing.
    pub rss_kib: Option<u64>,
    /// The GPU memory this process holds on its GPUs, in MiB, from NVML; null without NVML or
    /// while NVML does not list this process.
    pub gpu_memory_mib: Option<u64>,
    /// `tcp:` and `rtsp-listen:` outputs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Listen>,
    /// `--register` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<Register>,
    /// `shm:` sources only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm: Option<Ring>,
}

/// `frames`: counters since the start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameCounts {
    /// Frame slots filled: frames drawn, or (the agent's frames) taken fresh or repeated.
    pub rendered: u64,
    pub encoded: u64,
    /// Access units written.
    pub written: u64,
    /// The agent's frames only: the frames the agent sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
}

/// `dropped`: frames that were rendered but not written, by reason. For drawn scenes, at the end
/// of a run, `frames.rendered` = `frames.written` + `total` once nothing is in flight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    /// The agent's frames replaced by a newer one before they were taken (the agent is faster
    /// than `--fps`, or nobody reads).
    pub superseded: u64,
    /// Raw frames the encoder had no room for.
    pub encoder_busy: u64,
    /// `--idle render` with no reader: rendered, not encoded.
    pub idle_rendered: u64,
    /// Access units dropped while waiting for the first IDR.
    pub before_idr: u64,
    /// FIFO/TCP: dropped because a reader had just attached (waiting for an IDR), fell behind, or
    /// left with them queued; and encoded while nobody read.
    pub attach: u64,
    pub lag: u64,
    pub detach: u64,
    pub no_reader: u64,
    /// The sum of the reasons.
    pub total: u64,
}

impl Dropped {
    /// Every reason's count (all but `total`).
    fn by_reason(&self) -> [u64; 8] {
        let d = self;
        [d.superseded, d.encoder_busy, d.idle_rendered, d.before_idr, d.attach, d.lag, d.detach, d.no_reader]
    }
}

/// `skipped`: frame slots never rendered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// The loop was late.
    pub late: u64,
    /// Nobody was reading (`--idle pause`).
    pub idle: u64,
}

/// `latency_ms`: per stage over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Drawing.
    pub render: Summary,
    /// Readback and hand-over to the encoder.
    pub readback: Summary,
    /// Encoder in to access unit out.
    pub encode: Summary,
    /// The write (FIFO/TCP: hand-over to the reader's queue).
    pub write: Summary,
    /// Render start to written.
    pub render_to_write: Summary,
}

/// `listen`: where a listening output is reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listen {
    pub url: String,
    /// The real port (where 0 was asked for, the one the system gave).
    pub port: u16,
    /// `rtsp-listen:`: the RTSP clients connected now.
    pub clients: u64,
}

/// `register`: `--register`'s name, the source go2rtc pulls, and where the registration stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Register {
    pub name: String,
    pub src: String,
    /// `registered`, `unreachable` (retrying), `taken` (another live agent holds the name) or
    /// `pending`.
    pub state: String,
}

/// `shm`: the ring reader's own counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ring {
    /// Frames taken (= `frames.received`).
    pub taken: u64,
    /// Copies the writer overwrote while they were read (dropped, never encoded; retried at the
    /// next poll).
    pub torn: u64,
    /// Frames the writer published and overwrote before a poll saw them.
    pub missed: u64,
    /// Polls that found the newest slot mid-write.
    pub busy_polls: u64,
}

/// When the stats line is due, and the counters at the last one.
pub(super) struct Reporter {
    pub timings: Arc<Timings>,
    next: Option<Instant>,
    last: (Instant, u64, u64),
    /// The start of the stream (uptime).
    pub started: Instant,
    /// `--register`: the name, the source go2rtc pulls, and where the registration stands.
    pub registered: Option<(String, String, Arc<crate::register::Status>)>,
}

impl Reporter {
    pub fn new(cfg: &Config, timings: Arc<Timings>) -> Reporter {
        let now = Instant::now();
        Reporter {
            timings,
            next: cfg.stats_interval.map(|i| now + i),
            last: (now, 0, 0),
            started: now,
            registered: None,
        }
    }

    pub fn due(&self) -> bool {
        self.next.is_some_and(|t| Instant::now() >= t)
    }

    /// The stats JSON (see [`Stats`]). `kind` is "interval", "final" or "now" (on demand: the
    /// interval's samples and counters are left for the next line).
    pub fn json(&mut self, cfg: &Config, f: &Facts, c: &Counters, s: &SinkStats, kind: &str) -> serde_json::Value {
        // Through a Value, whose keys are sorted: the line's text keeps the order it always had.
        serde_json::to_value(self.stats(cfg, f, c, s, kind)).expect("the stats serialize: plain fields, string keys")
    }

    /// The stats; see [`Reporter::json`].
    pub fn stats(&mut self, cfg: &Config, f: &Facts, c: &Counters, s: &SinkStats, kind: &str) -> Stats {
        let now = Instant::now();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (written, bytes) = (load(&s.access_units), load(&s.bytes));
        let (t0, rendered0, bytes0) = self.last;
        let secs = now.duration_since(t0).as_secs_f64().max(1e-9);
        let mut samples = if kind == "now" { self.timings.peek() } else { self.timings.take() };
        let AgentFrames { what: source, received, superseded, repeated } = f.source.clone().unwrap_or_default();
        let mut dropped = Dropped {
            superseded,
            encoder_busy: c.encoder_busy,
            idle_rendered: c.idle_rendered,
            before_idr: load(&s.skipped_before_idr),
            attach: load(&s.dropped_attach),
            lag: load(&s.dropped_lag),
            detach: load(&s.dropped_detach),
            no_reader: load(&s.dropped_no_reader),
            total: 0,
        };
        dropped.total = dropped.by_reason().iter().sum();
        let summary = crate::stats::summary;
        let stats = Stats {
            stats: kind.to_string(),
            stream: cfg.stream.clone(),
            source: if f.source.is_some() { source.to_string() } else { cfg.source.to_string() },
            backend: f.backend.to_string(),
            width: cfg.width,
            height: cfg.height,
            fps_target: cfg.fps,
            uptime_s: (now.duration_since(self.started).as_secs_f64() * 10.0).round() / 10.0,
            frames: FrameCounts {
                rendered: c.rendered,
                encoded: c.encoded,
                written,
                received: f.source.is_some().then_some(received),
            },
            dropped,
            repeated,
            skipped: Skipped { late: c.late, idle: c.idle },
            fps: ((c.rendered - rendered0) as f64 / secs * 10.0).round() / 10.0,
            bitrate_kbps: ((bytes - bytes0) as f64 * 8.0 / 1000.0 / secs).round(),
            latency_ms: Latency {
                render: summary(&mut samples.render),
                readback: summary(&mut samples.readback),
                encode: summary(&mut samples.encode),
                write: summary(&mut samples.write),
                render_to_write: summary(&mut samples.render_to_write),
            },
            path: f.path.to_string(),
            host_bytes_per_frame: f.host_bytes,
            nvenc_slot: f.slot,
            rss_kib: crate::stats::rss_kib(),
            gpu_memory_mib: crate::stats::gpu_memory_mib(),
            listen: s.listening.get().map(|(url, port)| Listen {
                url: url.clone(),
                port: *port,
                clients: load(&s.clients),
            }),
            register: self.registered.as_ref().map(|(name, src, status)| Register {
                name: name.clone(),
                src: src.clone(),
                state: status.get().as_str().to_string(),
            }),
            shm: f.ring.map(|r| Ring {
                taken: load(&r.taken),
                torn: load(&r.torn),
                missed: load(&r.missed),
                busy_polls: load(&r.busy),
            }),
        };
        if kind != "now" {
            self.last = (now, c.rendered, bytes);
            self.next = cfg.stats_interval.map(|i| now + i);
        }
        stats
    }

    /// The JSON stats line to stderr and `--stats-file`. Counters only grow; at the end of a run
    /// (`last`), frames rendered = written + dropped.total once nothing is in flight.
    pub fn emit(&mut self, cfg: &Config, f: &Facts, c: &Counters, s: &SinkStats, last: bool) -> serde_json::Value {
        let line = self.json(cfg, f, c, s, if last { "final" } else { "interval" });
        let text = line.to_string();
        crate::stderr::write(format!("{text}\n").as_bytes());
        if let Some(path) = &cfg.stats_file
            && let Err(e) = crate::stats::write_atomic(path, &text)
        {
            log::warn!("--stats-file {}: {e}", path.display());
        }
        line
    }
}

/// The closing log line.
pub(super) fn log_done(start: Instant, c: &Counters, s: &SinkStats) {
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let bytes = s.bytes.load(Ordering::Relaxed);
    let aus = s.access_units.load(Ordering::Relaxed);
    info!(
        "done: {:.1} s, rendered {} ({:.1} fps), encoded {}, written {} ({} IDR, {:.0} kbit/s), late-skipped {}, encoder-busy drops {}, idle {}, sink drops {}/{}/{} (attach/lag/detach), repaired {}",
        secs,
        c.rendered,
        c.rendered as f64 / secs,
        c.encoded,
        aus,
        s.idr.load(Ordering::Relaxed),
        bytes as f64 * 8.0 / 1000.0 / secs,
        c.late,
        c.encoder_busy,
        c.idle,
        s.dropped_attach.load(Ordering::Relaxed),
        s.dropped_lag.load(Ordering::Relaxed),
        s.dropped_detach.load(Ordering::Relaxed),
        s.repaired.load(Ordering::Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let argv = std::iter::once("agentcast").chain(args.iter().copied());
        crate::cli::Cli::parse_args(argv).unwrap().stream.config().unwrap()
    }

    /// The line, with the figures that depend on the clock or the machine checked for their type
    /// and then pinned, so the rest compares literally.
    fn pinned(mut v: serde_json::Value) -> serde_json::Value {
        for key in ["uptime_s", "fps", "bitrate_kbps"] {
            assert!(v[key].is_f64(), "{key} is a float: {}", v[key]);
            v[key] = 1.5.into();
        }
        for key in ["rss_kib", "gpu_memory_mib"] {
            assert!(v[key].is_u64() || v[key].is_null(), "{key} is a count or null: {}", v[key]);
            v[key] = 7.into();
        }
        v
    }

    fn sink(clients: u64, listening: Option<(&str, u16)>) -> SinkStats {
        let s = SinkStats::default();
        for (i, a) in [
            &s.access_units,
            &s.bytes,
            &s.skipped_before_idr,
            &s.dropped_attach,
            &s.dropped_lag,
            &s.dropped_detach,
            &s.dropped_no_reader,
        ]
        .into_iter()
        .enumerate()
        {
            a.store(10 + i as u64, Relaxed);
        }
        s.clients.store(clients, Relaxed);
        if let Some((url, port)) = listening {
            s.listening.set((url.to_string(), port)).unwrap();
        }
        s
    }

    fn counters() -> Counters {
        Counters { rendered: 100, encoded: 90, late: 3, encoder_busy: 4, idle: 5, idle_rendered: 6 }
    }

    #[test]
    fn the_stats_line_of_a_drawn_scene() {
        let cfg =
            config(&["--scene", "gradient", "--width", "640", "--height", "360", "--fps", "25", "--stream", "s1"]);
        let timings = Arc::new(Timings::default());
        let t = Instant::now();
        timings.rendered(0, t, t + std::time::Duration::from_millis(2));
        let mut reporter = Reporter::new(&cfg, timings);
        let facts =
            Facts { backend: "x264enc", slot: None, path: "readback", host_bytes: 921_600, source: None, ring: None };
        let line = pinned(reporter.json(&cfg, &facts, &counters(), &sink(0, None), "now"));
        let expected = serde_json::json!({
            "backend": "x264enc", "bitrate_kbps": 1.5,
            "dropped": {
                "attach": 13, "before_idr": 12, "detach": 15, "encoder_busy": 4, "idle_rendered": 6, "lag": 14,
                "no_reader": 16, "superseded": 0, "total": 80
            },
            "fps": 1.5, "fps_target": 25,
            "frames": { "encoded": 90, "rendered": 100, "written": 10 },
            "gpu_memory_mib": 7, "height": 360, "host_bytes_per_frame": 921600,
            "latency_ms": {
                "encode": { "max": null, "n": 0, "p50": null, "p99": null },
                "readback": { "max": null, "n": 0, "p50": null, "p99": null },
                "render": { "max": 2.0, "n": 1, "p50": 2.0, "p99": 2.0 },
                "render_to_write": { "max": null, "n": 0, "p50": null, "p99": null },
                "write": { "max": null, "n": 0, "p50": null, "p99": null }
            },
            "nvenc_slot": null, "path": "readback", "repeated": 0, "rss_kib": 7,
            "skipped": { "idle": 5, "late": 3 },
            "source": "scene:gradient", "stats": "now", "stream": "s1", "uptime_s": 1.5, "width": 640
        });
        assert_eq!(line, expected, "{line}");
    }

    #[test]
    fn the_stats_line_of_agent_frames_with_every_optional_part() {
        let cfg = config(&["--source", "shm:/agentcast-test", "--stream", "agent_07"]);
        let mut reporter = Reporter::new(&cfg, Arc::new(Timings::default()));
        let status = Arc::new(crate::register::Status::default());
        reporter.registered = Some(("agent_07".into(), "tcp://127.0.0.1:9000".into(), status));
        let ring = crate::source::shm::Counters::default();
        ring.taken.store(20, Relaxed);
        ring.torn.store(1, Relaxed);
        ring.missed.store(2, Relaxed);
        ring.busy.store(3, Relaxed);
        let facts = Facts {
            backend: "nvh264enc",
            slot: Some(2),
            path: "zero-copy",
            host_bytes: 0,
            source: Some(AgentFrames { what: "shm:/agentcast-test".into(), received: 21, superseded: 8, repeated: 9 }),
            ring: Some(&ring),
        };
        let stats = sink(2, Some(("rtsp://127.0.0.1:8554/agent_07", 8554)));
        let line = pinned(reporter.json(&cfg, &facts, &counters(), &stats, "interval"));
        let expected = serde_json::json!({
            "backend": "nvh264enc", "bitrate_kbps": 1.5,
            "dropped": {
                "attach": 13, "before_idr": 12, "detach": 15, "encoder_busy": 4, "idle_rendered": 6, "lag": 14,
                "no_reader": 16, "superseded": 8, "total": 88
            },
            "fps": 1.5, "fps_target": 30,
            "frames": { "encoded": 90, "received": 21, "rendered": 100, "written": 10 },
            "gpu_memory_mib": 7, "height": 720, "host_bytes_per_frame": 0,
            "latency_ms": {
                "encode": { "max": null, "n": 0, "p50": null, "p99": null },
                "readback": { "max": null, "n": 0, "p50": null, "p99": null },
                "render": { "max": null, "n": 0, "p50": null, "p99": null },
                "render_to_write": { "max": null, "n": 0, "p50": null, "p99": null },
                "write": { "max": null, "n": 0, "p50": null, "p99": null }
            },
            "listen": { "clients": 2, "port": 8554, "url": "rtsp://127.0.0.1:8554/agent_07" },
            "nvenc_slot": 2, "path": "zero-copy",
            "register": { "name": "agent_07", "src": "tcp://127.0.0.1:9000", "state": "pending" },
            "repeated": 9, "rss_kib": 7,
            "shm": { "busy_polls": 3, "missed": 2, "taken": 20, "torn": 1 },
            "skipped": { "idle": 5, "late": 3 },
            "source": "shm:/agentcast-test", "stats": "interval", "stream": "agent_07", "uptime_s": 1.5, "width": 1280
        });
        assert_eq!(line, expected, "{line}");
    }
}
