//! The kill matrix under a real go2rtc: viewer sessions one after another on exec streams, each
//! started by a viewer (`/api/frame.mp4` or `/api/stream.mp4`) and ended by go2rtc when the viewer
//! leaves. 50 sessions with go2rtc's default SIGKILL leave no agentcast process behind; 20 with
//! `#killsignal=15` each exit 0; 10 under NVENC slot leases (x264 put under leases with the testing
//! aid) hold a slot while watched and leave none held after the kill.
//!
//! go2rtc is found as in tests/go2rtc_e2e.rs: AGENTCAST_TEST_GO2RTC (scripts/test.sh sets it to
//! ../shared/bin/go2rtc), then PATH. Without it the test says "skipped:" on stderr, and fails under
//! CI=true.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const KILLED: usize = 50;
const TERMINATED: usize = 20;
const LEASED: usize = 10;

/// A GET on go2rtc's API; returns (status code, body length), reading at most `limit` body bytes.
fn get(api: u16, path: &str, limit: usize) -> (u32, usize) {
    let mut s = TcpStream::connect(("127.0.0.1", api)).expect("connecting to go2rtc's API");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.len() - (i + 4) >= limit
        {
            break Some(i + 4);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end.unwrap_or(buf.len())]).to_string();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, buf.len() - head_end.unwrap_or(buf.len()))
}

/// Pids of live processes whose command line contains `tag` (zombies have none).
fn processes_with(tag: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(tag)
        })
        .collect()
}

/// Waits until no process carries `tag`; returns how long that took.
fn gone(tag: &str, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let left = processes_with(tag);
        if left.is_empty() {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn go2rtc_kills_leave_nothing_behind_term_exits_zero_and_leases_come_back() {
    // Found as the other go2rtc tests find it (scripts/test.sh points AGENTCAST_TEST_GO2RTC at
    // ../shared/bin/go2rtc); says "skipped:" without one, and fails under CI=true.
    let Some(go2rtc) = crate::go2rtc_e2e::go2rtc_binary() else { return };
    let dir = tempdir();
    let tag = format!("killmatrix{}", std::process::id());
    let api = free_port();
    let locks = dir.path().join("locks");
    let status_file = dir.path().join("exits.log");
    // Observes the exit status for the #killsignal=15 sessions: go2rtc's TERM is passed on to
    // agentcast (stdout is inherited, so the bytes go straight to go2rtc) and its status recorded.
    let relay = write(
        dir.path(),
        "relay.sh",
        b"\"$AGENTCAST\" \"$@\" &\npid=$!\ntrap 'kill -TERM $pid' TERM\nwait $pid; st=$?\n\
          if [ $st -gt 128 ]; then wait $pid; st=$?; fi\necho \"exit $st\" >> \"$STATUS\"\n",
    );
    let producer = |name: &str, extra: &str| {
        format!("{BIN} --width 320 --height 240 --no-stamp --fps 30 --encoder x264 --stream {tag}-{name}{extra}")
    };
    let config = format!(
        "api:\n  listen: \"127.0.0.1:{api}\"\nrtsp:\n  listen: \"\"\nwebrtc:\n  listen: \"\"\n  ice_servers: []\n\
         srtp:\n  listen: \"\"\nrtmp:\n  listen: \"\"\nlog:\n  level: info\nstreams:\n\
         \x20 kill: exec:{}\n\
         \x20 term: exec:bash {} --width 320 --height 240 --no-stamp --fps 30 --encoder x264 --stream {tag}-term#killsignal=15\n\
         \x20 lease: exec:{}\n",
        producer("kill", ""),
        relay.display(),
        producer("lease", &format!(" --nvenc-sessions 2 --lock-dir {} --debug-lease-encoder x264enc", locks.display())),
    );
    let config_path = write(dir.path(), "go2rtc.yaml", config.as_bytes());
    let log = std::fs::File::create(dir.path().join("go2rtc.log")).unwrap();
    let _go2rtc = Command::new(&go2rtc)
        .arg("-config")
        .arg(&config_path)
        .current_dir(dir.path())
        .env("AGENTCAST", BIN)
        .env("STATUS", &status_file)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn_within(Duration::from_secs(600));
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", api)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "go2rtc's API did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let go2rtc_log = || std::fs::read_to_string(dir.path().join("go2rtc.log")).unwrap_or_default();
    let viewer = |src: &str, what: &str| {
        let (code, bytes) = get(api, &format!("/api/frame.mp4?src={src}"), usize::MAX);
        assert!(code == 200 && bytes > 1000, "{what}: HTTP {code}, {bytes} bytes\n{}", go2rtc_log());
    };

    // Default SIGKILL: nothing may outlive a session.
    let mut took = Vec::new();
    for i in 0..KILLED {
        viewer("kill", &format!("SIGKILL session {i}"));
        took.push(gone(&format!("{tag}-kill"), &format!("SIGKILL session {i}")));
    }
    took.sort();
    eprintln!("kill matrix: {KILLED} SIGKILL sessions, none left a process; gone after p50 {:?}", took[KILLED / 2]);

    // #killsignal=15: each exits 0 (after finishing its access unit).
    for i in 0..TERMINATED {
        viewer("term", &format!("SIGTERM session {i}"));
        gone(&format!("{tag}-term"), &format!("SIGTERM session {i}"));
        let exits = std::fs::read_to_string(&status_file).unwrap_or_default();
        let lines: Vec<&str> = exits.lines().collect();
        assert_eq!(lines.len(), i + 1, "SIGTERM session {i}: exit statuses so far {lines:?}");
        assert_eq!(lines[i], "exit 0", "SIGTERM session {i}\n{}", go2rtc_log());
    }
    eprintln!("kill matrix: {TERMINATED} SIGTERM sessions, each exited 0");

    // Leases: a slot is held while a viewer watches, none after go2rtc's SIGKILL.
    let slots = || {
        let out = run(&["slots", "--lock-dir", locks.to_str().unwrap(), "--nvenc-sessions", "2"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let mut freed = Vec::new();
    for i in 0..LEASED {
        let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /api/stream.mp4?src=lease HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut got = vec![0u8; 20_000];
        s.read_exact(&mut got).unwrap_or_else(|e| panic!("lease session {i}: {e}\n{}", go2rtc_log()));
        let held = slots();
        assert_eq!(held.matches("held by pid").count(), 1, "lease session {i}, while watched:\n{held}");
        assert!(held.contains(&format!("{tag}-lease")), "{held}");
        drop(s);
        gone(&format!("{tag}-lease"), &format!("lease session {i}"));
        // The kernel drops the flock when the killed process's files are closed, which can come a
        // moment after its command line is gone (the memory is released first): bounded wait.
        let start = Instant::now();
        loop {
            let after = slots();
            if !after.contains("held") {
                freed.push(start.elapsed());
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "lease session {i}: a slot is still held:\n{after}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    freed.sort();
    eprintln!(
        "kill matrix: {LEASED} leased sessions, a slot held while watched and none after each kill (free after p50 {:?}, max {:?})",
        freed[LEASED / 2],
        freed[LEASED - 1]
    );
}
