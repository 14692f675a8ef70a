//! `--output rtsp-listen:HOST:PORT/NAME`: an RTSP server of our own, as an IP camera serves one.
//! go2rtc (or ffplay, VLC, `agentcast latency --via`) pulls `rtsp://HOST:PORT/NAME` while someone
//! watches, and every client shares one encoder.
//!
//! - **Listening** is ours: a std `TcpListener` (so a port in use or an address that is not this
//!   machine's is an `agentcast:` line with exit 73, and port 0 is a free port we can report), whose
//!   connections are handed to GStreamer's RTSP server (`gst_rtsp_server_transfer_connection`) on a
//!   GLib main loop of its own.
//! - **One shared media** per viewing session: the first client's DESCRIBE builds
//!   `appsrc ! rtph264pay` ([`LAUNCH`]); the sink thread ([`run_served`]) hands it the normalised
//!   access units. While no media exists (nobody connected) the frame loop is told so
//!   ([`Note::Detached`]) and, with `--idle pause`, neither renders nor encodes. A media being built
//!   is [`Note::Attached`]: the next frame is an IDR with SPS+PPS in front, which the SDP is made
//!   from. Every client's PLAY asks for an IDR too, so every client starts at once.
//! - **Timing**: each access unit keeps the encoder's PTS (the frame clock), shifted onto the
//!   media's running time, so RTP timestamps are the frame clock's; rtph264pay marks each picture's
//!   last packet, and go2rtc never waits for the next frame.
//! - **A stalled client** never blocks the others or the agent: once its TCP connection and the
//!   server's backlog for it are full, its RTP is dropped (`drop-backlog`), whole packets at a time;
//!   it stays connected (and catches up at the next IDR it gets whole) until it closes or its
//!   connection fails.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{self as rtsp_server, gio, glib};
use log::{debug, info, warn};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::output::Listen;
use super::{FrameTiming, Note, Pull, Puller, SinkEnd, SinkStats, Source};
use crate::exit::{Exit, fail};

/// The media each viewing session gets: access units in, RTP out. `config-interval=-1` repeats
/// SPS/PPS with every IDR (they are in the stream already; this keeps a client that joined late
/// decodable), `aggregate-mode=zero-latency` sends each NAL as it comes.
pub const LAUNCH: &str = "( appsrc name=src is-live=true format=time do-timestamp=false block=false \
     max-bytes=8388608 ! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency )";
/// How often the accept thread looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(100);
/// How often the sink thread looks at the stop flag while no access unit arrives.
const POLL: gst::ClockTime = gst::ClockTime::from_mseconds(20);
/// PTS are put this far into the media's past, so encoder jitter never makes a sink wait.
const PTS_MARGIN: gst::ClockTime = gst::ClockTime::from_mseconds(200);

/// The caps of what the sink hands the media.
fn caps(fps: u32) -> gst::Caps {
    gst::Caps::builder("video/x-h264")
        .field("stream-format", "byte-stream")
        .field("alignment", "au")
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build()
}

/// What the server's callbacks and the sink thread share.
#[derive(Default)]
struct Shared {
    /// The current media's appsrc and its number; `None` while nobody is connected.
    media: Mutex<Option<(u64, gst_app::AppSrc)>>,
    medias: AtomicU64,
}

/// Binds the listening socket. A port in use or an address this machine does not have is exit 73,
/// naming the flag (preflight and start-up share it).
pub fn listen_on(listen: &Listen) -> anyhow::Result<TcpListener> {
    let shown = format!("--output rtsp-listen:{}/{}", listen.addr, listen.name);
    let listener = TcpListener::bind(listen.addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!("port {} is in use", listen.addr.port()),
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{} is not an address of this machine (use 0.0.0.0 or one it has)", listen.addr.ip())
            }
            _ => e.to_string(),
        };
        fail(Exit::CantCreate, format!("{shown}: cannot listen: {why}"))
    })?;
    listener.set_nonblocking(true).map_err(|e| fail(Exit::CantCreate, format!("{shown}: {e}")))?;
    Ok(listener)
}

/// An RTSP server bound to its address, not yet serving; see the module doc.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    name: String,
    fps: u32,
}

