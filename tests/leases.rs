//! NVENC session leases across processes, run without NVENC: the hidden testing aid makes x264
//! take slots as if it were NVENC.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::assert_usage_error;
use crate::outputs::Producer;
use crate::util::*;

/// The flags every leased producer here shares: two slots in `locks`, x264 standing in for NVENC.
fn lease_flags(locks: &str) -> [&str; 6] {
    ["--nvenc-sessions", "2", "--lock-dir", locks, "--debug-lease-encoder", "x264enc"]
}

fn leased(dir: &Path, stream: &str, extra: &[&str]) -> Producer {
    let locks = dir.join("locks");
    let args = [&lease_flags(locks.to_str().unwrap())[..], &["--stream", stream], extra].concat();
    Producer::start(dir, &args)
}

fn slots(dir: &Path) -> String {
    let out = run(&["slots", "--lock-dir", dir.join("locks").to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn two_slots_four_producers_two_fall_back_and_fail_exits_75() {
    let dir = tempdir();
    let mut producers = Vec::new();
    for i in 1..=4 {
        let mut p = leased(dir.path(), &format!("agent_0{i}"), &[]);
        p.wait_for_log("(opened with a test frame)", Duration::from_secs(20));
        producers.push(p);
    }
    let logs: Vec<String> = producers.iter().map(Producer::log).collect();
    let holders = logs.iter().filter(|l| l.contains("holds NVENC slot")).count();
    let fell_back = logs.iter().filter(|l| l.contains("encoder: openh264") && l.contains("NVENC slots in")).count();
    assert_eq!((holders, fell_back), (2, 2), "{logs:#?}");
    let table = slots(dir.path());
    for p in &producers[..2] {
        assert!(table.contains(&format!("held by pid {}", p.child.id())), "{table}");
    }
    assert!(table.contains("(agent_01)") && table.contains("(agent_02)"), "{table}");
    // A fifth producer with --on-busy fail exits 75 at once.
    let locks = dir.path().join("locks");
    let out = run(&[&lease_flags(locks.to_str().unwrap())[..], &["--on-busy", "fail", "--frames", "1"]].concat());
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NVENC slots in"));
    for mut p in producers {
        p.terminate();
    }
    assert!(slots(dir.path()).matches(": free").count() == 2, "{}", slots(dir.path()));
}

#[test]
fn a_waiting_producer_gets_the_slot_of_a_killed_holder_within_a_second() {
    let dir = tempdir();
    let mut a = leased(dir.path(), "agent_01", &[]);
    a.wait_for_log("holds NVENC slot", Duration::from_secs(20));
    let mut b = leased(dir.path(), "agent_02", &[]);
    b.wait_for_log("holds NVENC slot", Duration::from_secs(20));
    let mut waiter = leased(dir.path(), "agent_03", &["--on-busy", "wait", "--wait-timeout", "30"]);
    waiter.wait_for_log("waiting up to", Duration::from_secs(20));
    a.child.kill().unwrap(); // SIGKILL, as go2rtc does by default
    let killed = Instant::now();
    waiter.wait_for_log("holds NVENC slot", Duration::from_secs(5));
    let took = killed.elapsed();
    eprintln!("slot handed over {took:?} after SIGKILL");
    assert!(took < Duration::from_secs(1), "the waiter took {took:?} to get the slot");
    let table = slots(dir.path());
    assert!(table.contains(&format!("held by pid {} (agent_03)", waiter.child.id())), "{table}");
    assert!(table.contains(&format!("held by pid {} (agent_02)", b.child.id())), "{table}");
    b.terminate();
    waiter.terminate();
}

#[test]
fn an_unusable_lock_dir_is_a_clear_error() {
    let out = run(&["--nvenc-sessions", "2", "--lock-dir", "/proc/agentcast-locks", "--frames", "1"]);
    assert_usage_error(&out, 73, "--lock-dir /proc/agentcast-locks");
}

// Runtime fallback (an encoder error injected by a hidden testing aid).

#[test]
fn stdout_rebuilds_once_on_the_same_backend_and_keeps_the_stream_valid() {
    let dir = tempdir();
    let out = run(&["--debug-fail-after", "30", "--frames", "90", "--no-pace"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rebuilding the pipeline once on the same backend"), "{err}");
    let path = write(dir.path(), "out.h264", &out.stdout);
    assert_eq!(decode_errors(&path), "");
    let check = run(&["check", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(probe(&path).frames.len() >= 80, "the rebuild lost too many frames");
}

#[test]
fn stdout_exits_70_when_the_backend_fails_again() {
    let out = run(&["--debug-fail-after", "30", "--debug-fail-times", "2", "--frames", "150", "--no-pace"]);
    assert_usage_error(&out_without_stdout(out), 70, "failed again");
}

fn out_without_stdout(mut out: std::process::Output) -> std::process::Output {
    out.stdout.clear(); // the stream written before the failure is fine; only the error matters here
    out
}

#[test]
fn tcp_demotes_to_the_next_backend_at_a_reader_boundary() {
    use std::io::Read;
    let dir = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let args = ["--output", &format!("tcp:127.0.0.1:{port}"), "--debug-fail-after", "40", "--debug-fail-times", "2"];
    let mut producer = Producer::start(dir.path(), &args);
    producer.wait_for_log("listening for one reader", Duration::from_secs(10));
    // The first reader sees x264 fail, get rebuilt, fail again; then it is closed.
    let mut first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut capture = Vec::new();
    first.read_to_end(&mut capture).expect("the first reader is closed after the backend change");
    producer.wait_for_log("now openh264", Duration::from_secs(5));
    let path = write(dir.path(), "first.h264", &capture);
    let check = run(&["check", path.to_str().unwrap()]);
    assert!(check.status.success(), "one SPS per reader: {}", String::from_utf8_lossy(&check.stdout));
    // The next reader gets the openh264 stream from its first byte.
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 100_000];
    second.read_exact(&mut buf).unwrap();
    let cut = buf.windows(5).rposition(|w| w == [0, 0, 0, 1, 9]).unwrap();
    let path = write(dir.path(), "second.h264", &buf[..cut]);
    assert_eq!(decode_errors(&path), "");
    let check = run(&["check", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    producer.terminate();
    let log = producer.log();
    assert!(log.contains("rebuilding the pipeline once") && log.contains("demoting to the next backend"), "{log}");
}

/// With FIFO outputs and --idle pause, a producer frees its slot while nobody reads: three agents
/// share two slots as long as at most two are watched.
#[test]
fn idle_fifo_producers_give_their_slots_back() {
    let dir = tempdir();
    let mut producers = Vec::new();
    let mut fifos = Vec::new();
    for i in 1..=3 {
        let fifo = dir.path().join(format!("a{i}.h264"));
        let p = leased(dir.path(), &format!("a{i}"), &["--output", &format!("fifo:{}", fifo.display())]);
        producers.push(p);
        fifos.push(fifo);
    }
    // Each producer takes a slot to open its encoder, then gives it back for want of a reader.
    // Waiting for the FIFO alone is not enough: it is created before the encoder is chosen, so a
    // slow producer could still take a slot after the check below and push a reader's producer
    // onto the fallback encoder.
    for p in &mut producers {
        p.wait_for_log("no reader: stopping the encoder", Duration::from_secs(20));
    }
    // Nobody reads: every slot comes free.
    let start = Instant::now();
    while slots(dir.path()).contains("held by") {
        assert!(start.elapsed() < Duration::from_secs(20), "slots still held with no readers:\n{}", slots(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Two readers: two slots held.
    let readers: Vec<_> = fifos[..2]
        .iter()
        .map(|f| std::process::Command::new("cat").arg(f).stdout(std::process::Stdio::piped()).spawn_within(DEADLINE))
        .collect();
    for p in &mut producers[..2] {
        p.wait_for_log("first bytes to the reader", Duration::from_secs(20));
    }
    assert_eq!(slots(dir.path()).matches("held by").count(), 2, "{}", slots(dir.path()));
    let mut captures = Vec::new();
    for mut r in readers {
        std::thread::sleep(Duration::from_millis(300));
        let _ = r.kill();
        let out = r.wait_with_output();
        captures.push(out.stdout);
    }
    // Readers gone: the slots come free again.
    let start = Instant::now();
    while slots(dir.path()).contains("held by") {
        assert!(start.elapsed() < Duration::from_secs(10), "slots not given back:\n{}", slots(dir.path()));
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, capture) in captures.iter().enumerate() {
        let cut = capture.windows(5).rposition(|w| w == [0, 0, 0, 1, 9]).unwrap_or(0);
        let path = write(dir.path(), &format!("c{i}.h264"), &capture[..cut]);
        assert_eq!(decode_errors(&path), "");
    }
    for p in &mut producers {
        p.terminate();
    }
    assert!(producers.iter().any(|p| p.log().contains("releasing NVENC slot")));
}

/// A real encoder failure (x264 refuses lossless in the High profile) that hits while a short run
/// drains must not end in exit 0 with a truncated stream.
#[test]
fn an_encoder_that_fails_on_every_build_exits_70_even_in_a_short_run() {
    let args = ["--encoder", "x264", "--encoder-opt", "pass=quant", "--encoder-opt", "quantizer=0", "--frames", "12"];
    let args = [&args[..], &["--no-pace"]].concat();
    assert_usage_error(&run(&args), 70, "encoder x264enc failed");
}
