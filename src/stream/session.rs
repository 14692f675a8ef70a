//! The encoder session: the running pipeline with its bus watcher and NVENC lease, how it is chosen
//! (by opening candidates, under slot leases), and what happens when it fails at run time
//! ([`fallback`], a pure policy) or is released while nobody reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use log::{info, warn};

use super::Event;
use crate::config::Config;
use crate::encode::cache::{self, ProbeCache, Remembered};
use crate::encode::pipeline::{Encoder, Input, Setup};
use crate::encode::select;
use crate::encode::settings::Backend;
use crate::exit::{Exit, fail};
use crate::settings::{Mux, OnBusy};
use crate::sink;
use crate::slots::{Lease, LockDir};

/// How long an encoder may take to encode its test frame before it counts as not opening.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every encoder built for this stream is fed.
#[derive(Clone, Copy)]
pub(super) struct FrameInput<'a> {
    pub input: Input,
    /// The zero-copy frames' `gst.cuda.context`.
    pub cuda_context: Option<&'a gst::Context>,
}

/// What to do after the current encoder failed at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Rebuild the pipeline once on the same backend.
    Rebuild,
    /// Give up on this backend and open the next candidate after it.
    Demote,
    /// Exit for a restart: on stdout a backend change would change the SPS in the middle of
    /// go2rtc's session, which it cannot follow.
    Exit,
}

/// The run-time fallback policy. `failures`: failures of the current backend since it was built or
/// chosen, this one included; `demand_paged`: FIFO/TCP readers, who start a new session (and so
/// may see a new SPS) when they reattach.
pub fn fallback(failures: u32, demand_paged: bool) -> Fallback {
    match (failures, demand_paged) {
        (0 | 1, _) => Fallback::Rebuild,
        (_, false) => Fallback::Exit,
        (_, true) => Fallback::Demote,
    }
}

/// A running encoder pipeline with its bus watcher and NVENC lease.
struct Live {
    encoder: Encoder,
    backend: Backend,
    lease: Option<Lease>,
    bus_stop: Arc<AtomicBool>,
    /// Its backend is the per-machine cache's answer: a failure of this pipeline forgets the entry.
    cached: bool,
}

/// The encoder [`choose_encoder`] chose: its backend, the NVENC slot it holds (which must live as
/// long as the encoder), and whether the choice is the per-machine cache's (`encode::cache`),
/// which the pipeline opening it checks.
pub(crate) struct Chosen {
    pub backend: Backend,
    pub lease: Option<Lease>,
    pub cached: bool,
}

impl Live {
    /// Stops the pipeline and its bus watcher (the lease stays with `self` until dropped).
    fn retire(&self) {
        self.bus_stop.store(true, Ordering::Release);
        self.encoder.stop();
    }
}

/// The encoder of a stream, across rebuilds, demotions and releases.
pub(super) struct Session<'a> {
    live: Live,
    frames: FrameInput<'a>,
    /// Pipelines built so far (the testing aid fails the first few).
    builds: u32,
    /// Failures of the current backend since it was built or chosen.
    failures: u32,
    /// The current pipeline's generation; errors from older ones are ignored.
    pub generation: u64,
    tx: Sender<Event>,
}

