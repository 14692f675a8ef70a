//! agentcast under a real go2rtc, in every way go2rtc can get the stream: exec on stdout (raw
//! H.264 and `--mux mpegts`), exec publishing to go2rtc's RTSP server (`--output {output}`), a
//! FIFO read by `exec:cat`, and `tcp://`. Each test asks go2rtc for `/api/stream.mp4`, decodes what
//! it serves with ffmpeg, checks go2rtc's byte rules on its frames (one slice per picture, no B),
//! and checks that the producer go2rtc started is gone within 2 s after the viewer leaves.
//!
//! go2rtc comes from `AGENTCAST_TEST_GO2RTC` (scripts/test.sh points it at ../shared/bin/go2rtc
//! when that exists) or `PATH`. Without it each test says "skipped: no go2rtc" on stderr, except
//! under `CI=true`, where its absence fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::outputs::Producer;
use crate::stream_basics::slices_per_picture;
use crate::util::*;

/// How long one viewer watches (go2rtc's `duration` query).
const WATCH_S: u32 = 3;
/// How long the producer may take to leave after the viewer did.
const GONE_WITHIN: Duration = Duration::from_secs(2);
/// Bound on a whole `/api/stream.mp4` request (producer start-up included).
const REQUEST_LIMIT: Duration = Duration::from_secs(25);
/// The producer's picture: small, so five modes stay cheap on two cores.
const SIZE: [&str; 4] = ["--width", "640", "--height", "360"];

/// The go2rtc binary, or `None` (after saying so) when there is none and CI does not insist.
pub(crate) fn go2rtc_binary() -> Option<PathBuf> {
    let found = match std::env::var_os("AGENTCAST_TEST_GO2RTC").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "AGENTCAST_TEST_GO2RTC={} is not a file", p.display());
            Some(p)
        }
        None => std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("go2rtc")).find(|p| p.is_file())),
    };
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no go2rtc: set AGENTCAST_TEST_GO2RTC or put go2rtc on PATH (CI=true requires it)"
        );
        eprintln!("skipped: no go2rtc (set AGENTCAST_TEST_GO2RTC or put go2rtc on PATH)");
    }
    found
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A go2rtc with every listener on loopback, killed (with the producers it started) on drop.
pub(crate) struct Go2rtc {
    pub(crate) child: Proc,
    pub(crate) api: u16,
    log: PathBuf,
}

impl Go2rtc {
    pub(crate) fn start(bin: &Path, dir: &Path, streams: &[(&str, String)]) -> Go2rtc {
        Go2rtc::start_on(bin, dir, streams, [free_port(), free_port(), free_port()])
    }

