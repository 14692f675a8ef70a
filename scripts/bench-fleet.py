#!/usr/bin/env python3
"""A fleet of agents under one go2rtc (loopback only), side by side in one run:

1. Idle cost. N agents (640x360@30; `scene:demo`, and `raw:` FIFOs that got one frame and stay
   open, as an agent that renders only when watched) serve `--output rtsp-listen:127.0.0.1:0/NAME`
   and `--register` with one go2rtc; nobody watches. CPU (utime+stime from /proc) and RSS of all
   agents over --idle-seconds. Goal: at most 1% of a core per agent.
2. Click to picture: from a viewer's request to the first picture it can decode, p50/p99 over
   --clicks clicks each, for four ways go2rtc gets an agent:
     pull-rtsp  the agent serves rtsp-listen: and registered itself (go2rtc pulls RTSP on demand)
     pull-tcp   the agent listens on tcp: and registered itself (go2rtc pulls raw H.264 on demand)
     exec       go2rtc starts agentcast per viewer session (stdout)
     exec-rtsp  go2rtc starts agentcast per viewer session, publishing to {output}
   and two viewers: `GET /api/stream.mp4?src=NAME` (the first moof+mdat fragment in: go2rtc's MP4
   starts at an IDR, so that is the first picture a browser can decode), and go2rtc's RTSP
   re-stream `rtsp://127.0.0.1:PORT/NAME` (DESCRIBE/SETUP/PLAY over TCP until the first whole IDR,
   its RTP marker). Between clicks the viewer leaves and the agent goes idle (or exits) again.
   Goal: pull p50 at most 50 ms, and at most half of exec's.
3. Viewer latency (render -> viewer-decoded, `agentcast latency --via`): scripts/bench-viewer.py
   with modes pull, rtsp ({output}) and tcp, in the same run. Goal: pull within 5 ms of rtsp, and
   a frame interval below tcp.

  python3 scripts/bench-fleet.py --bin target/release/agentcast --agents 8,16,32 --out fleet.json
"""

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = ["--width", "640", "--height", "360", "--fps", "30"]
TICK = os.sysconf("SC_CLK_TCK")