impl<'a> Session<'a> {
    /// Builds and starts the pipeline of the chosen encoder. A cached choice that does not open is
    /// forgotten, and the candidates are probed again.
    pub fn open(
        cfg: &Config,
        chosen: Chosen,
        frames: FrameInput<'a>,
        tx: &Sender<Event>,
    ) -> anyhow::Result<Session<'a>> {
        let mut builds = 0;
        let live = match build(cfg, chosen.backend, chosen.lease, frames, 0, tx, &mut builds) {
            Ok(live) => Live { cached: chosen.cached, ..live },
            Err(e) if chosen.cached => {
                warn!(
                    "encoder: the remembered choice {} did not open ({e:#}); probing the candidates again",
                    chosen.backend.element()
                );
                forget_choice(cfg);
                // The entry is gone, so this probes, and remembers what it finds.
                let again = open_backend(cfg, &select::candidates(cfg.encoder), true)?;
                build(cfg, again.backend, again.lease, frames, 0, tx, &mut builds)?
            }
            Err(e) => return Err(e),
        };
        Ok(Session { live, frames, builds, failures: 0, generation: 0, tx: tx.clone() })
    }

    pub fn encoder(&self) -> &Encoder {
        &self.live.encoder
    }

    pub fn backend(&self) -> Backend {
        self.live.backend
    }

    /// The NVENC slot held, if any.
    pub fn slot(&self) -> Option<u32> {
        self.live.lease.as_ref().map(|l| l.index)
    }

    /// Stops the pipeline (at the end of the stream).
    pub fn retire(&self) {
        self.live.retire();
    }

    /// Nobody reads: stops the encoder and gives its NVENC slot back until a reader attaches.
    pub fn release(&mut self, sink: &sink::Source) {
        // Ten agents can share eight NVENC sessions as long as at most eight are watched.
        match self.live.lease.as_ref() {
            Some(l) => info!("no reader: stopping the encoder and releasing NVENC slot {} until one attaches", l.index),
            None => info!("no reader: stopping the encoder until one attaches (it chooses again then)"),
        }
        sink.begin_swap();
        self.live.retire();
        drop(self.live.lease.take());
    }

    /// A reader attached after [`Session::release`]: chooses again (a slot freed meanwhile goes to
    /// whoever is watched next) and starts a new pipeline.
    pub fn reopen(&mut self, cfg: &Config, sink: &sink::Source) -> anyhow::Result<()> {
        let generation = self.generation + 1;
        let chosen = choose_encoder(cfg).map_err(|e| e.context("reopening the encoder for a new reader"))?;
        let cached = chosen.cached;
        self.live = build(cfg, chosen.backend, chosen.lease, self.frames, generation, &self.tx, &mut self.builds)
            .map_err(|e| e.context("reopening the encoder for a new reader"))?;
        self.live.cached = cached;
        self.failures = 0;
        // A new reader session starts here anyway, so a different backend is fine.
        self.adopt(sink, generation, false);
        info!("encoder: {} reopened for the new reader (pipeline generation {generation})", self.live.backend);
        Ok(())
    }

    /// The pipeline failed (`why`): rebuilds or demotes it as [`fallback`] says, or returns the
    /// error that ends the stream.
    pub fn recover(&mut self, cfg: &Config, why: &str, sink: &sink::Source) -> anyhow::Result<()> {
        self.failures += 1;
        if self.live.cached {
            // The cache's answer failed on its first pipeline: the next start probes again.
            warn!("encoder: {} was the remembered choice; forgetting it", self.live.backend.element());
            forget_choice(cfg);
            self.live.cached = false;
        }
        let current = self.live.backend;
        let policy = fallback(self.failures, cfg.output.demand_paged());
        if policy == Fallback::Exit {
            return Err(fail(
                Exit::Software,
                format!(
                    "encoder {} failed again ({why}); changing backend would change the SPS mid-stream, which go2rtc cannot follow: exiting for a restart",
                    current.element()
                ),
            ));
        }
        let generation = self.generation + 1;
        sink.begin_swap();
        self.live.retire();
        let rebuilt = match policy {
            Fallback::Rebuild => {
                warn!("encoder {} failed ({why}); rebuilding the pipeline once on the same backend", current.element());
                let lease = self.live.lease.take();
                build(cfg, current, lease, self.frames, generation, &self.tx, &mut self.builds)
            }
            _ => {
                let later: Vec<Backend> =
                    select::candidates(cfg.encoder).into_iter().skip_while(|b| *b != current).skip(1).collect();
                warn!("encoder {} failed again ({why}); demoting to the next backend", current.element());
                drop(self.live.lease.take());
                open_backend(cfg, &later, false)
                    .and_then(|c| build(cfg, c.backend, c.lease, self.frames, generation, &self.tx, &mut self.builds))
            }
        };
        self.live = rebuilt.map_err(|e| e.context(format!("after encoder {} failed: {why}", current.element())))?;
        let changed = self.live.backend != current;
        if changed {
            self.failures = 0;
        }
        self.adopt(sink, generation, changed);
        info!("encoder: now {} (pipeline generation {generation})", self.live.backend);
        Ok(())
    }

    /// Makes the new pipeline the current one: the sink's source (`new_sps`: another backend, so
    /// FIFO/TCP readers start a new session) and an IDR to start on.
    fn adopt(&mut self, sink: &sink::Source, generation: u64, new_sps: bool) {
        self.generation = generation;
        sink.replace(self.live.encoder.appsink(), new_sps);
        self.live.encoder.force_keyframe();
    }
}

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
    let fail_after = cfg.faults.fail_after_for(*builds);
    *builds += 1;
    let setup = Setup {
        width: cfg.width,
        height: cfg.height,
        fps: cfg.fps,
        input: frames.input,
        backend,
        settings: cfg.encoder_settings,
        options: &cfg.encoder_opts,
        stall_after: cfg.faults.stall_after,
        fail_after,
        mpegts: cfg.mux == Mux::Mpegts,
        gpu: cfg.gpu,
        cuda_context: frames.cuda_context,
    };
    let encoder = Encoder::new(&setup)?;
    encoder.start()?;
    log::debug!("start-up: {} pipeline playing at {:.1} ms", backend.element(), crate::clock::startup_ms());
    let bus_stop = Arc::new(AtomicBool::new(false));
    spawn_bus_watch(encoder.bus(), tx.clone(), bus_stop.clone(), generation)?;
    Ok(Live { encoder, backend, lease, bus_stop, cached: false })
}

