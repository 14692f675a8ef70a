//! The running producer, as a library: [`Stream::start`] takes validated settings (their `source`
//! says where frames come from, their `output` where the stream goes) and returns a [`Handle`] to
//! stop it, ask for a keyframe, read its stats, push frames (for [`SourceSpec::Push`]), ask whether
//! a frame would be seen now ([`Handle::wants_frame`]) and wait for its end. The CLI and the Python package are thin clients of it.
//!
//! The stream owns its threads: one runs the frame loop (and owns the GL context when it renders),
//! GStreamer runs the encoder, a sink thread writes access units, a bus thread forwards pipeline
//! errors, and the watchdog reports stalls through the handle. The library never exits the
//! process: errors carry their kind ([`crate::exit::Exit`]), which `main` maps to an exit code.
//!
//! ```no_run
//! use agentcast::{config::ConfigBuilder, sink::output::Output, stream::Stream};
//! let output = Output::Fifo("/tmp/a.h264".into());
//! let settings = ConfigBuilder { width: 640, height: 360, output, ..ConfigBuilder::default() };
//! let cfg = settings.build_push()?;       // the CLI's checks and messages (ConfigError)
//! let stream = Stream::start(cfg)?;
//! let frame = vec![128u8; 640 * 360 * 3]; // rgb24, ffmpeg's rawvideo layout
//! stream.push(&frame)?;                   // never waits for the encoder: the newest frame wins
//! println!("{}", stream.stats());
//! stream.stop();                          // drain: every accepted frame is written
//! stream.wait()?;
//! # anyhow::Ok(())
//! ```

mod demand;
mod frame_loop;
mod report;
mod run;
mod session;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{Config, SourceSpec};
use crate::exit::{Exit, fail};
use crate::frame::HostFrame;
use crate::sink::{Note, SinkEnd};
use crate::source::live::Latest;
use demand::Demand;
pub use report::{Dropped, FrameCounts, Latency, Listen, Register, Ring, Skipped, Stats};

pub(crate) use session::choose_encoder;

/// How long [`Handle::stats`] waits for the frame loop to answer.
const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// Something that happened outside the frame loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// SIGTERM or SIGINT: finish the access unit being written and stop (no drain).
    Stop(i32),
    /// The library user stops the stream: drain the encoder, write every accepted frame.
    Finish,
    /// SIGUSR1 or a request: the next frame is an IDR.
    Keyframe,
    /// The library user asks for the stats now.
    Stats(Sender<serde_json::Value>),
    /// The writer thread ended.
    Sink(SinkEnd),
    /// A pipeline error, as one line, from the pipeline of this generation.
    Pipeline(u64, String),
    /// FIFO/TCP: a reader attached, left, or needs an IDR.
    Reader(Note),
}

/// How the stream ended, as the handle learns it.
enum Outcome {
    Done(anyhow::Result<()>),
    /// The watchdog saw a stage stop (the frame loop may be stuck for good).
    Stalled(String),
}

/// The error [`Handle::wait`] returns when the watchdog found a stage stalled. The stalled thread
/// may hold locks that a normal process exit would wait on, so the CLI exits at once (`_exit`).
#[derive(Debug, thiserror::Error)]
#[error("stalled: {0}")]
pub struct Stalled(pub String);

/// Starts streams.
pub struct Stream;

