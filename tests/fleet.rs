//! Agents as cameras, under a real go2rtc: each agent serves RTSP (`--output rtsp-listen:`) and
//! registers itself through go2rtc's API (`--register`); go2rtc pulls only what someone watches.
//! Every test runs go2rtc on loopback with no streams in its config (`streams:` empty), so whatever
//! plays was registered by the agents.
//!
//! go2rtc comes from `AGENTCAST_TEST_GO2RTC` or `PATH` (see go2rtc_e2e.rs); without it these tests
//! say "skipped: no go2rtc", and under `CI=true` they fail instead.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::go2rtc_e2e::{Go2rtc, Timing, assert_mp4_plays, free_port, go2rtc_binary, http_get};
use crate::outputs::Producer;
use crate::util::*;

/// A small picture at a low rate: three agents and go2rtc share two cores.
const AGENT: [&str; 6] = ["--width", "640", "--height", "360", "--fps", "15"];
/// How long an agent may take to appear in (or leave) go2rtc's list.
const REGISTER_WITHIN: Duration = Duration::from_secs(10);

/// An agent serving `rtsp-listen:127.0.0.1:0/NAME` and registering with the go2rtc API on `api`.
fn agent(dir: &Path, name: &str, api: u16, extra: &[&str]) -> Producer {
    let output = format!("rtsp-listen:127.0.0.1:0/{name}");
    let register = format!("http://127.0.0.1:{api}");
    let args = [&["--output", output.as_str(), "--register", register.as_str()][..], &AGENT, extra].concat();
    Producer::start(dir, &args)
}

