//! The frame loop: take or draw a frame -> hand it to the encoder, paced against absolute deadlines
//! on the frame clock, with signals, requests, pipeline errors and the sink's fate arriving as
//! events.
//!
//! Rendered frames (scenes) are drawn at each deadline. An agent's frames are taken as they come:
//! a frame that arrives after its deadline is encoded at once (it waits for nothing), one already
//! waiting is encoded on time, and the last one repeats when none comes within a frame interval.
//! The clock starts at the agent's first frame and moves to the agent's phase when its frames keep
//! arriving well before their deadlines ([`crate::clock::phase_shift`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use log::{debug, info};

use super::Event;
use super::report::{AgentFrames, Counters, Facts, Reporter};
use super::session::Session;
use crate::clock::{FrameClock, frames_due, stream_time};
use crate::config::Config;
use crate::encode::pipeline::{Encoder, Push};
use crate::exit::{Exit, fail};
use crate::frame::Frame;
use crate::plan::Plan;
use crate::render::Renderer;
use crate::settings::Idle;
use crate::sink::{Note, SinkEnd, SinkStats};
use crate::source::feed::{Feed, Next};
use crate::source::live::SourceEnd;
use crate::watchdog::Pulse;

/// How long an unpaced run waits for room in the encoder's queue before calling it stuck.
const ENCODER_STALL: Duration = Duration::from_secs(10);
/// How long the encoder may take to drain after the last frame (--frames / --duration).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a loop waiting for an agent's frame looks at its events.
const EVENT_SLICE: Duration = Duration::from_millis(20);
/// How often a loop with nobody reading wakes: a stats request waits for it (well inside
/// `STATS_TIMEOUT`, which a 1 s wake could miss).
const IDLE_WAKE: Duration = Duration::from_millis(200);

/// Where frames come from, as the loop drives them.
pub(super) enum Frames {
    /// Drawn here: a scene or shader, read back or copied into CUDA memory as `plan` says.
    Rendered { renderer: Box<Renderer>, plan: Plan },
    /// The agent's frames, in host memory.
    Agent(Feed),
}

impl Frames {
    /// Frames produced but not yet handed to the encoder.
    fn in_flight(&self) -> usize {
        match self {
            Frames::Rendered { renderer, .. } => renderer.in_flight(),
            Frames::Agent(_) => 0,
        }
    }

    /// The stats' path and host bytes per frame, with the encoder now built.
    pub fn host_path(&self, nvenc: bool, cfg: &Config) -> (&'static str, usize) {
        match self {
            Frames::Rendered { plan, .. } => plan.host_path(nvenc, cfg.width, cfg.height),
            Frames::Agent(feed) => ("host", feed.format.frame_bytes(cfg.width, cfg.height)),
        }
    }
}

/// Why the frame loop stops.
pub(super) enum Stop {
    /// Stop taking frames; `drain` = let the encoder finish queued frames (a limit), else stop now
    /// (a signal).
    Finish { drain: bool },
    /// The library user stopped the stream: the agent's frame handed over last is taken too, then
    /// the encoder drains.
    Close,
    /// The reader left: exit 0 at once.
    ReaderGone,
    /// The encoder pipeline failed (the error line): rebuild it or change backend.
    Rebuild(String),
    /// Nobody reads and the encoder holds an NVENC slot: stop it and give the slot back until a
    /// reader attaches.
    Release,
    /// The agent's source ended (EOF, `--source-timeout`) or failed: drain, then end as it says.
    SourceEnded(SourceEnd),
}

/// What a drain does with the agent's frame handed over last and not taken yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LastFrame {
    /// Encode it too (the library user stopped the stream after pushing it).
    Take,
    /// Leave it (a limit or the source's end: the frames that count were taken).
    Leave,
}

/// Whether anyone reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Attached,
    /// FIFO/TCP with no reader.
    Absent,
}