impl Stream {
    /// Starts streaming. Returns once the output, the source and the encoder are set up (an error
    /// then is a start-up error: a bad path, a missing element, no encoder that opens).
    pub fn start(cfg: Config) -> anyhow::Result<Handle> {
        let (tx, rx) = mpsc::channel();
        let (outcome_tx, outcome_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let frame_bytes = cfg.pix_fmt.frame_bytes(cfg.width, cfg.height);
        let push = (cfg.source == SourceSpec::Push).then(|| {
            let latest = Arc::new(Latest::new(cfg.agent_overrun()));
            latest.prefault(frame_bytes);
            latest
        });
        let final_stats = Arc::new(Mutex::new(serde_json::Value::Null));
        let demand = Arc::new(Demand::new(cfg.fps, cfg.pace));
        let ctx = run::Context {
            demand: demand.clone(),
            tx: tx.clone(),
            rx,
            push: push.clone(),
            ready: ready_tx,
            outcome: outcome_tx.clone(),
            final_stats: final_stats.clone(),
        };
        let thread = thread::Builder::new().name("stream".into()).spawn(move || {
            let result = run::run(&cfg, ctx);
            let _ = outcome_tx.send(Outcome::Done(result));
        })?;
        // The stream thread says when it is running, or ends with the start-up error.
        let handle = Handle {
            tx,
            push: push.map(|latest| (latest, frame_bytes)),
            outcome: Mutex::new(outcome_rx),
            thread: Mutex::new(Some(thread)),
            final_stats,
            demand,
        };
        match ready_rx.recv() {
            Ok(()) => Ok(handle),
            Err(_) => match handle.wait() {
                Ok(()) => Err(fail(Exit::Software, "the stream ended while starting")),
                Err(e) => Err(e),
            },
        }
    }
}

/// A running stream. `Send + Sync`: any thread may stop it, push frames or read its stats.
pub struct Handle {
    tx: Sender<Event>,
    push: Option<(Arc<Latest>, usize)>,
    outcome: Mutex<Receiver<Outcome>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    final_stats: Arc<Mutex<serde_json::Value>>,
    demand: Arc<Demand>,
}

/// A cloneable remote for a stream (for a signal thread).
#[derive(Clone)]
pub struct Control {
    tx: Sender<Event>,
}

impl Control {
    /// Stop at once: finish the access unit being written, drop what the encoder still holds.
    pub fn stop_now(&self, signal: i32) {
        let _ = self.tx.send(Event::Stop(signal));
    }

    /// The next frame becomes an IDR with SPS/PPS in front.
    pub fn request_keyframe(&self) {
        let _ = self.tx.send(Event::Keyframe);
    }

    /// Stop after draining: every frame already accepted is encoded and written.
    pub fn stop(&self) {
        let _ = self.tx.send(Event::Finish);
    }
}

impl Handle {
    pub fn control(&self) -> Control {
        Control { tx: self.tx.clone() }
    }

    /// Stops the stream after draining the encoder: every frame already accepted is written.
    /// Returns at once; [`Handle::wait`] waits for the end.
    pub fn stop(&self) {
        self.control().stop();
    }

    /// The next frame becomes an IDR with SPS/PPS in front.
    pub fn request_keyframe(&self) {
        self.control().request_keyframe();
    }

