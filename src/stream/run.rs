//! Setting a stream up and taking it down: the output first (path and port errors come first), then
//! the source, the encoder (chosen by opening), the renderer for drawn frames, the sink thread and
//! the watchdog; then the frame loop, with the encoder session's rebuilds and releases around it;
//! then the drain and the final stats.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::frame_loop::{Frames, LastFrame, Loop, LoopParts, Stop};
use super::report::Reporter;
use super::session::{Chosen, FrameInput, Session, choose_encoder, encoder_takes_cuda};
use super::{Event, Outcome};
use crate::config::{Config, SourceSpec};
use crate::encode::factory;
use crate::encode::pipeline::Input;
use crate::exit::{Exit, fail};
use crate::plan::{self, Plan, Route, ZeroCopyRefused};
use crate::render::{Gpu, RenderSettings, Renderer};
use crate::settings::{FramePath, Mux};
use crate::sink::fifo::Fifo;
use crate::sink::output::Output;
use crate::sink::tcp::Tcp;
use crate::sink::{self, DemandSettings, Endpoint, Note, SinkStats};
use crate::source::feed::Feed;
use crate::source::live::{Latest, Overrun, SourceEnd};
use crate::watchdog::{self, Pulse};

/// How long a stop waits for the access unit being written (the whole stop stays under 1 s).
const STOP_TIMEOUT: Duration = Duration::from_millis(700);
/// Least time between two IDR requests for a FIFO/TCP reader that fell behind.
const LAG_KEYFRAME_EVERY: Duration = Duration::from_secs(1);

/// What the handle hands the stream thread.
pub(super) struct Context {
    pub tx: Sender<Event>,
    pub rx: Receiver<Event>,
    /// The slot a [`SourceSpec::Push`] stream's frames arrive in.
    pub push: Option<Arc<Latest>>,
    /// Sent once everything is set up and frames flow.
    pub ready: Sender<()>,
    pub outcome: Sender<Outcome>,
    pub final_stats: Arc<Mutex<serde_json::Value>>,
    /// What [`super::Handle::wants_frame`] reads; the frame loop keeps it.
    pub demand: Arc<super::demand::Demand>,
}

/// Where the stream goes, opened before anything heavy so path and port errors come first.
enum Destination {
    Stdout(sink::stdout::Stdout),
    Demand(Box<dyn Endpoint>),
    /// An RTSP server we publish to; checked reachable at start-up.
    Rtsp(sink::rtsp::Publisher),
    /// Our own RTSP server (`rtsp-listen:`), bound at start-up.
    Served(sink::rtsp_server::Server),
}

impl Destination {
    /// Where a listening output (TCP, rtsp-listen:) is reached, whether it speaks RTSP, and its URL.
    fn listening(&self) -> Option<(std::net::SocketAddr, bool, String)> {
        match self {
            Destination::Served(s) => Some((s.local_addr(), true, s.url())),
            Destination::Demand(e) => e.local_addr().map(|a| (a, false, format!("tcp://{a}"))),
            _ => None,
        }
    }
}

/// An agent's frames, with what their receiving side holds for the stream's life.
struct AgentSource {
    latest: Arc<Latest>,
    /// A `unix:` socket (its path is removed when the stream ends).
    socket: Option<crate::source::unix::Socket>,
}

/// Checks the agent's source and claims what it needs (a socket path), before anything heavy.
fn claim_source(cfg: &Config, push: Option<Arc<Latest>>) -> anyhow::Result<Option<AgentSource>> {
    let overrun = cfg.agent_overrun();
    let source = match &cfg.source {
        SourceSpec::Scene(_) | SourceSpec::Shader(_) => return Ok(None),
        SourceSpec::Push => AgentSource {
            latest: push.ok_or_else(|| fail(Exit::Software, "a push source needs Stream::start"))?,
            socket: None,
        },
        SourceSpec::Raw(path) => {
            crate::source::raw::check(path, cfg.pix_fmt, (cfg.width, cfg.height))?;
            AgentSource { latest: Arc::new(Latest::new(overrun)), socket: None }
        }
        SourceSpec::Unix(path) => AgentSource {
            latest: Arc::new(Latest::new(overrun)),
            socket: Some(crate::source::unix::Socket::bind(path)?),
        },
        SourceSpec::Shm(name) => {
            // The ring's writer never waits, so the slot is never lossless.
            crate::source::shm::check(name, cfg.width, cfg.height, cfg.pix_fmt)?;
            AgentSource { latest: Arc::new(Latest::new(Overrun::Replace)), socket: None }
        }
        // A live node: the newest frame wins even unpaced.
        SourceSpec::Pipewire(_) => AgentSource { latest: Arc::new(Latest::new(Overrun::Replace)), socket: None },
    };
    Ok(Some(source))
}

