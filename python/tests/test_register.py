"""Registration from Python, end to end under a real go2rtc (no streams in its config):
``agentcast.Stream(..., output="rtsp-listen:127.0.0.1:0/NAME", register=URL, name=NAME)`` serves
RTSP, registers with go2rtc's API, wants no frame while nobody watches, plays for a viewer of
go2rtc's /api/stream.mp4 (decoded with ffprobe and ffmpeg, every picture one the agent pushed), and
leaves go2rtc's list when closed."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

import agentcast
from conftest import H, W, decode_rgb, identify, synthetic
from fleet_util import Go2rtc, mp4_frames

FPS = 15


class Agent:
    """Pushes synthetic frames from a thread, each only when ``wants_frame()`` says so, and counts
    how often it asked and pushed."""

    def __init__(self, stream: agentcast.Stream) -> None:
        self.stream, self.asked, self.pushed = stream, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.asked += 1
            if self.stream.wants_frame():
                self.stream.push(synthetic(self.pushed))
                self.pushed += 1
            else:
                time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def test_a_python_stream_registers_plays_when_watched_and_leaves(tmp_path: Path, go2rtc: str) -> None:
    name = f"py-{os.getpid()}"
    with Go2rtc(go2rtc, tmp_path) as g:
        stream = agentcast.Stream(W, H, fps=FPS, output=f"rtsp-listen:127.0.0.1:0/{name}", register=g.url,
                                  name=name, stats_interval=0)
        agent = None
        try:
            took = g.wait_listed(name, True)
            port = stream.stats()["listen"]["port"]
            assert g.source_of(name) == f"rtsp://127.0.0.1:{port}/{name}"
            assert stream.stats()["register"] == {"name": name, "src": f"rtsp://127.0.0.1:{port}/{name}",
                                                  "state": "registered"}

            # Nobody watches: no frame is wanted, so the agent pushes (and would render) nothing.
            agent = Agent(stream)
            time.sleep(1.5)
            assert agent.asked > 100 and agent.pushed == 0, (agent.asked, agent.pushed)

            mp4 = tmp_path / "viewer.mp4"
            mp4.write_bytes(g.watch_mp4(name, 2))
            watched_pushes = agent.pushed
            frames = mp4_frames(mp4)
            pictures = decode_rgb(mp4, W, H, fmt=None)
            # Every picture shows a frame the agent pushed (square position and colour), in order.
            ks = [identify(p)[0] for p in pictures]
            assert all(0 <= k < agent.pushed + 1 for k in ks) and ks == sorted(ks), ks
            # The viewer came and left: then nothing is wanted again.
            time.sleep(1.5)
            before = agent.pushed
            time.sleep(1.5)
            idle_pushes = agent.pushed - before
        finally:
            if agent is not None:
                agent.stop()
            stats = stream.stats()
            stream.close()
        sys.stderr.write(f"registered in {took:.2f} s; viewer: {frames} frames decoded; pushed "
                         f"{watched_pushes} while watched, {idle_pushes} after; received "
                         f"{stats['frames']['received']}\n")
        # 2 s at 15 fps: go2rtc's MP4 starts at the first IDR, so allow for a slow start.
        assert frames >= 15, frames
        assert 15 <= watched_pushes <= 3 * FPS + 5, watched_pushes  # paced at fps, not every ask
        assert stats["frames"]["received"] == agent.pushed
        assert idle_pushes == 0, "frames were still wanted after the viewer left"
        gone = g.wait_listed(name, False, limit=3)
        sys.stderr.write(f"gone from go2rtc {gone:.2f} s after close()\n")


def test_a_name_a_live_python_agent_holds_is_refused(tmp_path: Path, go2rtc: str) -> None:
    """A second Stream registering a name another live agent serves fails at start with the CLI's
    exit 73 (CantCreateError), naming --name; the first keeps the name."""
    name = f"taken-{os.getpid()}"
    with Go2rtc(go2rtc, tmp_path) as g:
        first = agentcast.Stream(W, H, fps=FPS, output=f"rtsp-listen:127.0.0.1:0/{name}", register=g.url,
                                 stats_interval=0)
        try:
            g.wait_listed(name, True)
            src = g.source_of(name)
            with pytest.raises(agentcast.CantCreateError) as e:
                agentcast.Stream(W, H, fps=FPS, output=f"rtsp-listen:127.0.0.1:0/{name}", register=g.url,
                                 stats_interval=0)
            assert e.value.exit_code == 73
            assert "--name" in str(e.value) and name in str(e.value), str(e.value)
            assert g.source_of(name) == src
        finally:
            first.close()
        g.wait_listed(name, False, limit=3)
