//! The frame loop: render -> convert -> encode -> sink, paced against absolute deadlines on a
//! monotonic clock, with signals, pipeline errors and the sink's fate arriving as events.
//!
//! Threads: this one owns the EGL context and renders; GStreamer runs the encoder in its own
//! threads; a writer thread moves access units from the appsink to stdout; a bus thread forwards
//! pipeline errors; a signal thread forwards SIGTERM/SIGINT/SIGUSR1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gstreamer as gst;
use gstreamer::prelude::*;
use log::{debug, info, warn};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use crate::cli::{IdleArg, OnBusyArg, PathArg};
use crate::clock::{frames_due, stream_time};
use crate::config::Config;
use crate::convert::{self, PathFacts, Plan};
use crate::encode::pipeline::{self, Encoder, Frame, Input, Push, Setup};
use crate::encode::select;
use crate::encode::settings::Backend;
use crate::exit::{Exit, fail};
use crate::render::{Gpu, Renderer};
use crate::sink::fifo::Fifo;
use crate::sink::output::Output;
use crate::sink::tcp::Tcp;
use crate::sink::{self, DemandSettings, Endpoint, Note, SinkEnd, SinkStats, Source};
use crate::slots::{Lease, LockDir};
use crate::watchdog::{self, Pulse};

/// How long the encoder may take to drain after the last frame (--frames / --duration).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an encoder may take to encode its test frame before it counts as not opening.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SIGTERM waits for the access unit being written (the whole stop stays under 1 s).
const STOP_TIMEOUT: Duration = Duration::from_millis(700);
/// Least time between two IDR requests for a FIFO/TCP reader that fell behind.
const LAG_KEYFRAME_EVERY: Duration = Duration::from_secs(1);
/// How long an unpaced run waits for room in the encoder's queue before calling it stuck.
const ENCODER_STALL: Duration = Duration::from_secs(10);

/// Something that happened outside the frame loop.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM or SIGINT (the first one; a second exits in the signal thread).
    Stop(i32),
    /// SIGUSR1: next frame is an IDR.
    Keyframe,
    /// The writer thread ended.
    Sink(SinkEnd),
    /// A pipeline error, as one line, from the pipeline of this generation.
    Pipeline(u64, String),
    /// FIFO/TCP: a reader attached, left, or needs an IDR.
    Reader(Note),
}

/// Why the frame loop stops.
enum Stop {
    /// Stop rendering; `drain` = let the encoder finish queued frames (limits), else stop now.
    Finish { drain: bool },
    /// The reader left: exit 0 at once.
    ReaderGone,
    /// The encoder pipeline failed (the error line): rebuild it or change backend.
    Rebuild(String),
    /// Nobody reads and the encoder holds an NVENC slot: stop it and give the slot back until a
    /// reader attaches.
    Release,
}

/// What the frame loop knows about the world outside it.
struct LoopState {
    /// Signs of life for the watchdog.
    pulse: Arc<Pulse>,
    /// Someone reads the stream (always, on stdout).
    reader: bool,
    /// The sink thread has ended and said so.
    sink_done: bool,
    /// The current encoder pipeline's generation; errors from older ones are ignored.
    generation: u64,
    /// With --idle pause: stop the encoder and free its NVENC slot while nobody reads.
    release_on_idle: bool,
    /// Per-frame stage times, shared with the sink.
    timings: Arc<crate::stats::Timings>,
    /// The encoder backend and NVENC slot now in use, for the stats line.
    backend: Backend,
    slot: Option<u32>,
    /// When the next stats line is due, and the counters at the last one.
    next_report: Option<Instant>,
    last_report: (Instant, u64, u64),
    /// The frame clock, kept across pipeline rebuilds so stamps and PTS continue.
    start: Instant,
    /// How frames reach the encoder; with `backend`, the stats' path and host bytes per frame.
    plan: Plan,
    /// `--frame-log`, open for the whole run.
    frame_log: Option<crate::stats::FrameLog>,
    index: u64,
}

/// Where the stream goes, opened before anything heavy so path and port errors come first.
enum Destination {
    Stdout(std::fs::File),
    Demand(Box<dyn Endpoint>),
}

#[derive(Debug, Default)]
struct Counters {
    rendered: u64,
    encoded: u64,
    /// Deadlines passed over because the loop was late.
    late: u64,
    /// Rendered frames the encoder had no room for.
    encoder_busy: u64,
    /// Frame slots passed while no reader was attached (FIFO/TCP, --idle pause): never rendered.
    idle: u64,
    /// Frames rendered with no reader attached (--idle render): rendered, not encoded.
    idle_rendered: u64,
}

