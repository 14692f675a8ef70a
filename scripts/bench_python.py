#!/usr/bin/env python3
"""A Python agent streaming 1280x720 RGB frames: through agentcast.Stream, against the same agent
piping the same frames into ffmpeg's libx264 (agentcast's settings, scripts/bench.py x264_ffmpeg)
through subprocess. Side by side in one run, contenders alternated in every round.

Each contender is a fresh Python process (this interpreter, where the agentcast package is
installed) that pushes precomputed frames (a moving flat square, 30 cycled) at --fps for --seconds,
then closes. Reported per contender (median over the rounds, min..max):

- push() cost: agentcast.Stream.push / the pipe write of one frame, p50 and p99 in microseconds;
- CPU ms per frame: user+sys of the agent and its children (ffmpeg), start-up included, divided by
  the frames encoded (agentcast: stats frames.written; ffmpeg: frames written to it);
- peak RSS: the agent's ru_maxrss, plus ffmpeg's for the ffmpeg contender (both are resident).

    .venv/bin/pip install ./python          # a release build, as pip makes it
    .venv/bin/python scripts/bench_python.py --rounds 3 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import x264_ffmpeg  # noqa: E402  (the one copy of agentcast's x264 settings for ffmpeg)

CONTENDERS = ["agentcast", "ffmpeg"]
# Pushes left out of the steady-state p99 (agentcast's slot allocates its first buffers then).
WARMUP = 10


def frames(width: int, height: int, count: int = 30):
    import numpy as np

    out = []
    for k in range(count):
        f = np.full((height, width, 3), 24, np.uint8)
        x = (k * width // count) % (width - 128)
        f[height // 2 - 64 : height // 2 + 64, x : x + 128] = ((k * 40) % 256, 200, 255 - (k * 40) % 256)
        out.append(f)
    return out


def child(args: argparse.Namespace) -> None:
    """One contender: push for --seconds at --fps, close, print one JSON line."""
    pictures = frames(args.width, args.height)
    took = []
    start = time.monotonic()
    n = int(args.seconds * args.fps)
    if args.child == "agentcast":
        import agentcast

        stream = agentcast.Stream(
            args.width, args.height, fps=args.fps, stats_interval=0, log_level="error", encoder="x264"
        )
        for k in range(n):
            time.sleep(max(0.0, start + k / args.fps - time.monotonic()))
            t0 = time.perf_counter_ns()
            stream.push(pictures[k % len(pictures)])
            took.append(time.perf_counter_ns() - t0)
        stream.close()
        stats = stream.stats()
        encoded = stats["frames"]["written"]
        extra = {"superseded": stats["dropped"]["superseded"], "repeated": stats.get("repeated"),
                 "skipped": stats.get("skipped")}
    else:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{args.width}x{args.height}", "-r", str(args.fps), "-i", "-", *x264_ffmpeg(args.fps), "-"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for k in range(n):
            time.sleep(max(0.0, start + k / args.fps - time.monotonic()))
            t0 = time.perf_counter_ns()
            proc.stdin.write(memoryview(pictures[k % len(pictures)]))
            took.append(time.perf_counter_ns() - t0)
        proc.stdin.close()
        if proc.wait(timeout=60) != 0:
            sys.exit(f"ffmpeg exited {proc.returncode}")
        encoded = n
        extra = {}
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    # The first pushes allocate the slot's buffers (page faults); after them, the steady state.
    steady = sorted(took[WARMUP:])
    took.sort()
    # stdout carries agentcast's stream (to /dev/null); the result goes to stderr.
    print(json.dumps({
        "contender": args.child,
        "pushed": n,
        "encoded": encoded,
        "push_p50_us": took[len(took) // 2] / 1000,
        "push_p99_us": took[int(len(took) * 0.99)] / 1000,
        "push_max_us": took[-1] / 1000,
        "push_p99_steady_us": steady[int(len(steady) * 0.99)] / 1000,
        "cpu_ms_per_frame": cpu * 1000 / max(encoded, 1),
        "rss_mib": (me.ru_maxrss + kids.ru_maxrss) / 1024,
        "rss_agent_mib": me.ru_maxrss / 1024,
        **extra,
    }), file=sys.stderr)


def summary(values: list[float], digits: int = 1) -> str:
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    results: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for r in range(args.rounds):
        for c in CONTENDERS:
            cmd = [sys.executable, __file__, "--child", c, "--seconds", str(args.seconds), "--fps", str(args.fps),
                   "--width", str(args.width), "--height", str(args.height)]
            out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 timeout=args.seconds * 4 + 120)
            if out.returncode != 0:
                sys.exit(f"{c} failed ({out.returncode}): {out.stderr.decode()[-2000:]}")
            row = json.loads(out.stderr.decode().splitlines()[-1])
            results[c].append(row)
            print(f"round {r + 1} {c}: {row}", file=sys.stderr)
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, timeout=30).stdout.decode().split("\n")[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, {ffmpeg}")
    print(f"{args.width}x{args.height} rgb24 @ {args.fps} fps, {args.seconds:g} s per run, {args.rounds} rounds "
          f"alternated; median (min..max)\n")
    print("| agent | push() p50 us | push() p99 us | p99 after 10 pushes us | push() max us | CPU ms/frame "
          "| peak RSS MiB (agent + ffmpeg) | frames encoded |")
    print("|---|---|---|---|---|---|---|---|")
    for c in CONTENDERS:
        rows = results[c]
        print(f"| {'agentcast.Stream' if c == 'agentcast' else 'pipe into ffmpeg'} "
              f"| {summary([x['push_p50_us'] for x in rows])} | {summary([x['push_p99_us'] for x in rows])} "
              f"| {summary([x['push_p99_steady_us'] for x in rows])} "
              f"| {summary([x['push_max_us'] for x in rows], 0)} | {summary([x['cpu_ms_per_frame'] for x in rows], 2)} "
              f"| {summary([x['rss_mib'] for x in rows], 0)} | {summary([x['encoded'] for x in rows], 0)} |")
    a = statistics.median(x["cpu_ms_per_frame"] for x in results["agentcast"])
    f = statistics.median(x["cpu_ms_per_frame"] for x in results["ffmpeg"])
    print(f"\nCPU per frame, agentcast / ffmpeg: {a / f:.2f}x")


if __name__ == "__main__":
    main()
