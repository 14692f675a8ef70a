//! `--source shm:NAME`: the Python writer (examples/shm_writer.py) against the ring reader, first
//! through the library (`source::shm::spawn` into a `Latest`), then through the binary, with the
//! output decoded by ffmpeg. Frames are flat colours whose colour encodes the frame number
//! (`colour_of` in the writer), so a decoded picture names the frame it came from, and a torn frame
//! would show two colours.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentcast::frame::PixFmt;
use agentcast::source::live::{Latest, Overrun, SourceEnd, Taken};
use agentcast::source::shm;

use crate::util::*;

const LEVELS: [u8; 6] = [0, 51, 102, 153, 204, 255];

/// A Python 3 with numpy: `python3`, or Debian's own where `python3` is another install.
fn python() -> Command {
    for candidate in ["python3", "/usr/bin/python3"] {
        let exists = if candidate.starts_with('/') { Path::new(candidate).is_file() } else { on_path(candidate) };
        let ok =
            exists && Command::new(candidate).args(["-c", "import numpy"]).output_within(DEADLINE).status.success();
        if ok {
            return Command::new(candidate);
        }
    }
    panic!("no python3 with numpy; run scripts/setup.sh (python3-numpy)");
}

/// Runs a command to its end with stdout and stderr captured, killing it past `limit`.
fn output_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    cmd.output_within(limit)
}

/// A ring name of its own under /dev/shm, removed at the end.
struct RingName(String);

impl RingName {
    fn new(tag: &str) -> RingName {
        let name = format!("agentcast-test-{}-{tag}", std::process::id());
        let _ = std::fs::remove_file(Path::new("/dev/shm").join(&name));
        RingName(name)
    }
    fn path(&self) -> PathBuf {
        Path::new("/dev/shm").join(&self.0)
    }
}