/// What the frame loop knows about the world outside it.
pub(super) struct Loop<'a> {
    cfg: &'a Config,
    rx: &'a Receiver<Event>,
    /// Signs of life for the watchdog.
    pulse: Arc<Pulse>,
    reader: Reader,
    /// The encoder pipeline's generation; errors from older ones are ignored.
    generation: u64,
    /// The sink thread has ended and said so.
    sink_done: bool,
    /// With --idle pause: stop the encoder and free its NVENC slot while nobody reads.
    release_on_idle: bool,
    clock: FrameClock,
    /// `--frame-log`, open for the whole run.
    frame_log: Option<crate::stats::FrameLog>,
    reporter: Reporter,
    counters: Counters,
    sink_stats: Arc<SinkStats>,
    /// Stats requests waiting for the next frame slot.
    stats_requests: Vec<Sender<serde_json::Value>>,
    /// Following an agent's phase (see [`crate::clock::phase_shift`]).
    phase: Phase,
    /// Whether anyone reads, and when the agent's next frame is due, for the handle.
    demand: Arc<super::demand::Demand>,
}

/// What the frame loop is handed at the start; the rest of its state starts empty.
pub(super) struct LoopParts {
    pub pulse: Arc<Pulse>,
    /// The output serves readers that come and go (FIFO, TCP, `rtsp-listen:`): nobody reads until
    /// one attaches. Otherwise (stdout, RTSP publishing) the stream is always read.
    pub paged: bool,
    pub frame_log: Option<crate::stats::FrameLog>,
    pub reporter: Reporter,
    pub sink_stats: Arc<SinkStats>,
    pub demand: Arc<super::demand::Demand>,
}

/// When the frame clock last moved to an agent's phase, and the superseded count at the last take.
#[derive(Debug, Default)]
struct Phase {
    shifted: Option<Instant>,
    superseded: u64,
}

