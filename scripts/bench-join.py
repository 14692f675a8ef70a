#!/usr/bin/env python3
"""How fast a viewer's first picture comes: agentcast against gst-launch, side by side in one run.

Two measures, each over --spawns runs per contender, the contenders alternated so the machine's
drift hits both alike:

  spawn -> SPS+PPS+IDR   from just before the process is spawned until its stdout has delivered an
                         SPS, a PPS and an IDR slice (behind 4-byte start codes; for MPEG-TS, in the
                         video PES payloads), which is what a viewer needs before it can show
                         anything; then the process is killed (SIGKILL, as go2rtc does when the last
                         viewer leaves)
  click -> first mp4 byte  through a real go2rtc (`exec:` on stdout): from the request for
                         /api/stream.mp4 until the first byte of the MP4 body arrives; the viewer
                         then leaves and go2rtc kills the producer

Contenders, both at --size (default 640x360) and 30 fps with agentcast's x264 settings:
  agentcast   agentcast --width W --height H (the demo scene, rendered; encoder chosen as usual):
              raw H.264, which go2rtc passes on only when the next frame starts
  agentcast-ts  the same with --mux mpegts, as `agentcast go2rtc-config --mode exec` writes it:
              go2rtc passes each frame on as soon as its PES is in
  gst-launch  gst-launch-1.0 -q videotestsrc is-live=true ! x264enc ... ! h264parse ! fdsink
              (encode only: no rendering, no encoder choice)

Prints a markdown table (p50, p99, min, max in ms, and agentcast's p50 over gst-launch's) and writes
it with the raw samples to --out (bench-join.md, bench-join.json).

  agentcast-before  (with --before BIN) an earlier build, the same way
  agentcast-shader  (with --shader FILE) agentcast drawing FILE instead of the built-in scene (and
                    agentcast-before-shader with --before)

Usage: scripts/bench-join.py [--bin target/release/agentcast] [--before BIN] [--shader FILE] [--spawns 30]
                             [--size 640x360] [--go2rtc ../shared/bin/go2rtc] [--out bench-results]
"""

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared x264 settings and the machine description)

FPS = 30


def contenders(binary, w, h, before=None, shader=None):
    own = lambda b: [b, "--width", str(w), "--height", str(h), "--fps", str(FPS), "--log-level", "error"]  # noqa: E731
    cmds = {"agentcast": own(binary), "agentcast-ts": own(binary) + ["--mux", "mpegts"]}
    if shader:
        cmds["agentcast-shader"] = own(binary) + ["--shader", shader]
    if before:
        cmds["agentcast-before"] = own(before)
        if shader:
            cmds["agentcast-before-shader"] = own(before) + ["--shader", shader]
    # bench.command's live gst-x264 with pattern=smpte; num-buffers=-1 runs until killed.
    cmds["gst-launch"] = bench.command("gst-x264", binary, w, h, FPS, None)
    return cmds


def nal_types(buf):
    """NAL unit types behind 4-byte start codes in buf."""
    types, i = set(), buf.find(b"\x00\x00\x00\x01")
    while 0 <= i < len(buf) - 4:
        types.add(buf[i + 4] & 0x1F)
        i = buf.find(b"\x00\x00\x00\x01", i + 4)
    return types


def ts_video(buf):
    """The video elementary stream carried in whole 188-byte TS packets (PES headers removed)."""
    es, vpid = b"", None
    for i in range(0, len(buf) - len(buf) % 188, 188):
        p = buf[i:i + 188]
        if p[0] != 0x47:
            break
        pusi, pid, afc = p[1] & 0x40, ((p[1] & 0x1F) << 8) | p[2], p[3] >> 4
        start = 5 + p[4] if afc & 2 else 4
        payload = p[start:] if afc & 1 and start < 188 else b""
        if pusi and payload[:3] == b"\x00\x00\x01" and 0xE0 <= payload[3] <= 0xEF:
            vpid = pid
            payload = payload[9 + payload[8]:]
        elif pid != vpid:
            continue
        es += payload
    return es


