//! `agentcast latency --via rtsp://HOST:PORT/NAME --frame-log PATH`: latency as a viewer of a go2rtc
//! (or any RTSP server) sees it, from render start to the picture decoded on the viewer's side.
//!
//! The producer runs elsewhere (go2rtc starts it) with `--frame-log PATH`, which records
//! CLOCK_MONOTONIC at the start of every frame's render next to the frame's number. This process
//! plays the RTSP stream as a low-latency viewer would:
//!
//! ```text
//! rtspsrc latency=0 protocols=tcp -> rtph264depay -> h264parse -> avdec_h264 (or openh264dec) -> appsink
//! ```
//!
//! and notes CLOCK_MONOTONIC as each decoded picture reaches it, then reads the picture's stamp and
//! looks its render time up in the frame log (both clocks are this machine's CLOCK_MONOTONIC, so
//! producer and viewer must run on the same machine). A picture whose stamp does not read, or names
//! a frame the log never had (or goes backwards), is a misread: counted, never given a latency.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use log::info;

use crate::clock::monotonic_ns;
use crate::exit::{Exit, ExitExt, fail};
use crate::stats::{parse_frame_log, summary};

/// How long to wait for the first picture (go2rtc starts the producer on demand).
const FIRST_PICTURE: Duration = Duration::from_secs(30);
/// Longest gap between two pictures before the stream counts as ended.
const PICTURE_GAP: Duration = Duration::from_secs(5);

/// (stamp or `None` when unreadable, CLOCK_MONOTONIC ns when the decoded picture arrived).
type Seen = (Option<u32>, u64);

/// Plays `url` until `frames` pictures were decoded (or the stream ends), then matches them with
/// the frame log at `frame_log`. Returns the report.
pub fn measure(url: &str, frame_log: &Path, frames: u64) -> anyhow::Result<serde_json::Value> {
    crate::gst_util::init()?;
    for (element, package) in [("rtspsrc", "gstreamer1.0-plugins-good"), ("rtph264depay", "gstreamer1.0-plugins-good")]
    {
        if !crate::gst_util::element_installed(element) {
            return Err(fail(
                Exit::Unavailable,
                format!("latency --via needs GStreamer's {element} (install {package})"),
            ));
        }
    }
    let started = monotonic_ns();
    let seen = play(url, frames)?;
    let log_text = std::fs::read_to_string(frame_log)
        .with_context(|| format!("--frame-log {}", frame_log.display()))
        .exit(Exit::NoInput)?;
    let log = parse_frame_log(&log_text).map_err(|e| fail(Exit::Usage, format!("--frame-log: {e}")))?;
    Ok(report(url, &seen, &log, started))
}

/// Decodes pictures from the RTSP stream as they come, noting when each arrived.
fn play(url: &str, frames: u64) -> anyhow::Result<Vec<Seen>> {
    let make = |f: &str, pkg: &str| crate::gst_util::make(f, pkg);
    let src = make("rtspsrc", "gstreamer1.0-plugins-good")?;
    src.set_property("location", url);
    src.set_property("latency", 0u32);
    src.set_property_from_str("protocols", "tcp");
    let depay = make("rtph264depay", "gstreamer1.0-plugins-good")?;
    let parse = make("h264parse", "gstreamer1.0-plugins-bad")?;
    let dec = crate::measure::decode::h264_decoder()?;
    let sink = gst_app::AppSink::builder().sync(false).max_buffers(8).enable_last_sample(false).build();
    let pipe = gst::Pipeline::with_name("agentcast-viewer");
    let chain: [gst::Element; 4] = [depay.clone(), parse, dec, sink.clone().upcast()];
    pipe.add(&src).context("building the viewer")?;
    pipe.add_many(&chain).context("building the viewer")?;
    gst::Element::link_many(&chain).context("linking the viewer").exit(Exit::Software)?;
    let depay_sink = depay.static_pad("sink").expect("rtph264depay has a sink pad");
    src.connect_pad_added(move |_, pad| {
        if !depay_sink.is_linked() {
            let _ = pad.link(&depay_sink);
        }
    });
    let bus = pipe.bus().context("viewer bus")?;
    pipe.set_state(gst::State::Playing).map_err(|_| fail(Exit::Unavailable, format!("--via {url}: cannot play it")))?;
    let result = (|| {
        let mut seen: Vec<Seen> = Vec::new();
        let mut last = Instant::now();
        while (seen.len() as u64) < frames {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(e) = msg.view()
            {
                let line = crate::gst_util::bus_error_line(&msg, e);
                if seen.is_empty() {
                    return Err(fail(Exit::Unavailable, format!("--via {url}: {line}")));
                }
                info!("latency --via: the stream ended after {} pictures ({line})", seen.len());
                break;
            }
            let wait = if seen.is_empty() { FIRST_PICTURE } else { PICTURE_GAP };
            if last.elapsed() > wait {
                if seen.is_empty() {
                    return Err(fail(Exit::Unavailable, format!("--via {url}: no picture within {wait:?}")));
                }
                info!("latency --via: no picture for {wait:?}; stopping after {}", seen.len());
                break;
            }
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) else {
                if sink.is_eos() {
                    break;
                }
                continue;
            };
            let at = monotonic_ns();
            last = Instant::now();
            let caps = sample.caps().context("decoded picture without caps")?;
            let info = gst_video::VideoInfo::from_caps(caps).context("decoded caps")?;
            let buffer = sample.buffer().context("decoded sample without a buffer")?;
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
                .map_err(|_| anyhow::anyhow!("mapping a decoded picture"))?;
            let luma = frame.plane_data(0).context("decoded luma plane")?;
            let stamp = crate::stamp::decode(luma, info.stride()[0] as usize, info.width(), info.height());
            seen.push((stamp, at));
        }
        Ok(seen)
    })();
    // Stop in a thread, bounded: a server that never answers TEARDOWN must not hang the report.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = pipe.set_state(gst::State::Null);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(2));
    result
}