/// go2rtc's streams (`GET /api/streams`), as JSON; `Null` while its API does not answer.
fn streams(api: u16) -> serde_json::Value {
    if TcpStream::connect(("127.0.0.1", api)).is_err() {
        return serde_json::Value::Null;
    }
    let (status, body) = http_get(api, "/api/streams", Duration::from_secs(5));
    assert!(status.contains(" 200"), "GET /api/streams: {status}");
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

/// The source go2rtc pulls `name` from, if it lists it.
fn source_of(api: u16, name: &str) -> Option<String> {
    streams(api).get(name)?["producers"][0]["url"].as_str().map(str::to_string)
}

/// Waits until `name` is listed (`true`) or gone (`false`); returns how long that took.
fn wait_listed(api: u16, name: &str, listed: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    while source_of(api, name).is_some() != listed {
        assert!(
            start.elapsed() < limit,
            "'{name}' {} go2rtc's list after {limit:?}: {}",
            if listed { "not in" } else { "still in" },
            streams(api)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Three agents register; all three play through go2rtc at once; one stopped with SIGTERM leaves
/// go2rtc's list (exit 0) while the others stay.
#[test]
fn fleet_three_agents_register_play_and_leave() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let g = Go2rtc::start(&bin, dir.path(), &[]);
    let names = ["cam_a", "cam_b", "cam_c"];
    let mut agents: Vec<Producer> = names.iter().map(|n| agent(dir.path(), n, g.api, &[])).collect();
    for (n, a) in names.iter().zip(&agents) {
        wait_listed(g.api, n, true, REGISTER_WITHIN);
        let src = source_of(g.api, n).unwrap();
        assert!(src.starts_with("rtsp://127.0.0.1:") && src.ends_with(&format!("/{n}")), "{src}\n{}", a.log());
    }
    // All three watched at once.
    let api = g.api;
    let viewers: Vec<_> = names
        .iter()
        .map(|n| {
            let n = n.to_string();
            std::thread::spawn(move || {
                let path = format!("/api/stream.mp4?src={n}&duration=3");
                let (status, body) = http_get(api, &path, Duration::from_secs(40));
                assert!(status.contains(" 200"), "GET {path}: {status}");
                body
            })
        })
        .collect();
    for (n, v) in names.iter().zip(viewers) {
        let mp4 = v.join().expect("a viewer");
        assert_mp4_plays(dir.path(), n, &mp4, Timing::Encoder);
    }
    let took = agents[1].terminate();
    let gone = wait_listed(g.api, "cam_b", false, Duration::from_secs(2));
    assert!(agents[1].log().contains("register: removed 'cam_b'"), "{}", agents[1].log());
    eprintln!("cam_b: exit 0 {took:?} after SIGTERM, gone from go2rtc {gone:?} after that");
    assert!(source_of(g.api, "cam_a").is_some() && source_of(g.api, "cam_c").is_some(), "{}", streams(g.api));
    agents[0].terminate();
    agents[2].terminate();
}

/// An agent started before go2rtc registers once it is up, says once that it could not reach it,
/// and registers again within 10 s after go2rtc restarts (its registrations live in memory).
#[test]
fn fleet_agents_register_when_go2rtc_comes_and_again_after_a_restart() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let ports = [free_port(), free_port(), free_port()];
    let mut a = agent(dir.path(), "early", ports[0], &[]);
    a.wait_for_log("cannot be reached", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let g = Go2rtc::start_on(&bin, dir.path(), &[], ports);
    let first = wait_listed(ports[0], "early", true, REGISTER_WITHIN);
    let log = a.log();
    assert_eq!(log.matches("cannot be reached").count(), 1, "said once:\n{log}");
    drop(g);
    std::thread::sleep(Duration::from_millis(500));
    let g = Go2rtc::start_on(&bin, dir.path(), &[], ports);
    let again = wait_listed(ports[0], "early", true, REGISTER_WITHIN);
    let mp4 = g.watch_mp4("early");
    assert_mp4_plays(dir.path(), "early", &mp4, Timing::Encoder);
    eprintln!("registered {first:?} after go2rtc came up, {again:?} after its restart");
    a.terminate();
}

/// A name another live agent streams under is refused at start-up (exit 73, the line first); a
/// name whose source no longer answers (a dead agent's leftover) is taken over.
#[test]
fn fleet_names_held_by_live_agents_are_refused_and_dead_ones_taken_over() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let g = Go2rtc::start(&bin, dir.path(), &[]);
    let mut first = agent(dir.path(), "shared", g.api, &[]);
    wait_listed(g.api, "shared", true, REGISTER_WITHIN);
    let register = format!("http://127.0.0.1:{}", g.api);
    let out = run(&[&["--output", "rtsp-listen:127.0.0.1:0/shared", "--register", &register][..], &AGENT].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(73), "{err}");
    let line = err.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("agentcast: --name shared: go2rtc at http://127.0.0.1:") && line.contains("which answers"),
        "{err}"
    );
    first.terminate();

    // A leftover pointing at a port nothing listens on.
    let dead = format!("rtsp://127.0.0.1:{}/left", free_port());
    let patch = format!("http://127.0.0.1:{}/api/streams", g.api);
    let resp = ureq::patch(&patch).query("name", "left").query("src", &dead).send_empty().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut heir = agent(dir.path(), "left", g.api, &[]);
    heir.wait_for_log("register: registered", REGISTER_WITHIN);
    let src = source_of(g.api, "left").unwrap();
    assert!(src != dead && src.ends_with("/left"), "{src}\n{}", heir.log());
    assert!(heir.log().contains("taking the name over"), "{}", heir.log());
    heir.terminate();
}

/// Two go2rtc viewers and a direct RTSP client of one agent share one encoder: every frame is
/// encoded once (stats), and each viewer decodes what it got.
#[test]
fn fleet_viewers_share_one_encoder() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let g = Go2rtc::start(&bin, dir.path(), &[]);
    let stats = dir.path().join("stats.json");
    let mut a = agent(dir.path(), "one", g.api, &["--stats-interval", "1", "--stats-file", stats.to_str().unwrap()]);
    wait_listed(g.api, "one", true, REGISTER_WITHIN);
    let url = source_of(g.api, "one").unwrap();
    let api = g.api;
    let viewers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || http_get(api, "/api/stream.mp4?src=one&duration=4", Duration::from_secs(40)).1)
        })
        .collect();
    // A direct client (not through go2rtc) on the same media, while the viewers watch.
    std::thread::sleep(Duration::from_millis(800));
    let direct = dir.path().join("direct.h264");
    let mut ffmpeg = tool("ffmpeg")
        .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i", &url, "-t", "2", "-c", "copy", "-f", "h264"])
        .arg(&direct)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn_within(DEADLINE);
    // The most RTSP clients the agent's stats saw at once (go2rtc's one connection, and ffmpeg).
    let mut clients = 0;
    while ffmpeg.try_wait().unwrap().is_none() {
        let now = std::fs::read_to_string(&stats).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        clients = clients.max(now.and_then(|v| v["listen"]["clients"].as_u64()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ffmpeg.wait_with_output();
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(clients, 2, "go2rtc and ffmpeg, together");
    for (i, v) in viewers.into_iter().enumerate() {
        assert_mp4_plays(dir.path(), &format!("viewer{i}"), &v.join().unwrap(), Timing::Encoder);
    }
    let check = run(&["check", direct.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    a.terminate();
    let last: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let (rendered, encoded, written) =
        (last["frames"]["rendered"].as_u64(), last["frames"]["encoded"].as_u64(), last["frames"]["written"].as_u64());
    assert_eq!(rendered, encoded, "one encode per frame: {last}");
    assert!(written <= encoded && written > Some(40), "{last}");
    eprintln!(
        "one encoder: rendered {rendered:?} encoded {encoded:?} written {written:?}; {clients} RTSP clients together"
    );
}

/// A client that stops reading never blocks the agent or another client: go2rtc's viewer still
/// gets every picture's worth while a raw RTSP client sits on a full socket.
#[test]
fn fleet_a_stalled_client_blocks_nobody() {
    let Some(bin) = go2rtc_binary() else { return };
    let dir = tempdir();
    let g = Go2rtc::start(&bin, dir.path(), &[]);
    let mut a = agent(dir.path(), "busy", g.api, &["--bitrate", "8000"]);
    wait_listed(g.api, "busy", true, REGISTER_WITHIN);
    let url = source_of(g.api, "busy").unwrap();
    let stalled = stalled_client(&url);
    std::thread::sleep(Duration::from_secs(2)); // its socket fills
    let mp4 = g.watch_mp4("busy");
    assert_mp4_plays(dir.path(), "busy", &mp4, Timing::Encoder);
    // It really stalled: the server's side of its connection holds unsent bytes.
    let (local, peer) = (stalled.local_addr().unwrap(), stalled.peer_addr().unwrap());
    let queued = tx_queue(peer, local);
    assert!(queued >= 64 * 1024, "{queued} bytes queued for the stalled client");
    eprintln!("busy: {queued} bytes stuck in the stalled client's connection; the viewer played on");
    assert!(a.child.try_wait().unwrap().is_none(), "the agent died:\n{}", a.log());
    drop(stalled);
    a.terminate();
}

/// Bytes queued to send on the TCP connection from `local` to `remote` (/proc/net/tcp's tx_queue).
fn tx_queue(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> u64 {
    let hex = |a: std::net::SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), a.port()),
        std::net::IpAddr::V6(_) => unreachable!("loopback v4 only"),
    };
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (l, r) = (hex(local), hex(remote));
    let line = table.lines().find(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 4 && f[1] == l && f[2] == r
    });
    let queues = line.map(|line| line.split_whitespace().nth(4).unwrap().to_string()).unwrap_or_default();
    queues.split(':').next().and_then(|tx| u64::from_str_radix(tx, 16).ok()).unwrap_or(0)
}

/// DESCRIBE, SETUP (interleaved TCP) and PLAY by hand, then never read again: the returned socket
/// holds the session open with a tiny receive buffer.
fn stalled_client(url: &str) -> TcpStream {
    let hostport = url.trim_start_matches("rtsp://").split('/').next().unwrap();
    let s = TcpStream::connect(hostport).unwrap();
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = s;
    let mut ask = |req: String| -> String {
        s.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "the server closed: {}", String::from_utf8_lossy(&got));
            got.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: ").or_else(|| l.strip_prefix("Content-length: ")))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        assert!(head.starts_with("RTSP/1.0 200"), "{head}");
        head + &String::from_utf8_lossy(&body)
    };
    let sdp = ask(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"));
    let control = sdp.lines().find_map(|l| l.strip_prefix("a=control:")).filter(|c| *c != "*").unwrap_or("stream=0");
    let track = if control.starts_with("rtsp://") { control.to_string() } else { format!("{url}/{control}") };
    let setup =
        ask(format!("SETUP {track} RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"));
    let session =
        setup.lines().find_map(|l| l.strip_prefix("Session: ")).unwrap().split(';').next().unwrap().to_string();
    let _ = ask(format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"));
    s
}

/// rtsp-listen: bad input, each one `agentcast:` line first with its exit code.
#[test]
fn fleet_bad_listen_and_register_input() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = format!("rtsp-listen:127.0.0.1:{port}/a");
    let cases: [(Vec<String>, i32, String); 7] = [
        (
            vec!["--output".into(), in_use.clone()],
            73,
            format!("--output {in_use}: cannot listen: port {port} is in use"),
        ),
        // TEST-NET-1 (RFC 5737): an address no machine here has; binding fails, nothing is sent.
        (
            vec!["--output".into(), "rtsp-listen:192.0.2.1:0/a".into()],
            73,
            "192.0.2.1 is not an address of this machine".into(),
        ),
        (vec!["--output".into(), "rtsp-listen:127.0.0.1:0/a b".into()], 2, "' ' is not allowed".into()),
        (
            vec!["--output".into(), "rtsp-listen:127.0.0.1:0/{env:AGENTCAST_TEST_NOPE}".into()],
            2,
            "AGENTCAST_TEST_NOPE is not set".into(),
        ),
        (
            vec!["--register".into(), "http://127.0.0.1:1".into()],
            2,
            "--register announces a stream go2rtc pulls".into(),
        ),
        (
            vec!["--output".into(), "tcp:127.0.0.1:0".into(), "--register".into(), "http://127.0.0.1:1".into()],
            2,
            "needs --name".into(),
        ),
        (vec!["--name".into(), "x".into()], 2, "--name names this stream for go2rtc; it needs --register".into()),
    ];
    for (args, code, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).chain(AGENT).collect();
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.starts_with("agentcast: ") && first.contains(&says), "{args:?}: {err}");
    }
    drop(taken);
}
