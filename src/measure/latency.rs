//! `agentcast latency`: end-to-end latency measured from outside the producer.
//!
//! The producer runs as a child with `--frame-log`, which records CLOCK_MONOTONIC at the start of
//! every frame's render next to the frame's number (the number its stamp carries). This process
//! reads the child's stdout and notes CLOCK_MONOTONIC as each read returns, so every byte has an
//! arrival time. After the run the stream is split into access units and decoded; each picture's
//! stamp is read back and looked up in the log:
//!
//! - render -> arrival: render start until the last byte of the frame's access unit arrived;
//! - go2rtc framing: go2rtc emits a frame only when the next frame's start code arrives, so a viewer
//!   behind go2rtc waits until the next access unit starts as well (shown separately);
//! - join: spawn until the first IDR access unit had arrived whole (what a new viewer waits for).
//!
//! A picture whose stamp does not decode, or decodes to a number the log never had (or out of
//! order), is a misread: it is counted and never given a latency.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;
use log::{info, warn};

use crate::clock::monotonic_ns;
use crate::config::Config;
use crate::exit::{Exit, ExitExt, fail};
use crate::measure::decode;
use crate::stats::{parse_frame_log, summary};

/// What `agentcast latency` measures and how it answers (its flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Frames to measure.
    pub frames: u64,
    /// Print JSON instead of text.
    pub json: bool,
    /// Keep the captured stream in this file.
    pub keep_stream: Option<PathBuf>,
    /// `--via`: measure through an RTSP viewer at this URL (with `frame_log`), running no producer.
    pub via: Option<String>,
    /// `--via`: the frame log of the producer go2rtc runs.
    pub frame_log: Option<PathBuf>,
    /// The producer's flags (after `--`).
    pub args: Vec<String>,
}

/// Flags `agentcast latency` sets on the producer itself.
const OWN_FLAGS: &[&str] = &["--frames", "--duration", "--frame-log", "--stats-file", "--stats-interval"];

/// What one picture of the captured stream told us.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// The stamp decoded to this frame number.
    Stamp(u32),
    /// No valid stamp (no sync pattern or the check bits disagree).
    Unreadable,
}

/// Per-frame result of matching readings with the frame log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matched {
    /// (frame, render -> arrival ms, render -> go2rtc emits ms (None for the last unit)).
    pub frames: Vec<(u64, f64, Option<f64>)>,
    pub unreadable: u64,
    /// Access units that gave no picture at all.
    pub undecoded: u64,
    /// Stamps that decoded but name no logged frame, or go backwards.
    pub unknown: u64,
}

impl Matched {
    pub fn misreads(&self) -> u64 {
        self.unreadable + self.undecoded + self.unknown
    }
}

/// Arrival time of byte `offset`: the time of the first read that ended past it. `marks` is
/// (stream length after the read, CLOCK_MONOTONIC ns), in order.
pub fn arrival_of(marks: &[(usize, u64)], offset: usize) -> Option<u64> {
    let i = marks.partition_point(|(end, _)| *end <= offset);
    marks.get(i).map(|(_, t)| *t)
}

/// Matches each access unit's reading (`readings[i]` for unit `i`) with the frame log. `arrived[i]`
/// is when unit `i` was complete; `next_started[i]` when unit `i + 1` began (go2rtc's emit time).
pub fn match_readings(
    readings: &[Option<Reading>],
    arrived: &[u64],
    next_started: &[Option<u64>],
    log: &[(u64, u64)],
) -> Matched {
    let by_stamp: HashMap<u32, (u64, u64)> = log.iter().map(|&(frame, ns)| (frame as u32, (frame, ns))).collect();
    let ms = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
    let mut m = Matched::default();
    let mut last: Option<u64> = None;
    for (i, reading) in readings.iter().enumerate() {
        match reading {
            None => m.undecoded += 1,
            Some(Reading::Unreadable) => m.unreadable += 1,
            Some(Reading::Stamp(n)) => match by_stamp.get(n) {
                Some(&(frame, rendered)) if last.is_none_or(|l| frame > l) => {
                    last = Some(frame);
                    m.frames.push((frame, ms(rendered, arrived[i]), next_started[i].map(|t| ms(rendered, t))));
                }
                _ => m.unknown += 1,
            },
        }
    }
    m
}