def spawn_to_idr(cmd, limit=20.0):
    """ms from spawn until stdout has held an SPS, a PPS and an IDR slice."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    buf = b""
    try:
        while True:
            chunk = os.read(p.stdout.fileno(), 1 << 16)
            if not chunk:
                sys.exit(f"bench-join: {cmd[0]} ended before an IDR (status {p.wait()})")
            buf += chunk
            es = ts_video(buf) if buf[:1] == b"\x47" else buf
            # The IDR slice's header is complete once its first bytes are there.
            if {7, 8, 5} <= nal_types(es[:-1] if len(es) > 5 else b""):
                return (time.monotonic() - start) * 1000.0
            if time.monotonic() - start > limit:
                sys.exit(f"bench-join: no SPS+PPS+IDR from {cmd[0]} within {limit} s")
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Go2rtc:
    def __init__(self, binary, streams):
        self.dir = tempfile.mkdtemp(prefix="bench-join-")
        self.api = free_port()
        rtsp, webrtc = free_port(), free_port()
        yaml = (f'api:\n  listen: "127.0.0.1:{self.api}"\nrtsp:\n  listen: "127.0.0.1:{rtsp}"\n'
                f'webrtc:\n  listen: "127.0.0.1:{webrtc}"\n  ice_servers: []\n'
                'rtmp:\n  listen: ""\nsrtp:\n  listen: ""\nstreams:\n')
        for name, cmd in streams.items():
            yaml += f'  {name}: "exec:{" ".join(cmd)}"\n'
        config = os.path.join(self.dir, "go2rtc.yaml")
        with open(config, "w") as f:
            f.write(yaml)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCAST_")}
        self.log = open(os.path.join(self.dir, "go2rtc.log"), "w")
        self.p = subprocess.Popen([binary, "-config", config], cwd=self.dir, env=env, stdout=self.log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.api), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("bench-join: go2rtc's API did not come up")
                time.sleep(0.02)

    def click(self, name, limit=20.0):
        """ms from the request until the first MP4 body byte; then the viewer leaves."""
        start = time.monotonic()
        s = socket.create_connection(("127.0.0.1", self.api), timeout=limit)
        s.sendall(f"GET /api/stream.mp4?src={name} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    sys.exit(f"bench-join: go2rtc closed {name} before any MP4 byte: {got[-300:]!r}")
                got += chunk
                head, sep, body = got.partition(b"\r\n\r\n")
                if sep and not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
                    sys.exit(f"bench-join: go2rtc answered {head.splitlines()[0]!r} for {name}")
                if sep and body:
                    return (time.monotonic() - start) * 1000.0
        finally:
            s.close()

    def producers(self):
        """go2rtc's live children (the producers it runs)."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == str(self.p.pid) and fields[0] != "Z":
                out.append(int(pid))
        return out

    def wait_idle(self, limit=5.0):
        deadline = time.monotonic() + limit
        while self.producers():
            if time.monotonic() > deadline:
                sys.exit("bench-join: go2rtc's producer still runs 5 s after the viewer left")
            time.sleep(0.01)

    def close(self):
        for pid in self.producers():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        self.p.kill()
        self.p.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def stats(samples):
    s = sorted(samples)
    q = lambda p: s[min(len(s) - 1, round(p * (len(s) - 1)))]  # noqa: E731
    return {"p50": round(statistics.median(s), 1), "p99": round(q(0.99), 1), "min": round(s[0], 1),
            "max": round(s[-1], 1), "n": len(s)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/agentcast")
    ap.add_argument("--before", help="another agentcast binary to run alongside (an earlier build)")
    ap.add_argument("--shader", help="also run agentcast (and --before) with this --shader file")
    ap.add_argument("--spawns", type=int, default=30)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--go2rtc", default=os.environ.get("AGENTCAST_TEST_GO2RTC") or "../shared/bin/go2rtc")
    ap.add_argument("--out", default="bench-results")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    binary = os.path.abspath(a.bin)
    for tool in [binary, "gst-launch-1.0"]:
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"bench-join: {tool} not found")
    cmds = contenders(binary, w, h, a.before and os.path.abspath(a.before), a.shader and os.path.abspath(a.shader))
    spawn = {n: [] for n in cmds}
    click = {n: [] for n in cmds}
    # One warm-up of each (page cache, GStreamer's registry) that is not counted.
    for cmd in cmds.values():
        spawn_to_idr(cmd)
    for i in range(a.spawns):
        for name, cmd in cmds.items():
            spawn[name].append(spawn_to_idr(cmd))
            time.sleep(0.1)
    have_go2rtc = os.path.exists(a.go2rtc)
    if have_go2rtc:
        g = Go2rtc(os.path.abspath(a.go2rtc), {n.replace("-", "_"): c for n, c in cmds.items()})
        try:
            for name in cmds:
                g.click(name.replace("-", "_"))
                g.wait_idle()
            for i in range(a.spawns):
                for name in cmds:
                    click[name].append(g.click(name.replace("-", "_")))
                    g.wait_idle()
                    time.sleep(0.1)
        finally:
            g.close()
    else:
        print(f"bench-join: no go2rtc at {a.go2rtc}; click -> first mp4 byte not measured", file=sys.stderr)
    m = bench.machine()
    report = {"machine": m, "size": f"{w}x{h}", "fps": FPS, "spawns": a.spawns, "commands": cmds,
              "spawn_to_idr_ms": {n: stats(v) for n, v in spawn.items()},
              "click_to_mp4_ms": {n: stats(v) for n, v in click.items() if v},
              "samples": {"spawn_to_idr_ms": spawn, "click_to_mp4_ms": click}}
    lines = [
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['gpu']}; {m['date']}.",
        f"{a.spawns} spawns per contender at {w}x{h}@{FPS}, alternated, after one uncounted warm-up each.",
        "",
        "| measure | contender | p50 ms | p99 ms | min ms | max ms | p50 vs gst-launch |",
        "|---|---|---|---|---|---|---|",
    ]
    for measure, key in [("spawn -> SPS+PPS+IDR on stdout", "spawn_to_idr_ms"),
                         ("click -> first mp4 byte (go2rtc exec:)", "click_to_mp4_ms")]:
        rows = report[key]
        if not rows:
            continue
        base = rows["gst-launch"]["p50"]
        for name, r in rows.items():
            lines.append(f"| {measure} | {name} | {r['p50']} | {r['p99']} | {r['min']} | {r['max']} | "
                         f"{r['p50'] / base:.2f}x |")
    md = "\n".join(lines) + "\n"
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench-join.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(a.out, "bench-join.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
