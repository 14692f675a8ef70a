"""agentcast.gym on real Gymnasium envs (CartPole-v1, rgb_array): StreamWrapper streams what
someone watches, renders nothing for nobody and at most fps frames a second for a reader, keeps
rendering within its budget, never changes what the env returns, and go2rtc can serve what it
makes; VectorStreamWrapper does the same for vector envs, as a grid or one stream per sub-env."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import agentcast.gym  # noqa: E402
from conftest import DEADLINE, ROOT, FifoReader, check, decode_rgb, run  # noqa: E402

CARTPOLE = (600, 400)  # CartPole-v1's rgb_array frames, W x H

AGENT = """
import sys, time
import gymnasium, agentcast.gym
env = agentcast.gym.StreamWrapper(gymnasium.make("CartPole-v1", render_mode="rgb_array"),
                                  fps=30, stats_interval=0, **{settings})
obs, _ = env.reset(seed=1)
{wait}
start = time.monotonic()
for step in range(60):
    obs, _r, terminated, truncated, _ = env.step(int(obs[2] + 0.5 * obs[3] > 0))
    if terminated or truncated:
        obs, _ = env.reset()
    time.sleep(max(0.0, start + (step + 1) / 30 - time.monotonic()))
stats = env.stream.stats()
env.close()
print("frames", stats["frames"]["written"], file=sys.stderr)
"""


def not_blank(picture: np.ndarray) -> bool:
    """CartPole is a dark cart and a brown pole on white: a real frame has both light and dark."""
    grey = picture.mean(axis=2)
    return 0.002 < (grey < 100).mean() < 0.5 and (grey > 200).mean() > 0.3


def read_pictures(tmp_path: Path, data: bytes, width: int, height: int) -> list[np.ndarray]:
    """What a viewer read: checked against go2rtc's rules, then decoded to RGB pictures."""
    out = tmp_path / "read.h264"
    out.write_bytes(data)
    check(out)
    return decode_rgb(out, width, height)