/// Render -> viewer-decoded per matched picture (ms), and the misreads, from what was seen.
pub fn matched(seen: &[Seen], log: &[(u64, u64)]) -> (Vec<(u64, f64)>, u64, u64) {
    let by_stamp: HashMap<u32, (u64, u64)> = log.iter().map(|&(frame, ns)| (frame as u32, (frame, ns))).collect();
    let (mut out, mut unreadable, mut unknown) = (Vec::new(), 0u64, 0u64);
    let mut last: Option<u64> = None;
    for &(stamp, at) in seen {
        match stamp.map(|s| by_stamp.get(&s)) {
            None => unreadable += 1,
            Some(Some(&(frame, rendered))) if last.is_none_or(|l| frame > l) && at >= rendered => {
                last = Some(frame);
                out.push((frame, (at - rendered) as f64 / 1e6));
            }
            Some(_) => unknown += 1,
        }
    }
    (out, unreadable, unknown)
}

fn report(url: &str, seen: &[Seen], log: &[(u64, u64)], started: u64) -> serde_json::Value {
    let (frames, unreadable, unknown) = matched(seen, log);
    let mut ms: Vec<f64> = frames.iter().map(|f| f.1).collect();
    let first = seen.first().map(|&(_, at)| (at.saturating_sub(started) as f64 / 1e6 * 100.0).round() / 100.0);
    serde_json::json!({
        "via": url,
        "frames": {
            "logged": log.len(),
            "decoded": seen.len(),
            "stamps_read": frames.len(),
            "misreads": unreadable + unknown,
            "unreadable": unreadable,
            "not_in_log": unknown,
        },
        "first_picture_ms": first,
        "latency_ms": { "render_to_viewer_decoded": summary(&mut ms) },
        "per_frame": frames.iter().map(|(f, l)| serde_json::json!([f, (l * 100.0).round() / 100.0])).collect::<Vec<_>>(),
    })
}

/// The human summary of a `--via` report.
pub fn text(r: &serde_json::Value) -> String {
    let f = &r["frames"];
    let s = &r["latency_ms"]["render_to_viewer_decoded"];
    let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    format!(
        "agentcast latency via {}\n  pictures decoded {}; stamps read {}; misreads {} ({} unreadable, {} not in the frame log)\n  \
         first picture {} ms after connecting\n  render -> viewer decoded            p50 {:>7} ms   p99 {:>7} ms   max {:>7} ms\n",
        r["via"].as_str().unwrap_or("?"),
        f["decoded"],
        f["stamps_read"],
        f["misreads"],
        f["unreadable"],
        f["not_in_log"],
        num(&r["first_picture_ms"]),
        num(&s["p50"]),
        num(&s["p99"]),
        num(&s["max"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_pictures_are_matched_by_stamp_and_misreads_counted() {
        let log = [(10, 1_000_000), (11, 34_000_000), (12, 67_000_000), (13, 100_000_000)];
        let seen = [
            (Some(10), 31_000_000),
            (None, 50_000_000),     // unreadable
            (Some(12), 90_000_000), // 11 never decoded: fine, 12 matches
            (Some(11), 95_000_000), // backwards
            (Some(99), 96_000_000), // never logged
            (Some(13), 120_500_000),
        ];
        let (frames, unreadable, unknown) = matched(&seen, &log);
        assert_eq!(frames, vec![(10, 30.0), (12, 23.0), (13, 20.5)]);
        assert_eq!((unreadable, unknown), (1, 2));
    }
}