fn spawn_bus_watch(bus: gst::Bus, tx: Sender<Event>, stop: Arc<AtomicBool>, generation: u64) -> anyhow::Result<()> {
    thread::Builder::new().name("bus".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let types = [gst::MessageType::Error, gst::MessageType::Warning];
            let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &types) else { continue };
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let _ = tx.send(Event::Pipeline(generation, crate::gst_util::bus_error_line(&msg, e)));
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

/// Whether `backend` takes frames in CUDA memory: NVENC does; a CPU encoder only through
/// cudadownload under the `--debug-cuda-download` testing aid.
pub(super) fn encoder_takes_cuda(cfg: &Config, backend: Backend) -> Result<(), String> {
    if backend.is_nvenc() {
        return Ok(());
    }
    if cfg.faults.cuda_download && crate::gst_util::element_installed("cudadownload") {
        warn!("testing aid: zero-copy frames may reach {} through cudadownload", backend.element());
        return Ok(());
    }
    Err(format!("the encoder is {}, which takes frames in host memory only (no NVENC opened)", backend.element()))
}

/// Chooses the encoder by opening candidates in order, or takes the choice this machine made last
/// time for the same inputs (`encode::cache`). NVENC candidates (and the testing aid's element) open
/// only while holding a session slot when `--nvenc-sessions` is set; the returned lease must live as
/// long as the encoder.
pub(crate) fn choose_encoder(cfg: &Config) -> anyhow::Result<Chosen> {
    let chosen = open_backend(cfg, &select::candidates(cfg.encoder), true)?;
    log::debug!("start-up: encoder chosen at {:.1} ms", crate::clock::startup_ms());
    Ok(chosen)
}

/// The per-machine cache entry for `cfg`'s choice among `candidates`; none while a testing aid that
/// changes how encoders open or fail is on.
fn choice_cache(cfg: &Config, candidates: &[Backend]) -> Option<ProbeCache> {
    let f = &cfg.faults;
    if f.stall_after.is_some() || f.fail_after.is_some() || f.lease_element.is_some() || f.cuda_download {
        return None;
    }
    let inputs = cache::Inputs {
        choice: cfg.encoder,
        candidates,
        gpu: cfg.gpu,
        settings: &cfg.encoder_settings,
        width: cfg.width,
        height: cfg.height,
    };
    Some(ProbeCache::new(&cfg.leases.dir, &inputs))
}

fn forget_choice(cfg: &Config) {
    if let Some(cache) = choice_cache(cfg, &select::candidates(cfg.encoder)) {
        cache.forget();
    }
}

/// The cached choice, when there is one for these inputs and (for an NVENC backend under
/// `--nvenc-sessions`) a slot is free now; otherwise the caller probes.
fn remembered(cfg: &Config, cache: &ProbeCache, candidates: &[Backend]) -> Option<Chosen> {
    let hit = cache.lookup().filter(|h| candidates.contains(&h.backend))?;
    let lease = if cfg.leases.sessions > 0 && hit.backend.is_nvenc() {
        let dir = LockDir::open(&cfg.leases.dir, cfg.leases.sessions).ok()?;
        let lease = dir.try_acquire(&cfg.stream).ok()??;
        info!("encoder: {} holds NVENC slot {} ({})", hit.backend.element(), lease.index, lease.path.display());
        Some(lease)
    } else {
        None
    };
    for why in &hit.skipped {
        info!("encoder: skipped {why} (remembered)");
    }
    info!("encoder: {} (remembered from {}; its pipeline checks that it opens)", hit.backend, cache.path().display());
    Some(Chosen { backend: hit.backend, lease, cached: true })
}

/// Opens the first of `candidates` that works (see [`choose_encoder`]); `use_cache`: take the
/// machine's remembered choice when there is one, and remember what the probe chose.
fn open_backend(cfg: &Config, candidates: &[Backend], use_cache: bool) -> anyhow::Result<Chosen> {
    let cache = if use_cache { choice_cache(cfg, candidates) } else { None };
    if let Some(chosen) = cache.as_ref().and_then(|c| remembered(cfg, c, candidates)) {
        return Ok(chosen);
    }
    let policy = &cfg.leases;
    if let Some(e) = &cfg.faults.lease_element {
        warn!("testing aid: {e} takes NVENC slot leases as if it were NVENC");
    }
    let lease_bound = |b: Backend| policy.sessions > 0 && (b.is_nvenc() || cfg.faults.leases(b.element()));
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
        let opened =
            crate::encode::probe::probe(b, cfg.gpu, &cfg.encoder_settings, cfg.width, cfg.height, PROBE_TIMEOUT);
        match &opened {
            Ok(()) => lease = held,
            // NVENC's own session limit counts as busy too.
            Err(why) if lease_bound(b) && why.contains("OpenEncodeSessionEx") && policy.on_busy == OnBusy::Fail => {
                abort = Some(fail(
                    Exit::TempFail,
                    format!("{}: NVENC refused a session: {why} (--on-busy fail)", b.element()),
                ));
            }
            Err(_) => {}
        }
        opened
    };
    let chosen = select::choose_from(candidates, cfg.encoder, crate::gst_util::element_installed, probe);
    if let Some(e) = abort {
        return Err(e);
    }
    let (backend, skipped) = chosen.map_err(|e| fail(Exit::Unavailable, e))?;
    for why in &skipped {
        info!("encoder: skipped {why}");
    }
    info!("encoder: {backend} (opened with a test frame)");
    if let Some(cache) = &cache {
        cache.store(&Remembered { backend, skipped });
    }
    Ok(Chosen { backend, lease, cached: false })
}

/// One attempt at a slot under the `--on-busy` policy: `Ok(None)` means "fall back".
fn take_slot(dir: &LockDir, stream: &str, policy: &crate::config::LeasePolicy) -> anyhow::Result<Option<Lease>> {
    let io = |e: std::io::Error| fail(Exit::CantCreate, format!("--lock-dir {}: {e}", dir.path().display()));
    if let Some(l) = dir.try_acquire(stream).map_err(io)? {
        return Ok(Some(l));
    }
    let busy = format!("all {} NVENC slots in {} are busy", policy.sessions, dir.path().display());
    match policy.on_busy {
        OnBusy::Fallback => Ok(None),
        OnBusy::Fail => Err(fail(Exit::TempFail, format!("{busy} (--on-busy fail)"))),
        OnBusy::Wait => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_rebuilds_then_stdout_exits_and_demand_paged_demotes() {
        assert_eq!(fallback(1, false), Fallback::Rebuild);
        assert_eq!(fallback(1, true), Fallback::Rebuild);
        assert_eq!(fallback(2, false), Fallback::Exit);
        assert_eq!(fallback(2, true), Fallback::Demote);
        assert_eq!(fallback(7, true), Fallback::Demote);
    }
}
