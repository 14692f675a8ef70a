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

`bench_python.py gym` measures what agentcast.gym costs an RL agent instead: see gym_main.
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


# ---------------------------------------------------------------------------------------------
# bench_python.py gym: steps/s of Gymnasium envs under agentcast.gym, against the same env
# unwrapped and under Gymnasium's RecordVideo, side by side in one run.

GYM_ENVS = {"cartpole": "CartPole-v1", "mujoco": "HalfCheetah-v5"}
GYM_SETUPS = ["plain", "unwatched", "watched", "vec_plain", "vec_watched", "record_video", "paired_unwatched",
              "paired_watched"]
# Chunk length of the paired setups, seconds.
PAIR_CHUNK = 0.1
GYM_FPS = 30
VEC_ENVS = 8


def _make(env: str):  # noqa: ANN202
    import gymnasium

    if env == "mujoco":
        return gymnasium.make(GYM_ENVS[env], render_mode="rgb_array", width=640, height=360)
    return gymnasium.make(GYM_ENVS[env], render_mode="rgb_array")


def _viewer(args: argparse.Namespace, name: str):  # noqa: ANN202
    """A go2rtc viewer (a process pulling /api/stream.mp4, so go2rtc starts `cat FIFO`), or with
    --viewer fifo, `cat FIFO > /dev/null` itself."""
    fifo = Path(args.dir) / f"{name}.h264"
    if args.viewer == "fifo":
        return subprocess.Popen(["sh", "-c", f'exec cat "{fifo}" > /dev/null'])
    url = f"http://127.0.0.1:{args.port}/api/stream.mp4?src={name}"
    code = ("import sys, time, urllib.request\n"
            "for _ in range(100):\n"
            "    try:\n"
            f"        r = urllib.request.urlopen({url!r}, timeout=10); break\n"
            "    except OSError: time.sleep(0.1)\n"
            "while r.read(65536): pass\n")
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)


def gym_child(args: argparse.Namespace) -> None:
    """One setup on one env: step as fast as it goes for --seconds, print one JSON line."""
    import gymnasium
    import numpy as np

    import agentcast.gym

    env_name, setup = args.gym_child
    if setup.startswith("paired_"):
        paired_child(args, env_name, setup)
        return
    vector = setup.startswith("vec")
    fifo = Path(args.dir) / f"{env_name}-{setup}.h264"
    if vector:
        env = gymnasium.vector.SyncVectorEnv([lambda: _make(env_name)] * VEC_ENVS)
    else:
        env = _make(env_name)
    if setup in ("unwatched", "watched"):
        env = agentcast.gym.StreamWrapper(env, fps=GYM_FPS, output=f"fifo:{fifo}", stats_interval=0,
                                          log_level="error", max_render_share=args.max_render_share)
    elif setup == "vec_watched":
        env = agentcast.gym.VectorStreamWrapper(env, layout="grid", fps=GYM_FPS, output=f"fifo:{fifo}",
                                                stats_interval=0, log_level="error",
                                                max_render_share=args.max_render_share)
    elif setup == "record_video":
        env = gymnasium.wrappers.RecordVideo(env, str(Path(args.dir) / f"video-{env_name}"))
    space = env.action_space
    space.seed(0)
    actions = [space.sample() for _ in range(1024)]
    env.reset(seed=0)
    viewer = None
    stream = None
    if setup in ("watched", "vec_watched"):
        stream = env.stream if setup == "watched" else env.streams[0]
        viewer = _viewer(args, fifo.stem)
        end = time.monotonic() + 60
        while not stream.watched:
            if time.monotonic() > end:
                sys.exit(f"{setup}: no viewer attached within 60 s")
            time.sleep(0.01)
    before = stream.stats() if stream else None
    steps, k, start = 0, 0, time.perf_counter()
    while True:
        for _ in range(64):
            _obs, _r, terminated, truncated, _ = env.step(actions[k & 1023])
            k += 1
            if not vector and (terminated or truncated):
                env.reset()
        steps += 64 * (VEC_ENVS if vector else 1)
        elapsed = time.perf_counter() - start
        if elapsed >= args.seconds:
            break
    row = {"env": env_name, "setup": setup, "steps_per_s": steps / elapsed, "seconds": elapsed}
    if stream is not None:
        after = stream.stats()
        render = after["render"]
        # New frames a second (the stream itself runs at GYM_FPS, repeating the last frame).
        row["stream_fps"] = (render["rendered"] - before["render"]["rendered"]) / elapsed
        row["render_share"] = render["share"]
        row["render_ms"] = render["render_ms"]
        row["skipped_budget"] = render["skipped_budget"] - before["render"]["skipped_budget"]
    # The viewer leaves first, so go2rtc stops `cat` itself rather than see it end when the FIFO
    # goes (it would restart it, then back off, and keep the next run's viewer waiting).
    if viewer is not None:
        viewer.kill()
        viewer.wait(timeout=10)
        time.sleep(0.5)
    env.close()
    print(json.dumps(row), file=sys.stderr)