/// Starts the threads that receive the agent's frames.
fn start_source(cfg: &Config, source: &AgentSource) -> anyhow::Result<Feed> {
    let frame_bytes = cfg.pix_fmt.frame_bytes(cfg.width, cfg.height);
    let (mut format, mut timeout, mut capture, mut ring) = (cfg.pix_fmt, cfg.source_timeout, None, None);
    match (&cfg.source, &source.socket) {
        (SourceSpec::Raw(path), _) => crate::source::raw::spawn(path.clone(), frame_bytes, source.latest.clone())?,
        (SourceSpec::Unix(_), Some(socket)) => socket.spawn(frame_bytes, source.latest.clone())?,
        (SourceSpec::Shm(name), _) => {
            let reader =
                crate::source::shm::spawn(name, cfg.width, cfg.height, cfg.pix_fmt, source.latest.clone(), None)?;
            ring = Some(reader.counters);
        }
        (SourceSpec::Pipewire(target), _) => {
            let latest = source.latest.clone();
            let c = crate::source::pipewire::Capture::start(target, cfg.width, cfg.height, cfg.source_timeout, latest)?;
            // The capture ends the source itself after --source-timeout (only while the node is
            // missing: a silent node is a still picture, not a gone agent).
            (format, timeout) = (c.format(), None);
            capture = Some(c);
        }
        _ => {}
    }
    let what = cfg.source.to_string();
    let mut feed = Feed::new(source.latest.clone(), format, (cfg.width, cfg.height), cfg.stamp, timeout, what);
    feed.capture = capture;
    feed.ring = ring;
    Ok(feed)
}

/// Streams until a limit, a stop, the reader leaving, the source ending, or a failure.
pub(super) fn run(cfg: &Config, ctx: Context) -> anyhow::Result<()> {
    let Context { tx, rx, push, ready, outcome, final_stats, demand } = ctx;
    let destination = open_destination(cfg)?;
    let listening = destination.listening();
    let registration = match (&cfg.register, &listening) {
        (Some(r), Some((addr, rtsp, _))) => Some(r.for_output(*addr, *rtsp).map_err(|e| fail(Exit::Usage, e))?),
        _ => None,
    };
    let agent = claim_source(cfg, push)?;
    let frame_log = open_frame_log(cfg)?;
    // The CUDA device first: the renderer and NVENC both go to it (crate::device).
    let cuda = crate::cuda::select(cfg.gpu).map_err(|e| fail(Exit::Unavailable, e))?;
    let cfg = &Config { gpu: cuda.map(|c| c.ordinal), ..cfg.clone() };
    if cfg.path == FramePath::ZeroCopy && cuda.is_none() {
        // Said before encoders are opened and EGL is set up: nothing else can change it.
        return Err(fail(Exit::Unavailable, ZeroCopyRefused { why: plan::NO_CUDA.into() }.to_string()));
    }
    let (chosen, gpu) = open_encoder_beside_egl(cfg, cuda, agent.is_none());
    let chosen = chosen?;
    let backend = chosen.backend;
    let cuda_context;
    let (mut frames, mut session) = match plan_frames(cfg, agent.as_ref(), gpu, cuda, backend)? {
        Planned::Agent(feed) => {
            let input = FrameInput { input: Input::Host(feed.format), cuda_context: None };
            let session = Session::open(cfg, chosen, input, &tx)?;
            (Frames::Agent(feed), session)
        }
        // Zero-copy: the encoder's pipeline needs the renderer's CUDA context, so it comes after.
        Planned::Drawn { gpu, settings, plan: plan @ Plan::Cuda { .. } } => {
            let (plan, renderer) = zero_copy_renderer(gpu, cfg, cuda, &settings, plan, backend)?;
            cuda_context = renderer.cuda_context();
            let input = FrameInput { input: encoder_input(plan), cuda_context: cuda_context.as_ref() };
            let session = Session::open(cfg, chosen, input, &tx)?;
            (Frames::Rendered { renderer: Box::new(renderer), plan }, session)
        }
        Planned::Drawn { gpu, settings, plan } => open_beside_renderer(cfg, gpu, &settings, plan, chosen, &tx)?,
    };
    if let Frames::Agent(feed) = &frames {
        info!(
            "path: host frames ({}, {} bytes each) from {} -> {} -> {}; no GL",
            feed.format,
            feed.format.frame_bytes(cfg.width, cfg.height),
            cfg.source,
            session.encoder().host_route(),
            backend.element()
        );
    }

    let stop_threads = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SinkStats::default());
    let source = Arc::new(sink::Source::new(session.encoder().appsink()));
    let paged = matches!(destination, Destination::Demand(_) | Destination::Served(_));
    let timings = Arc::new(crate::stats::Timings::default());
    let timing = sink::FrameTiming { timings: timings.clone(), fps: cfg.fps };
    if let Some((addr, _, url)) = listening {
        let _ = stats.listening.set((url, addr.port()));
    }
    spawn_sink(cfg, destination, &source, &tx, &stop_threads, &stats, timing)?;
    // Announced once the output serves; removed when this function returns, however it ends.
    let registrar = registration.map(crate::register::Registrar::start).transpose()?;
    let mut reporter = Reporter::new(cfg, timings);
    reporter.registered =
        registrar.as_ref().map(|r| (r.registration.name.clone(), r.registration.src.clone(), r.status.clone()));

    let pulse = Arc::new(Pulse::default());
    spawn_watchdog(cfg, &pulse, &stats, backend.element(), &outcome)?;
    let parts = LoopParts { pulse, paged, frame_log, reporter, sink_stats: stats.clone(), demand };
    let mut lp = Loop::new(cfg, &rx, parts);
    let _ = ready.send(());
    let started = Instant::now();
    let stop = run_sessions(cfg, &mut lp, &mut frames, &mut session, &source);
    let result = finish(&mut lp, &mut frames, &session, stop);
    // Let the sink finish the access unit it is writing (and remove a FIFO it created).
    stop_threads.store(true, Ordering::Release);
    lp.finished();
    if let Frames::Agent(feed) = &frames {
        feed.latest.close();
    }
    if !lp.sink_done() {
        wait_for_sink(&rx, STOP_TIMEOUT);
    }
    session.retire();
    drop(agent);
    drop(registrar);
    *final_stats.lock().unwrap_or_else(|p| p.into_inner()) = lp.final_report(&frames, &session, started);
    lp.answer_stats(&frames, &session);
    result
}

