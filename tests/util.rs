//! Helpers shared by the integration tests: run the real binary, and look at its bytes with real
//! decoders (ffmpeg/ffprobe).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentcast");

/// A command for the binary with a quiet, deterministic environment.
pub fn agentcast(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("AGENTCAST_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// How long any process a test starts may run before the test kills it and fails. The slowest run
/// (10 s of paced stream on a loaded 2-core machine) takes about a fifth of it.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Runs to completion with stdout captured; past [`DEADLINE`] it is killed and the test fails.
pub fn run(args: &[&str]) -> Output {
    agentcast(args).output_within(DEADLINE)
}

/// Runs and insists on exit 0, returning stdout.
pub fn stream(args: &[&str]) -> Vec<u8> {
    let out = run(args);
    assert!(
        out.status.success(),
        "agentcast {args:?} failed with {:?}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Starts the binary with stdout and stderr piped, under [`DEADLINE`].
pub fn spawn(args: &[&str]) -> Proc {
    agentcast(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn_within(DEADLINE)
}

/// A running child under a deadline. A watchdog thread kills its whole process tree (the child
/// and everything it started) once the deadline passes; dropping the guard kills what is left, and
/// if the deadline had fired the test fails with the tail of the child's stderr. Derefs to the
/// [`Child`], so `kill`, `id`, `stdout.take()` and friends work as usual.
pub struct Proc {
    child: Child,
    what: String,
    limit: Duration,
    done: Arc<(Mutex<bool>, Condvar)>,
    fired: Arc<AtomicBool>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Waits for the exit while collecting stdout and stderr (like [`Child::wait_with_output`]);
    /// fails the test if the deadline killed it.
    pub fn wait_with_output(mut self) -> Output {
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(self.child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = drain(self.child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let status = self.child.wait().expect("waiting for a child");
        let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
        self.stop_watchdog();
        if self.fired.load(Ordering::SeqCst) {
            panic!(
                "{} ran past its {:?} deadline and was killed; its stderr ended:\n{}",
                self.what,
                self.limit,
                tail(&stderr)
            );
        }
        Output { status, stdout, stderr }
    }

    fn stop_watchdog(&mut self) {
        let (lock, cv) = &*self.done;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.watchdog.take() {
            let _ = t.join();
        }
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop_watchdog();
        let _ = self.child.kill();
        kill_tree(self.child.id());
        let _ = self.child.wait();
        if self.fired.load(Ordering::SeqCst) && !std::thread::panicking() {
            let mut err = Vec::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_end(&mut err);
            }
            panic!(
                "{} ran past its {:?} deadline and was killed; its stderr ended:\n{}",
                self.what,
                self.limit,
                tail(&err)
            );
        }
    }
}

/// SIGKILL to `pid` and all its descendants (found through /proc's parent pids). Children keep the
/// test's process group, so one that reads a terminal is not stopped as a background job would be.
fn kill_tree(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    for p in tree {
        let _ = kill(nix::unistd::Pid::from_raw(p as i32), Signal::SIGKILL);
    }
}

/// The last 2000 bytes of a child's stderr, as text.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut = text.len().saturating_sub(2000);
    let cut = (cut..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[cut..].to_string()
}

/// Deadlines for any [`Command`] a test runs: the binary, ffmpeg, bash, cat, go2rtc.
pub trait Bounded {
    /// Starts the command under a deadline.
    fn spawn_within(&mut self, limit: Duration) -> Proc;
    /// Runs it to completion with stdout and stderr captured and stdin empty (as
    /// [`Command::output`] does); past `limit` the test fails with the tail of its stderr.
    fn output_within(&mut self, limit: Duration) -> Output;
}

impl Bounded for Command {
    fn spawn_within(&mut self, limit: Duration) -> Proc {
        let what = format!("{:?}", self).chars().take(300).collect::<String>();
        let child = self.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let (d, f, pid, w) = (done.clone(), fired.clone(), child.id(), what.clone());
        let watchdog = std::thread::spawn(move || {
            let (lock, cv) = &*d;
            let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) = cv.wait_timeout_while(guard, limit, |done| !*done).unwrap_or_else(|p| p.into_inner());
            if !*guard {
                f.store(true, Ordering::SeqCst);
                eprintln!("deadline: {w} still running after {limit:?}; killing it (pid {pid}) and its children");
                kill_tree(pid);
            }
        });
        Proc { child, what, limit, done, fired, watchdog: Some(watchdog) }
    }

    fn output_within(&mut self, limit: Duration) -> Output {
        self.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn_within(limit).wait_with_output()
    }
}

/// Waits for a child with a bound, so a hang fails the test instead of CI.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = child.stderr.take().map(|mut e| {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf);
                buf
            });
            panic!(
                "process {} did not exit within {limit:?}; its stderr ended:\n{}",
                child.id(),
                tail(&err.unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

pub fn signal(child: &Child, sig: &str) {
    let sig: nix::sys::signal::Signal = format!("SIG{sig}").parse().expect("a signal name such as TERM");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("writing a temp file");
    p
}

/// Whether an executable of this name is on PATH.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

pub fn tool(name: &str) -> Command {
    assert!(on_path(name), "{name} is not installed; run scripts/setup.sh");
    Command::new(name)
}

/// ffprobe's view of the stream: codec, size, and per frame (pict_type, key_frame).
pub struct Probe {
    pub codec: String,
    pub profile: String,
    pub width: u32,
    pub height: u32,
    pub has_b_frames: u32,
    pub frames: Vec<(String, bool)>,
}

pub fn probe(path: &Path) -> Probe {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,profile,width,height,has_b_frames")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output_within(DEADLINE);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |k: &str| -> String {
        text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_default().to_string()
    };
    let frames_out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_frames", "-show_entries"])
        .arg("frame=pict_type,key_frame")
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output_within(DEADLINE);
    let frames = String::from_utf8_lossy(&frames_out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split(',');
            let key = it.next().unwrap_or("0").trim() == "1";
            let pict = it.next().unwrap_or("?").trim().to_string();
            (pict, key)
        })
        .collect();
    Probe {
        codec: field("codec_name"),
        profile: field("profile"),
        width: field("width").parse().unwrap_or(0),
        height: field("height").parse().unwrap_or(0),
        has_b_frames: field("has_b_frames").parse().unwrap_or(99),
        frames,
    }
}

/// Decodes with ffmpeg; returns its error output (empty when the stream decodes cleanly).
pub fn decode_errors(path: &Path) -> String {
    let out = tool("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output_within(DEADLINE);
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Decodes every picture with ffmpeg into raw `pix_fmt` pictures of `bytes_per_picture` each.
fn decode_raw(path: &Path, pix_fmt: &str, bytes_per_picture: usize) -> Vec<Vec<u8>> {
    let out = tool("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .output_within(DEADLINE);
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len() % bytes_per_picture, 0, "decoded size is not a whole number of pictures");
    out.stdout.chunks(bytes_per_picture).map(<[u8]>::to_vec).collect()
}

/// Decodes every picture to 8-bit luma planes.
pub fn decode_luma(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    decode_raw(path, "gray", (width * height) as usize)
}

/// Decodes every picture and keeps its luma plane as coded (`decode_luma`'s gray conversion
/// stretches limited-range luma to full range, which is fine for comparing two decodes but not for
/// comparing with a picture rendered elsewhere).
pub fn decode_coded_luma(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    let picture = w * h + 2 * w.div_ceil(2) * h.div_ceil(2);
    let mut pictures = decode_raw(path, "yuv420p", picture);
    pictures.iter_mut().for_each(|p| p.truncate(w * h));
    pictures
}

/// Decodes every picture as RGB24.
pub fn decode_rgb(path: &Path, width: u32, height: u32) -> Vec<Vec<u8>> {
    decode_raw(path, "rgb24", (width * height * 3) as usize)
}

/// A stream from ffmpeg's own libx264, for checking `agentcast check` against a foreign encoder.
pub fn ffmpeg_x264(dir: &Path, name: &str, x264_params: &str, bframes: u32) -> PathBuf {
    let path = dir.join(name);
    let st = tool("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-frames:v", "30"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", &bframes.to_string()])
        .args(["-x264-params", x264_params, "-f", "h264"])
        .arg(&path)
        .output_within(DEADLINE)
        .status;
    assert!(st.success());
    path
}

/// Byte offsets of every `00 00 01` and whether a zero precedes it (a 4-byte start code), scanned
/// independently of the crate's parser.
pub fn start_codes(buf: &[u8]) -> Vec<(usize, bool)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            v.push((i, i > 0 && buf[i - 1] == 0));
            i += 3;
        } else {
            i += 1;
        }
    }
    v
}

/// Mean absolute difference of two equally sized planes.
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (i32::from(*x) - i32::from(*y)).unsigned_abs() as u64).sum::<u64>() as f64
        / a.len() as f64
}

/// Whether this machine has the NVIDIA driver's CUDA library (tests of the CUDA-free behaviour skip
/// there; hardware tests skip everywhere else).
pub fn nvidia_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
        || (Path::new("/sbin/ldconfig").exists()
            && String::from_utf8_lossy(&Command::new("/sbin/ldconfig").arg("-p").output_within(DEADLINE).stdout)
                .contains("libcuda.so.1"))
}