    /// As [`Go2rtc::start`], on these API, RTSP and WebRTC ports.
    pub(crate) fn start_on(bin: &Path, dir: &Path, streams: &[(&str, String)], ports: [u16; 3]) -> Go2rtc {
        let [api, rtsp, webrtc] = ports;
        let mut yaml = format!(
            "api:\n  listen: \"127.0.0.1:{api}\"\nrtsp:\n  listen: \"127.0.0.1:{rtsp}\"\n\
             webrtc:\n  listen: \"127.0.0.1:{webrtc}\"\n  ice_servers: []\n\
             rtmp:\n  listen: \"\"\nsrtp:\n  listen: \"\"\n\
             log:\n  level: info\n  exec: debug\n  streams: debug\nstreams:\n"
        );
        for (name, source) in streams {
            yaml.push_str(&format!("  {name}: \"{source}\"\n"));
        }
        let config = write(dir, "go2rtc.yaml", yaml.as_bytes());
        let log = dir.join("go2rtc.log");
        let mut cmd = Command::new(bin);
        cmd.arg("-config").arg(&config).current_dir(dir).stdin(Stdio::null());
        cmd.stdout(std::fs::File::create(&log).unwrap()).stderr(Stdio::null());
        // Producers inherit go2rtc's environment: keep the test runner's AGENTCAST_* out of it.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AGENTCAST_") || k == "RUST_LOG") {
            cmd.env_remove(k);
        }
        let child = cmd.spawn_within(Duration::from_secs(300));
        let g = Go2rtc { child, api, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", api)).is_err() {
            assert!(Instant::now() < deadline, "go2rtc's API did not come up:\n{}", g.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The API listens before the streams are loaded from the config: a viewer that comes first
        // gets a 404 (seen on a loaded machine). Wait until the last one is listed.
        if let Some((last, _)) = streams.last() {
            let listed = format!("\"{last}\"");
            while !String::from_utf8_lossy(&http_get(api, "/api/streams", Duration::from_secs(10)).1).contains(&listed)
            {
                assert!(Instant::now() < deadline, "go2rtc does not list {last}:\n{}", g.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        g
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/stream.mp4?src=NAME&duration=WATCH_S` as one viewer: the MP4 bytes.
    pub(crate) fn watch_mp4(&self, name: &str) -> Vec<u8> {
        let path = format!("/api/stream.mp4?src={name}&duration={WATCH_S}");
        let (status, body) = http_get(self.api, &path, REQUEST_LIMIT);
        assert!(status.contains(" 200"), "GET {path}: {status}\n{}", self.log());
        body
    }
}

impl Go2rtc {
    /// go2rtc's RTSP port, from the config it was started with.
    pub(crate) fn rtsp_port(&self, dir: &Path) -> u16 {
        let config = std::fs::read_to_string(dir.join("go2rtc.yaml")).unwrap();
        let line = config.lines().skip_while(|l| *l != "rtsp:").nth(1).unwrap();
        line.trim().trim_start_matches("listen: \"127.0.0.1:").trim_end_matches('"').parse().unwrap()
    }
}

impl Drop for Go2rtc {
    fn drop(&mut self) {
        for pid in children_of(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET (the server closes the connection at the end of the body), bounded in time.
pub(crate) fn http_get(port: u16, path: &str, limit: Duration) -> (String, Vec<u8>) {
    let deadline = Instant::now() + limit;
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to go2rtc's API");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "GET {path}: no end of the response within {limit:?}");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("GET {path}: {e}"),
        }
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP header");
    let status = String::from_utf8_lossy(&got[..end]).lines().next().unwrap_or_default().to_string();
    (status, got[end + 4..].to_vec())
}

/// Pids whose parent is `parent` (from /proc), zombies excluded.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
            fields.len() > 1 && fields[0] != "Z" && fields[1] == parent.to_string()
        })
        .collect()
}

/// go2rtc's child whose command line contains `marker`.
fn child_with(go2rtc: &Go2rtc, marker: &str) -> Option<u32> {
    children_of(go2rtc.child.id()).into_iter().find(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker)
    })
}

/// Watches `name` once while finding go2rtc's producer process by `marker`; returns the MP4 and,
/// after the viewer left, how long the producer took to go (asserting it went within 2 s).
fn watch_and_see_producer_go(g: &Go2rtc, name: &str, marker: &str) -> Vec<u8> {
    assert_eq!(child_with(g, marker), None, "go2rtc starts the producer only for a viewer");
    let viewer = std::thread::scope(|scope| {
        let viewer = scope.spawn(|| g.watch_mp4(name));
        let deadline = Instant::now() + REQUEST_LIMIT;
        let mut pid = None;
        while pid.is_none() && !viewer.is_finished() && Instant::now() < deadline {
            pid = child_with(g, marker);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mp4 = viewer.join().expect("the viewer thread");
        (mp4, pid)
    });
    let (mp4, pid) = viewer;
    let left = Instant::now();
    let pid = pid.unwrap_or_else(|| panic!("never saw go2rtc's producer ({marker}) run:\n{}", g.log()));
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && children_of(g.child.id()).contains(&pid) {
        assert!(
            left.elapsed() < GONE_WITHIN,
            "producer {pid} ({marker}) still runs {GONE_WITHIN:?} after the viewer left"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("{name}: producer gone {:.0} ms after the viewer left", left.elapsed().as_secs_f64() * 1000.0);
    mp4
}

/// How go2rtc timed the frames it served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// By the encoder's timestamps (RTP, MPEG-TS PTS): every frame's DTS is later than the last.
    Encoder,
    /// By arrival (raw H.264): frames that arrive close together may share a DTS; counted, not judged.
    Arrival,
}

/// The MP4 go2rtc served: decodes without errors, has pictures, none of them B, and every picture
/// is one slice (go2rtc's framing rules, checked on the frames it passed on). With encoder timing,
/// the timestamps strictly increase.
pub(crate) fn assert_mp4_plays(dir: &Path, name: &str, mp4: &[u8], timing: Timing) {
    assert!(mp4.len() > 1000, "{name}: {} bytes of MP4", mp4.len());
    let path = write(dir, &format!("{name}.mp4"), mp4);
    let out = tool("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]).output_within(DEADLINE);
    // ffmpeg's null muxer complains about repeated DTS (counted below); anything else is a decode error.
    let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("non monotonically increasing dts") && !l.contains("Last message repeated"))
        .map(str::to_string)
        .collect();
    assert!(out.status.success() && errors.is_empty(), "{name}: ffmpeg: {errors:#?}");
    let probe = |entries: &str| -> Vec<String> {
        let out = tool("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "csv=p=0"])
            .arg(&path)
            .output_within(DEADLINE);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').next().unwrap_or_default().trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let types = probe("frame=pict_type");
    assert!(types.len() >= 20, "{name}: only {} pictures in {WATCH_S} s: {types:?}", types.len());
    assert!(types.iter().all(|t| t == "I" || t == "P"), "{name}: picture types {types:?}");
    let dts: Vec<f64> = probe("packet=dts_time").iter().filter_map(|d| d.parse().ok()).collect();
    let mut steps: Vec<f64> = dts.windows(2).map(|w| (w[1] - w[0]) * 1000.0).collect();
    if timing == Timing::Encoder {
        assert!(steps.iter().all(|&ms| ms > 0.0), "{name}: timestamps do not increase: {dts:?}");
    }
    steps.sort_by(f64::total_cmp);
    let step = |q: f64| steps.get(((steps.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
    let annexb = dir.join(format!("{name}.h264"));
    let out = tool("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&path)
        .args(["-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264"])
        .arg(&annexb)
        .output_within(DEADLINE);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    // Access units with no slice (parameter sets alone) are not pictures.
    let slices: Vec<usize> =
        slices_per_picture(&std::fs::read(&annexb).unwrap()).into_iter().filter(|&n| n > 0).collect();
    assert!(slices.len() >= types.len() && slices.iter().all(|&n| n == 1), "{name}: slices per picture {slices:?}");
    eprintln!(
        "{name}: {} pictures ({} I), one slice each, decoded cleanly; frame steps min/p50/max {:.1}/{:.1}/{:.1} ms ({timing:?} timing)",
        types.len(),
        types.iter().filter(|t| *t == "I").count(),
        step(0.0),
        step(0.5),
        step(1.0),
    );
}

/// The exec producer's own log lines (go2rtc logs its stderr at debug level) say it stopped on
/// SIGTERM and finished cleanly: its final stats, and no `agentcast:` error line (which every
/// non-zero exit prints).
fn assert_exec_exited_cleanly(g: &Go2rtc, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !g.log().contains("\"stats\":\"final\"") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = g.log();
    assert!(log.contains("signal 15: finishing"), "{marker}: go2rtc did not stop it with SIGTERM:\n{log}");
    assert!(log.contains("\"stats\":\"final\""), "{marker}: no final stats line:\n{log}");
    assert!(!log.contains("agentcast: "), "{marker}: an error line:\n{log}");
}

fn exec_source(marker: &str, extra: &[&str]) -> String {
    let mut words = vec![BIN, "--stream", marker];
    words.extend_from_slice(&SIZE);
    words.extend_from_slice(extra);
    format!("exec:{}#killsignal=15#killtimeout=5", words.join(" "))
}

fn exec_mode(stream: &str, extra: &[&str], timing: Timing) {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let marker = format!("e2e-{stream}-{}", std::process::id());
    let g = Go2rtc::start(&bin, dir.path(), &[(stream, exec_source(&marker, extra))]);
    let mp4 = watch_and_see_producer_go(&g, stream, &marker);
    assert_mp4_plays(dir.path(), stream, &mp4, timing);
    assert_exec_exited_cleanly(&g, &marker);
}

#[test]
fn go2rtc_exec_stdout_plays_and_stops() {
    exec_mode("exec_raw", &[], Timing::Arrival);
}

#[test]
fn go2rtc_exec_mpegts_plays_and_stops() {
    exec_mode("exec_ts", &["--mux", "mpegts"], Timing::Encoder);
}

#[test]
fn go2rtc_exec_rtsp_output_plays_and_stops() {
    exec_mode("exec_rtsp", &["--output", "{output}"], Timing::Encoder);
}

/// A producer that runs on its own (FIFO, TCP), its encoder up.
fn standing_producer(dir: &Path, output: &str) -> Producer {
    let mut producer = Producer::start(dir, &[&["--output", output][..], &SIZE].concat());
    producer.wait_for_log("pipeline:", Duration::from_secs(20));
    producer
}

#[test]
fn go2rtc_fifo_plays_and_cat_stops() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let fifo = dir.path().join(format!("agent-{}.h264", std::process::id()));
    let mut producer = standing_producer(dir.path(), &format!("fifo:{}", fifo.display()));
    let source = format!("exec:/usr/bin/cat {}#killsignal=15#killtimeout=2", fifo.display());
    let g = Go2rtc::start(&bin, dir.path(), &[("fifo", source)]);
    let mp4 = watch_and_see_producer_go(&g, "fifo", &fifo.display().to_string());
    producer.wait_for_log("reader left", GONE_WITHIN);
    assert_mp4_plays(dir.path(), "fifo", &mp4, Timing::Arrival);
    producer.terminate();
}

#[test]
fn go2rtc_tcp_plays_and_disconnects() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let port = free_port();
    let mut producer = standing_producer(dir.path(), &format!("tcp:127.0.0.1:{port}"));
    let g = Go2rtc::start(&bin, dir.path(), &[("tcp", format!("tcp://127.0.0.1:{port}"))]);
    let mp4 = g.watch_mp4("tcp");
    // go2rtc has no process for tcp://: the producer sees its reader go instead.
    producer.wait_for_log("reader left", GONE_WITHIN);
    assert_mp4_plays(dir.path(), "tcp", &mp4, Timing::Arrival);
    producer.terminate();
}

/// `agentcast latency --via` reads go2rtc's RTSP re-stream of a producer that go2rtc runs with
/// `--frame-log`, and matches every decoded picture with its render time by stamp.
#[test]
fn latency_via_go2rtc_reads_every_stamp() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let log = dir.path().join("frames.log");
    let log_arg = log.display().to_string();
    let marker = format!("e2e-via-{}", std::process::id());
    let source = exec_source(&marker, &["--output", "{output}", "--frame-log", &log_arg]);
    let g = Go2rtc::start(&bin, dir.path(), &[("via", source)]);
    let url = format!("rtsp://127.0.0.1:{}/via", g.rtsp_port(dir.path()));
    let mut child = agentcast(&["latency", "--via", &url, "--frame-log", &log_arg, "--frames", "45", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_within(DEADLINE);
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status}: {}\n{}", stderr_of(&mut child), g.log());
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["frames"]["decoded"], 45, "{r}");
    let read = r["frames"]["stamps_read"].as_u64().unwrap();
    assert_eq!(read + r["frames"]["misreads"].as_u64().unwrap(), 45, "{r}");
    assert!(read >= 40, "RTSP starts at an IDR: nearly every stamp reads: {r}");
    let l = &r["latency_ms"]["render_to_viewer_decoded"];
    assert!(l["p50"].as_f64().unwrap() > 0.0 && l["max"].as_f64() >= l["p50"].as_f64(), "{r}");
    eprintln!("via: render -> viewer decoded p50 {} ms, p99 {} ms ({read} stamps)", l["p50"], l["p99"]);
    // Bad usage is one line: --via needs the producer's frame log.
    let out = agentcast(&["latency", "--via", &url]).output_within(DEADLINE);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--output rtsp://` straight to a go2rtc (no exec): a path go2rtc does not know is refused (exit
/// 69, one line naming the URL); publishing to a stream it has works until go2rtc goes away, which
/// ends agentcast with exit 0 at once.
#[test]
fn rtsp_output_refused_path_exits_69_and_server_gone_exits_0() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let mut g = Go2rtc::start(&bin, dir.path(), &[("published", String::new())]);
    let base = format!("rtsp://127.0.0.1:{}", g.rtsp_port(dir.path()));

    let url = format!("{base}/nosuch");
    let mut refused = spawn(&[&["--output", url.as_str(), "--frames", "150"][..], &SIZE].concat());
    let status = wait_bounded(&mut refused, Duration::from_secs(30));
    let err = stderr_of(&mut refused);
    assert_eq!(status.code(), Some(69), "{err}");
    // The reason first on stderr (go2rtc shows a failed producer's first 512 bytes), no GLib noise.
    let line = err.lines().next().unwrap_or_default();
    assert!(line.starts_with(&format!("agentcast: --output {url}: the RTSP server refused the stream")), "{err}");
    assert!(!err.contains("GLib"), "{err}");

    let url = format!("{base}/published");
    // A GOP longer than the run: the only IDRs are the first and the one SIGUSR1 asks for.
    let mut producer = Producer::start(dir.path(), &[&["--output", url.as_str(), "--gop", "900"][..], &SIZE].concat());
    producer.wait_for_log("the server accepted the stream", Duration::from_secs(30));
    // The SPS/PPS are in the SDP (go2rtc shows the producer's SDP in its API).
    let (status, body) = http_get(g.api, "/api/streams?src=published", Duration::from_secs(10));
    let info = String::from_utf8_lossy(&body);
    assert!(status.contains(" 200") && info.contains("sprop-parameter-sets=Z"), "{status}\n{info}");
    // SIGUSR1 asks for an IDR on this output too.
    std::thread::sleep(Duration::from_millis(300));
    signal(&producer.child, "USR1");
    producer.wait_for_log("keyframe requested: forcing an IDR", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let _ = g.child.kill();
    let _ = g.child.wait();
    let gone = Instant::now();
    let status = wait_bounded(&mut producer.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", producer.log());
    assert!(producer.log().contains("the server closed the session"), "{}", producer.log());
    assert!(producer.log().contains(" (2 IDR, "), "the first IDR and the requested one:\n{}", producer.log());
    eprintln!("rtsp: exit 0 {:.0} ms after go2rtc died", gone.elapsed().as_secs_f64() * 1000.0);
}

/// An RTSP server that is not there: exit 69 at start-up, naming the URL (no go2rtc needed).
#[test]
fn rtsp_output_to_nothing_exits_69_at_once() {
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/agent");
    let started = Instant::now();
    let out = run(&["--output", &url, "--frames", "30"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.lines().next().unwrap_or_default().starts_with(&format!("agentcast: --output {url}: cannot reach")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

/// A producer that fails at start-up gets its whole reason to the go2rtc viewer, every time: 50
/// start-ups of each of two bad producers (a missing `--shader`, which fails in a few ms, and an
/// `--encoder-opt` no encoder has, which loads GStreamer first) behind `/api/stream.mp4`, four at a
/// time. go2rtc answers a viewer with the first 512 bytes of the producer's stderr as they stand when
/// its stdout ends, copied by a goroutine that a fast failure used to beat (GO2RTC.md, "Lifecycle").
/// Each start-up has a stream name of its own, so go2rtc's restart back-off never delays one.
#[test]
fn go2rtc_viewer_gets_every_start_up_error_whole() {
    let Some(bin) = go2rtc_binary() else { return };
    const RUNS: usize = 50;
    const WORKERS: usize = 4;
    let producers: [(&str, &[&str]); 2] =
        [("shader", &["--shader", "/nonexistent/scene.glsl"]), ("opt", &["--encoder-opt", "nosuchprop=1"])];
    // The whole reason: the `agentcast:` line the same invocation prints when run here.
    let reasons: Vec<String> = producers
        .iter()
        .map(|(_, args)| {
            let out = run(args);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            let line = err.lines().next().unwrap_or_default().to_string();
            assert!(!out.status.success() && line.starts_with("agentcast: "), "{args:?}: {err}");
            format!("{line}\n")
        })
        .collect();
    let dir = tempdir();
    let mut streams = Vec::new();
    for run in 0..RUNS {
        for (kind, args) in &producers {
            streams.push((format!("{kind}{run}"), format!("exec:{BIN} {}", args.join(" "))));
        }
    }
    let config: Vec<(&str, String)> = streams.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    let g = Go2rtc::start(&bin, dir.path(), &config);
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let answers: Vec<(usize, String, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut got = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, _)) = streams.get(i) else { break got };
                        let path = format!("/api/stream.mp4?src={name}");
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let (status, body) = loop {
                            let (status, body) = http_get(g.api, &path, REQUEST_LIMIT);
                            let body = String::from_utf8_lossy(&body).to_string();
                            // go2rtc's API listens before its exec module is registered.
                            if !body.contains("unsupported scheme: exec:") || Instant::now() > deadline {
                                break (status, body);
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        };
                        got.push((i, status, body));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a viewer thread")).collect()
    });
    assert_eq!(answers.len(), streams.len());
    let missed: Vec<String> = answers
        .iter()
        .filter(|(i, _, body)| !body.contains(&reasons[i % producers.len()]))
        .map(|(i, status, body)| format!("{}: {status}: {body:?}", streams[*i].0))
        .collect();
    eprintln!(
        "{} of {} start-up errors reached the viewer whole ({:.1} s, {WORKERS} viewers at a time)",
        answers.len() - missed.len(),
        answers.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(missed.is_empty(), "{} answers lack the whole reason:\n{}", missed.len(), missed.join("\n"));
}