impl Drop for RingName {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// A child process that is killed when the test ends, whichever way it ends (and under the suite's
/// deadline, [`Proc`]).
struct Killed(Proc);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the Python writer: `--flat-colors` frames of `width` x `height` rgb24.
fn writer(ring: &RingName, width: u32, height: u32, fps: u32, frames: u32, extra: &[&str]) -> Killed {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shm_writer.py");
    let child = python()
        .arg(script)
        .arg(&ring.0)
        .args(["--width", &width.to_string(), "--height", &height.to_string()])
        .args(["--fps", &fps.to_string(), "--frames", &frames.to_string(), "--flat-colors"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_within(DEADLINE);
    Killed(child)
}

/// Waits (bounded) until the writer has published its first frame.
fn wait_for_first_frame(ring: &RingName, writer: &mut Killed) {
    let start = Instant::now();
    loop {
        let latest = std::fs::read(ring.path()).ok().filter(|b| b.len() >= 112).map(|b| {
            u64::from_le_bytes(b[shm::off::LATEST as usize..shm::off::LATEST as usize + 8].try_into().unwrap())
        });
        if latest.is_some_and(|l| l >> 8 >= 1) {
            return;
        }
        if let Ok(Some(status)) = writer.0.try_wait() {
            panic!("the writer exited ({status}) before its first frame:\n{}", stderr_of(&mut writer.0));
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no frame in /dev/shm/{} within 10 s", ring.0);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The frame number (mod 216) a flat picture shows, if the picture is flat: every sampled pixel
/// within 24 of the picture's mean in each channel, and the top and bottom thirds within 12 of
/// each other. A half-painted frame (two colours at least 51 apart in one channel) fails both.
fn flat_number(rgb: &[u8], width: usize, height: usize) -> Result<u32, String> {
    let mean = |rows: std::ops::Range<usize>| -> [f64; 3] {
        let mut sum = [0f64; 3];
        let mut n = 0f64;
        for y in rows.step_by(2) {
            for x in (0..width).step_by(2) {
                for (c, s) in sum.iter_mut().enumerate() {
                    *s += rgb[(y * width + x) * 3 + c] as f64;
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    };
    let all = mean(0..height);
    let (top, bottom) = (mean(0..height / 3), mean(height * 2 / 3..height));
    for c in 0..3 {
        if (top[c] - bottom[c]).abs() > 12.0 {
            return Err(format!("top {top:.0?} and bottom {bottom:.0?} differ"));
        }
    }
    for y in (0..height).step_by(4) {
        for x in (0..width).step_by(4) {
            for c in 0..3 {
                let v = rgb[(y * width + x) * 3 + c] as f64;
                if (v - all[c]).abs() > 24.0 {
                    return Err(format!("pixel ({x},{y}) channel {c} is {v}, the picture's mean {:.0}", all[c]));
                }
            }
        }
    }
    let digit = |v: f64| LEVELS.iter().enumerate().min_by_key(|(_, l)| (v - **l as f64).abs() as u32).unwrap().0 as u32;
    Ok(digit(all[0]) + 6 * digit(all[1]) + 36 * digit(all[2]))
}

// Through the library: the Python writer's bytes as the reader sees them.

/// Takes frames from `latest` at `fps` for `duration`, like the frame loop does.
fn take_at(latest: &Latest, fps: f64, duration: Duration) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut frames = Vec::new();
    let mut tick = 0u32;
    while start.elapsed() < duration {
        tick += 1;
        let deadline = start + Duration::from_secs_f64(tick as f64 / fps);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        match latest.take() {
            Taken::Frame(f) => {
                frames.push(f.data.clone());
                latest.recycle(f.data);
            }
            Taken::Ended(end) => panic!("the source ended: {end:?}"),
            Taken::Timeout => {}
        }
    }
    frames
}

#[test]
fn reader_takes_whole_frames_from_the_python_writer_and_the_newest_wins() {
    let (w, h) = (320u32, 240u32);
    let ring = RingName::new("lib120");
    let mut py = writer(&ring, w, h, 120, 1200, &[]);
    wait_for_first_frame(&ring, &mut py);
    let latest = Arc::new(Latest::new(Overrun::Replace));
    let reader = shm::spawn(&ring.0, w, h, PixFmt::Rgb24, latest.clone(), Some(Duration::from_secs(5))).unwrap();
    let frames = take_at(&latest, 30.0, Duration::from_secs(2));
    latest.close();
    reader.thread.join().unwrap();
    let numbers: Vec<u32> =
        frames.iter().map(|f| flat_number(f, w as usize, h as usize).unwrap_or_else(|e| panic!("{e}"))).collect();
    let c = &reader.counters;
    let (taken, torn, cpu_ms) =
        (c.taken.load(Ordering::Relaxed), c.torn.load(Ordering::Relaxed), c.cpu_ns.load(Ordering::Relaxed) / 1_000_000);
    eprintln!(
        "120 fps writer, 30 fps taker: {} taken by the loop, {taken} read, {} superseded, {torn} torn, reader CPU {cpu_ms} ms in 2 s",
        frames.len(),
        latest.superseded()
    );
    assert!(frames.len() >= 50, "only {} frames in 2 s at 30 fps", frames.len());
    // About four writer frames per tick: the others were superseded, and the numbers advance.
    assert!(latest.superseded() >= frames.len() as u64, "superseded {}", latest.superseded());
    let steps: Vec<u32> = numbers.windows(2).map(|p| (p[1] + 216 - p[0]) % 216).collect();
    let median = {
        let mut s = steps.clone();
        s.sort();
        s[s.len() / 2]
    };
    assert!((3..=5).contains(&median), "frame number steps {steps:?}");
}

#[test]
fn reader_never_takes_the_half_frame_of_a_writer_killed_mid_frame() {
    let (w, h) = (320u32, 240u32);
    let ring = RingName::new("libdie");
    // One slot: the dying writer paints half of frame 30 over frame 29, the one `latest` names,
    // about a second after it starts.
    let mut py = writer(&ring, w, h, 30, 100, &["--slots", "1", "--die-mid-frame", "30", "--keep"]);
    wait_for_first_frame(&ring, &mut py);
    let latest = Arc::new(Latest::new(Overrun::Replace));
    let reader = shm::spawn(&ring.0, w, h, PixFmt::Rgb24, latest.clone(), Some(Duration::from_secs(5))).unwrap();
    let frames = take_at(&latest, 30.0, Duration::from_secs(2));
    let status = wait_bounded(&mut py.0, Duration::from_secs(10));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "the writer should die by SIGKILL");
    latest.close();
    reader.thread.join().unwrap();
    let numbers: Vec<u32> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| flat_number(f, w as usize, h as usize).unwrap_or_else(|e| panic!("frame {i} is torn: {e}")))
        .collect();
    let torn = reader.counters.torn.load(Ordering::Relaxed);
    eprintln!("frames taken while the writer lived: {numbers:?}; {torn} torn copies dropped");
    assert_eq!(numbers.last(), Some(&29), "the last whole frame is 29");
    assert!(!numbers.contains(&30), "the half-written frame 30 was offered");
    assert!(numbers.len() >= 10, "the reader followed the writer before it died");
    // A reader that comes after the death finds `latest` naming slot 0, now odd and half painted
    // with frame 30: it must take nothing.
    let late = Arc::new(Latest::new(Overrun::Replace));
    let reader = shm::spawn(&ring.0, w, h, PixFmt::Rgb24, late.clone(), Some(Duration::from_secs(5))).unwrap();
    let frames = take_at(&late, 30.0, Duration::from_millis(500));
    late.close();
    reader.thread.join().unwrap();
    let busy = reader.counters.busy.load(Ordering::Relaxed);
    eprintln!("a reader after the death: {} frames, {busy} polls found the slot odd", frames.len());
    assert!(frames.is_empty(), "{} frames offered from a slot with an odd sequence", frames.len());
    assert!(busy >= 20, "the reader should have kept seeing an odd sequence ({busy} busy polls)");
}

/// The reader thread's CPU share (copies included), its polls, the frames taken and the mean time
/// from the writer finishing a frame to the reader having copied it (ms), with a 30 fps writer of
/// `width` x `height` rgb24 frames, taken at 30 fps for 2 s.
fn reader_cpu(tag: &str, width: u32, height: u32) -> (f64, u64, usize, f64) {
    let ring = RingName::new(tag);
    let mut py = writer(&ring, width, height, 30, 300, &[]);
    wait_for_first_frame(&ring, &mut py);
    let latest = Arc::new(Latest::new(Overrun::Replace));
    let reader =
        shm::spawn(&ring.0, width, height, PixFmt::Rgb24, latest.clone(), Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let frames = take_at(&latest, 30.0, Duration::from_secs(2));
    latest.close();
    reader.thread.join().unwrap();
    let c = &reader.counters;
    let cpu = c.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9 / start.elapsed().as_secs_f64() * 100.0;
    let delay = c.delay_ns.load(Ordering::Relaxed) as f64 / 1e6 / c.taken.load(Ordering::Relaxed).max(1) as f64;
    (cpu, c.polls.load(Ordering::Relaxed), frames.len(), delay)
}

#[test]
fn reader_polling_costs_little_cpu_at_30_fps() {
    let (tiny, tiny_polls, _, tiny_delay) = reader_cpu("cpu64", 64, 48);
    let (hd, hd_polls, frames, hd_delay) = reader_cpu("cpu720", 1280, 720);
    eprintln!(
        "reader thread CPU at 30 fps: 64x48 {tiny:.2}% of a core ({tiny_polls} polls in 2 s, the polling alone; \
         frames copied {tiny_delay:.2} ms after the writer finished them, mean), \
         1280x720 rgb24 {hd:.2}% ({hd_polls} polls, copies included; {hd_delay:.2} ms)"
    );
    assert!(frames >= 40, "{frames} frames in 2 s");
    // Not a timing assert: a sanity bound ten times above what it measures on a busy 2-core box.
    assert!(hd < 50.0 && tiny < 20.0, "reader thread {tiny:.1}% / {hd:.1}% of a core");
}

#[test]
fn reader_ends_cleanly_when_the_writer_closes_the_ring() {
    let ring = RingName::new("libclose");
    let mut py = writer(&ring, 64, 48, 100, 20, &["--keep"]);
    wait_for_first_frame(&ring, &mut py);
    let latest = Arc::new(Latest::new(Overrun::Replace));
    let reader = shm::spawn(&ring.0, 64, 48, PixFmt::Rgb24, latest.clone(), Some(Duration::from_secs(5))).unwrap();
    assert!(wait_bounded(&mut py.0, Duration::from_secs(10)).success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = None;
    loop {
        match latest.wait(deadline) {
            Taken::Frame(f) => last = Some(flat_number(&f.data, 64, 48).unwrap()),
            Taken::Ended(SourceEnd::Finished(why)) => {
                assert!(why.contains("closed"), "{why}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(last, Some(20), "the last frame the writer wrote is taken before the end");
    reader.thread.join().unwrap();
}

// Through the binary: `agentcast --source shm:NAME`.

fn stats(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("--stats-file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats JSON: {e}\n{text}"))
}

/// Runs agentcast on the ring for `frames` frames (bounded), returns (stream, stats JSON).
fn stream_ring(ring: &RingName, width: u32, height: u32, frames: u32) -> (Vec<u8>, serde_json::Value) {
    let dir = tempdir();
    let stats_file = dir.path().join("stats.json");
    let source = format!("shm:{}", ring.0);
    let (w, h, n) = (width.to_string(), height.to_string(), frames.to_string());
    let out = output_bounded(
        agentcast(&["--source", &source, "--width", &w, "--height", &h, "--pix-fmt", "rgb24"]).args([
            "--no-stamp",
            "--frames",
            &n,
            "--stats-file",
            stats_file.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agentcast --source {source} failed with {}:\n{err}", out.status);
    (out.stdout, stats(&stats_file))
}

fn decoded_numbers(buf: &[u8], width: u32, height: u32) -> Vec<u32> {
    let dir = tempdir();
    let path = write(dir.path(), "out.h264", buf);
    decode_rgb(&path, width, height)
        .iter()
        .enumerate()
        .map(|(i, f)| {
            flat_number(f, width as usize, height as usize).unwrap_or_else(|e| panic!("decoded picture {i}: {e}"))
        })
        .collect()
}

#[test]
fn a_120_fps_writer_gives_a_30_fps_stream_with_superseded_drops() {
    let (w, h) = (320, 240);
    let ring = RingName::new("cli120");
    let mut py = writer(&ring, w, h, 120, 120 * 20, &[]);
    wait_for_first_frame(&ring, &mut py);
    let (buf, stats) = stream_ring(&ring, w, h, 60);
    let numbers = decoded_numbers(&buf, w, h);
    assert_eq!(numbers.len(), 60, "--frames 60 pictures");
    let superseded =
        stats["dropped"]["superseded"].as_u64().unwrap_or_else(|| panic!("no dropped.superseded in {stats}"));
    eprintln!("120 fps into 30 fps: superseded {superseded}, numbers {numbers:?}");
    assert!(superseded >= 60, "about three of every four frames should be superseded, got {superseded}");
    // The ring reader's own counters: every frame it took was received by the frame loop.
    let shm = &stats["shm"];
    assert_eq!(shm["taken"], stats["frames"]["received"], "{stats}");
    assert!(shm["torn"].is_u64() && shm["missed"].is_u64() && shm["busy_polls"].is_u64(), "{stats}");
    let advancing = numbers.windows(2).filter(|p| p[0] != p[1]).count();
    assert!(advancing >= 50, "the pictures should follow the writer: {numbers:?}");
}

#[test]
fn a_5_fps_writer_gives_a_30_fps_stream_with_repeats() {
    let (w, h) = (320, 240);
    let ring = RingName::new("cli5");
    let mut py = writer(&ring, w, h, 5, 100, &[]);
    wait_for_first_frame(&ring, &mut py);
    let (buf, stats) = stream_ring(&ring, w, h, 60);
    let numbers = decoded_numbers(&buf, w, h);
    assert_eq!(numbers.len(), 60);
    let repeated = stats["repeated"].as_u64().unwrap_or_else(|| panic!("no repeated in {stats}"));
    eprintln!("5 fps into 30 fps: repeated {repeated}, numbers {numbers:?}");
    assert!(repeated >= 40, "about five of every six pictures should be repeats, got {repeated}");
    let changes = numbers.windows(2).filter(|p| p[0] != p[1]).count();
    assert!((5..=15).contains(&changes), "2 s at 5 fps is about 10 new frames, saw {changes}: {numbers:?}");
}

#[test]
fn a_writer_killed_mid_frame_is_never_encoded_torn() {
    let (w, h) = (320, 240);
    let ring = RingName::new("clidie");
    // agentcast first, waiting for the ring; the writer dies 3 s in (time for agentcast to start on
    // a busy machine), halfway through frame 90, in the only slot, over frame 89. The stream goes
    // on repeating frame 89.
    let dir = tempdir();
    let source = format!("shm:{}", ring.0);
    let agent =
        {
            let source = source.clone();
            std::thread::spawn(move || {
                output_bounded(
                    agentcast(&["--source", &source, "--width", "320", "--height", "240", "--pix-fmt", "rgb24"])
                        .args(["--no-stamp", "--frames", "120"]),
                    Duration::from_secs(30),
                )
            })
        };
    let mut py = writer(&ring, w, h, 30, 1000, &["--slots", "1", "--die-mid-frame", "90", "--keep"]);
    let died = wait_bounded(&mut py.0, Duration::from_secs(15));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&died), Some(9));
    let out = agent.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agentcast failed with {}:\n{err}", out.status);
    let buf = out.stdout;
    let path = write(dir.path(), "out.h264", &buf);
    let pictures = decode_rgb(&path, w, h);
    assert_eq!(pictures.len(), 120);
    let numbers: Vec<u32> = pictures
        .iter()
        .enumerate()
        .map(|(i, f)| flat_number(f, 320, 240).unwrap_or_else(|e| panic!("picture {i} mixes colours (torn): {e}")))
        .collect();
    eprintln!("numbers: {numbers:?}");
    assert_eq!(numbers.last(), Some(&89), "the stream should end repeating frame 89, the last whole one");
    assert!(!numbers.contains(&90), "frame 90 was never finished");
    // An agentcast that comes after the death finds `latest` naming the slot that now holds half
    // of frame 90 over frame 89, with an odd sequence: it must encode nothing, and say why.
    let out = output_bounded(
        agentcast(&["--source", &source, "--width", "320", "--height", "240", "--pix-fmt", "rgb24"]).args([
            "--no-stamp",
            "--frames",
            "30",
            "--source-timeout",
            "2",
        ]),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "{} stream bytes from a half-written slot:\n{err}", out.stdout.len());
    assert!(err.contains("half-written"), "{err}");
}

#[test]
fn a_bad_ring_header_exits_65_with_the_reason_and_a_size_mismatch_2_naming_the_flag() {
    let ring = RingName::new("clibad");
    let mut bytes = b"NOTARING".to_vec();
    bytes.resize(8192, 0);
    std::fs::write(ring.path(), &bytes).unwrap();
    let source = format!("shm:{}", ring.0);
    let args = ["--source", &source, "--width", "64", "--height", "48", "--pix-fmt", "rgb24", "--frames", "5"];
    crate::cli::assert_usage_error(&output_bounded(&mut agentcast(&args), Duration::from_secs(30)), 65, "wrong magic");
    // A real ring of another size.
    std::fs::remove_file(ring.path()).unwrap();
    let mut py = writer(&ring, 64, 48, 30, 1000, &[]);
    wait_for_first_frame(&ring, &mut py);
    let args = ["--source", &source, "--width", "128", "--height", "48", "--pix-fmt", "rgb24", "--frames", "5"];
    let out = output_bounded(&mut agentcast(&args), Duration::from_secs(30));
    crate::cli::assert_usage_error(&out, 2, "--width 128 does not match the ring's width 64");
}