/// Installs the signal thread. The first SIGTERM/SIGINT becomes an event; a second one exits at
/// once with 128+signal.
pub fn watch_signals(tx: Sender<Event>) -> anyhow::Result<()> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1]).context("installing signal handlers")?;
    thread::Builder::new().name("signals".into()).spawn(move || {
        let mut stopping = false;
        for sig in signals.forever() {
            match sig {
                SIGUSR1 => {
                    let _ = tx.send(Event::Keyframe);
                }
                _ if stopping => {
                    eprintln!("agentcast: second signal {sig}, exiting now");
                    signal_hook::low_level::exit(128 + sig);
                }
                _ => {
                    stopping = true;
                    let _ = tx.send(Event::Stop(sig));
                }
            }
        }
    })?;
    Ok(())
}

/// Streams until a limit, a signal, the reader leaving, or a failure.
pub fn run(cfg: &Config) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    watch_signals(tx.clone())?;
    let destination = match &cfg.output {
        Output::Stdout => Destination::Stdout(sink::stdout::open()?),
        Output::Fifo(path) => Destination::Demand(Box::new(Fifo::prepare(path)?)),
        Output::Tcp(addr) => Destination::Demand(Box::new(Tcp::bind(*addr)?)),
    };

    let frame_log = match &cfg.frame_log {
        Some(path) => Some(
            crate::stats::FrameLog::create(path)
                .map_err(|e| fail(Exit::CantCreate, format!("--frame-log {}: {e}", path.display())))?,
        ),
        None => None,
    };
    pipeline::init()?;
    // The CUDA device first: the renderer and NVENC both go to it (render::device).
    let cuda = crate::cuda::select(cfg.gpu).map_err(|e| fail(Exit::Unavailable, e))?;
    let cfg = &Config { gpu: cuda.map(|c| c.ordinal), ..cfg.clone() };
    if cfg.path == PathArg::ZeroCopy && cuda.is_none() {
        // Said before encoders are opened and EGL is set up: nothing else can change it.
        return Err(fail(Exit::Unavailable, convert::zero_copy_refused(convert::NO_CUDA)));
    }
    let (backend, lease) = choose_encoder(cfg)?;

    let gpu = Gpu::open(cfg.egl_device, cuda)?;
    let takes_cuda = encoder_takes_cuda(cfg, backend);
    let facts = PathFacts::gather(cfg.gpu, &gpu.info, takes_cuda, cfg.width, cfg.height);
    let (zero_copy, why_path) =
        convert::choose_path(cfg.path, cfg.convert, &facts).map_err(|e| fail(Exit::Unavailable, e))?;
    let readback_plan = |gpu: &Gpu| {
        convert::choose(
            cfg.convert,
            gpu.info.software,
            &gpu.info.renderer,
            backend.raw_formats(),
            cfg.width,
            cfg.height,
        )
        .map_err(|e| fail(Exit::Usage, e))
    };
    let (plan, mut renderer) = match cuda.filter(|_| zero_copy) {
        Some(c) => {
            let plan = Plan::Cuda { gpu: c.ordinal };
            info!("path: zero-copy ({why_path})");
            match Renderer::new(gpu, cfg, plan) {
                Ok(r) => (plan, r),
                Err(e) if cfg.path == PathArg::ZeroCopy => {
                    return Err(fail(Exit::Unavailable, format!("--path zero-copy: {e:#}")));
                }
                Err(e) => {
                    warn!("path: zero-copy failed to set up ({e:#}); reading frames back instead");
                    let gpu = Gpu::open(cfg.egl_device, cuda)?;
                    let (plan, _) = readback_plan(&gpu)?;
                    (plan, Renderer::new(gpu, cfg, plan)?)
                }
            }
        }
        None => {
            info!("path: {why_path}");
            let (plan, why) = readback_plan(&gpu)?;
            info!("convert: {plan} ({why}); {} bytes read back per frame", plan.readback_bytes(cfg.width, cfg.height));
            (plan, Renderer::new(gpu, cfg, plan)?)
        }
    };
    let cuda_context = renderer.cuda_context();
    let input = match plan {
        Plan::Gpu(f) => Input::Yuv(f),
        Plan::Cpu(f) => Input::Rgba(f),
        Plan::Cuda { .. } => Input::Cuda,
    };
    let frames = FrameInput { input, cuda_context: cuda_context.as_ref() };
    let mut builds = 0u32;
    let mut live = Live::build(cfg, backend, lease, frames, 0, &tx, &mut builds)?;

    let stop_threads = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SinkStats::default());
    let source = Arc::new(Source::new(live.encoder.appsink()));
    let demand = matches!(destination, Destination::Demand(_));
    let timings = Arc::new(crate::stats::Timings::default());
    let timing = sink::FrameTiming { timings: timings.clone(), fps: cfg.fps };
    spawn_sink(cfg, destination, &source, &tx, &stop_threads, &stats, timing.clone())?;

    let mut counters = Counters::default();
    let pulse = Arc::new(Pulse::default());
    if let Some(timeout) = cfg.stall_timeout {
        let sink_stats = stats.clone();
        let out = move || sink_stats.pulled.load(Ordering::Relaxed);
        watchdog::spawn(pulse.clone(), out, timeout, backend.element().to_string())?;
    }
    let now = Instant::now();
    let mut state = LoopState {
        timings: timings.clone(),
        backend: live.backend,
        slot: live.lease.as_ref().map(|l| l.index),
        next_report: cfg.stats_interval.map(|i| now + i),
        last_report: (now, 0, 0),
        pulse,
        reader: !demand,
        sink_done: false,
        generation: 0,
        // With slots in play, every idle producer stops its encoder and chooses again on attach, so a
        // slot freed meanwhile goes to whoever is watched next (even one that fell back earlier).
        release_on_idle: demand && cfg.idle == IdleArg::Pause && cfg.leases.sessions > 0,
        start: now,
        plan,
        frame_log,
        index: 0,
    };
    let started = Instant::now();
    // Failures of the current backend since it was built or chosen.
    let mut failures = 0u32;
    let outcome = loop {
        state.pulse.loop_watched.store(true, Ordering::Relaxed);
        let outcome = frame_loop(cfg, &mut renderer, &live.encoder, &rx, &mut state, &mut counters, &stats);
        state.pulse.loop_watched.store(false, Ordering::Relaxed);
        let why = match outcome {
            Ok(Stop::Rebuild(why)) => why,
            Ok(Stop::Release) => {
                // Ten agents can share eight NVENC sessions as long as at most eight are watched.
                match live.lease.as_ref() {
                    Some(l) => {
                        info!("no reader: stopping the encoder and releasing NVENC slot {} until one attaches", l.index)
                    }
                    None => info!("no reader: stopping the encoder until one attaches (it chooses again then)"),
                }
                source.begin_swap();
                live.retire();
                drop(live.lease.take());
                if let Some(stop) = wait_for_reader(cfg, &rx, &live.encoder, &mut state, &mut counters)? {
                    break Ok(stop);
                }
                let generation = state.generation + 1;
                let reopened = choose_encoder(cfg)
                    .and_then(|(b, lease)| Live::build(cfg, b, lease, frames, generation, &tx, &mut builds));
                live = match reopened {
                    Ok(l) => l,
                    Err(e) => break Err(e.context("reopening the encoder for a new reader")),
                };
                failures = 0;
                // A new reader session starts here anyway, so a different backend is fine.
                adopt(&mut state, &source, &live, generation, false);
                info!("encoder: {} reopened for the new reader (pipeline generation {generation})", live.backend);
                continue;
            }
            other => break other,
        };
        // Runtime fallback: rebuild once on the same backend, then demote to the next one. On
        // stdout a backend change would change the SPS in the middle of go2rtc's session, so
        // there a second failure exits for a restart instead.
        failures += 1;
        let current = live.backend;
        let next = if failures == 1 {
            warn!("encoder {} failed ({why}); rebuilding the pipeline once on the same backend", current.element());
            Some(current)
        } else if !demand {
            break Err(fail(
                Exit::Software,
                format!(
                    "encoder {} failed again ({why}); changing backend would change the SPS mid-stream, which go2rtc cannot follow: exiting for a restart",
                    current.element()
                ),
            ));
        } else {
            None
        };
        let generation = state.generation + 1;
        source.begin_swap();
        live.retire();
        let rebuilt = match next {
            Some(b) => {
                let lease = live.lease.take();
                Live::build(cfg, b, lease, frames, generation, &tx, &mut builds)
            }
            None => {
                let later: Vec<Backend> =
                    select::candidates(cfg.encoder).into_iter().skip_while(|b| *b != current).skip(1).collect();
                warn!("encoder {} failed again ({why}); demoting to the next backend", current.element());
                drop(live.lease.take());
                open_backend(cfg, &later)
                    .and_then(|(b, lease)| Live::build(cfg, b, lease, frames, generation, &tx, &mut builds))
            }
        };
        live = match rebuilt {
            Ok(l) => l,
            Err(e) => break Err(e.context(format!("after encoder {} failed: {why}", current.element()))),
        };
        let changed = live.backend != current;
        if changed {
            failures = 0;
        }
        adopt(&mut state, &source, &live, generation, changed);
        info!("encoder: now {} (pipeline generation {generation})", live.backend);
    };
    let result = match outcome {
        Ok(Stop::Finish { drain: true }) => {
            let r = drain(&mut renderer, &live.encoder, &rx, &mut state, &mut counters);
            stop_threads.store(true, Ordering::Release);
            r
        }
        Ok(Stop::Finish { drain: false }) => Ok(()),
        Ok(Stop::ReaderGone) => {
            info!("the reader closed the stream");
            Ok(())
        }
        Ok(Stop::Rebuild(_) | Stop::Release) => unreachable_rebuild(),
        Err(e) => Err(e),
    };
    // Let the sink finish the access unit it is writing (and remove a FIFO it created).
    stop_threads.store(true, Ordering::Release);
    if !state.sink_done {
        wait_for_sink(&rx, STOP_TIMEOUT);
    }
    live.retire();
    log_stats("done", started, &counters, &stats);
    if cfg.stats_interval.is_some() || cfg.stats_file.is_some() {
        report(cfg, &mut state, &counters, &stats, true);
    }
    result
}