/// Opens the output, before anything heavy, so path and port errors come first.
fn open_destination(cfg: &Config) -> anyhow::Result<Destination> {
    Ok(match &cfg.output {
        Output::Stdout => Destination::Stdout(sink::stdout::open()?),
        Output::Fifo(path) => Destination::Demand(Box::new(Fifo::prepare(path)?)),
        Output::Tcp(addr) => Destination::Demand(Box::new(Tcp::bind(*addr)?)),
        Output::Rtsp(url) => {
            sink::rtsp::check(url)?;
            Destination::Rtsp(sink::rtsp::Publisher::new(url.clone(), cfg.fps))
        }
        Output::RtspListen(listen) => Destination::Served(sink::rtsp_server::Server::bind(listen, cfg.fps)?),
    })
}

/// Creates `--frame-log`'s file.
fn open_frame_log(cfg: &Config) -> anyhow::Result<Option<crate::stats::FrameLog>> {
    let Some(path) = &cfg.frame_log else { return Ok(None) };
    let log = crate::stats::FrameLog::create(path)
        .map_err(|e| fail(Exit::CantCreate, format!("--frame-log {}: {e}", path.display())))?;
    Ok(Some(log))
}

/// GStreamer comes up, the encoder is chosen (remembered, or probed) and the pipeline's plugins
/// are loaded on a thread of their own while this one brings EGL up and compiles the scene (for
/// drawn frames, `egl`): neither needs the other until the frame path is planned. The caller says
/// the encoder's error, if any, first, as when they ran one after the other.
fn open_encoder_beside_egl(
    cfg: &Config,
    cuda: Option<crate::device::CudaIds>,
    egl: bool,
) -> (anyhow::Result<Chosen>, Option<anyhow::Result<Gpu>>) {
    thread::scope(|scope| {
        let encoder = thread::Builder::new().name("encoder-open".into()).spawn_scoped(scope, || {
            crate::gst_util::init()?;
            debug!("start-up: GStreamer up at {:.1} ms", crate::clock::startup_ms());
            let chosen = choose_encoder(cfg)?;
            factory::preload(chosen.backend, cfg.gpu);
            Ok(chosen)
        });
        let gpu = egl.then(|| {
            let mut gpu = Gpu::open(cfg.egl_device, cuda)?;
            gpu.compile_scene(&cfg.render_settings()?.scene)?;
            Ok(gpu)
        });
        (join_encoder_thread(encoder), gpu)
    })
}