def test_wrapper_streams_sixty_steps(tmp_path: Path) -> None:
    out = tmp_path / "cartpole.h264"
    code = AGENT.format(settings="{}", wait="")
    with open(out, "wb") as f:
        proc = run([sys.executable, "-c", code], stdout=f, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    check(out)
    pictures = decode_rgb(out, *CARTPOLE)
    sys.stderr.write(f"CartPole, 60 steps: {len(pictures)} pictures\n")
    assert len(pictures) >= 40
    assert all(not_blank(p) for p in pictures), "a decoded CartPole frame is blank"


def test_wrapper_never_changes_what_the_env_returns(tmp_path: Path) -> None:
    plain = gymnasium.make("CartPole-v1", render_mode="rgb_array")
    wrapped = agentcast.gym.StreamWrapper(
        gymnasium.make("CartPole-v1", render_mode="rgb_array"), output=f"fifo:{tmp_path}/cp.h264", stats_interval=0
    )
    try:
        a, b = plain.reset(seed=7), wrapped.reset(seed=7)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
        for step in range(40):
            action = step % 2
            ra, rb = plain.step(action), wrapped.step(action)
            np.testing.assert_array_equal(ra[0], rb[0])
            assert ra[1:] == rb[1:]
            if ra[2] or ra[3]:
                plain.reset(seed=step)
                wrapped.reset(seed=step)
        np.testing.assert_array_equal(plain.render(), wrapped.render())
        assert wrapped.stream is not None and wrapped.stream.frame_shape == (400, 600, 3)
        assert wrapped.stream.stats()["frames"] is not None
    finally:
        plain.close()
        wrapped.close()
    assert wrapped.stream.closed, "the stream did not close with the env"


def test_wrapper_refuses_envs_without_rgb_array() -> None:
    env = gymnasium.make("CartPole-v1")
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        agentcast.gym.StreamWrapper(env)
    env.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_go2rtc_serves_the_wrapped_env(tmp_path: Path, go2rtc: str) -> None:
    """CartPole -> StreamWrapper -> FIFO -> go2rtc (exec:cat) -> /api/stream.mp4 -> ffmpeg."""
    fifo, port = tmp_path / "cartpole.h264", free_port()
    config = tmp_path / "go2rtc.yaml"
    config.write_text(
        f"api: {{listen: '127.0.0.1:{port}'}}\nrtsp: {{listen: ''}}\nrtmp: {{listen: ''}}\n"
        f"srtp: {{listen: ''}}\nwebrtc: {{listen: '', ice_servers: []}}\n"
        f"streams:\n  cartpole: exec:cat {fifo}#killsignal=15#killtimeout=2\n"
    )
    server = subprocess.Popen([go2rtc, "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code = AGENT.format(settings=json.dumps({"output": f"fifo:{fifo}"}), wait='print("ready", flush=True); sys.stdin.readline()')
    agent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    got = bytearray()
    try:
        assert agent.stdout.readline() == b"ready\n", agent.stderr.read().decode()
        url = f"http://127.0.0.1:{port}/api/stream.mp4?src=cartpole"

        def viewer() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=4) as r:
                        while chunk := r.read(65536):
                            got.extend(chunk)
                            if time.monotonic() > deadline:
                                return
                    return
                except OSError:
                    if got:
                        return
                    time.sleep(0.2)

        reader = threading.Thread(target=viewer, daemon=True)
        reader.start()
        time.sleep(1.5)  # go2rtc runs cat, agentcast sees the reader and sends an IDR
        agent.stdin.write(b"go\n")
        agent.stdin.flush()
        assert agent.wait(timeout=DEADLINE) == 0, agent.stderr.read().decode()
        reader.join(timeout=15)
    finally:
        for p in (agent, server):
            p.kill()
            p.wait(timeout=10)
    mp4 = tmp_path / "viewer.mp4"
    mp4.write_bytes(bytes(got))
    assert got, f"go2rtc served nothing: {server.stderr.read().decode()[-2000:]}"
    pictures = decode_rgb(mp4, *CARTPOLE, fmt=None)
    sys.stderr.write(f"go2rtc served {len(got)} bytes of MP4, {len(pictures)} pictures\n")
    assert len(pictures) >= 20
    assert all(not_blank(p) for p in pictures)


class CountRenders(gymnasium.Wrapper):
    """Counts the env's own render() calls; `delay` makes each take that much longer (a slow
    renderer, as MuJoCo on a software GL is)."""

    def __init__(self, env: gymnasium.Env, delay: float = 0.0) -> None:
        super().__init__(env)
        self.renders, self.delay = 0, delay

    def render(self):  # noqa: ANN201
        self.renders += 1
        if self.delay:
            time.sleep(self.delay)
        return self.env.render()


def cartpole(delay: float = 0.0) -> CountRenders:
    return CountRenders(gymnasium.make("CartPole-v1", render_mode="rgb_array"), delay)


def policy(obs: np.ndarray) -> int:
    """Keeps the pole up for hundreds of steps (few resets)."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def wait_for(what: str, condition, timeout: float = 15) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"{what} within {timeout} s"
        time.sleep(0.005)


def test_unwatched_renders_nothing_and_watched_at_most_fps(tmp_path: Path) -> None:
    fifo = tmp_path / "cp.h264"
    counted = cartpole()
    env = agentcast.gym.StreamWrapper(counted, fps=10, output=f"fifo:{fifo}", stats_interval=0)
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(3000):
            obs, _r, terminated, truncated, _ = env.step(policy(obs))
            if terminated or truncated:
                obs, _ = env.reset()
        assert counted.renders == 1, f"nobody watched, yet the env rendered {counted.renders} frames"
        assert env.stats()["render"]["rendered"] == 1
        reader = FifoReader(fifo)
        wait_for("a reader attached, but the stream is not watched", lambda: env.stream.watched)
        before, resets, steps, start = counted.renders, 0, 0, time.monotonic()
        while time.monotonic() - start < 2:
            obs, _r, terminated, truncated, _ = env.step(policy(obs))
            steps += 1
            if terminated or truncated:
                obs, _ = env.reset()
                resets += 1
        rendered = counted.renders - before
        sys.stderr.write(f"watched 2 s at 10 fps: {steps} steps, {resets} resets, {rendered} renders\n")
        # 10 fps for 2 s: 20 slots, one more at each end, and up to one a second when the frame
        # clock moves to the agent's phase (a new episode's first frame takes a slot too). At least
        # a few, on a loaded machine too. Without wants_frame(), every step and reset renders.
        assert 2 <= rendered <= 24, f"{rendered} renders for {resets} resets in 2 s at 10 fps"
        data = reader.stop()
    finally:
        env.close()
    pictures = read_pictures(tmp_path, data, *CARTPOLE)
    assert len(pictures) >= 2 and all(not_blank(p) for p in pictures)


def test_a_slow_render_keeps_within_the_budget(tmp_path: Path) -> None:
    """Renders of 50 ms, watched at 30 fps: rendering would take all the agent's time; the budget
    holds it at max_render_share (plus one render and one second's saved-up share at most), the
    due frames it skips are counted, and stream.stats() says so."""
    fifo = tmp_path / "slow.h264"
    counted = cartpole(delay=0.05)
    env = agentcast.gym.StreamWrapper(counted, fps=30, output=f"fifo:{fifo}", stats_interval=0)
    reader = None
    try:
        obs, _ = env.reset(seed=0)
        reader = FifoReader(fifo)
        wait_for("a reader attached, but the stream is not watched", lambda: env.stream.watched)
        env._budget = agentcast.gym.RenderBudget(0.1)  # count from here, without the wait
        env.stream.stats_sections["render"] = env._budget.stats
        steps, start = 0, time.monotonic()
        while (wall := time.monotonic() - start) < 3:
            obs, _r, terminated, truncated, _ = env.step(policy(obs))
            steps += 1
            if terminated or truncated:
                obs, _ = env.reset()
        render = env.stream.stats()["render"]
        sys.stderr.write(f"50 ms renders at 30 fps, 3 s: {steps} steps, render stats {render}\n")
        assert render == env.stats()["render"] | {"share": render["share"]}
        assert render["rendered"] >= 3, render
        assert render["skipped_budget"] > 0, render
        assert render["share"] <= 0.1 + (0.1 * 1.0 + 0.06) / wall, render
        assert 40 <= render["render_ms"] <= 200, render
    finally:
        if reader is not None:
            reader.stop()
        env.close()


def dots(picture: np.ndarray, scale: int = 3) -> np.ndarray:
    """The overlay's font dots in a picture's top-left box, read as on/off (each dot's mean)."""
    box = picture[4 + scale : 4 + scale + 5 * scale, 4 + scale : 4 + scale + 80 * scale].mean(axis=2)
    h, w = box.shape[0] // scale, box.shape[1] // scale
    return box[: h * scale, : w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3)) >= 128


def shows(picture: np.ndarray, text: str) -> bool:
    """Every dot of `text`, as draw_text writes it, is in the decoded picture."""
    want = np.zeros_like(picture)
    agentcast.gym.draw_text(want, text)
    got, expected = dots(picture), dots(want)
    n = len(text) * 4
    return bool((got[:, :n] == expected[:, :n]).all())


def test_reset_shows_the_first_frame_and_the_overlay_is_on_the_stream_only(tmp_path: Path) -> None:
    """At 1 fps, a reset between two slots is still shown (its frame waits for the next slot), with
    the overlay's episode, step and return, while the steps between slots are not; render()
    returns the env's frame without them."""
    fifo = tmp_path / "overlay.h264"
    env = agentcast.gym.StreamWrapper(cartpole(), fps=1, overlay=True, output=f"fifo:{fifo}", stats_interval=0)
    try:
        obs, _ = env.reset(seed=0)
        reader = FifoReader(fifo)
        wait_for("no frame was wanted", env.stream.wants_frame)
        for _ in range(5):  # the first is due and shown; the next four are not
            obs, *_ = env.step(policy(obs))
        time.sleep(0.6)  # past half a slot since that frame, before the next slot
        assert not env.stream.wants_frame()
        env.reset(seed=1)
        own = env.render()
        assert own.min(axis=2)[:30, :60].min() == 255, "the overlay was drawn on the env's own frame"
    finally:
        env.close()
    data = reader.stop()
    pictures = read_pictures(tmp_path, data, *CARTPOLE)
    seen = [t for t in ("EP 1 STEP 0 RET 0.0", "EP 1 STEP 1 RET 1.0", "EP 2 STEP 0 RET 0.0", "EP 1 STEP 5 RET 5.0")
            if any(shows(p, t) for p in pictures)]
    sys.stderr.write(f"{len(pictures)} pictures; overlays seen: {seen}\n")
    assert seen == ["EP 1 STEP 1 RET 1.0", "EP 2 STEP 0 RET 0.0"] or seen == [
        "EP 1 STEP 0 RET 0.0", "EP 1 STEP 1 RET 1.0", "EP 2 STEP 0 RET 0.0"], seen


def test_render_budget_and_layout_are_checked() -> None:
    with pytest.raises(ValueError, match="max_render_share"):
        agentcast.gym.StreamWrapper(gymnasium.make("CartPole-v1", render_mode="rgb_array"), max_render_share=2)
    envs = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make("CartPole-v1", render_mode="rgb_array")])
    with pytest.raises(ValueError, match="layout must be 'grid' or 'each'"):
        agentcast.gym.VectorStreamWrapper(envs, layout="row")
    with pytest.raises(ValueError, match="one output per sub-env"):
        agentcast.gym.VectorStreamWrapper(envs, layout="each")  # stdout cannot be shared
    envs.close()


def test_outputs_for_each_sub_env() -> None:
    d = agentcast.gym.derive_output
    assert d("fifo:/tmp/cart.h264", 3) == "fifo:/tmp/cart-3.h264"
    assert d("fifo:/tmp/cart", 3) == "fifo:/tmp/cart-3"
    assert d("tcp:127.0.0.1:9000", 2) == "tcp:127.0.0.1:9002"
    assert d("rtsp://127.0.0.1:8554/cart", 1) == "rtsp://127.0.0.1:8554/cart-1"
    assert d("rtsp-listen:0.0.0.0:8554/agent", 4) == "rtsp-listen:0.0.0.0:8554/agent-4"
    assert d("fifo:/tmp/{i}/cart.h264", 5) == "fifo:/tmp/5/cart.h264"


def sync_cartpoles(n: int) -> tuple[gymnasium.vector.SyncVectorEnv, list[CountRenders]]:
    counted: list[CountRenders] = []

    def make() -> CountRenders:
        counted.append(cartpole())
        return counted[-1]

    return gymnasium.vector.SyncVectorEnv([make] * n), counted


def run_vector(envs, seconds: float) -> None:  # noqa: ANN001
    envs.reset(seed=0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        envs.step(envs.action_space.sample())


def test_grid_tiles_eight_envs_and_renders_only_when_watched(tmp_path: Path) -> None:
    fifo = tmp_path / "grid.h264"
    envs, counted = sync_cartpoles(8)
    wrapped = agentcast.gym.VectorStreamWrapper(envs, layout="grid", fps=10, output=f"fifo:{fifo}",
                                                stats_interval=0)
    try:
        run_vector(wrapped, 0.5)
        assert [c.renders for c in counted] == [1] * 8, "nobody watched, yet sub-envs rendered"
        stream = wrapped.streams[0]
        assert (stream.width, stream.height) == (1200, 400), "8 tiles of 300x200 as 4x2"
        reader = FifoReader(fifo)
        wait_for("a reader attached, but the grid is not watched", lambda: stream.watched)
        run_vector(wrapped, 2)
        renders = [c.renders for c in counted]
        assert len(set(renders)) == 1 and 2 <= renders[0] - 1 <= 24, renders  # as above
        data = reader.stop()
    finally:
        wrapped.close()
    pictures = read_pictures(tmp_path, data, 1200, 400)
    assert len(pictures) >= 2
    for p in pictures[-2:]:
        for r in range(2):
            for c in range(4):
                tile = p[r * 200 : (r + 1) * 200, c * 300 : (c + 1) * 300]
                assert not_blank(tile), f"tile {r},{c} is not a CartPole"


def test_each_streams_every_sub_env_and_renders_only_the_watched_one(tmp_path: Path) -> None:
    envs, counted = sync_cartpoles(2)
    wrapped = agentcast.gym.VectorStreamWrapper(envs, layout="each", fps=10, output=f"fifo:{tmp_path}/cp.h264",
                                                stats_interval=0)
    try:
        run_vector(wrapped, 0.3)
        assert [s.argv for s in wrapped.streams] and all(
            f"--output=fifo:{tmp_path}/cp-{i}.h264" in s.argv for i, s in enumerate(wrapped.streams))
        reader = FifoReader(tmp_path / "cp-0.h264")
        wait_for("a reader attached, but sub-env 0 is not watched", lambda: wrapped.streams[0].watched)
        run_vector(wrapped, 1.5)
        assert counted[0].renders >= 3 and counted[1].renders == 1, [c.renders for c in counted]
        data = reader.stop()
        assert wrapped.streams[1].stats()["frames"]["written"] == 0
    finally:
        wrapped.close()
    pictures = read_pictures(tmp_path, data, *CARTPOLE)
    assert len(pictures) >= 2 and all(not_blank(p) for p in pictures)


def test_async_vector_env_grid(tmp_path: Path) -> None:
    fifo = tmp_path / "async.h264"
    envs = gymnasium.vector.AsyncVectorEnv(
        [lambda: gymnasium.make("CartPole-v1", render_mode="rgb_array")] * 2, context="spawn")
    wrapped = agentcast.gym.VectorStreamWrapper(envs, layout="grid", fps=10, output=f"fifo:{fifo}",
                                                stats_interval=0)
    try:
        run_vector(wrapped, 0.3)
        assert wrapped.streams[0].stats()["render"]["rendered"] == 1
        reader = FifoReader(fifo)
        wait_for("a reader attached, but the grid is not watched", lambda: wrapped.streams[0].watched)
        run_vector(wrapped, 1.5)
        rendered = wrapped.streams[0].stats()["render"]["rendered"]
        assert 2 <= rendered <= 19, rendered  # 1.5 s at 10 fps, as above
        data = reader.stop()
    finally:
        wrapped.close()
    pictures = read_pictures(tmp_path, data, 1200, 400)  # 2 tiles of 600x400 side by side: 2x1
    assert len(pictures) >= 2 and all(not_blank(p[:, :600]) and not_blank(p[:, 600:]) for p in pictures[-2:])