/// Makes a newly built pipeline the current one: the loop's bookkeeping, the sink's source (`new_sps`:
/// another backend, so FIFO/TCP readers start a new session), and an IDR to start on.
fn adopt(state: &mut LoopState, source: &Source, live: &Live, generation: u64, new_sps: bool) {
    state.generation = generation;
    state.backend = live.backend;
    state.slot = live.lease.as_ref().map(|l| l.index);
    source.replace(live.encoder.appsink(), new_sps);
    live.encoder.force_keyframe();
}

/// While the encoder is released: waits for a reader (`None`) or a stop, keeping the frame clock and
/// the --duration limit going.
fn wait_for_reader(
    cfg: &Config,
    rx: &Receiver<Event>,
    encoder: &Encoder,
    state: &mut LoopState,
    c: &mut Counters,
) -> anyhow::Result<Option<Stop>> {
    let limit = cfg.duration_frames();
    loop {
        if let Some(stop) = wait_events(rx, encoder, state, Instant::now() + Duration::from_secs(1))? {
            return Ok(Some(stop));
        }
        let due = frames_due(state.start.elapsed(), cfg.fps);
        if cfg.pace && due > state.index {
            c.idle += due - state.index;
            state.index = due;
        }
        if limit.is_some_and(|n| state.index >= n) {
            return Ok(Some(Stop::Finish { drain: false }));
        }
        if state.reader {
            return Ok(None);
        }
    }
}

