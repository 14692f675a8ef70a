#!/usr/bin/env python3
"""Side-by-side numbers for agentcast and its encode-only baseline, from one run on this machine.

Runs are alternated (agentcast cpu, agentcast gpu, baseline, ...) so drift hits every contender
alike; each figure is the median of --runs runs, with min..max. Measures, unpaced:
  - fps and CPU seconds per frame (user+sys of the process and its threads),
  - peak RSS,
and, paced at the default settings:
  - spawn -> first SPS+PPS+IDR bytes on stdout (a viewer's join time),
  - reader leaves (BrokenPipe) -> process exit.

The baseline is `gst-launch-1.0 videotestsrc ! x264enc` with agentcast's x264 settings table.
Usage: scripts/quick-bench.py [--runs 3] [--frames 300] [--bin target/release/agentcast]
"""

import argparse
import os
import statistics
import subprocess
import time

X264 = (
    "pass=cbr bitrate=4000 vbv-buf-capacity=67 key-int-max=30 bframes=0 b-adapt=false "
    "speed-preset=superfast tune=zerolatency sliced-threads=false threads=1 qp-max=34 byte-stream=true "
    "option-string=sliced-threads=0:slices=1:nal-hrd=cbr:filler=1:scenecut=0"
)


def run_measured(cmd, frames):
    """Runs cmd with stdout to /dev/null; returns (fps, cpu ms/frame, peak RSS MiB)."""
    start = time.monotonic()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return frames / wall, (ru.ru_utime + ru.ru_stime) * 1000.0 / frames, ru.ru_maxrss / 1024.0


def join_and_exit(binary):
    """Paced default stream: spawn -> first SPS+PPS+IDR, and BrokenPipe -> exit (ms)."""
    start = time.monotonic()
    p = subprocess.Popen([binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    join = None
    while join is None:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            raise SystemExit("agentcast ended before its first IDR")
        buf += chunk
        # SPS (0x67), PPS (0x68) and an IDR slice (0x65) behind 4-byte start codes.
        if all(b"\x00\x00\x00\x01" + bytes([h]) in buf for h in (0x67, 0x68, 0x65)):
            join = (time.monotonic() - start) * 1000.0
    time.sleep(0.5)
    p.stdout.close()
    gone = time.monotonic()
    p.wait(timeout=10)
    return join, (time.monotonic() - gone) * 1000.0, p.returncode


def fmt(values, digits=1):
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--bin", default="target/release/agentcast")
    a = ap.parse_args()

    sizes = [(1280, 720), (1920, 1080)]
    contenders = {}
    for w, h in sizes:
        base = [a.bin, "--no-pace", "--frames", str(a.frames), "--width", str(w), "--height", str(h)]
        contenders[(w, h, "agentcast --convert cpu")] = base + ["--convert", "cpu"]
        contenders[(w, h, "agentcast --convert gpu")] = base + ["--convert", "gpu"]
        contenders[(w, h, "baseline: videotestsrc ! x264enc")] = (
            ["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={a.frames}", "pattern=smpte", "!",
             f"video/x-raw,format=NV12,width={w},height={h},framerate=30/1", "!", "x264enc"]
            + X264.split(" ")
            + ["!", "video/x-h264,profile=high", "!", "h264parse", "config-interval=-1", "!", "fakesink"]
        )
    results = {k: [] for k in contenders}
    for _ in range(a.runs):
        for key, cmd in contenders.items():
            results[key].append(run_measured(cmd, a.frames))

    print(f"| size | contender | fps | CPU ms/frame | peak RSS MiB |  ({a.runs} runs of {a.frames} frames, "
          f"median (min..max), {os.cpu_count()} CPUs)")
    print("|---|---|---|---|---|")
    for (w, h, name), rs in results.items():
        fps, cpu, rss = zip(*rs)
        print(f"| {w}x{h} | {name} | {fmt(fps)} | {fmt(cpu)} | {fmt(rss, 0)} |")

    joins, exits = [], []
    for _ in range(a.runs):
        j, e, rc = join_and_exit(a.bin)
        if rc != 0:
            raise SystemExit(f"agentcast exited {rc} on BrokenPipe")
        joins.append(j)
        exits.append(e)
    print()
    print(f"spawn -> first SPS+PPS+IDR on stdout: {fmt(joins)} ms")
    print(f"BrokenPipe -> exit (status 0): {fmt(exits)} ms")


if __name__ == "__main__":
    main()
