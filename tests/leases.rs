//! NVENC session leases across processes, run without NVENC: the hidden testing aid makes x264
//! take slots as if it were NVENC.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::assert_usage_error;
use crate::outputs::Producer;
use crate::util::*;

fn leased(dir: &Path, stream: &str, extra: &[&str]) -> Producer {
    let locks = dir.join("locks");
    let mut args = vec![
        "--nvenc-sessions",
        "2",
        "--lock-dir",
        locks.to_str().unwrap(),
        "--debug-lease-encoder",
        "x264enc",
        "--stream",
        stream,
    ];
    args.extend_from_slice(extra);
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
    let out = run(&[
        "--nvenc-sessions",
        "2",
        "--lock-dir",
        locks.to_str().unwrap(),
        "--debug-lease-encoder",
        "x264enc",
        "--on-busy",
        "fail",
        "--frames",
        "1",
    ]);
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