impl<'a> Loop<'a> {
    pub fn new(cfg: &'a Config, rx: &'a Receiver<Event>, parts: LoopParts) -> Loop<'a> {
        let LoopParts { pulse, paged, frame_log, reporter, sink_stats, demand } = parts;
        Loop {
            cfg,
            rx,
            pulse,
            reader: if paged { Reader::Absent } else { Reader::Attached },
            generation: 0,
            sink_done: false,
            // With slots in play, every idle producer stops its encoder and chooses again on
            // attach, so a slot freed meanwhile goes to whoever is watched next (even one that fell
            // back earlier).
            release_on_idle: paged && cfg.idle == Idle::Pause && cfg.leases.sessions > 0,
            clock: FrameClock::new(cfg.fps),
            frame_log,
            reporter,
            counters: Counters::default(),
            sink_stats,
            stats_requests: Vec::new(),
            phase: Phase::default(),
            demand,
        }
    }

    /// Runs frames from `session`'s encoder (pipeline) until something stops the loop; the
    /// watchdog watches the loop meanwhile.
    pub fn run(&mut self, frames: &mut Frames, session: &Session) -> anyhow::Result<Stop> {
        self.generation = session.generation;
        self.pulse.loop_watched.store(true, Ordering::Relaxed);
        let stop = self.run_frames(frames, session);
        self.pulse.loop_watched.store(false, Ordering::Relaxed);
        stop
    }

    /// The sink thread has ended and said so.
    pub fn sink_done(&self) -> bool {
        self.sink_done
    }

    /// The stream is over: the watchdog stands down and the handle wants no more frames.
    pub fn finished(&self) {
        self.pulse.finished.store(true, Ordering::Release);
        self.demand.set_watched(false);
    }

    /// Logs the end of the run (begun at `started`) and returns the final stats, also emitted as
    /// a stats line where --stats-interval or --stats-file asked for them.
    pub fn final_report(&mut self, frames: &Frames, session: &Session, started: Instant) -> serde_json::Value {
        super::report::log_done(started, &self.counters, &self.sink_stats);
        let f = facts(self.cfg, frames, session);
        if self.cfg.stats_interval.is_some() || self.cfg.stats_file.is_some() {
            self.reporter.emit(self.cfg, &f, &self.counters, &self.sink_stats, true)
        } else {
            self.reporter.json(self.cfg, &f, &self.counters, &self.sink_stats, "final")
        }
    }

    fn run_frames(&mut self, frames: &mut Frames, session: &Session) -> anyhow::Result<Stop> {
        let encoder = session.encoder();
        let index_limit = self.cfg.duration_frames();
        self.demand.set_watched(self.reader == Reader::Attached);
        loop {
            self.pulse.loop_beats.fetch_add(1, Ordering::Relaxed);
            self.pulse.frames_in.store(self.counters.encoded, Ordering::Relaxed);
            self.answer_stats(frames, session);
            if self.cfg.stop.frames.is_some_and(|n| self.counters.encoded + frames.in_flight() as u64 >= n)
                || index_limit.is_some_and(|n| self.clock.index >= n)
            {
                return Ok(Stop::Finish { drain: true });
            }
            if self.reader == Reader::Absent && self.cfg.idle == Idle::Pause {
                if self.release_on_idle {
                    return Ok(Stop::Release);
                }
                if let Some(stop) = self.idle(encoder, index_limit)? {
                    return Ok(stop);
                }
                continue;
            }
            if self.cfg.pace {
                if let Some(stop) = self.wait_events(encoder, self.clock.deadline())? {
                    return Ok(stop);
                }
                // More than a whole interval late: skip to the current deadline instead of queueing.
                let behind = self.clock.behind();
                if behind > 0 {
                    self.counters.late += behind;
                    debug!("late by {behind} frame(s); skipping to frame {}", self.clock.index + behind);
                    self.clock.index += behind;
                }
            } else {
                while let Ok(ev) = self.rx.try_recv() {
                    if let Some(stop) = self.handle(ev, encoder)? {
                        return Ok(stop);
                    }
                }
                if let Some(stop) = self.wait_for_room(encoder)? {
                    return Ok(stop);
                }
            }
            if self.reader == Reader::Absent && self.cfg.idle == Idle::Pause {
                continue; // the reader left while we waited
            }
            let produced = match frames {
                Frames::Rendered { renderer, .. } => self.render(renderer, encoder)?,
                Frames::Agent(feed) => match self.take(feed, encoder)? {
                    Ok(produced) => produced,
                    Err(stop) => return Ok(stop),
                },
            };
            if produced {
                self.counters.rendered += 1;
                self.clock.index += 1;
                self.demand.due_at(self.clock.deadline());
            }
            if self.reporter.due() {
                let facts = facts(self.cfg, frames, session);
                self.reporter.emit(self.cfg, &facts, &self.counters, &self.sink_stats, false);
            }
        }
    }

    /// Nobody reads (--idle pause): neither draw nor encode until a reader attaches (or a limit or
    /// a signal), keeping the frame clock going.
    fn idle(&mut self, encoder: &Encoder, index_limit: Option<u64>) -> anyhow::Result<Option<Stop>> {
        let mut wake = Instant::now() + IDLE_WAKE;
        if let Some(n) = index_limit.filter(|_| self.cfg.pace) {
            wake = wake.min(self.clock.start + stream_time(n, self.clock.fps));
        }
        if let Some(stop) = self.wait_events(encoder, wake)? {
            return Ok(Some(stop));
        }
        if self.cfg.pace {
            let behind = self.clock.behind();
            self.counters.idle += behind;
            self.clock.index += behind;
        }
        Ok(None)
    }

    /// Draws the frame due now and hands finished frames to the encoder.
    fn render(&mut self, renderer: &mut Renderer, encoder: &Encoder) -> anyhow::Result<bool> {
        let index = self.clock.index;
        let render_start = Instant::now();
        if let Some(log) = &mut self.frame_log {
            log.note(index, crate::clock::monotonic_ns());
        }
        renderer.render(index)?;
        self.reporter.timings.rendered(index, render_start, Instant::now());
        if self.counters.rendered == 0 {
            debug!("start-up: first frame drawn at {:.1} ms", crate::clock::startup_ms());
            // The first draw compiles shaders and warms caches; the clock restarts once it is done,
            // so the next frame is not already late.
            self.clock.due_now();
        }
        let c = &mut self.counters;
        if self.reader == Reader::Attached {
            let (timings, since) = (self.reporter.timings.clone(), Instant::now());
            renderer.collect_ready(|i, frame| offer(encoder, i, frame, c, Some((&timings, since))))?;
        } else {
            // --idle render: the frame loop runs for the agent's sake; nothing is encoded.
            renderer.collect_ready(|_, _| {
                c.idle_rendered += 1;
                Ok(())
            })?;
        }
        Ok(true)
    }

    /// Takes the agent's frame for this slot (waiting up to one interval for a fresh one when
    /// paced) and hands it to the encoder. `Ok(false)`: nothing to encode yet.
    fn take(&mut self, feed: &mut Feed, encoder: &Encoder) -> anyhow::Result<Result<bool, Stop>> {
        let next = if self.cfg.pace {
            let grace = self.clock.deadline() + self.clock.interval();
            loop {
                let left = grace.saturating_duration_since(Instant::now());
                if let Some(next) = feed.wait_fresh(left.min(EVENT_SLICE)) {
                    break next;
                }
                while let Ok(ev) = self.rx.try_recv() {
                    if let Some(stop) = self.handle(ev, encoder)? {
                        return Ok(Err(stop));
                    }
                }
                if Instant::now() >= grace {
                    break feed.stale();
                }
            }
        } else {
            match feed.wait_fresh(EVENT_SLICE) {
                Some(next) => next,
                None => return Ok(Ok(false)),
            }
        };
        let fresh = match next {
            Next::End(end) => return Ok(Err(Stop::SourceEnded(end))),
            Next::Nothing => {
                // No first frame yet: the stream starts with it.
                self.clock.due_now();
                return Ok(Ok(false));
            }
            Next::Frame { fresh } => fresh,
        };
        let index = self.clock.index;
        let taken = Instant::now();
        let arrived = if fresh { feed.arrived().unwrap_or(taken) } else { taken };
        if fresh && self.counters.rendered == 0 {
            // The stream starts with the agent's first frame: the frame clock counts from it, in
            // the phase it arrived in, so the agent's next frames meet their deadlines. A later
            // frame that comes after its deadline is encoded as it arrives, and the clock keeps
            // its phase (a late frame must not delay the next one's deadline).
            self.clock.due_in_phase_with(arrived);
        }
        let superseded = feed.superseded();
        if fresh {
            let waited = taken.saturating_duration_since(arrived);
            let since = self.phase.shifted.map(|t| taken.duration_since(t));
            let faster = superseded > self.phase.superseded;
            if let Some(by) = crate::clock::phase_shift(waited, self.clock.interval(), faster, since) {
                debug!("the agent's frames arrive {by:?} before their deadlines: moving the frame clock to them");
                self.clock.shift_earlier(by);
                self.phase.shifted = Some(taken);
            }
        }
        self.phase.superseded = superseded;
        if let Some(log) = &mut self.frame_log {
            let age = taken.saturating_duration_since(arrived).as_nanos() as u64;
            log.note(index, crate::clock::monotonic_ns().saturating_sub(age));
        }
        // "render" is the time the frame waited in the slot before it was taken.
        self.reporter.timings.rendered(index, arrived, taken);
        let Some(frame) = feed.frame(index, encoder.takes_host_buffers()) else { return Ok(Ok(false)) };
        if self.reader == Reader::Attached {
            offer(encoder, index, frame, &mut self.counters, Some((&self.reporter.timings, taken)))?;
        } else {
            self.counters.idle_rendered += 1;
        }
        Ok(Ok(true))
    }

    /// Acts on events until `deadline`; `Some` when one of them stops the loop.
    fn wait_events(&mut self, encoder: &Encoder, deadline: Instant) -> anyhow::Result<Option<Stop>> {
        loop {
            // Events first, even when the deadline has passed: a loop that is always late (an
            // overloaded machine) must still see SIGTERM and the sink's news.
            self.pulse.loop_beats.fetch_add(1, Ordering::Relaxed);
            let was = self.reader;
            let now = Instant::now();
            let next = if now >= deadline {
                self.rx.try_recv().map_err(|_| ())
            } else {
                self.rx.recv_timeout(deadline - now).map_err(|_| ())
            };
            match next {
                Ok(ev) => {
                    if let Some(stop) = self.handle(ev, encoder)? {
                        return Ok(Some(stop));
                    }
                    if self.reader != was {
                        return Ok(None); // a reader came or went: the loop decides what to do
                    }
                }
                // Nothing pending and the deadline reached (run() holds a sender: no disconnects).
                Err(()) => return Ok(None),
            }
        }
    }

    /// Acts on an event; `Some` means the loop must stop.
    fn handle(&mut self, ev: Event, encoder: &Encoder) -> anyhow::Result<Option<Stop>> {
        match ev {
            Event::Stop(sig) => {
                info!("signal {sig}: finishing the current access unit and stopping");
                Ok(Some(Stop::Finish { drain: false }))
            }
            Event::Finish => {
                info!("stop requested: draining the encoder");
                Ok(Some(Stop::Close))
            }
            Event::Keyframe => {
                info!("keyframe requested: forcing an IDR");
                encoder.force_keyframe();
                Ok(None)
            }
            Event::Stats(reply) => {
                self.stats_requests.push(reply);
                Ok(None)
            }
            Event::Sink(end) => {
                self.sink_done = true;
                match end {
                    SinkEnd::ReaderGone => Ok(Some(Stop::ReaderGone)),
                    SinkEnd::Failed(e) => Err(e),
                    SinkEnd::Eos | SinkEnd::Stopped => {
                        Err(fail(Exit::Software, "the encoder ended the stream unexpectedly"))
                    }
                }
            }
            Event::Pipeline(generation, line) if generation == self.generation => Ok(Some(Stop::Rebuild(line))),
            Event::Pipeline(_, line) => {
                debug!("ignoring an error from a replaced pipeline: {line}");
                Ok(None)
            }
            Event::Reader(Note::Attached) => {
                self.reader = Reader::Attached;
                self.demand.set_watched(true);
                encoder.force_keyframe();
                Ok(None)
            }
            Event::Reader(Note::Detached) => {
                self.reader = Reader::Absent;
                self.demand.set_watched(false);
                Ok(None)
            }
            Event::Reader(Note::NeedKeyframe) => {
                encoder.force_keyframe();
                Ok(None)
            }
        }
    }

    /// Answers the stats requests that came in.
    pub fn answer_stats(&mut self, frames: &Frames, session: &Session) {
        if self.stats_requests.is_empty() {
            return;
        }
        let facts = facts(self.cfg, frames, session);
        let line = self.reporter.json(self.cfg, &facts, &self.counters, &self.sink_stats, "now");
        for reply in self.stats_requests.drain(..) {
            let _ = reply.send(line.clone());
        }
    }

    /// Unpaced runs wait for the encoder instead of dropping frames.
    fn wait_for_room(&mut self, encoder: &Encoder) -> anyhow::Result<Option<Stop>> {
        let since = Instant::now();
        while !encoder.has_room() {
            if let Ok(ev) = self.rx.recv_timeout(Duration::from_millis(1))
                && let Some(stop) = self.handle(ev, encoder)?
            {
                return Ok(Some(stop));
            }
            if since.elapsed() > ENCODER_STALL {
                return Err(fail(Exit::Software, format!("the encoder took no frame for {ENCODER_STALL:?}")));
            }
        }
        Ok(None)
    }

    /// While the encoder is released: waits for a reader (`None`) or a stop, keeping the frame clock
    /// and the --duration limit going.
    pub fn wait_for_reader(&mut self, encoder: &Encoder) -> anyhow::Result<Option<Stop>> {
        let limit = self.cfg.duration_frames();
        loop {
            if let Some(stop) = self.wait_events(encoder, Instant::now() + IDLE_WAKE)? {
                return Ok(Some(stop));
            }
            let due = frames_due(self.clock.start.elapsed(), self.clock.fps);
            if self.cfg.pace && due > self.clock.index {
                self.counters.idle += due - self.clock.index;
                self.clock.index = due;
            }
            if limit.is_some_and(|n| self.clock.index >= n) {
                return Ok(Some(Stop::Finish { drain: false }));
            }
            if self.reader == Reader::Attached {
                return Ok(None);
            }
        }
    }

    /// After the last frame: hands over what is still being read back (and the agent's frame
    /// handed over last, as `last` says), ends the stream, and waits until the writer has written
    /// everything.
    pub fn drain(
        &mut self,
        frames: &mut Frames,
        encoder: &Encoder,
        element: &str,
        last: LastFrame,
    ) -> anyhow::Result<()> {
        let mut early: Option<Stop> = None;
        if let Frames::Rendered { renderer, .. } = frames {
            renderer.collect(0, |frame, bytes| {
                if early.is_none() {
                    early = self.wait_for_room(encoder)?;
                }
                if early.is_none() {
                    offer(encoder, frame, bytes, &mut self.counters, None)?;
                }
                Ok(())
            })?;
        }
        if let Frames::Agent(feed) = frames
            && last == LastFrame::Take
            && early.is_none()
            && self.reader == Reader::Attached
            && let Some(Next::Frame { fresh: true }) = feed.wait_fresh(Duration::ZERO)
        {
            // The frame the agent handed over last, not taken yet, is written too.
            early = self.wait_for_room(encoder)?;
            let index = self.clock.index;
            if let (None, Some(frame)) = (&early, feed.frame(index, encoder.takes_host_buffers())) {
                offer(encoder, index, frame, &mut self.counters, None)?;
                self.counters.rendered += 1;
                self.clock.index += 1;
            }
        }
        if let Some(stop) = early {
            return ended_while_draining(stop, element); // a signal or the reader leaving ends the drain early
        }
        encoder.end_of_stream();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Sink(SinkEnd::Eos)) => {
                    self.sink_done = true;
                    return Ok(());
                }
                Ok(ev) => {
                    if let Some(stop) = self.handle(ev, encoder)? {
                        return ended_while_draining(stop, element);
                    }
                }
                Err(_) => {
                    return Err(fail(Exit::Software, format!("the encoder did not drain within {DRAIN_TIMEOUT:?}")));
                }
            }
        }
    }
}