/// The loop above consumes every `Stop::Rebuild`; reaching here is a bug, reported as one.
fn unreachable_rebuild() -> anyhow::Result<()> {
    Err(fail(Exit::Software, "internal error: a pipeline rebuild escaped the frame loop"))
}

/// What the renderer hands every encoder built for this stream.
#[derive(Clone, Copy)]
struct FrameInput<'a> {
    input: Input,
    /// The zero-copy frames' `gst.cuda.context`.
    cuda_context: Option<&'a gst::Context>,
}

/// A running encoder pipeline with its bus watcher and NVENC lease.
struct Live {
    encoder: Encoder,
    backend: Backend,
    lease: Option<Lease>,
    bus_stop: Arc<AtomicBool>,
}

impl Live {
    fn build(
        cfg: &Config,
        backend: Backend,
        lease: Option<Lease>,
        frames: FrameInput<'_>,
        generation: u64,
        tx: &Sender<Event>,
        builds: &mut u32,
    ) -> anyhow::Result<Live> {
        // Testing aid: the first --debug-fail-times pipelines fail after --debug-fail-after units.
        let fail_after = cfg.debug_fail_after.filter(|_| *builds < cfg.debug_fail_times);
        *builds += 1;
        let setup = Setup {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            input: frames.input,
            backend,
            settings: cfg.encoder_settings,
            options: &cfg.encoder_opts,
            stall_after: cfg.debug_stall_after,
            fail_after,
            mpegts: cfg.mux == crate::cli::MuxArg::Mpegts,
            gpu: cfg.gpu,
            cuda_context: frames.cuda_context,
        };
        let encoder = Encoder::new(&setup)?;
        encoder.start()?;
        let bus_stop = Arc::new(AtomicBool::new(false));
        spawn_bus_watch(encoder.bus(), tx.clone(), bus_stop.clone(), generation)?;
        Ok(Live { encoder, backend, lease, bus_stop })
    }

    /// Stops the pipeline and its bus watcher (the lease stays with `self` until dropped).
    fn retire(&self) {
        self.bus_stop.store(true, Ordering::Release);
        self.encoder.stop();
    }
}

/// Whether `backend` takes frames in CUDA memory: NVENC does; a CPU encoder only through
/// cudadownload under the `--debug-cuda-download` testing aid.
fn encoder_takes_cuda(cfg: &Config, backend: Backend) -> Result<(), String> {
    if backend.is_nvenc() {
        return Ok(());
    }
    if cfg.debug_cuda_download && pipeline::element_installed("cudadownload") {
        warn!("testing aid: zero-copy frames may reach {} through cudadownload", backend.element());
        return Ok(());
    }
    Err(format!("the encoder is {}, which takes frames in host memory only (no NVENC opened)", backend.element()))
}