impl Server {
    /// Listens on `listen.addr` (port 0: a free port) and serves `/NAME` (`listen.name`, expanded).
    pub fn bind(listen: &Listen, fps: u32) -> anyhow::Result<Server> {
        crate::gst_util::init()?;
        let listener = listen_on(listen)?;
        let addr = listener.local_addr().unwrap_or(listen.addr);
        Ok(Server { listener, addr, name: listen.name.clone(), fps })
    }

    /// The address it listens on (the real port where 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `rtsp://ADDR:PORT/NAME`, as a client on this machine opens it.
    pub fn url(&self) -> String {
        format!("rtsp://{}/{}", self.addr, self.name)
    }
}

/// The server at work: its main loop and accept thread, stopped on drop.
struct Serving {
    main_loop: glib::MainLoop,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.main_loop.quit();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Ends a media still playing (its pipeline holds the appsrc).
        if let Some((_, src)) = self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = src.end_of_stream();
        }
    }
}

fn start(server: Server, notify: Arc<dyn Fn(Note) + Send + Sync>, stats: Arc<SinkStats>) -> anyhow::Result<Serving> {
    let shared = Arc::new(Shared::default());
    let rtsp = rtsp_server::RTSPServer::new();
    let factory = rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(LAUNCH);
    factory.set_shared(true);
    factory.set_latency(0);
    factory.set_suspend_mode(rtsp_server::RTSPSuspendMode::None);
    {
        let (shared, notify, caps) = (shared.clone(), notify.clone(), caps(server.fps));
        factory.connect_media_configure(move |_, media| {
            let Some(src) = media
                .element()
                .downcast_ref::<gst::Bin>()
                .and_then(|b| b.by_name("src"))
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            else {
                warn!("rtsp-listen: the media has no appsrc; this client gets no picture");
                return;
            };
            src.set_caps(Some(&caps));
            let n = shared.medias.fetch_add(1, Ordering::AcqRel) + 1;
            *shared.media.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, src));
            let (shared, detached) = (shared.clone(), notify.clone());
            media.connect_unprepared(move |_| {
                let mut media = shared.media.lock().unwrap_or_else(|p| p.into_inner());
                if media.as_ref().is_some_and(|(m, _)| *m == n) {
                    *media = None;
                    drop(media);
                    info!("rtsp-listen: the last client left; the stream idles");
                    detached(Note::Detached);
                }
            });
            info!("rtsp-listen: a client asked for the stream; starting it at an IDR");
            notify(Note::Attached);
        });
    }
    rtsp.mount_points()
        .ok_or_else(|| anyhow::anyhow!("the RTSP server has no mount points"))?
        .add_factory(&format!("/{}", server.name), factory);
    {
        let (notify, stats) = (notify.clone(), stats.clone());
        rtsp.connect_client_connected(move |_, client| {
            client.set_property("drop-backlog", true);
            let n = stats.clients.fetch_add(1, Ordering::AcqRel) + 1;
            stats.attaches.fetch_add(1, Ordering::Relaxed);
            debug!("rtsp-listen: client connected ({n} now)");
            // Every PLAY gets an IDR of its own: a client joining a stream already playing, and the
            // first one too, whose media's first IDR went into the SDP before it played (go2rtc
            // relays to its own viewers only what comes after their PLAY, and never asks for one).
            let notify = notify.clone();
            client.connect_play_request(move |_, _| notify(Note::NeedKeyframe));
            let stats = stats.clone();
            client.connect_closed(move |_| {
                let n = stats.clients.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
                debug!("rtsp-listen: client closed ({n} left)");
            });
        });
    }
    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let pool = rtsp.session_pool().ok_or_else(|| anyhow::anyhow!("the RTSP server has no session pool"))?;
    let watch = pool.create_watch(Some("rtsp-sessions"), glib::Priority::DEFAULT, |pool| {
        pool.cleanup();
        glib::ControlFlow::Continue
    });
    watch.attach(Some(&context));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    {
        let (main_loop, context) = (main_loop.clone(), context.clone());
        threads.push(std::thread::Builder::new().name("rtsp-server".into()).spawn(move || {
            let _ = context.with_thread_default(|| main_loop.run());
            drop(watch);
        })?);
    }
    let Server { listener, addr, name, .. } = server;
    {
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("rtsp-accept".into())
                .spawn(move || accept(listener, &rtsp, &context, &stop))?,
        );
    }
    info!("rtsp-listen: serving rtsp://{addr}/{name}; clients share one encoder");
    Ok(Serving { main_loop, stop, threads, shared })
}