/// The report's facts about the frames' path now.
fn facts<'f>(cfg: &Config, frames: &'f Frames, session: &Session) -> Facts<'f> {
    let (path, host_bytes) = frames.host_path(session.backend().is_nvenc(), cfg);
    let (source, ring) = match frames {
        Frames::Agent(feed) => {
            let agent = AgentFrames {
                what: feed.describe(),
                received: feed.latest.offered(),
                superseded: feed.superseded(),
                repeated: feed.repeated,
            };
            (Some(agent), feed.ring.as_deref())
        }
        Frames::Rendered { .. } => (None, None),
    };
    Facts { backend: session.backend().element(), slot: session.slot(), path, host_bytes, source, ring }
}

/// Hands a frame to the encoder; `timing` notes when (and since when it was being read back).
fn offer(
    encoder: &Encoder,
    frame: u64,
    bytes: Frame<'_>,
    c: &mut Counters,
    timing: Option<(&crate::stats::Timings, Instant)>,
) -> anyhow::Result<()> {
    match encoder.push(frame, bytes)? {
        Push::Queued => {
            c.encoded += 1;
            if let Some((t, since)) = timing {
                t.pushed(frame, since, Instant::now());
            }
        }
        Push::Full => {
            c.encoder_busy += 1;
            debug!("encoder busy: dropped raw frame {frame}");
        }
    }
    Ok(())
}

/// How a drain that was cut short ends: a signal or the reader leaving is a clean end; an encoder
/// failure is not (the last frames are lost, and a rebuild could not bring them back).
fn ended_while_draining(stop: Stop, encoder: &str) -> anyhow::Result<()> {
    match stop {
        Stop::Rebuild(why) => {
            Err(fail(Exit::Software, format!("encoder {encoder} failed while draining the last frames: {why}")))
        }
        Stop::Finish { .. } | Stop::Close | Stop::ReaderGone | Stop::Release | Stop::SourceEnded(_) => Ok(()),
    }
}