def paired_child(args: argparse.Namespace, env_name: str, setup: str) -> None:
    """The env alone and under StreamWrapper (unwatched, or watched through go2rtc) in one process,
    stepped in alternate chunks of PAIR_CHUNK s: each wrapper chunk's rate against the mean of the
    plain chunks either side of it, the median of those ratios. Load that comes and goes on a
    shared machine then falls on both alike. While watched, the stream's threads keep encoding
    (repeats) during the plain chunks too; rendering and pushing are in the wrapper's chunks only."""
    import agentcast.gym

    fifo = Path(args.dir) / f"{env_name}-{setup}.h264"
    plain = _make(env_name)
    wrapped = agentcast.gym.StreamWrapper(_make(env_name), fps=GYM_FPS, output=f"fifo:{fifo}",
                                          stats_interval=0, log_level="error",
                                          max_render_share=args.max_render_share)
    space = plain.action_space
    space.seed(0)
    actions = [space.sample() for _ in range(1024)]
    plain.reset(seed=0)
    wrapped.reset(seed=0)
    viewer = None
    if setup == "paired_watched":
        viewer = _viewer(args, fifo.stem)
        end = time.monotonic() + 30
        while not wrapped.stream.watched:
            if time.monotonic() > end:
                sys.exit(f"{setup}: no viewer attached within 30 s")
            time.sleep(0.01)

    def chunk(env) -> float:  # noqa: ANN001
        steps, k, start = 0, 0, time.perf_counter()
        while True:
            for _ in range(64):
                _obs, _r, terminated, truncated, _ = env.step(actions[k & 1023])
                k += 1
                if terminated or truncated:
                    env.reset()
            steps += 64
            elapsed = time.perf_counter() - start
            if elapsed >= PAIR_CHUNK:
                return steps / elapsed

    before = wrapped.stats()["render"]["rendered"]
    start = time.perf_counter()
    rates_plain, rates_wrapped = [chunk(plain)], []
    while time.perf_counter() - start < args.seconds:
        rates_wrapped.append(chunk(wrapped))
        rates_plain.append(chunk(plain))
    elapsed = time.perf_counter() - start
    ratios = [w / ((a + b) / 2) for w, a, b in zip(rates_wrapped, rates_plain, rates_plain[1:])]
    render = wrapped.stats()["render"]
    row = {"env": env_name, "setup": setup, "steps_per_s": statistics.median(rates_wrapped),
           "plain_steps_per_s": statistics.median(rates_plain), "paired_ratio": statistics.median(ratios),
           "pairs": len(ratios), "seconds": elapsed,
           # New frames a second of the wrapper's own time (half the run).
           "stream_fps": (render["rendered"] - before) / (elapsed / 2), "render_share": render["share"],
           "render_ms": render["render_ms"], "skipped_budget": render["skipped_budget"]}
    if viewer is not None:
        viewer.kill()
        viewer.wait(timeout=10)
        time.sleep(0.5)
    wrapped.close()
    plain.close()
    print(json.dumps(row), file=sys.stderr)