/// Chooses the encoder by opening candidates in order. NVENC candidates (and the testing aid's
/// element) open only while holding a session slot when `--nvenc-sessions` is set; the returned
/// lease must live as long as the encoder.
pub(crate) fn choose_encoder(cfg: &Config) -> anyhow::Result<(Backend, Option<Lease>)> {
    open_backend(cfg, &select::candidates(cfg.encoder))
}

/// Opens the first of `candidates` that works (see [`choose_encoder`]).
fn open_backend(cfg: &Config, candidates: &[Backend]) -> anyhow::Result<(Backend, Option<Lease>)> {
    let policy = &cfg.leases;
    if let Some(e) = &policy.extra_element {
        warn!("testing aid: {e} takes NVENC slot leases as if it were NVENC");
    }
    let lease_bound =
        |b: Backend| policy.sessions > 0 && (b.is_nvenc() || policy.extra_element.as_deref() == Some(b.element()));
    let dir = if policy.sessions > 0 {
        Some(LockDir::open(&policy.dir, policy.sessions).map_err(|e| fail(Exit::CantCreate, e))?)
    } else {
        None
    };
    let mut lease: Option<Lease> = None;
    let mut abort: Option<anyhow::Error> = None;
    let probe = |b: Backend| -> Result<(), String> {
        if abort.is_some() {
            return Err("not tried".into());
        }
        let mut held = None;
        if lease_bound(b)
            && let Some(dir) = &dir
        {
            match take_slot(dir, &cfg.stream, policy) {
                Ok(Some(l)) => {
                    info!("encoder: {} holds NVENC slot {} ({})", b.element(), l.index, l.path.display());
                    held = Some(l);
                }
                Ok(None) => {
                    return Err(format!("all {} NVENC slots in {} are busy", policy.sessions, dir.path().display()));
                }
                Err(e) => {
                    abort = Some(e);
                    return Err("no slot".into());
                }
            }
        }
        let opened = pipeline::probe(b, cfg.gpu, &cfg.encoder_settings, cfg.width, cfg.height, PROBE_TIMEOUT);
        match &opened {
            Ok(()) => lease = held,
            // NVENC's own session limit counts as busy too.
            Err(why) if lease_bound(b) && why.contains("OpenEncodeSessionEx") && policy.on_busy == OnBusyArg::Fail => {
                abort = Some(fail(
                    Exit::TempFail,
                    format!("{}: NVENC refused a session: {why} (--on-busy fail)", b.element()),
                ));
            }
            Err(_) => {}
        }
        opened
    };
    let chosen = select::choose_from(candidates, cfg.encoder, pipeline::element_installed, probe);
    if let Some(e) = abort {
        return Err(e);
    }
    let (backend, skipped) = chosen.map_err(|e| fail(Exit::Unavailable, e))?;
    for why in &skipped {
        info!("encoder: skipped {why}");
    }
    info!("encoder: {backend} (opened with a test frame)");
    Ok((backend, lease))
}

/// One attempt at a slot under the `--on-busy` policy: `Ok(None)` means "fall back".
fn take_slot(dir: &LockDir, stream: &str, policy: &crate::config::LeasePolicy) -> anyhow::Result<Option<Lease>> {
    let io = |e: std::io::Error| fail(Exit::CantCreate, format!("--lock-dir {}: {e}", dir.path().display()));
    if let Some(l) = dir.try_acquire(stream).map_err(io)? {
        return Ok(Some(l));
    }
    let busy = format!("all {} NVENC slots in {} are busy", policy.sessions, dir.path().display());
    match policy.on_busy {
        OnBusyArg::Fallback => Ok(None),
        OnBusyArg::Fail => Err(fail(Exit::TempFail, format!("{busy} (--on-busy fail)"))),
        OnBusyArg::Wait => {
            info!("{busy}; waiting up to {:?} for one (--on-busy wait)", policy.wait_timeout);
            let deadline = Instant::now() + policy.wait_timeout;
            while Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
                if let Some(l) = dir.try_acquire(stream).map_err(io)? {
                    return Ok(Some(l));
                }
            }
            Err(fail(
                Exit::TempFail,
                format!("{busy}; none came free within {:?} (--on-busy wait)", policy.wait_timeout),
            ))
        }
    }
}