pub fn run(a: &Options, producer: &dyn super::ProducerFlags) -> anyhow::Result<Exit> {
    if let (Some(url), Some(log)) = (&a.via, &a.frame_log) {
        if !a.args.is_empty() {
            return Err(fail(
                Exit::Usage,
                "latency --via runs no producer: give its flags to the producer go2rtc runs",
            ));
        }
        let report = super::via::measure(url, log, a.frames)?;
        if a.json {
            println!("{report}");
        } else {
            print!("{}", super::via::text(&report));
        }
        return Ok(Exit::Ok);
    }
    let cfg = producer.config(&a.args)?;
    if let Some(flag) = OWN_FLAGS.iter().find(|f| super::flag_given(&a.args, f)) {
        return Err(fail(Exit::Usage, format!("{flag} is set by agentcast latency itself (use its --frames)")));
    }
    if !cfg.stamp {
        let how =
            if cfg.source.is_external() { "add --stamp to draw it over the agent's frames" } else { "drop --no-stamp" };
        return Err(fail(Exit::Usage, format!("latency needs the frame stamp; {how}")));
    }
    if cfg.output != crate::sink::output::Output::Stdout || cfg.mux != crate::settings::Mux::Raw {
        return Err(fail(Exit::Usage, "latency reads raw H.264 from the producer's stdout; drop --output/--mux"));
    }

    let dir = std::env::temp_dir().join(format!("agentcast-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display())).exit(Exit::CantCreate)?;
    let result = measure(a, &cfg, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if a.json {
        println!("{report}");
    } else {
        print!("{}", text(&report));
    }
    Ok(Exit::Ok)
}

fn measure(a: &Options, cfg: &Config, dir: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let (log_path, stats_path) = (dir.join("frames.log"), dir.join("stats.json"));
    let exe = std::env::current_exe().context("finding the agentcast binary").exit(Exit::Unavailable)?;
    let spawned = monotonic_ns();
    let mut child = Command::new(&exe)
        .args(&a.args)
        .arg("--frames")
        .arg(a.frames.to_string())
        .arg("--frame-log")
        .arg(&log_path)
        .arg("--stats-file")
        .arg(&stats_path)
        .args(["--stats-interval", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the producer {}", exe.display()))
        .exit(Exit::Unavailable)?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let (mut stream, mut marks) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 1 << 18];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let at = monotonic_ns();
                stream.extend_from_slice(&buf[..n]);
                marks.push((stream.len(), at));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(Exit::Io, format!("reading the producer's stdout: {e}"))),
        }
    }
    let status = child.wait().context("waiting for the producer").exit(Exit::Software)?;
    if !status.success() {
        return Err(fail(Exit::Software, format!("the producer failed ({status}); its error is above")));
    }
    if let Some(path) = &a.keep_stream {
        std::fs::write(path, &stream)
            .with_context(|| format!("--keep-stream {}", path.display()))
            .exit(Exit::CantCreate)?;
    }
    let log_text = std::fs::read_to_string(&log_path).context("reading the frame log").exit(Exit::Software)?;
    let log = parse_frame_log(&log_text).map_err(|e| fail(Exit::Software, format!("frame log: {e}")))?;
    let producer = std::fs::read_to_string(&stats_path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut report = analyse(&stream, &marks, spawned, &log)?;
    report["frames"]["requested"] = a.frames.into();
    report["producer_ms"] = producer.get("latency_ms").cloned().unwrap_or_default();
    // What the machine let the producer do: frames it wrote, dropped, and slots it skipped as late.
    report["producer_frames"] = serde_json::json!({
        "written": producer["frames"]["written"],
        "dropped": producer["dropped"]["total"],
        "skipped_late": producer["skipped"]["late"],
    });
    report["encoder"] = producer.get("backend").cloned().unwrap_or_default();
    report["width"] = cfg.width.into();
    report["height"] = cfg.height.into();
    report["fps"] = cfg.fps.into();
    report["paced"] = cfg.pace.into();
    report["bitrate_kbps"] = cfg.encoder_settings.bitrate_kbps.into();
    Ok(report)
}

/// Reads the stamps of a captured stream and matches them with the frame log. `marks` are the
/// reads (stream length after each, CLOCK_MONOTONIC ns), `spawned` when the producer started.
/// Returns the report's `frames`, `join_ms`, `latency_ms` and `per_frame` parts.
pub fn analyse(
    stream: &[u8],
    marks: &[(usize, u64)],
    spawned: u64,
    log: &[(u64, u64)],
) -> anyhow::Result<serde_json::Value> {
    let units = decode::split_units(stream);
    let arrived: Vec<u64> =
        units.iter().map(|r| arrival_of(marks, r.end - 1).expect("every byte arrived in a read")).collect();
    let next_started: Vec<Option<u64>> =
        (0..units.len()).map(|i| units.get(i + 1).and_then(|r| arrival_of(marks, r.start))).collect();
    let first_idr = units
        .iter()
        .position(|r| crate::annexb::nals(&stream[r.clone()]).any(|n| n.nal_type() == crate::annexb::nal_type::IDR));
    let join_ms = first_idr.map(|i| arrived[i].saturating_sub(spawned) as f64 / 1e6);

    let mut readings: Vec<Option<Reading>> = vec![None; units.len()];
    let decoded = decode::decode(units.iter().map(|r| &stream[r.clone()]), |p| {
        let reading = match crate::stamp::decode(p.luma, p.stride, p.width, p.height) {
            Some(n) => Reading::Stamp(n),
            None => Reading::Unreadable,
        };
        if let Some(slot) = readings.get_mut(p.index as usize) {
            *slot = Some(reading);
        }
    })?;
    let matched = match_readings(&readings, &arrived, &next_started, log);
    if matched.misreads() > 0 {
        warn!(
            "{} of {} pictures had no readable stamp ({} unreadable, {} undecoded, {} not in the frame log): they get no latency",
            matched.misreads(),
            units.len(),
            matched.unreadable,
            matched.undecoded,
            matched.unknown
        );
    }
    info!("latency: {} access units, {decoded} pictures decoded, {} stamps matched", units.len(), matched.frames.len());

    let mut arrival: Vec<f64> = matched.frames.iter().map(|f| f.1).collect();
    let mut go2rtc: Vec<f64> = matched.frames.iter().filter_map(|f| f.2).collect();
    let mut framing: Vec<f64> = matched.frames.iter().filter_map(|f| f.2.map(|g| g - f.1)).collect();
    let round = |v: f64| (v * 100.0).round() / 100.0;
    Ok(serde_json::json!({
        "frames": {
            "logged": log.len(),
            "access_units": units.len(),
            "decoded": decoded,
            "stamps_read": matched.frames.len(),
            "misreads": matched.misreads(),
            "unreadable": matched.unreadable,
            "undecoded": matched.undecoded,
            "not_in_log": matched.unknown,
        },
        "join_ms": join_ms.map(round),
        "latency_ms": {
            "render_to_arrival": summary(&mut arrival),
            "go2rtc_framing": summary(&mut framing),
            "render_to_go2rtc": summary(&mut go2rtc),
        },
        "per_frame": matched.frames.iter().map(|(frame, arr, g)| serde_json::json!([frame, round(*arr), g.map(round)])).collect::<Vec<_>>(),
    }))
}

/// The human summary of a report.
pub fn text(r: &serde_json::Value) -> String {
    let f = &r["frames"];
    let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let line = |name: &str, s: &serde_json::Value| {
        format!(
            "  {name:<34} p50 {:>7} ms   p99 {:>7} ms   max {:>7} ms\n",
            num(&s["p50"]),
            num(&s["p99"]),
            num(&s["max"])
        )
    };
    let mut t = format!(
        "agentcast latency: {}x{} @ {} fps{}, {} kbit/s, encoder {}\n",
        r["width"],
        r["height"],
        r["fps"],
        if r["paced"] == true { "" } else { " (unpaced)" },
        r["bitrate_kbps"],
        r["encoder"].as_str().unwrap_or("?"),
    );
    t += &format!(
        "  stamps read {} of {} access units; misreads {} ({} unreadable, {} undecoded, {} not in the frame log)\n",
        f["stamps_read"], f["access_units"], f["misreads"], f["unreadable"], f["undecoded"], f["not_in_log"]
    );
    t += &format!("  join (spawn -> first IDR arrived)  {} ms\n", num(&r["join_ms"]));
    let l = &r["latency_ms"];
    t += &line("render -> arrival (this reader)", &l["render_to_arrival"]);
    t += &line("+ go2rtc framing (next frame)", &l["go2rtc_framing"]);
    t += &line("render -> go2rtc emits the frame", &l["render_to_go2rtc"]);
    t += "  producer stages (its own clock):\n";
    for stage in ["render", "readback", "encode", "write", "render_to_write"] {
        t += &line(&format!("  {stage}"), &r["producer_ms"][stage]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_arrives_with_the_read_that_carried_it() {
        let marks = [(100, 10), (250, 20), (300, 30)];
        assert_eq!(arrival_of(&marks, 0), Some(10));
        assert_eq!(arrival_of(&marks, 99), Some(10));
        assert_eq!(arrival_of(&marks, 100), Some(20));
        assert_eq!(arrival_of(&marks, 299), Some(30));
        assert_eq!(arrival_of(&marks, 300), None);
    }

    #[test]
    fn misreads_are_counted_never_given_a_latency() {
        let log = [(0, 1_000_000), (1, 34_000_000), (2, 67_000_000), (3, 100_000_000)];
        let readings = [
            Some(Reading::Stamp(0)),
            Some(Reading::Unreadable),
            None,                     // undecoded
            Some(Reading::Stamp(0)),  // goes backwards: not frame 0 again
            Some(Reading::Stamp(77)), // never logged
            Some(Reading::Stamp(3)),
        ];
        let arrived = [11_000_000, 44_000_000, 77_000_000, 90_000_000, 95_000_000, 130_000_000];
        let next = [Some(40_000_000), None, None, None, None, None];
        let m = match_readings(&readings, &arrived, &next, &log);
        assert_eq!(m.frames, vec![(0, 10.0, Some(39.0)), (3, 30.0, None)]);
        assert_eq!((m.unreadable, m.undecoded, m.unknown, m.misreads()), (1, 1, 2, 4));
    }
}