/// Where the frames will come from, decided before anything is built for them.
enum Planned {
    /// The agent's source, started now.
    Agent(Feed),
    /// Drawn on `gpu`: read back, or (`Plan::Cuda`) copied into CUDA memory.
    Drawn { gpu: Gpu, settings: RenderSettings, plan: Plan },
}

/// Starts the agent's source, or plans the frame path on `gpu` (opened here if the encoder thread
/// did not).
fn plan_frames(
    cfg: &Config,
    agent: Option<&AgentSource>,
    gpu: Option<anyhow::Result<Gpu>>,
    cuda: Option<crate::device::CudaIds>,
    backend: crate::encode::settings::Backend,
) -> anyhow::Result<Planned> {
    if let Some(agent) = agent {
        return Ok(Planned::Agent(start_source(cfg, agent)?));
    }
    let gpu = gpu.unwrap_or_else(|| Gpu::open(cfg.egl_device, cuda))?;
    let settings = cfg.render_settings()?;
    let takes_cuda = encoder_takes_cuda(cfg, backend);
    let facts = gpu.info.path_facts(cfg.gpu, takes_cuda, cfg.width, cfg.height);
    let plan::PathChoice { route, why: why_path } =
        plan::choose_path(cfg.path, cfg.convert, &facts).map_err(|e| fail(Exit::Unavailable, e.to_string()))?;
    match cuda.filter(|_| route == Route::ZeroCopy) {
        Some(c) => {
            info!("path: zero-copy ({why_path})");
            Ok(Planned::Drawn { gpu, settings, plan: Plan::Cuda { gpu: c.ordinal } })
        }
        None => {
            info!("path: {why_path}");
            let plan = readback_plan(cfg, &gpu, backend)?;
            Ok(Planned::Drawn { gpu, settings, plan })
        }
    }
}

/// The readback plan for `gpu`, logged with its reason.
fn readback_plan(cfg: &Config, gpu: &Gpu, backend: crate::encode::settings::Backend) -> anyhow::Result<Plan> {
    let (plan, why) =
        plan::choose(cfg.convert, gpu.info.software, &gpu.info.renderer, backend.raw_formats(), cfg.width, cfg.height)
            .map_err(|e| fail(Exit::Usage, e))?;
    info!("convert: {plan} ({why}); {} bytes read back per frame", plan.readback_bytes(cfg.width, cfg.height));
    Ok(plan)
}

/// The renderer compiles its shaders on this thread (its GL context is current here) while the
/// encoder's pipeline is built and set playing on another: the pipeline needs only the plan. A
/// renderer that fails is said first, as when they ran one after the other.
fn open_beside_renderer<'a>(
    cfg: &Config,
    gpu: Gpu,
    settings: &RenderSettings,
    plan: Plan,
    chosen: Chosen,
    tx: &Sender<Event>,
) -> anyhow::Result<(Frames, Session<'a>)> {
    thread::scope(|scope| {
        let input = FrameInput { input: encoder_input(plan), cuda_context: None };
        let encoder = thread::Builder::new()
            .name("encoder-open".into())
            .spawn_scoped(scope, move || Session::open(cfg, chosen, input, tx));
        let renderer = Renderer::new(gpu, settings, plan);
        let session = join_encoder_thread(encoder);
        let renderer = renderer?;
        Ok((Frames::Rendered { renderer: Box::new(renderer), plan }, session?))
    })
}

/// What a scoped "encoder-open" thread returned, with its spawn failing or its panic as errors.
fn join_encoder_thread<T>(
    spawned: std::io::Result<thread::ScopedJoinHandle<'_, anyhow::Result<T>>>,
) -> anyhow::Result<T> {
    match spawned {
        Ok(thread) => thread.join().unwrap_or_else(|_| Err(fail(Exit::Software, "the encoder thread panicked"))),
        Err(e) => Err(anyhow::Error::from(e).context("starting the encoder thread")),
    }
}

/// What the encoder is fed from rendered frames.
fn encoder_input(plan: Plan) -> Input {
    match plan {
        Plan::Gpu(f) => Input::Yuv(f),
        Plan::Cpu(f) => Input::Rgba(f),
        Plan::Cuda { .. } => Input::Cuda,
    }
}

/// With --stall-timeout: a watchdog that ends the stream when the frame loop or the encoder stalls.
fn spawn_watchdog(
    cfg: &Config,
    pulse: &Arc<Pulse>,
    stats: &Arc<SinkStats>,
    element: &str,
    outcome: &Sender<Outcome>,
) -> anyhow::Result<()> {
    let Some(timeout) = cfg.stall_timeout else { return Ok(()) };
    let sink_stats = stats.clone();
    let out = move || sink_stats.pulled.load(Ordering::Relaxed);
    let outcome = outcome.clone();
    let stalled = move |stage: String| {
        let _ = outcome.send(Outcome::Stalled(stage));
    };
    watchdog::spawn(pulse.clone(), out, timeout, element.to_string(), stalled)?;
    Ok(())
}