fn spawn_sink(
    cfg: &Config,
    destination: Destination,
    source: &Arc<Source>,
    tx: &Sender<Event>,
    stop: &Arc<AtomicBool>,
    stats: &Arc<SinkStats>,
    timing: sink::FrameTiming,
) -> anyhow::Result<()> {
    let (source, stop, stats, tx) = (source.clone(), stop.clone(), stats.clone(), tx.clone());
    let raw = cfg.mux == crate::cli::MuxArg::Raw;
    let settings = DemandSettings { budget_aus: cfg.max_lag_frames(), keyframe_every: LAG_KEYFRAME_EVERY };
    thread::Builder::new().name("sink".into()).spawn(move || {
        let end = match destination {
            Destination::Stdout(mut out) => sink::run_writer(&source, &mut out, &stop, &stats, raw, &timing),
            Destination::Demand(mut endpoint) => {
                let notes = tx.clone();
                let notify = move |n: Note| {
                    let _ = notes.send(Event::Reader(n));
                };
                let end = sink::run_demand(&source, endpoint.as_mut(), settings, &stop, &stats, &notify, &timing);
                drop(endpoint); // removes a FIFO we created, before the process may exit
                end
            }
        };
        let _ = tx.send(Event::Sink(end));
    })?;
    Ok(())
}

fn spawn_bus_watch(bus: gst::Bus, tx: Sender<Event>, stop: Arc<AtomicBool>, generation: u64) -> anyhow::Result<()> {
    thread::Builder::new().name("bus".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let types = [gst::MessageType::Error, gst::MessageType::Warning];
            let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &types) else { continue };
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let _ = tx.send(Event::Pipeline(generation, pipeline::bus_error_line(&msg, e)));
                    return;
                }
                gst::MessageView::Warning(w) => {
                    let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                    warn!("{src}: {}", w.error());
                }
                _ => {}
            }
        }
    })?;
    Ok(())
}

/// Acts on an event; `Some` means the loop must stop.
fn handle(ev: Event, encoder: &Encoder, state: &mut LoopState) -> anyhow::Result<Option<Stop>> {
    if matches!(ev, Event::Sink(_)) {
        state.sink_done = true;
    }
    match ev {
        Event::Stop(sig) => {
            info!("signal {sig}: finishing the current access unit and stopping");
            Ok(Some(Stop::Finish { drain: false }))
        }
        Event::Keyframe => {
            info!("SIGUSR1: forcing an IDR");
            encoder.force_keyframe();
            Ok(None)
        }
        Event::Sink(SinkEnd::ReaderGone) => Ok(Some(Stop::ReaderGone)),
        Event::Sink(SinkEnd::Failed(e)) => Err(e),
        Event::Sink(SinkEnd::Eos | SinkEnd::Stopped) => {
            Err(fail(Exit::Software, "the encoder ended the stream unexpectedly"))
        }
        Event::Pipeline(generation, line) if generation == state.generation => Ok(Some(Stop::Rebuild(line))),
        Event::Pipeline(_, line) => {
            debug!("ignoring an error from a replaced pipeline: {line}");
            Ok(None)
        }
        Event::Reader(Note::Attached) => {
            state.reader = true;
            encoder.force_keyframe();
            Ok(None)
        }
        Event::Reader(Note::Detached) => {
            state.reader = false;
            Ok(None)
        }
        Event::Reader(Note::NeedKeyframe) => {
            encoder.force_keyframe();
            Ok(None)
        }
    }
}

