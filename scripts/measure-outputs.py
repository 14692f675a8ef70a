#!/usr/bin/env python3
"""Numbers for the FIFO output: attach -> first byte, idle CPU, and a stalled reader's recovery.

Runs the release binary with --output fifo:PATH and plays the reader itself (like `cat`), so it
knows when each byte arrived:
  - attach -> first byte: open the FIFO, time until the first bytes (--runs attaches);
  - idle CPU: producer CPU seconds over 5 s with no reader (--idle pause);
  - stall: read 2 s, stop reading for 3 s, resume; report the drops and peak queue from the
    producer's log, and the time from the resume to the first picture after the dropped span
    (found with ffprobe's packet positions and the decoded frame stamps).
Usage: scripts/measure-outputs.py [--bin target/release/agentcast] [--runs 10]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_log(path, needle, limit=15):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if needle in open(path).read():
            return
        time.sleep(0.02)
    raise SystemExit(f"no {needle!r} in {path}")


def read_for(fd, seconds, chunks, t0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            time.sleep(0.002)
            continue
        if not data:
            break
        chunks.append((time.monotonic() - t0, data))


def stamps_with_positions(path, width=1280, height=720):
    """(byte position, frame stamp) of every decoded picture."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-f", "h264", "-show_frames", "-show_entries", "frame=pkt_pos", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True).stdout.split()
    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "h264", "-i", path, "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    size = width * height
    sys.path.insert(0, os.path.join(os.path.dirname(__file__)))
    out = []
    for i, pos in enumerate(probe):
        luma = raw[i * size:(i + 1) * size]
        out.append((int(pos), decode_stamp(luma, width, height)))
    return out


def decode_stamp(luma, w, h):
    """Python twin of agentcast::stamp::decode (layout in src/stamp.rs)."""
    blocks = 42
    block = min((w * 7 // 10 // blocks) & ~1, 64)
    x0, y0 = ((w - block * blocks) // 2) & ~1, block & ~1

    def mean(i):
        xs = x0 + i * block + block // 4
        ys = y0 + block // 4
        vals = [luma[y * w + x] for y in range(ys, ys + block // 2) for x in range(xs, xs + block // 2)]
        return sum(vals) // len(vals)

    white, black = mean(0), mean(1)
    if white < black + 64:
        return None
    thr = (white + black) // 2
    word = 0
    for i in range(2, blocks):
        word = (word << 1) | (1 if mean(i) > thr else 0)
    return word >> 8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/agentcast")
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    fifo = os.path.join(tmp, "agent.h264")
    log = os.path.join(tmp, "log")
    prod = subprocess.Popen([a.bin, "--output", f"fifo:{fifo}", "--bitrate", "8000", "--max-lag", "300"],
                            stderr=open(log, "w"))
    try:
        wait_log(log, "pipeline:")
        time.sleep(1)
        c0 = cpu_seconds(prod.pid)
        time.sleep(5)
        idle = cpu_seconds(prod.pid) - c0
        print(f"idle (no reader, --idle pause): {idle:.3f} CPU s over 5 s ({idle / 5 * 100:.2f}% of one core)")

        firsts = []
        for _ in range(a.runs):
            t0 = time.monotonic()
            fd = os.open(fifo, os.O_RDONLY)
            os.read(fd, 1)
            firsts.append((time.monotonic() - t0) * 1000)
            os.close(fd)
            time.sleep(0.2)
        print(f"attach -> first byte: median {statistics.median(firsts):.0f} ms "
              f"({min(firsts):.0f}..{max(firsts):.0f}, {a.runs} attaches)")

        # Stall: read 2 s, stop 3 s, read 3 s.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        chunks, t0 = [], time.monotonic()
        read_for(fd, 2, chunks, t0)
        time.sleep(3)
        resume = time.monotonic() - t0
        read_for(fd, 3, chunks, t0)
        os.close(fd)
        time.sleep(1.2)  # let the once-a-second stats line land
        stream, arrivals, pos = b"", [], 0
        for t, data in chunks:
            arrivals.append((pos, t))
            stream += data
            pos += len(data)
        cut = stream.rfind(b"\x00\x00\x00\x01\x09")
        cap = os.path.join(tmp, "stall.h264")
        open(cap, "wb").write(stream[:cut])
        frames = stamps_with_positions(cap)
        gap_at = next(p for (p, s), (_, prev) in zip(frames[1:], frames) if s is not None and prev is not None and s - prev > 1)
        arrived = next(t for p, t in arrivals if p >= gap_at)
        text = open(log).read()
        drops = re.findall(r"dropped: (\d+) attach, (\d+) lag, (\d+) detach; queue \d+ AU / \d+ bytes \(peak (\d+) bytes\)", text)
        lag, peak = drops[-1][1], drops[-1][3]
        print(f"stall 3 s at 8 Mbit/s, --max-lag 300: {lag} access units dropped (lag), peak queue {peak} bytes, "
              f"first picture after the drop arrived {(arrived - resume) * 1000:.0f} ms after the reader resumed "
              f"(the 1 MiB pipe backlog is read first)")
    finally:
        prod.terminate()
        prod.wait()


if __name__ == "__main__":
    main()