    /// The stats, as the JSON of the stats line (`frames`, `dropped`, `repeated`, `fps`, ...; its
    /// schema is [`Stats`]). After the end, the final stats.
    pub fn stats(&self) -> serde_json::Value {
        let (reply, answer) = mpsc::channel();
        if self.tx.send(Event::Stats(reply)).is_ok()
            && let Ok(v) = answer.recv_timeout(STATS_TIMEOUT)
        {
            return v;
        }
        self.final_stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hands a frame to a [`SourceSpec::Push`] stream: `frame` is one whole frame in the rawvideo
    /// layout of `--pix-fmt` (rgb24: height x width x 3 bytes). It is copied; the call never waits
    /// for the encoder (a frame not yet encoded is replaced by the newer one and counted as
    /// superseded), except with `--no-pace`, where every frame is encoded.
    pub fn push(&self, frame: &[u8]) -> anyhow::Result<()> {
        let Some((latest, frame_bytes)) = &self.push else {
            return Err(fail(Exit::Usage, "push: this stream renders its own frames (its source is not push)"));
        };
        if frame.len() != *frame_bytes {
            return Err(fail(
                Exit::Usage,
                format!("push: a frame of {} bytes; this stream's frames are {frame_bytes} bytes", frame.len()),
            ));
        }
        let mut buf = latest.buffer(frame.len());
        buf.copy_from_slice(frame);
        // Before the offer: the frame loop's deadline, stored after it takes this frame, wins.
        self.demand.pushed();
        if latest.offer(HostFrame { data: buf, arrived: Instant::now() }) {
            Ok(())
        } else {
            Err(fail(Exit::Usage, "push: the stream has stopped"))
        }
    }

    /// Whether a frame pushed now would be seen: someone reads the stream (a FIFO/TCP reader is
    /// attached, or the output always sends: stdout, RTSP publishing) and the next frame is due at
    /// `--fps`. An agent that renders its frames asks this first and renders only when it is true,
    /// so it renders at most `fps` frames a second, and none while nobody watches. After a push it
    /// is false until the next frame slot (unpaced: true while someone reads). False for a stream
    /// that renders its own frames, and once the stream has ended.
    ///
    /// It costs a clock read and two atomic loads: the frame loop publishes the reader state and the
    /// next deadline as it goes, so this never waits for it.
    pub fn wants_frame(&self) -> bool {
        self.push.is_some() && self.demand.wants()
    }

    /// No frame is wanted for the next `span`: [`Handle::wants_frame`] is false until then (whoever
    /// watches sees the last frame repeated). For an agent that cannot afford to render now, such
    /// as one whose render budget is spent, so that asking costs it no more than when unwatched. A
    /// later call replaces the hold; a zero span ends it.
    pub fn hold_frames(&self, span: Duration) {
        self.demand.hold_for(span);
    }

    /// Whether someone would see a frame pushed now, due or not: a reader is attached, or the
    /// output always sends. An agent that wants a particular frame shown (an episode's first) asks
    /// this instead of [`Handle::wants_frame`]; a frame pushed before its slot waits for it (or is
    /// replaced by a newer one). False for a stream that renders its own frames, and once it ended.
    pub fn is_watched(&self) -> bool {
        self.push.is_some() && self.demand.watched()
    }

    /// The bytes of one pushed frame.
    pub fn frame_bytes(&self) -> Option<usize> {
        self.push.as_ref().map(|(_, n)| *n)
    }

    /// Whether the stream is still running.
    pub fn is_running(&self) -> bool {
        self.thread.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the stream to end: `Ok` for a clean end (a limit, a stop, the reader leaving, the
    /// source ending), else the error with its kind. A stall is [`Stalled`]; the stalled thread is
    /// then left behind.
    pub fn wait(&self) -> anyhow::Result<()> {
        let outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match outcome {
            Ok(Outcome::Stalled(stage)) => {
                // Left behind: it may never return.
                drop(self.thread.lock().unwrap_or_else(|p| p.into_inner()).take());
                Err(crate::exit::Coded { exit: Exit::Software, error: Stalled(stage).into() }.into())
            }
            Ok(Outcome::Done(result)) => {
                if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = t.join();
                }
                result
            }
            // Already waited for: the end was reported once.
            Err(_) => Ok(()),
        }
    }
}

impl Drop for Handle {
    /// A handle dropped while the stream runs stops it (draining) and waits for the end.
    fn drop(&mut self) {
        if self.thread.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            self.stop();
            if let Err(e) = self.wait() {
                log::warn!("the stream ended with an error: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use std::io::Read;

    fn fifo_config(dir: &std::path::Path, extra: &[&str]) -> (Config, std::path::PathBuf) {
        let fifo = dir.join("out.h264");
        let out = format!("fifo:{}", fifo.display());
        let mut args = vec!["agentcast", "--width", "320", "--height", "240", "--output", &out];
        args.extend_from_slice(extra);
        args.extend(["--stats-interval", "0", "--stall-timeout", "0", "--encoder", "x264"]);
        let cfg = Cli::parse_args(args).unwrap().stream.push_config().unwrap();
        assert_eq!(cfg.source, SourceSpec::Push);
        (cfg, fifo)
    }

    #[test]
    fn a_handle_goes_to_any_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Handle>();
        send_sync::<Control>();
    }

    /// The library path a Python agent takes: frames pushed through the handle come out as a
    /// stream that follows go2rtc's rules, and stop() writes every accepted frame.
    #[test]
    fn pushed_frames_become_a_go2rtc_stream_and_stop_drains_them() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, fifo) = fifo_config(dir.path(), &["--no-pace"]);
        let stream = Stream::start(cfg).unwrap();
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(&fifo).unwrap().read_to_end(&mut bytes).unwrap();
            bytes
        });
        // Unpaced, every frame is encoded: a push waits until the reader attached and the frame
        // before it was taken.
        let frame_bytes = stream.frame_bytes().unwrap();
        assert_eq!(frame_bytes, 320 * 240 * 3);
        for i in 0..20u8 {
            stream.push(&vec![i * 10; frame_bytes]).unwrap();
        }
        let e = stream.push(&[0; 5]).unwrap_err();
        assert!(format!("{e:#}").contains("a frame of 5 bytes; this stream's frames are 230400 bytes"), "{e:#}");
        stream.stop();
        stream.wait().unwrap();
        let stats = stream.stats();
        assert_eq!(stats["stats"], "final");
        assert_eq!(stats["frames"]["received"], 20, "{stats}");
        assert_eq!(stats["frames"]["written"], 20, "{stats}");
        assert_eq!(stats["dropped"]["superseded"], 0, "{stats}");
        let bytes = reader.join().unwrap();
        let report = crate::check::check_stream(&bytes);
        assert!(report.ok(), "{report}");
        assert!(stream.push(&vec![0; frame_bytes]).is_err(), "pushing into a stopped stream fails");
    }