fn frame_loop(
    cfg: &Config,
    renderer: &mut Renderer,
    encoder: &Encoder,
    rx: &Receiver<Event>,
    state: &mut LoopState,
    c: &mut Counters,
    stats: &SinkStats,
) -> anyhow::Result<Stop> {
    let fps = cfg.fps;
    let index_limit = cfg.duration_frames();
    loop {
        state.pulse.loop_beats.fetch_add(1, Ordering::Relaxed);
        state.pulse.frames_in.store(c.encoded, Ordering::Relaxed);
        if cfg.stop.frames.is_some_and(|n| c.encoded + renderer.in_flight() as u64 >= n)
            || index_limit.is_some_and(|n| state.index >= n)
        {
            return Ok(Stop::Finish { drain: true });
        }
        if !state.reader && cfg.idle == IdleArg::Pause {
            if state.release_on_idle {
                return Ok(Stop::Release);
            }
            // Nobody reads: neither render nor encode until a reader attaches (or a limit or signal).
            let mut wake = Instant::now() + Duration::from_secs(1);
            if let Some(n) = index_limit.filter(|_| cfg.pace) {
                wake = wake.min(state.start + stream_time(n, fps));
            }
            if let Some(stop) = wait_events(rx, encoder, state, wake)? {
                return Ok(stop);
            }
            if cfg.pace {
                let now = frames_due(state.start.elapsed(), fps).max(state.index);
                c.idle += now - state.index;
                state.index = now;
            }
            continue;
        }
        if cfg.pace {
            let deadline = state.start + stream_time(state.index, fps);
            if let Some(stop) = wait_events(rx, encoder, state, deadline)? {
                return Ok(stop);
            }
            // More than a whole interval late: skip to the current deadline instead of queueing.
            let now = frames_due(state.start.elapsed(), fps);
            if now > state.index {
                c.late += now - state.index;
                debug!("late by {} frame(s); skipping to frame {now}", now - state.index);
                state.index = now;
            }
        } else {
            while let Ok(ev) = rx.try_recv() {
                if let Some(stop) = handle(ev, encoder, state)? {
                    return Ok(stop);
                }
            }
            if let Some(stop) = wait_for_room(encoder, rx, state)? {
                return Ok(stop);
            }
        }
        if !state.reader && cfg.idle == IdleArg::Pause {
            continue; // the reader left while we waited
        }
        let render_start = Instant::now();
        if let Some(log) = &mut state.frame_log {
            log.note(state.index, crate::clock::monotonic_ns());
        }
        renderer.render(state.index)?;
        state.timings.rendered(state.index, render_start, Instant::now());
        if c.rendered == 0 {
            // The first draw compiles shaders and warms caches; the clock restarts once it is done,
            // so the next frame is not already late.
            state.start = Instant::now() - stream_time(state.index, fps);
        }
        c.rendered += 1;
        if state.reader {
            let (timings, since) = (state.timings.clone(), Instant::now());
            renderer.collect_ready(|index, frame| offer(encoder, index, frame, c, Some((&timings, since))))?;
        } else {
            // --idle render: the frame loop runs for the agent's sake; nothing is encoded.
            renderer.collect_ready(|_, _| {
                c.idle_rendered += 1;
                Ok(())
            })?;
        }
        state.index += 1;
        if state.next_report.is_some_and(|t| Instant::now() >= t) {
            report(cfg, state, c, stats, false);
        }
    }
}

/// Acts on events until `deadline`; `Some` when one of them stops the loop.
fn wait_events(
    rx: &Receiver<Event>,
    encoder: &Encoder,
    state: &mut LoopState,
    deadline: Instant,
) -> anyhow::Result<Option<Stop>> {
    loop {
        // Events first, even when the deadline has passed: a loop that is always late (an
        // overloaded machine) must still see SIGTERM and the sink's news.
        state.pulse.loop_beats.fetch_add(1, Ordering::Relaxed);
        let was_reading = state.reader;
        let now = Instant::now();
        let next = if now >= deadline {
            rx.try_recv().map_err(|_| ())
        } else {
            rx.recv_timeout(deadline - now).map_err(|_| ())
        };
        match next {
            Ok(ev) => {
                if let Some(stop) = handle(ev, encoder, state)? {
                    return Ok(Some(stop));
                }
                if state.reader != was_reading {
                    return Ok(None); // a reader came or went: the loop decides what to do
                }
            }
            // Nothing pending and the deadline reached (run() holds a sender: no disconnects).
            Err(()) => return Ok(None),
        }
    }
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

/// Unpaced runs wait for the encoder instead of dropping frames.
fn wait_for_room(encoder: &Encoder, rx: &Receiver<Event>, state: &mut LoopState) -> anyhow::Result<Option<Stop>> {
    let since = Instant::now();
    while !encoder.has_room() {
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(1))
            && let Some(stop) = handle(ev, encoder, state)?
        {
            return Ok(Some(stop));
        }
        if since.elapsed() > ENCODER_STALL {
            return Err(fail(Exit::Software, format!("the encoder took no frame for {ENCODER_STALL:?}")));
        }
    }
    Ok(None)
}

/// After the last frame: hand over what is still being read back, end the stream, and wait until
/// the writer has written everything.
fn drain(
    renderer: &mut Renderer,
    encoder: &Encoder,
    rx: &Receiver<Event>,
    state: &mut LoopState,
    c: &mut Counters,
) -> anyhow::Result<()> {
    let mut early: Option<Stop> = None;
    renderer.collect(0, |frame, bytes| {
        if early.is_none() {
            early = wait_for_room(encoder, rx, state)?;
        }
        if early.is_none() {
            offer(encoder, frame, bytes, c, None)?;
        }
        Ok(())
    })?;
    if let Some(stop) = early {
        return ended_while_draining(stop, state.backend.element()); // a signal or the reader leaving ends the drain early
    }
    encoder.end_of_stream();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Sink(SinkEnd::Eos)) => {
                state.sink_done = true;
                return Ok(());
            }
            Ok(ev) => {
                if let Some(stop) = handle(ev, encoder, state)? {
                    return ended_while_draining(stop, state.backend.element());
                }
            }
            Err(_) => return Err(fail(Exit::Software, format!("the encoder did not drain within {DRAIN_TIMEOUT:?}"))),
        }
    }
}