/// Hands each connection to the RTSP server, on its main loop, until the stop flag.
fn accept(listener: TcpListener, rtsp: &rtsp_server::RTSPServer, context: &glib::MainContext, stop: &AtomicBool) {
    let timeout = PollTimeout::try_from(ACCEPT_POLL).unwrap_or(PollTimeout::ZERO);
    while !stop.load(Ordering::Acquire) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        while let Ok((stream, peer)) = listener.accept() {
            let _ = stream.set_nodelay(true);
            let _ = stream.set_nonblocking(true);
            let fd = OwnedFd::from(stream);
            let rtsp = rtsp.clone();
            // On the server's loop, so the client is attached to its context.
            context.invoke(move || {
                let handed = gio::Socket::from_fd(fd).map_err(|e| e.to_string()).and_then(|socket| {
                    rtsp.transfer_connection(socket, &peer.ip().to_string(), i32::from(peer.port()), None)
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = handed {
                    warn!("rtsp-listen: connection from {peer}: {e}");
                }
            });
        }
    }
}

/// Serves clients that come and go until EOS, the stop flag, or a failure; see the module doc.
pub fn run_served(
    source: &Source,
    server: Server,
    stop: &AtomicBool,
    stats: &Arc<SinkStats>,
    notify: Arc<dyn Fn(Note) + Send + Sync>,
    timing: &FrameTiming,
) -> SinkEnd {
    let serving = match start(server, notify, stats.clone()) {
        Ok(s) => s,
        Err(e) => return SinkEnd::Failed(e.context("starting the RTSP server")),
    };
    let mut puller = Puller::new(source);
    // The media the last access unit went to, and the offset of its PTS onto the media's time.
    let mut current: Option<(u64, Option<i128>)> = None;
    loop {
        if stop.load(Ordering::Acquire) {
            return SinkEnd::Stopped;
        }
        if puller.follow() {
            current = None; // the media continues at the new pipeline's first IDR
        }
        let pulled = match puller.pull(POLL, stats) {
            Ok(Pull::Sample(p)) => p,
            Ok(Pull::Empty | Pull::Idle) => continue,
            Ok(Pull::Eos) => return SinkEnd::Eos,
            Err(e) => return SinkEnd::Failed(e),
        };
        let info = puller.normalize(&pulled);
        if info.idr {
            stats.idr.fetch_add(1, Ordering::Relaxed);
        }
        let media = serving.shared.media.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((n, src)) = media else {
            stats.dropped_no_reader.fetch_add(1, Ordering::Relaxed);
            current = None;
            continue;
        };
        if current.is_none_or(|(m, _)| m != n) {
            // A new media (or the pipeline was rebuilt): it starts at an IDR.
            if !info.idr {
                stats.dropped_attach.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            current = Some((n, None));
        }
        let Some((_, offset)) = current.as_mut() else { continue };
        let mut out = gst::Buffer::from_slice(puller.au.clone());
        if let Some(pts) = pulled.pts() {
            let off = *offset.get_or_insert_with(|| {
                let now = src.current_running_time().unwrap_or(gst::ClockTime::ZERO);
                i128::from(now.nseconds()) - i128::from(PTS_MARGIN.nseconds()) - i128::from(pts.nseconds())
            });
            let t =
                gst::ClockTime::from_nseconds((i128::from(pts.nseconds()) + off).clamp(0, i128::from(u64::MAX)) as u64);
            let b = out.get_mut().expect("a new buffer is writable");
            b.set_pts(t);
            b.set_dts(t);
        }
        if !info.idr {
            out.get_mut().expect("a new buffer is writable").set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        match src.push_buffer(out) {
            Ok(_) => {
                if let Some(i) = timing.index_of(&pulled.sample) {
                    timing.timings.written(i, pulled.at, std::time::Instant::now());
                }
                stats.access_units.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(puller.au.len() as u64, Ordering::Relaxed);
            }
            // The media is being taken down (its last client left): the unprepared callback follows.
            Err(flow) => {
                debug!("rtsp-listen: the media took no more data ({flow:?})");
                stats.dropped_detach.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
