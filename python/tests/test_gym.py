"""agentcast.gym.StreamWrapper on a real Gymnasium env (CartPole-v1, rgb_array): it streams
every step, never changes what the env returns, and go2rtc can serve what it makes."""

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
from conftest import DEADLINE, ROOT, check, decode_rgb, run  # noqa: E402

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