/// Whether GStreamer has this element here (gst-inspect-1.0 exits 0).
pub fn has_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0").args(["--exists", name]).output_within(DEADLINE).status.success()
}

/// The JSON stats lines in a run's stderr, each parsed (a line that does not parse fails the test).
pub fn stats_lines(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stats line does not parse ({e}): {l}")))
        .collect()
}

#[test]
#[should_panic(expected = "ran past its 1s deadline and was killed")]
fn a_hung_process_fails_its_test_within_the_deadline() {
    // The grandchild holds the pipes too: killing only the child would leave the read hanging.
    Command::new("bash").args(["-c", "echo started >&2; sleep 60 & sleep 60"]).output_within(Duration::from_secs(1));
}

#[test]
fn a_guard_kills_what_it_started_when_dropped() {
    let child = Command::new("sleep").arg("60").spawn_within(DEADLINE);
    let pid = child.id();
    drop(child);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z"), "sleep {pid} outlived its guard");
}

/// The final stats line of a run (`"stats": "final"`), from its stderr.
pub fn final_stats(stderr: &[u8]) -> serde_json::Value {
    let last = stats_lines(stderr).pop().filter(|l| l["stats"] == "final");
    last.unwrap_or_else(|| panic!("no final stats line: {}", tail(stderr)))
}

/// This machine's facts from `agentcast doctor --json` (asked once): what tests of behaviour that
/// depends on the machine (the renderer, CUDA, which encoder auto picks, bytes per frame) expect,
/// instead of assuming a CPU-only machine.
pub fn machine() -> &'static serde_json::Value {
    static FACTS: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    FACTS.get_or_init(|| {
        let locks = tempdir();
        let out = run(&["doctor", "--json", "--lock-dir", locks.path().to_str().unwrap()]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json does not parse ({e}): {}", tail(&out.stderr)));
        doc["facts"].clone()
    })
}
