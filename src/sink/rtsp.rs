//! `--output rtsp://HOST:PORT/PATH`: publishes the stream to an RTSP server (ANNOUNCE, SETUP,
//! RECORD over TCP), as go2rtc's `exec:... --output {output}` expects.
//!
//! The sink thread hands each normalised access unit and its PTS to a small second pipeline:
//!
//! ```text
//! appsrc (video/x-h264, byte-stream, au) -> h264parse -> rtspclientsink protocols=tcp latency=0
//! ```
//!
//! rtspclientsink payloads it with rtph264pay: the SDP carries the SPS/PPS (sprop-parameter-sets,
//! from the first IDR, which the sink always starts with), and they stay in-band before every IDR
//! as on stdout. RTP marks each picture's last packet and carries the encoder's timestamps, so the
//! server neither waits for the next frame nor times frames by their arrival.
//!
//! How it ends: a server that cannot be reached, or that refuses the session (an error before
//! RECORD is answered, or the session closed at once after it, which is how go2rtc turns away a path
//! it does not know), exits 69 naming the URL. The server closing the session later (go2rtc stopped
//! the stream, or died) ends the stream like a reader leaving stdout: exit 0.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use log::{debug, info};

use super::output::RtspUrl;
use super::{AuOut, SinkEnd};
use crate::exit::{Exit, fail};

/// How long the start-up check waits for the server's TCP port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A session the server closes this soon after RECORD was refused, not ended.
const REFUSED_WITHIN: Duration = Duration::from_millis(500);
/// How long the end of the stream waits for rtspclientsink to send what it holds (a few ms here).
const FINISH_TIMEOUT: Duration = Duration::from_millis(500);
/// How long it then waits for the server to answer TEARDOWN (go2rtc never does), so that SIGTERM
/// still ends the process well within a second.
const TEARDOWN_TIMEOUT: Duration = Duration::from_millis(200);
/// PTS are shifted this far into the pipeline's past, so encoder jitter never makes the sink wait
/// on the clock for a frame that is already late.
const PTS_MARGIN: gst::ClockTime = gst::ClockTime::from_mseconds(200);
/// Bytes the publisher's queue holds before the sink thread blocks (a stalled server then makes the
/// encoder drop raw frames upstream, as a slow stdout reader does).
const QUEUE_BYTES: u64 = 4 * 1024 * 1024;

/// The element's name and package, for the "not installed" error.
const ELEMENT: &str = "rtspclientsink";
const PACKAGE: &str = "gstreamer1.0-rtsp";

/// Checks, before anything heavy starts, that rtspclientsink is installed and the server's port
/// answers. The error (exit 69) names the URL.
pub fn check(target: &RtspUrl) -> anyhow::Result<()> {
    crate::gst_util::init()?;
    if !crate::gst_util::element_installed(ELEMENT) {
        return Err(fail(
            Exit::Unavailable,
            format!("--output {}: GStreamer element {ELEMENT} is missing (install {PACKAGE})", target.redacted()),
        ));
    }
    let unreachable = |why: String| {
        fail(Exit::Unavailable, format!("--output {}: cannot reach the RTSP server: {why}", target.redacted()))
    };
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("{}: {e}", target.host)))?
        .collect();
    let mut last = format!("{} has no address", target.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(unreachable(last))
}

/// The publishing pipeline, built at the first access unit (an IDR with SPS/PPS, for the SDP).
struct Running {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    bus: gst::Bus,
    /// Added to each PTS: maps the encoder's stream time onto this pipeline's running time.
    offset: i128,
}

/// Publishes access units to one RTSP URL; see the module doc.
pub struct Publisher {
    target: RtspUrl,
    fps: u32,
    running: Option<Running>,
    /// When the server answered RECORD.
    recording: Option<Instant>,
}

impl Publisher {
    pub fn new(target: RtspUrl, fps: u32) -> Publisher {
        Publisher { target, fps, running: None, recording: None }
    }

