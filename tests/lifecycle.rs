//! How a stream ends: the reader leaving (broken pipe), SIGTERM (on a whole access unit, and
//! promptly from a loop that is always late), SIGUSR1's forced IDR, and a stalled encoder.

use std::io::Read;
use std::time::{Duration, Instant};

use agentcast::annexb::{self, nal_type};

use crate::check_command::check_ok;
use crate::stream_basics::{assert_go2rtc_bytes, slices_per_picture};
use crate::util::*;

#[test]
fn broken_pipe_exits_zero_without_a_panic() {
    let mut child = spawn(&[]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 100_000];
    stdout.read_exact(&mut first).expect("reading the first 100000 bytes");
    assert_eq!(&first[..4], &[0, 0, 0, 1]);
    drop(stdout);
    let gone = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    eprintln!("exited {:?} after the reader left", gone.elapsed());
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn broken_pipe_through_head_exits_zero() {
    let script = format!("'{BIN}' | head -c 100000 > /dev/null; echo \"${{PIPESTATUS[0]}}\"");
    let out = std::process::Command::new("bash").arg("-c").arg(&script).env_remove("RUST_LOG").output_within(DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Reads a child's stdout: the first `first` bytes now (so the stream is known to be flowing), the
/// rest on a thread until EOF. The handle returns everything.
fn collect_stdout(child: &mut std::process::Child, first: usize) -> std::thread::JoinHandle<Vec<u8>> {
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; first];
    stdout.read_exact(&mut buf).expect("reading the start of the stream");
    std::thread::spawn(move || {
        stdout.read_to_end(&mut buf).unwrap();
        buf
    })
}

#[test]
fn sigterm_mid_stream_exits_zero_on_a_complete_access_unit() {
    let mut child = spawn(&[]);
    let reader = collect_stdout(&mut child, 50_000);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, "TERM");
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    let buf = reader.join().unwrap();
    let dir = tempdir();
    let path = write(dir.path(), "out.h264", &buf);
    assert_eq!(decode_errors(&path), "", "the stream must end on a whole access unit");
    check_ok(&path);
    // Every access unit we wrote decodes to a picture: nothing was cut off.
    assert_eq!(probe(&path).frames.len(), slices_per_picture(&buf).len());
    assert!(slices_per_picture(&buf).len() >= 10, "expected some stream before SIGTERM");
}

#[test]
fn sigusr1_forces_an_idr() {
    let mut child = spawn(&["--gop", "3000"]);
    let reader = collect_stdout(&mut child, 50_000);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "USR1");
    std::thread::sleep(Duration::from_millis(600));
    signal(&child, "TERM");
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(10)).code(), Some(0));
    let buf = reader.join().unwrap();
    let idrs = annexb::nals(&buf).filter(|n| n.nal_type() == nal_type::IDR).count();
    assert_eq!(idrs, 2, "one IDR at the start and one for SIGUSR1 (GOP 3000)");
    assert_go2rtc_bytes(&buf);
}

/// A paced loop that is always late (240 fps at 1080p is more than this machine renders) must still
/// see SIGTERM promptly.
#[test]
fn sigterm_reaches_a_loop_that_is_always_late() {
    let mut child = spawn(&["--fps", "240", "--width", "1920", "--height", "1080"]);
    let reader = collect_stdout(&mut child, 50_000);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "TERM");
    let start = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?} on an overloaded loop");
    drop(reader.join());
}

#[test]
fn an_injected_encoder_stall_exits_70_naming_the_stage() {
    let mut child = spawn(&["--debug-stall-after", "20", "--stall-timeout", "2"]);
    // Timed from the last byte of output (however long start-up took on this machine): the 2 s
    // timeout, plus at most 1 s.
    let mut out = child.stdout.take().unwrap();
    let (mut last, mut buf) = (Instant::now(), vec![0u8; 1 << 16]);
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        last = Instant::now();
    }
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let took = last.elapsed();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(70), "{err}");
    let auto = machine()["auto_encoder"].as_str().unwrap();
    assert!(err.contains(&format!("agentcast: stalled: encoder {auto}:")), "{err}");
    assert!(took < Duration::from_secs(3), "exited {took:?} after the last output");
    assert!(!err.contains("panicked"), "{err}");
}