/// How a drain that was cut short ends: a signal or the reader leaving is a clean end; an encoder
/// failure is not (the last frames are lost, and a rebuild could not bring them back).
fn ended_while_draining(stop: Stop, encoder: &str) -> anyhow::Result<()> {
    match stop {
        Stop::Rebuild(why) => {
            Err(fail(Exit::Software, format!("encoder {encoder} failed while draining the last frames: {why}")))
        }
        Stop::Finish { .. } | Stop::ReaderGone | Stop::Release => Ok(()),
    }
}

/// Waits for the writer to report that it stopped (after the stop flag).
fn wait_for_sink(rx: &Receiver<Event>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Sink(end)) => {
                debug!("sink ended: {end:?}");
                return;
            }
            Ok(_) => {}
            Err(_) => {
                warn!("the writer did not finish its access unit within {timeout:?}; exiting anyway");
                return;
            }
        }
    }
}

/// The JSON stats line (stderr) and file (`--stats-file`). Counters only grow; at the end of a run
/// (`last`), frames rendered = written + dropped.total once nothing is in flight.
fn report(cfg: &Config, state: &mut LoopState, c: &Counters, s: &SinkStats, last: bool) {
    let now = Instant::now();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (written, bytes) = (load(&s.access_units), load(&s.bytes));
    let (t0, rendered0, bytes0) = state.last_report;
    let secs = now.duration_since(t0).as_secs_f64().max(1e-9);
    let mut samples = state.timings.take();
    // Proof of the path: what each frame costs the PCIe bus / host memory with the encoder now built.
    let (path, host_bytes) = state.plan.host_path(state.backend.is_nvenc(), cfg.width, cfg.height);
    let dropped = [
        ("encoder_busy", c.encoder_busy),
        ("idle_rendered", c.idle_rendered),
        ("before_idr", load(&s.skipped_before_idr)),
        ("attach", load(&s.dropped_attach)),
        ("lag", load(&s.dropped_lag)),
        ("detach", load(&s.dropped_detach)),
        ("no_reader", load(&s.dropped_no_reader)),
    ];
    let mut dropped_json: serde_json::Map<String, serde_json::Value> =
        dropped.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    dropped_json.insert("total".into(), dropped.iter().map(|(_, v)| v).sum::<u64>().into());
    let line = serde_json::json!({
        "stats": if last { "final" } else { "interval" },
        "stream": cfg.stream,
        "backend": state.backend.element(),
        "width": cfg.width,
        "height": cfg.height,
        "fps_target": cfg.fps,
        "uptime_s": (now.duration_since(state.start).as_secs_f64() * 10.0).round() / 10.0,
        "frames": { "rendered": c.rendered, "encoded": c.encoded, "written": written },
        "dropped": dropped_json,
        "skipped": { "late": c.late, "idle": c.idle },
        "fps": ((c.rendered - rendered0) as f64 / secs * 10.0).round() / 10.0,
        "bitrate_kbps": ((bytes - bytes0) as f64 * 8.0 / 1000.0 / secs).round(),
        "latency_ms": {
            "render": crate::stats::summary(&mut samples.render),
            "readback": crate::stats::summary(&mut samples.readback),
            "encode": crate::stats::summary(&mut samples.encode),
            "write": crate::stats::summary(&mut samples.write),
            "render_to_write": crate::stats::summary(&mut samples.render_to_write),
        },
        "path": path,
        "host_bytes_per_frame": host_bytes,
        "nvenc_slot": state.slot,
        "rss_kib": crate::stats::rss_kib(),
        // Real GPU memory needs NVML, which agentcast does not load yet; never VMS.
        "gpu_memory_mib": serde_json::Value::Null,
    });
    let text = line.to_string();
    eprintln!("{text}");
    if let Some(path) = &cfg.stats_file
        && let Err(e) = crate::stats::write_atomic(path, &text)
    {
        warn!("--stats-file {}: {e}", path.display());
    }
    state.last_report = (now, c.rendered, bytes);
    state.next_report = cfg.stats_interval.map(|i| now + i);
}

fn log_stats(when: &str, start: Instant, c: &Counters, s: &SinkStats) {
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let bytes = s.bytes.load(Ordering::Relaxed);
    let aus = s.access_units.load(Ordering::Relaxed);
    info!(
        "{when}: {:.1} s, rendered {} ({:.1} fps), encoded {}, written {} ({} IDR, {:.0} kbit/s), late-skipped {}, encoder-busy drops {}, idle {}, sink drops {}/{}/{} (attach/lag/detach), repaired {}",
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