    fn start(&self) -> anyhow::Result<Running> {
        quiet_gio_criticals();
        let make = |f: &str, pkg: &str| crate::gst_util::make(f, pkg);
        let appsrc = gst_app::AppSrc::builder()
            .name("published")
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .field("framerate", gst::Fraction::new(self.fps as i32, 1))
                    .build(),
            )
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .block(true)
            .max_bytes(QUEUE_BYTES)
            .build();
        let parse = make("h264parse", "gstreamer1.0-plugins-bad")?;
        parse.set_property("config-interval", -1i32);
        let sink = make(ELEMENT, PACKAGE)?;
        sink.set_property("location", &self.target.url);
        sink.set_property_from_str("protocols", "tcp");
        sink.set_property("latency", 0u32);
        let pipeline = gst::Pipeline::with_name("rtsp-publish");
        let chain = [appsrc.upcast_ref(), &parse, &sink];
        pipeline.add_many(chain).context("building the RTSP publishing pipeline")?;
        gst::Element::link_many(chain).context("linking the RTSP publishing pipeline")?;
        let bus = pipeline.bus().expect("a pipeline always has a bus");
        if pipeline.set_state(gst::State::Playing).is_err() {
            let why = bus
                .pop_filtered(&[gst::MessageType::Error])
                .map(|m| describe(&m))
                .unwrap_or_else(|| "the pipeline failed to start".into());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(self.refused(&why));
        }
        info!("rtsp: publishing to {} over TCP", self.target.redacted());
        Ok(Running { pipeline, appsrc, bus, offset: 0 })
    }

    fn refused(&self, why: &str) -> anyhow::Error {
        fail(
            Exit::Unavailable,
            format!("--output {}: the RTSP server refused the stream: {why}", self.target.redacted()),
        )
    }

    /// Reads the publisher's bus: notes RECORD's answer, and turns an error into how the stream ends.
    fn watch(&mut self, wait: Duration) -> Result<(), SinkEnd> {
        let Some(running) = &self.running else { return Ok(()) };
        let types = [gst::MessageType::Error, gst::MessageType::Progress, gst::MessageType::Warning];
        let mut timeout = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
        // (timed_pop_filtered would throw the other messages away unread; they are just skipped.)
        while let Some(msg) = running.bus.timed_pop(timeout) {
            timeout = gst::ClockTime::ZERO;
            if !types.contains(&msg.type_()) {
                continue;
            }
            match msg.view() {
                gst::MessageView::Progress(p) => {
                    let (kind, code, text) = p.get();
                    debug!("rtsp: progress {kind:?} {code}: {text}");
                    // "Starting recording": RECORD was answered with 200 OK.
                    if code == "record" && text.contains("recording") && self.recording.is_none() {
                        self.recording = Some(Instant::now());
                        info!("rtsp: the server accepted the stream (RECORD)");
                    }
                }
                gst::MessageView::Warning(w) => debug!("rtsp: {}", w.error()),
                gst::MessageView::Error(_) => {
                    let why = describe(&msg);
                    return Err(match self.recording {
                        Some(t) if t.elapsed() >= REFUSED_WITHIN => {
                            info!("rtsp: the server closed the session ({why})");
                            SinkEnd::ReaderGone
                        }
                        Some(_) => SinkEnd::Failed(self.refused(&format!(
                            "it closed the session right after RECORD ({why}); is {} a path it accepts?",
                            self.target.redacted()
                        ))),
                        None => SinkEnd::Failed(self.refused(&why)),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// rtspclientsink, when a server closes the session under it (go2rtc turning away a path it does
/// not know), calls GIO on a socket it has already dropped, and GLib prints `GLib-GIO-CRITICAL`
/// lines on stderr before our own `agentcast:` line. They say nothing the bus error does not, so
/// they go to the debug log instead (once per process).
fn quiet_gio_criticals() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let levels = gst::glib::LogLevels::LEVEL_CRITICAL | gst::glib::LogLevels::LEVEL_WARNING;
        gst::glib::log_set_handler(Some("GLib-GIO"), levels, false, false, |domain, level, message| {
            debug!("rtsp: {} {level:?}: {message}", domain.unwrap_or("GLib"));
        });
    });
}

/// One line for a bus error: the element and its message (rtspclientsink's debug text names only
/// its own source lines).
fn describe(msg: &gst::Message) -> String {
    let src = msg.src().map(|s| s.name().to_string()).unwrap_or_else(|| "pipeline".into());
    match msg.view() {
        gst::MessageView::Error(e) => format!("{src}: {}", e.error()),
        _ => format!("{src}: unknown error"),
    }
}

/// Maps stream time onto running time: `pts + offset`, never negative.
fn shifted(pts: gst::ClockTime, offset: i128) -> gst::ClockTime {
    gst::ClockTime::from_nseconds((i128::from(pts.nseconds()) + offset).clamp(0, i128::from(u64::MAX)) as u64)
}

/// The offset that puts the first PTS `PTS_MARGIN` before the pipeline's running time `now`.
fn first_offset(first_pts: gst::ClockTime, now: gst::ClockTime) -> i128 {
    i128::from(now.nseconds()) - i128::from(PTS_MARGIN.nseconds()) - i128::from(first_pts.nseconds())
}

impl AuOut for Publisher {
    fn put(&mut self, au: &[u8], pts: Option<gst::ClockTime>) -> Result<(), SinkEnd> {
        if self.running.is_none() {
            let mut running = self.start().map_err(SinkEnd::Failed)?;
            let now = running.pipeline.current_running_time().unwrap_or(gst::ClockTime::ZERO);
            running.offset = first_offset(pts.unwrap_or(gst::ClockTime::ZERO), now);
            self.running = Some(running);
        }
        self.watch(Duration::ZERO)?;
        let running = self.running.as_ref().expect("started above");
        let mut buffer = gst::Buffer::from_slice(au.to_vec());
        if let Some(pts) = pts {
            buffer.get_mut().expect("a new buffer is writable").set_pts(shifted(pts, running.offset));
        }
        if let Err(flow) = running.appsrc.push_buffer(buffer) {
            // The element stopped taking data: its bus says why (give it a moment to say so).
            self.watch(Duration::from_millis(200))?;
            return Err(SinkEnd::Failed(fail(
                Exit::Io,
                format!("--output {}: publishing stopped ({flow:?})", self.target.redacted()),
            )));
        }
        Ok(())
    }
}

impl Drop for Publisher {
    /// Sends what is queued and closes the session (TEARDOWN), within a bound.
    fn drop(&mut self) {
        let Some(running) = self.running.take() else { return };
        let t0 = Instant::now();
        let _ = running.appsrc.end_of_stream();
        let eos = running.bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        debug!("rtsp: end of stream sent ({:?} after {:?})", eos.map(|m| m.type_()), t0.elapsed());
        // Stopping sends TEARDOWN and waits for its answer, which go2rtc never gives (rtspclientsink
        // then waits out its TCP timeout, 20 s): stop in a thread, and wait for it only so long.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let pipeline = running.pipeline;
        let stopper = std::thread::Builder::new().name("rtsp-teardown".into()).spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
            let _ = done_tx.send(());
        });
        if stopper.is_ok() && done_rx.recv_timeout(TEARDOWN_TIMEOUT).is_err() {
            debug!(
                "rtsp: the server did not answer TEARDOWN within {TEARDOWN_TIMEOUT:?}; leaving the session to close with the process"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pts_map_onto_the_pipelines_past_and_keep_their_spacing() {
        let ms = gst::ClockTime::from_mseconds;
        // The stream is at frame 300 (10 s) when the publisher starts 1.5 s into its own clock.
        let offset = first_offset(ms(10_000), ms(1_500));
        assert_eq!(shifted(ms(10_000), offset), ms(1_300), "the first frame is PTS_MARGIN in the past");
        assert_eq!(shifted(ms(10_033), offset), ms(1_333), "spacing is kept");
        // A publisher started at once: the first PTS is clamped at zero, later ones follow.
        let offset = first_offset(ms(0), ms(5));
        assert_eq!(shifted(ms(0), offset), ms(0));
        assert_eq!(shifted(ms(400), offset), ms(205));
    }

    #[test]
    fn unreachable_servers_are_named() {
        // A port nothing listens on: bind one, learn its number, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = RtspUrl { url: format!("rtsp://127.0.0.1:{port}/x"), host: "127.0.0.1".into(), port };
        let e = check(&url).unwrap_err();
        let line = format!("{e:#}");
        assert!(line.starts_with(&format!("--output rtsp://127.0.0.1:{port}/x: ")), "{line}");
        assert_eq!(crate::exit::classify(&e), Exit::Unavailable, "{line}");
    }
}