    /// wants_frame() is false while no reader is attached to a FIFO, true at most `fps` times a
    /// second while one reads (each push closes the slot until the next deadline), and false again
    /// once the reader left; the frames pushed when it said so make a stream that follows go2rtc's
    /// rules.
    #[test]
    fn wants_frame_follows_the_reader_and_the_frame_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, fifo) = fifo_config(dir.path(), &["--fps", "10"]);
        let stream = Stream::start(cfg).unwrap();
        let frame = vec![90u8; stream.frame_bytes().unwrap()];
        let poll = |until: Duration, want: bool| {
            let deadline = Instant::now() + until;
            while stream.wants_frame() != want {
                assert!(Instant::now() < deadline, "wants_frame() stayed {} for {until:?}", !want);
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        let since = Instant::now();
        while since.elapsed() < Duration::from_millis(400) {
            assert!(!stream.wants_frame(), "nobody reads the FIFO, yet a frame is wanted");
            std::thread::sleep(Duration::from_millis(5));
        }
        // An idle loop still answers stats requests in time.
        for _ in 0..3 {
            assert_eq!(stream.stats()["stats"], "now", "stats() of a stream nobody reads");
        }
        let (stop_reading, stop_rx) = mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut file = std::fs::File::open(&fifo).unwrap();
            let (mut bytes, mut chunk) = (Vec::new(), [0u8; 65536]);
            while stop_rx.try_recv().is_err() {
                match file.read(&mut chunk).unwrap() {
                    0 => break,
                    n => bytes.extend_from_slice(&chunk[..n]),
                }
            }
            bytes // the reader closes the FIFO here
        });
        poll(Duration::from_secs(10), true);
        assert!(stream.is_watched());
        let (mut pushed, start) = (0u32, Instant::now());
        while start.elapsed() < Duration::from_secs(2) {
            if stream.wants_frame() {
                stream.push(&frame).unwrap();
                pushed += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        // 10 fps for 2 s: 20 slots, one more if the first falls on the start.
        assert!((10..=21).contains(&pushed), "wanted {pushed} frames in 2 s at 10 fps");
        stop_reading.send(()).unwrap();
        let bytes = reader.join().unwrap();
        poll(Duration::from_secs(10), false);
        assert!(!stream.is_watched(), "the reader left");
        let report = crate::check::check_stream(&bytes);
        assert!(report.ok(), "{report}");
        stream.stop();
        stream.wait().unwrap();
        assert!(!stream.wants_frame(), "the stream has ended");
    }
}
