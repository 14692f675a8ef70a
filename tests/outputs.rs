//! FIFO and TCP outputs: readers that come, stall and go, with real processes (`cat`) and real
//! decoders.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// Cuts a capture taken by a reader that was killed at an arbitrary moment back to its last whole
/// access unit (h264parse starts every access unit with an AUD). agentcast never cuts a unit; the
/// killed reader does.
fn whole_units(capture: &[u8]) -> &[u8] {
    let aud = [0u8, 0, 0, 1, 0x09];
    let last = capture.windows(5).rposition(|w| w == aud).unwrap_or(0);
    &capture[..last]
}

/// The checks every reader's capture must pass: go2rtc's first bytes, clean decode, `check` OK.
fn assert_capture_ok(dir: &Path, name: &str, capture: &[u8]) {
    assert!(capture.len() > 5, "{name}: empty capture");
    assert_eq!(&capture[..4], &[0, 0, 0, 1], "{name}: must start with a 4-byte start code");
    assert!(matches!(capture[4], 0x09 | 0x67), "{name}: first NAL header 0x{:02x}, want AUD or SPS", capture[4]);
    let path = write(dir, name, whole_units(capture));
    assert_eq!(decode_errors(&path), "", "{name}: ffmpeg reported errors");
    let out = run(&["check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stdout));
}

/// A producer with stderr captured to a file, so its logs can be read while it runs.
pub(crate) struct Producer {
    pub(crate) child: Proc,
    log: PathBuf,
}

impl Producer {
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Producer {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("producer-{n}.log"));
        let child = agentcast(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn_within(DEADLINE);
        Producer { child, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub(crate) fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agentcast exited ({status}) before logging {needle:?}:\n{}", self.log());
            }
            assert!(start.elapsed() < limit, "no {needle:?} in the log after {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU seconds used so far (utime + stime from /proc).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends SIGTERM and returns how long the exit took; asserts exit 0.
    pub(crate) fn terminate(&mut self) -> Duration {
        signal(&self.child, "TERM");
        let start = Instant::now();
        let status = wait_bounded(&mut self.child, Duration::from_secs(10));
        let took = start.elapsed();
        assert_eq!(status.code(), Some(0), "log:\n{}", self.log());
        took
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cat FIFO` with its output collected on a thread.
struct Cat {
    child: Proc,
    got: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Cat {
    fn start(fifo: &Path) -> Cat {
        let mut child = Command::new("cat").arg(fifo).stdout(Stdio::piped()).spawn_within(DEADLINE);
        let mut out = child.stdout.take().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 65536];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Cat { child, got, reader: Some(reader) }
    }

    fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// Waits until `cat` has read at least `bytes`.
    fn wait_for(&self, bytes: usize, limit: Duration) {
        let start = Instant::now();
        while self.got.lock().unwrap().len() < bytes {
            assert!(start.elapsed() < limit, "cat read only {} bytes in {limit:?}", self.got.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills `cat` and returns what it had read.
    fn finish(mut self) -> Vec<u8> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// A TCP reader whose receive buffer is small from the start (set before connecting), so a stall
/// shows up at the producer instead of in megabytes of kernel buffers.
fn connect_small_buffer(port: u16) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &32768).unwrap();
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    TcpStream::from(fd)
}

/// Reads from a TCP reader until `bytes` have arrived.
fn read_at_least(stream: &mut TcpStream, bytes: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while buf.len() < bytes {
        let n = stream.read(&mut chunk).expect("reading from agentcast");
        assert!(n > 0, "agentcast closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// From the final JSON stats line: (frames rendered, late-skipped, lag drops).
/// The render loop was never held up by the stalled reader, judged from its 1 s stats lines
/// (`--stats-interval 1`) rather than from how many frames a quiet machine would render: a loop
/// blocked by a 3 s stall skips about 90 frame slots at once when it resumes (`skipped.late`, counted
/// between two stats lines), while a busy machine only makes it late by a few slots at a time.
/// Returns the most slots skipped between two stats lines.
fn assert_loop_never_blocked(log: &str, fps: u64) -> u64 {
    let lines = stats_lines(log.as_bytes());
    let late: Vec<u64> = lines.iter().map(|l| l["skipped"]["late"].as_u64().unwrap_or(0)).collect();
    let rendered: Vec<u64> = lines.iter().map(|l| l["frames"]["rendered"].as_u64().unwrap_or(0)).collect();
    assert!(lines.len() >= 4, "too few stats lines to judge the loop by:\n{log}");
    let most = late.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        most < 2 * fps,
        "the render loop skipped {most} frame slots at once (about {:.1} s): a stall held it up:\n{log}",
        most as f64 / fps as f64
    );
    assert!(rendered.windows(2).all(|w| w[1] > w[0]), "an interval rendered nothing: {rendered:?}");
    most
}

fn done_stats(log: &str) -> (u64, u64, u64) {
    let last = final_stats(log.as_bytes());
    let n = |a: &str, b: &str| last[a][b].as_u64().unwrap_or_else(|| panic!("no {a}.{b} in {last}"));
    (n("frames", "rendered"), n("skipped", "late"), n("dropped", "lag"))
}

#[test]
fn fifo_twenty_readers_each_start_clean_and_decode() {
    let dir = tempdir();
    let fifo = dir.path().join("agent.h264");
    let mut producer = Producer::start(dir.path(), &["--output", &format!("fifo:{}", fifo.display())]);
    producer.wait_for_log("created (mode 0600)", Duration::from_secs(10));
    for i in 0..20 {
        let cat = Cat::start(&fifo);
        // Read the IDR and a few frames (about 16 KB each at 4 Mbit/s).
        cat.wait_for(100_000, Duration::from_secs(10));
        let capture = cat.finish();
        assert_capture_ok(dir.path(), &format!("cycle{i}.h264"), &capture);
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = producer.terminate();
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    assert!(!fifo.exists(), "the FIFO we created must be removed on exit");
    let log = producer.log();
    assert_eq!(log.matches("reader attached").count(), 20, "{log}");
}

#[test]
fn fifo_stalled_reader_loses_whole_units_and_recovers_at_an_idr() {
    let dir = tempdir();
    let fifo = dir.path().join("agent.h264");
    // 8 Mbit/s so the stall outlasts the 1 MiB pipe buffer and the 300 ms queue.
    let output = format!("fifo:{}", fifo.display());
    let args = ["--output", &output, "--bitrate", "8000", "--max-lag", "300", "--stats-interval", "1"];
    let mut producer = Producer::start(dir.path(), &args);
    producer.wait_for_log("created (mode 0600)", Duration::from_secs(10));
    let cat = Cat::start(&fifo);
    producer.wait_for_log("first bytes to the reader", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1000));
    let rss_before = producer.rss_kib();
    cat.signal("STOP");
    std::thread::sleep(Duration::from_secs(3));
    let rss_stalled = producer.rss_kib();
    cat.signal("CONT");
    std::thread::sleep(Duration::from_millis(1500));
    let took = producer.terminate();
    let capture = cat.finish();
    let log = producer.log();

    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    assert!(rss_stalled < rss_before + 30 * 1024, "RSS grew from {rss_before} to {rss_stalled} KiB during the stall");
    let (rendered, late, lag_drops) = done_stats(&log);
    assert!(lag_drops > 0, "a 3 s stall should drop frames:\n{log}");
    let most = assert_loop_never_blocked(&log, 30);
    eprintln!("stall: {rendered} rendered, {late} late slots in all, at most {most} between stats lines");
    assert_capture_ok(dir.path(), "stalled.h264", &capture);
    // Frames were dropped in whole units: the stamps only ever increase, with a gap at the stall.
    let path = write(dir.path(), "stamps.h264", whole_units(&capture));
    let stamps: Vec<u32> =
        decode_luma(&path, 1280, 720).iter().map(|f| agentcast::stamp::decode(f, 1280, 1280, 720).unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "stamps not increasing: {stamps:?}");
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(gap > 10, "expected a gap where frames were dropped, largest step {gap}");
    eprintln!("stall: {lag_drops} AUs dropped, largest stamp gap {gap}, rss {rss_before} -> {rss_stalled} KiB");
}

#[test]
fn fifo_idle_pause_costs_almost_no_cpu() {
    let dir = tempdir();
    let fifo = dir.path().join("agent.h264");
    let mut producer = Producer::start(dir.path(), &["--output", &format!("fifo:{}", fifo.display())]);
    producer.wait_for_log("pipeline:", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let before = producer.cpu_seconds();
    std::thread::sleep(Duration::from_secs(5));
    let used = producer.cpu_seconds() - before;
    eprintln!("idle: {used:.2} CPU s over 5 s");
    assert!(used < 0.25, "{used:.2} CPU seconds over 5 s with no reader");
    let took = producer.terminate();
    assert!(took < Duration::from_secs(1), "SIGTERM while waiting took {took:?}");
}

#[test]
fn fifo_path_safety() {
    let dir = tempdir();
    // A regular file is refused and left as it was.
    let file = write(dir.path(), "file.h264", b"precious");
    let out = run(&["--output", &format!("fifo:{}", file.display()), "--frames", "1"]);
    assert_eq!(out.status.code(), Some(73), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("regular file"));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    // A symlink is refused, even one pointing at a FIFO.
    let target = dir.path().join("real.fifo");
    assert!(Command::new("mkfifo").arg(&target).output_within(DEADLINE).status.success());
    let link = dir.path().join("link.h264");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run(&["--output", &format!("fifo:{}", link.display()), "--frames", "1"]);
    assert_eq!(out.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&out.stderr).contains("symlink"));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    // A missing directory is a clear error.
    let out = run(&["--output", "fifo:/nonexistent-dir/agent.h264", "--frames", "1"]);
    assert_eq!(out.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory /nonexistent-dir does not exist"));
    // A FIFO we create has mode 0600 and goes away on exit; one that was there stays.
    let fifo = dir.path().join("new.h264");
    let mut producer = Producer::start(dir.path(), &["--output", &format!("fifo:{}", fifo.display())]);
    producer.wait_for_log("created (mode 0600)", Duration::from_secs(10));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&fifo).unwrap().permissions().mode() & 0o777, 0o600);
    producer.terminate();
    assert!(!fifo.exists());
    let mut producer = Producer::start(dir.path(), &["--output", &format!("fifo:{}", target.display())]);
    producer.wait_for_log("using the existing FIFO", Duration::from_secs(10));
    producer.terminate();
    assert!(target.exists(), "a FIFO we did not create must stay");
}

#[test]
fn tcp_readers_attach_stall_and_detach() {
    let dir = tempdir();
    let port = free_port();
    let output = format!("tcp:127.0.0.1:{port}");
    let args = ["--output", &output, "--bitrate", "8000", "--max-lag", "300", "--stats-interval", "1"];
    let mut producer = Producer::start(dir.path(), &args);
    producer.wait_for_log("listening for one reader", Duration::from_secs(10));
    // Captures are checked after the producer exits, so decoding them does not compete with it.
    let captures: Vec<Vec<u8>> =
        (0..20).map(|_| read_at_least(&mut TcpStream::connect(("127.0.0.1", port)).unwrap(), 120_000)).collect();
    // A second client while one is attached is turned away.
    let mut first = connect_small_buffer(port);
    let mut capture = read_at_least(&mut first, 1000);
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(second.read(&mut buf).unwrap_or(0), 0, "the second reader should be closed at once");
    producer.wait_for_log("rejected a second reader", Duration::from_secs(5));
    // A stall: stop reading for 3 s, then read on for about 2 s of stream.
    std::thread::sleep(Duration::from_secs(3));
    capture.extend(read_at_least(&mut first, 2_000_000));
    let took = producer.terminate();
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    for (i, capture) in captures.iter().enumerate() {
        assert_capture_ok(dir.path(), &format!("tcp{i}.h264"), capture);
    }
    let (_, late, lag_drops) = done_stats(&producer.log());
    assert!(lag_drops > 0, "a 3 s stall should drop frames:\n{}", producer.log());
    let most = assert_loop_never_blocked(&producer.log(), 30);
    eprintln!("tcp stall: {late} late slots in all, at most {most} between stats lines");
    // Whole access units on both sides of the drop, and a recovery IDR after it.
    assert_capture_ok(dir.path(), "stalled.h264", &capture);
    let path = write(dir.path(), "stamps.h264", whole_units(&capture));
    let stamps: Vec<u32> =
        decode_luma(&path, 1280, 720).iter().filter_map(|f| agentcast::stamp::decode(f, 1280, 1280, 720)).collect();
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "stamps not increasing: {stamps:?}");
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(gap > 10, "expected a gap where frames were dropped, largest step {gap}");
}

#[test]
fn tcp_refuses_remote_addresses_without_allow_remote() {
    let out = run(&["--output", "tcp:0.0.0.0:9", "--frames", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[test]
fn sigterm_while_streaming_to_a_fifo_exits_within_a_second() {
    let dir = tempdir();
    let fifo = dir.path().join("agent.h264");
    let mut producer = Producer::start(dir.path(), &["--output", &format!("fifo:{}", fifo.display())]);
    producer.wait_for_log("created (mode 0600)", Duration::from_secs(10));
    let cat = Cat::start(&fifo);
    producer.wait_for_log("first bytes to the reader", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let took = producer.terminate();
    assert!(took < Duration::from_secs(1), "SIGTERM while streaming took {took:?}");
    let capture = cat.finish();
    assert_capture_ok(dir.path(), "streaming.h264", &capture);
}

/// A stalled reader costs a stop at most the writer's stop timeout (700 ms, for the access unit
/// being written), over the same stop with a reader that reads, measured first on this machine as it
/// is now (on a quiet one the stalled stop is well under 1 s; a busy one slows both alike).
#[test]
fn sigterm_with_a_stalled_fifo_reader_exits_within_a_second() {
    let dir = tempdir();
    let stop = |stall: bool| {
        let fifo = dir.path().join(format!("agent-{stall}.h264"));
        let args = ["--output", &format!("fifo:{}", fifo.display()), "--bitrate", "8000"];
        let mut producer = Producer::start(dir.path(), &args);
        producer.wait_for_log("created (mode 0600)", Duration::from_secs(10));
        let cat = Cat::start(&fifo);
        producer.wait_for_log("first bytes to the reader", Duration::from_secs(10));
        if stall {
            cat.signal("STOP");
        }
        std::thread::sleep(Duration::from_secs(2));
        let took = producer.terminate();
        cat.signal("CONT");
        cat.finish();
        took
    };
    let reading = stop(false);
    let stalled = stop(true);
    eprintln!("SIGTERM -> exit: {reading:?} with a reader that reads, {stalled:?} with a stalled one");
    let bound = reading + Duration::from_millis(700 + 300);
    assert!(stalled < bound, "SIGTERM with a stalled reader took {stalled:?} (with a reading one {reading:?})");
}