/// Runs the frame loop on the encoder session, rebuilding the encoder after its errors and
/// releasing it while nobody reads, until the loop stops for good.
fn run_sessions(
    cfg: &Config,
    lp: &mut Loop<'_>,
    frames: &mut Frames,
    session: &mut Session,
    source: &sink::Source,
) -> anyhow::Result<Stop> {
    loop {
        match lp.run(frames, session)? {
            Stop::Rebuild(why) => session.recover(cfg, &why, source)?,
            Stop::Release => {
                session.release(source);
                match lp.wait_for_reader(session.encoder())? {
                    Some(stop) => return Ok(stop),
                    None => session.reopen(cfg, source)?,
                }
            }
            stop => return Ok(stop),
        }
    }
}

/// Ends the stream as `stop` says: drains the encoder, or not, and says why the source ended.
fn finish(lp: &mut Loop<'_>, frames: &mut Frames, session: &Session, stop: anyhow::Result<Stop>) -> anyhow::Result<()> {
    let (encoder, element) = (session.encoder(), session.backend().element());
    match stop? {
        Stop::Finish { drain: true } => lp.drain(frames, encoder, element, LastFrame::Leave),
        Stop::Close => lp.drain(frames, encoder, element, LastFrame::Take),
        Stop::SourceEnded(end) => {
            let drained = lp.drain(frames, encoder, element, LastFrame::Leave);
            match end {
                SourceEnd::Finished(why) => {
                    info!("{why}");
                    drained
                }
                // Every whole frame is written first, then the error.
                SourceEnd::Failed(exit, why) => drained.and(Err(fail(exit, why))),
            }
        }
        Stop::Finish { drain: false } => Ok(()),
        Stop::ReaderGone => {
            info!("the reader closed the stream");
            Ok(())
        }
        Stop::Rebuild(_) | Stop::Release => {
            Err(fail(Exit::Software, "internal error: a pipeline rebuild escaped the frame loop"))
        }
    }
}

/// The zero-copy renderer; where it cannot be set up and the path was not asked for, the frames
/// are read back instead (EGL brought up again, without CUDA's device).
fn zero_copy_renderer(
    gpu: Gpu,
    cfg: &Config,
    cuda: Option<crate::device::CudaIds>,
    settings: &RenderSettings,
    plan: Plan,
    backend: crate::encode::settings::Backend,
) -> anyhow::Result<(Plan, Renderer)> {
    match Renderer::new(gpu, settings, plan) {
        Ok(r) => Ok((plan, r)),
        Err(e) if cfg.path == FramePath::ZeroCopy => Err(fail(Exit::Unavailable, format!("--path zero-copy: {e:#}"))),
        Err(e) => {
            warn!("path: zero-copy failed to set up ({e:#}); reading frames back instead");
            let gpu = Gpu::open(cfg.egl_device, cuda)?;
            let plan = readback_plan(cfg, &gpu, backend)?;
            Ok((plan, Renderer::new(gpu, settings, plan)?))
        }
    }
}

fn spawn_sink(
    cfg: &Config,
    destination: Destination,
    source: &Arc<sink::Source>,
    tx: &Sender<Event>,
    stop: &Arc<AtomicBool>,
    stats: &Arc<SinkStats>,
    timing: sink::FrameTiming,
) -> anyhow::Result<()> {
    let (source, stop, stats, tx) = (source.clone(), stop.clone(), stats.clone(), tx.clone());
    let payload = match cfg.mux {
        Mux::Raw => sink::Payload::AnnexB,
        Mux::Mpegts => sink::Payload::MpegTs,
    };
    let settings = DemandSettings { budget_aus: cfg.max_lag_frames(), keyframe_every: LAG_KEYFRAME_EVERY };
    thread::Builder::new().name("sink".into()).spawn(move || {
        let end = match destination {
            Destination::Served(server) => {
                let notes = tx.clone();
                let notify = std::sync::Arc::new(move |n: Note| {
                    let _ = notes.send(Event::Reader(n));
                });
                sink::rtsp_server::run_served(&source, server, &stop, &stats, notify, &timing)
            }
            Destination::Stdout(mut out) => sink::run_writer(&source, &mut out, &stop, &stats, payload, &timing),
            Destination::Rtsp(mut out) => {
                sink::run_writer(&source, &mut out, &stop, &stats, sink::Payload::AnnexB, &timing)
            }
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