def _viewer_module():
    """scripts/bench-viewer.py, whose helpers (free_port, pct, go2rtc_binary) this script shares."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_viewer", os.path.join(HERE, "bench-viewer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_viewer = _viewer_module()
free_port, pct, go2rtc_binary = _viewer.free_port, _viewer.pct, _viewer.go2rtc_binary


class Go2rtc:
    """One go2rtc on loopback with the given static streams."""

    def __init__(self, binary, work, streams):
        self.api, self.rtsp, webrtc = free_port(), free_port(), free_port()
        config = os.path.join(work, f"go2rtc-{self.api}.yaml")
        with open(config, "w") as f:
            f.write(f'api:\n  listen: "127.0.0.1:{self.api}"\nrtsp:\n  listen: "127.0.0.1:{self.rtsp}"\n'
                    f'webrtc:\n  listen: "127.0.0.1:{webrtc}"\n  ice_servers: []\n'
                    f'rtmp:\n  listen: ""\nsrtp:\n  listen: ""\nstreams:\n')
            for name, src in streams.items():
                f.write(f'  {name}: "{src}"\n')
        self.proc = subprocess.Popen([binary, "-config", config], cwd=work, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.api), timeout=0.2).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("go2rtc did not start")
                time.sleep(0.05)

    def streams(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}/api/streams", timeout=5) as r:
            return json.load(r)

    def wait_registered(self, names, limit=120.0):
        deadline = time.time() + limit
        while time.time() < deadline:
            if set(names) <= set(self.streams()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"not registered after {limit} s: {sorted(set(names) - set(self.streams()))}")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_agent(binary, work, api, name, source, log_to):
    args = [binary, *SIZE, "--output", f"rtsp-listen:127.0.0.1:0/{name}", "--register", f"http://127.0.0.1:{api}",
            "--stats-interval", "0"]
    feeder = None
    if source == "raw":
        fifo = os.path.join(work, f"{name}.rgb")
        os.mkfifo(fifo)
        args += ["--source", f"raw:{fifo}", "--source-timeout", "0"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log_to)
        # The agent's side: one frame, then the pipe stays open (an agent that renders on demand).
        feeder = open(fifo, "wb")
        feeder.write(bytes(640 * 360 * 3))
        feeder.flush()
    else:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log_to)
    return proc, feeder


def idle_cost(args, work, n, source):
    g = Go2rtc(args.go2rtc, work, {})
    procs, feeders = [], []
    log = open(os.path.join(work, f"idle-{source}-{n}.log"), "w")
    try:
        names = [f"{source}{n}-{i:03d}" for i in range(n)]
        for name in names:
            p, fd = start_agent(args.bin, work, g.api, name, source, log)
            procs.append(p)
            feeders.append(fd)
        g.wait_registered(names)
        time.sleep(3)  # start-up done, the stream idles
        cpu0, t0 = sum(cpu_seconds(p.pid) for p in procs), time.time()
        time.sleep(args.idle_seconds)
        cpu1, t1 = sum(cpu_seconds(p.pid) for p in procs), time.time()
        rss = [rss_kib(p.pid) for p in procs]
        core_pct = (cpu1 - cpu0) / (t1 - t0) * 100
        return {"agents": n, "source": source, "core_pct_total": round(core_pct, 2),
                "core_pct_per_agent": round(core_pct / n, 3), "rss_mib_total": round(sum(rss) / 1024, 1),
                "rss_mib_per_agent": round(sum(rss) / 1024 / n, 1)}
    finally:
        stop_all(procs)
        for fd in feeders:
            if fd:
                fd.close()
        g.stop()
        log.close()


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def click_mp4(api, name, limit=10.0):
    """Seconds from the request to the first whole moof+mdat fragment."""
    s = socket.create_connection(("127.0.0.1", api), timeout=limit)
    t0 = time.monotonic()
    s.sendall(f"GET /api/stream.mp4?src={name} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
        if time.monotonic() - t0 > limit:
            raise TimeoutError("no HTTP header")
    head, body = buf.split(b"\r\n\r\n", 1)
    if b" 200" not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    seen_moof = False
    while True:
        while len(body) < 8:
            body += s.recv(65536)
        size, kind = struct.unpack(">I4s", body[:8])
        while len(body) < size:
            more = s.recv(65536)
            if not more:
                raise ConnectionError("closed mid-box")
            body += more
        body = body[size:]
        if kind == b"moof":
            seen_moof = True
        elif kind == b"mdat" and seen_moof:
            t = time.monotonic() - t0
            s.close()
            return t
        if time.monotonic() - t0 > limit:
            raise TimeoutError("no fragment")


def click_rtsp(port, name, limit=10.0):
    """Seconds from connecting to go2rtc's RTSP server to the first whole IDR (its RTP marker)."""
    url = f"rtsp://127.0.0.1:{port}/{name}"
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)

    def ask(req):
        s.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += read_exact(s, 1)
        head = buf.decode()
        length = 0
        for line in head.split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":")[1])
        body = read_exact(s, length).decode() if length else ""
        if not head.startswith("RTSP/1.0 200"):
            raise RuntimeError(head.splitlines()[0])
        return head, body

    _, sdp = ask(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n")
    control = next((l[10:] for l in sdp.splitlines() if l.startswith("a=control:") and l[10:] != "*"), "trackID=0")
    track = control if control.startswith("rtsp://") else f"{url}/{control}"
    head, _ = ask(f"SETUP {track} RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n")
    session = next(l.split(":", 1)[1].strip().split(";")[0] for l in head.split("\r\n") if l.lower().startswith("session:"))
    s.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n".encode())
    in_idr = False
    while time.monotonic() - t0 < limit:
        first = read_exact(s, 1)
        if first != b"$":  # the PLAY answer (or another RTSP message): skip its header and body
            buf = first
            while b"\r\n\r\n" not in buf:
                buf += read_exact(s, 1)
            length = next((int(l.split(b":")[1]) for l in buf.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
            read_exact(s, length)
            continue
        channel, size = struct.unpack(">BH", read_exact(s, 3))
        packet = read_exact(s, size)
        if channel != 0 or len(packet) < 13:
            continue
        marker = packet[1] & 0x80
        payload = packet[12 + 4 * (packet[0] & 0x0F):]
        nal = payload[0] & 0x1F
        if nal == 5 or (nal == 28 and (payload[1] & 0x1F) == 5):
            in_idr = True
        if nal == 24:  # STAP-A: look inside
            i = 1
            while i + 2 < len(payload):
                n = struct.unpack(">H", payload[i:i + 2])[0]
                if payload[i + 2] & 0x1F == 5:
                    in_idr = True
                i += 2 + n
        if in_idr and marker:
            t = time.monotonic() - t0
            s.close()
            return t
    raise TimeoutError("no IDR")


def clicks(args, work):
    """Click-to-picture for every mode and viewer."""
    tcp_port = free_port()
    common = " ".join([args.bin, *SIZE, "--stats-interval", "0"])
    g = Go2rtc(args.go2rtc, work, {
        "exec": f"exec:{common}#killsignal=15#killtimeout=5",
        "exec-rtsp": f"exec:{common} --output {{output}}#killsignal=15#killtimeout=5",
    })
    log = open(os.path.join(work, "clicks.log"), "w")
    agents = [
        subprocess.Popen([args.bin, *SIZE, "--output", "rtsp-listen:127.0.0.1:0/pull-rtsp", "--register",
                          f"http://127.0.0.1:{g.api}", "--stats-interval", "0"], stdout=subprocess.DEVNULL, stderr=log),
        subprocess.Popen([args.bin, *SIZE, "--output", f"tcp:127.0.0.1:{tcp_port}", "--register",
                          f"http://127.0.0.1:{g.api}", "--name", "pull-tcp", "--stats-interval", "0"],
                         stdout=subprocess.DEVNULL, stderr=log),
    ]
    results = []
    try:
        g.wait_registered(["pull-rtsp", "pull-tcp"])
        time.sleep(2)
        modes = ["pull-rtsp", "pull-tcp", "exec", "exec-rtsp"]
        samples = {(m, v): [] for m in modes for v in ("mp4", "rtsp")}
        errors = {}
        # Modes interleaved click by click, so drift on a shared machine hits them alike.
        for i in range(args.clicks):
            for m in modes:
                for viewer in ("mp4", "rtsp"):
                    try:
                        t = click_mp4(g.api, m) if viewer == "mp4" else click_rtsp(g.rtsp, m)
                        samples[(m, viewer)].append(t * 1000)
                    except Exception as e:  # counted and reported, never guessed
                        errors[(m, viewer)] = errors.get((m, viewer), 0) + 1
                        print(f"bench-fleet: {m}/{viewer}: {e}", file=sys.stderr)
                    time.sleep(args.settle)  # the viewer left: the agent idles or the exec producer exits
        for (m, viewer), v in samples.items():
            results.append({"mode": m, "viewer": viewer, "p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v),
                            "failed": errors.get((m, viewer), 0)})
    finally:
        stop_all(agents)
        g.stop()
        log.close()
    return results


def viewer_latency(args, work):
    out = subprocess.run([sys.executable, os.path.join(HERE, "bench-viewer.py"), "--bin", f"agentcast={args.bin}",
                          "--configs", "640x360@30", "--modes", "pull,rtsp,tcp", "--frames", str(args.frames),
                          "--out", os.path.join(work, "viewer.json")], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return []
    with open(os.path.join(work, "viewer.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/agentcast")
    ap.add_argument("--agents", default="8,16,32")
    ap.add_argument("--sources", default="scene,raw")
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between clicks")
    ap.add_argument("--frames", type=int, default=300, help="frames per viewer-latency run")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: idle,clicks,viewer")
    ap.add_argument("--out", help="write the JSON results here")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    args.go2rtc = go2rtc_binary()
    skip = set(filter(None, args.skip.split(",")))
    work = tempfile.mkdtemp(prefix="bench-fleet-")
    out = {"idle": [], "clicks": [], "viewer": []}
    try:
        if "idle" not in skip:
            for source in args.sources.split(","):
                for n in (int(x) for x in args.agents.split(",")):
                    r = idle_cost(args, work, n, source)
                    print(json.dumps(r), file=sys.stderr)
                    out["idle"].append(r)
        if "clicks" not in skip:
            out["clicks"] = clicks(args, work)
        if "viewer" not in skip:
            out["viewer"] = viewer_latency(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    if out["idle"]:
        print("| source | agents | CPU, all agents (% of a core) | per agent | RSS, all agents (MiB) | per agent |")
        print("|---|---|---|---|---|---|")
        for r in out["idle"]:
            print(f"| {r['source']} | {r['agents']} | {fmt(r['core_pct_total'])} | {fmt(r['core_pct_per_agent'], 2)} "
                  f"| {fmt(r['rss_mib_total'])} | {fmt(r['rss_mib_per_agent'])} |")
        print()
    if out["clicks"]:
        print("| mode | viewer | click -> picture p50 ms | p99 ms | clicks | failed |")
        print("|---|---|---|---|---|---|")
        for r in out["clicks"]:
            print(f"| {r['mode']} | {r['viewer']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['n']} | {r['failed']} |")
        print()
    if out["viewer"]:
        print("| mode | render -> viewer decoded p50 ms | p99 ms | frames | misreads |")
        print("|---|---|---|---|---|")
        for r in out["viewer"]:
            if "error" in r:
                print(f"| {r['mode']} | failed: {r['error']} | | | |")
            else:
                print(f"| {r['mode']} | {fmt(r['p50'])} | {fmt(r['p99'])} | {r['n']} | {r['misreads']} |")


if __name__ == "__main__":
    main()