def wants_frame_cost() -> dict[str, float]:
    """ns per Stream.wants_frame() call: unwatched (a FIFO without a reader) and watched (stdout)."""
    import tempfile
    import timeit

    import agentcast

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for label, output in (("unwatched", f"fifo:{d}/w.h264"), ("watched", "stdout")):
            with agentcast.Stream(320, 240, output=output, stats_interval=0, log_level="error") as s:
                n = 200_000
                out[label] = min(timeit.repeat(s.wants_frame, number=n, repeat=5)) / n * 1e9
    return out


def gym_main(argv: list[str]) -> None:
    """steps/s for CartPole-v1 and HalfCheetah-v5 (MuJoCo, 640x360, MUJOCO_GL=egl) in six setups:
    the env alone (rgb_array, never rendered); agentcast.gym.StreamWrapper with nobody watching;
    the wrapper watched at 30 fps through go2rtc (exec:cat of its FIFO, a viewer pulling MP4);
    8 envs in a SyncVectorEnv alone and under VectorStreamWrapper(layout="grid") watched the same
    way (env steps/s); and Gymnasium's RecordVideo (its default episode schedule). Each run is a
    fresh process; setups alternate within every round, each round starting one setup later;
    medians over the rounds. On a shared machine a process's rate swings with the load, so two more
    setups pair the env alone and the wrapper (unwatched; watched) in one process, in alternate
    0.1 s chunks (see paired_child); their "vs. plain" is the median of the chunk ratios.

        .venv/bin/pip install "gymnasium[mujoco]" moviepy   # besides scripts/python.sh's packages
        MUJOCO_GL=egl .venv/bin/python scripts/bench_python.py gym --rounds 3 --seconds 5
    """
    import shutil
    import tempfile

    p = argparse.ArgumentParser(prog="bench_python.py gym", description=gym_main.__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--envs", default="cartpole,mujoco")
    p.add_argument("--setups", default=",".join(GYM_SETUPS))
    p.add_argument("--viewer", choices=["go2rtc", "fifo"], default="go2rtc")
    p.add_argument("--max-render-share", type=float, default=0.1, help="the wrappers' render budget")
    p.add_argument("--go2rtc", default=os.environ.get("AGENTCAST_GO2RTC")
                   or shutil.which("go2rtc") or str(Path(__file__).resolve().parents[2] / "shared/bin/go2rtc"))
    p.add_argument("--gym-child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.gym_child:
        gym_child(args)
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    envs, setups = args.envs.split(","), args.setups.split(",")
    results: dict[tuple[str, str], list[dict]] = {
        (e, s): [] for e in envs for s in setups if not (s == "paired_watched" and e == "mujoco")}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        server = None
        port = 0
        if args.viewer == "go2rtc":
            import socket

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            streams = "".join(f"  {e}-{s}: exec:cat {d}/{e}-{s}.h264#killsignal=15#killtimeout=2\n"
                              for e in envs for s in ("watched", "vec_watched", "paired_watched"))
            config = Path(d) / "go2rtc.yaml"
            config.write_text(
                f"api: {{listen: '127.0.0.1:{port}'}}\nrtsp: {{listen: ''}}\nrtmp: {{listen: ''}}\n"
                f"srtp: {{listen: ''}}\nwebrtc: {{listen: '', ice_servers: []}}\nstreams:\n{streams}")
            server = subprocess.Popen([args.go2rtc, "-config", str(config)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        try:
            # Paired and watched, a render budget would earn render time during the plain chunks
            # too: only where the budget does not bind (CartPole renders in ~2 ms).
            runs = [(e, s) for e in envs for s in setups if not (s == "paired_watched" and e == "mujoco")]
            for r in range(args.rounds):
                # Each round starts one setup later, so no setup always runs first (or last).
                shift = r % len(runs)
                for e, s in runs[shift:] + runs[:shift]:
                    cmd = [sys.executable, os.path.abspath(__file__), "gym", "--gym-child", e, s,
                           "--seconds", str(args.seconds), "--dir", d, "--port", str(port), "--viewer", args.viewer,
                           "--max-render-share", str(args.max_render_share)]
                    # In the run's directory: MuJoCo leaves its MUJOCO_LOG.TXT in the working directory.
                    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=d,
                                         stdin=subprocess.DEVNULL, timeout=args.seconds * 4 + 180)
                    if out.returncode != 0:
                        sys.exit(f"{e} {s} failed ({out.returncode}): {out.stderr.decode()[-2000:]}")
                    row = json.loads(out.stderr.decode().strip().splitlines()[-1])
                    results[(e, s)].append(row)
                    print(f"round {r + 1}: {row}", file=sys.stderr)
            cost = wants_frame_cost()
        finally:
            if server is not None:
                server.kill()
                server.wait(timeout=10)
    import gymnasium

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, gymnasium {gymnasium.__version__}, MUJOCO_GL={os.environ['MUJOCO_GL']}; "
          f"max_render_share={args.max_render_share:g}; "
          f"{args.seconds:g} s per run, {args.rounds} rounds alternated; load average before/after "
          f"{load[0]:.1f}/{os.getloadavg()[0]:.1f}; median (min..max); watched = "
          f"{GYM_FPS} fps through {'go2rtc' if args.viewer == 'go2rtc' else 'a FIFO reader'}\n")
    print("| env | setup | steps/s | vs. plain | new frames/s on the stream | render share | render ms | frame slots skipped (budget) |")
    print("|---|---|---|---|---|---|---|---|")
    labels = {"plain": "env alone", "unwatched": "StreamWrapper, unwatched", "watched": "StreamWrapper, watched",
              "vec_plain": f"SyncVectorEnv x{VEC_ENVS} alone", "vec_watched": f"VectorStreamWrapper x{VEC_ENVS} grid, watched",
              "record_video": "RecordVideo",
              "paired_unwatched": "paired in one process: StreamWrapper, unwatched",
              "paired_watched": "paired in one process: StreamWrapper, watched"}
    for e in envs:
        for s in setups:
            rows = results.get((e, s))
            if not rows:
                continue
            rate = [x["steps_per_s"] for x in rows]
            base_setup = "vec_plain" if s.startswith("vec") else "plain"
            base = results.get((e, base_setup))
            ratio = statistics.median(rate) / statistics.median(x["steps_per_s"] for x in base) if base else None
            if s.startswith("paired_"):
                ratio = statistics.median(x["paired_ratio"] for x in rows)
            extra = ["", "", "", ""]
            if "stream_fps" in rows[0]:
                extra = [summary([x["stream_fps"] for x in rows]), summary([x["render_share"] for x in rows], 3),
                         summary([x["render_ms"] for x in rows]), summary([x["skipped_budget"] for x in rows], 0)]
            print(f"| {GYM_ENVS[e]} | {labels[s]} | {summary(rate, 0)} | "
                  f"{'' if ratio is None else f'{ratio:.3f}x'} | {' | '.join(extra)} |")
    def med(e: str, s: str) -> float | None:
        rows = results.get((e, s))
        return statistics.median(x["steps_per_s"] for x in rows) if rows else None

    print()
    for e in envs:
        plain = med(e, "plain")
        watched_goal = 0.8 if e == "cartpole" else 0.85
        goals = [("unwatched", 0.95), ("watched", watched_goal), ("paired_unwatched", 0.95),
                 ("paired_watched", watched_goal)]
        said = []
        for s, goal in goals:
            rows = results.get((e, s))
            if not rows or not (plain or s.startswith("paired_")):
                continue
            if s.startswith("paired_"):
                ratio = statistics.median(x["paired_ratio"] for x in rows)
            else:
                ratio = med(e, s) / plain
            said.append(f"{s} {ratio:.3f}x (goal {goal}x: {'met' if ratio >= goal else 'NOT met'})")
        if med(e, "record_video") and plain:
            cheaper = all(med(e, s) > med(e, "record_video") for s in ("unwatched", "watched", "vec_watched")
                          if med(e, s))
            said.append(f"every wrapper setup faster than RecordVideo: {'yes' if cheaper else 'NO'}")
        print(f"{GYM_ENVS[e]}: " + "; ".join(said))
    print(f"\nStream.wants_frame(): {cost['unwatched']:.0f} ns unwatched, {cost['watched']:.0f} ns watched "
          "(best of 5 x 200,000 calls)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["gym"]:
        gym_main(sys.argv[2:])
    else:
        main()
