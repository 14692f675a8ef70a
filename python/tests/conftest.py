"""Helpers for the agentcast package's tests: real subprocesses (each with a deadline), real
decoders (ffprobe/ffmpeg), the real `agentcast check`, and go2rtc where it can be found."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every subprocess a test starts is killed past this (seconds) and the test fails.
DEADLINE = 120

W, H = 320, 240
SQUARE = 64
PALETTE = [(230, 40, 40), (40, 220, 40), (40, 40, 230), (230, 220, 40), (40, 220, 230), (230, 40, 230)]
BACKGROUND = (24, 24, 24)


def square_x(k: int) -> int:
    return 8 + 2 * k


def synthetic(k: int, width: int = W, height: int = H, channels: int = 3) -> np.ndarray:
    """Frame k: a flat-colour square (colour PALETTE[k % 6]) at x = 8 + 2k on a dark background."""
    frame = np.empty((height, width, channels), np.uint8)
    frame[...] = BACKGROUND + (255,) * (channels - 3)
    x, y = square_x(k), (height - SQUARE) // 2
    frame[y : y + SQUARE, x : x + SQUARE, :3] = PALETTE[k % len(PALETTE)]
    return frame


def identify(picture: np.ndarray) -> tuple[int, tuple[int, int, int]]:
    """Which synthetic frame a decoded picture shows: (k from the square's left edge, the colour
    at the square's centre)."""
    y = picture.shape[0] // 2
    row = picture[y].astype(int)
    bright = np.nonzero(np.abs(row - np.array(BACKGROUND)).sum(axis=1) > 90)[0]
    assert bright.size, "no square in the picture"
    x = int(bright[0])
    k = round((x - 8) / 2)
    centre = picture[y, x + SQUARE // 2]
    return k, tuple(int(c) for c in centre)


def run(cmd: list[str], timeout: float = DEADLINE, **kw) -> subprocess.CompletedProcess:
    """Runs a command to completion within `timeout` seconds (killed and failed past it)."""
    if "stdout" not in kw and "stderr" not in kw:
        kw.setdefault("capture_output", True)
    try:
        return subprocess.run(cmd, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd[:4]} ran past its {timeout} s deadline; stderr: {e.stderr!r}")


def run_python(code: str, timeout: float = DEADLINE, **kw) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (this venv's), with the tests' helpers importable."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    return run([sys.executable, "-c", textwrap.dedent(code)], timeout=timeout, env=env, **kw)


def agentcast_cli() -> list[str]:
    """The agentcast command: the package's own `python -m agentcast`."""
    return [sys.executable, "-m", "agentcast"]


def check(path: Path) -> str:
    """`agentcast check`: go2rtc's rules; fails the test on any violation."""
    out = run([*agentcast_cli(), "check", str(path)])
    assert out.returncode == 0, f"agentcast check {path}: {out.stdout.decode()} {out.stderr.decode()}"
    return out.stdout.decode()


def count_frames(path: Path) -> int:
    out = run(
        ["ffprobe", "-v", "error", "-f", "h264", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)]
    )
    assert out.returncode == 0, out.stderr.decode()
    return int(out.stdout.decode().strip().rstrip(","))


def decode_rgb(path: Path, width: int, height: int, fmt: str | None = "h264") -> np.ndarray:
    """Every decoded picture as an (N, H, W, 3) uint8 array."""
    demuxer = ["-f", fmt] if fmt else []
    out = run(["ffmpeg", "-v", "error", *demuxer, "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    assert out.returncode == 0, out.stderr.decode()
    size = width * height * 3
    assert len(out.stdout) % size == 0, "decoded bytes are not whole pictures"
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, height, width, 3)


def nal_types(data: bytes, limit: int = 8) -> list[int]:
    """The first `limit` NAL unit types after 4-byte start codes."""
    types, i = [], 0
    while len(types) < limit:
        i = data.find(b"\x00\x00\x00\x01", i)
        if i < 0 or i + 4 >= len(data):
            break
        types.append(data[i + 4] & 0x1F)
        i += 4
    return types


@pytest.fixture(scope="session")
def go2rtc() -> str:
    """go2rtc from $AGENTCAST_GO2RTC, PATH, or the project's ../shared/bin; skipped (said on
    stderr) when none is there."""
    for candidate in (os.environ.get("AGENTCAST_GO2RTC"), shutil.which("go2rtc"), ROOT.parent / "shared/bin/go2rtc"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    sys.stderr.write("skipped: go2rtc not found (set AGENTCAST_GO2RTC, or put it on PATH)\n")
    pytest.skip("go2rtc not found (set AGENTCAST_GO2RTC, or put it on PATH)")


class FifoReader:
    """A reader of an agentcast FIFO in a thread (a real one: agentcast sees it attach): waits for
    the FIFO to appear, reads until :meth:`stop` (the reader then closes it, and agentcast sees it
    leave) or the stream's end, and keeps the bytes."""

    def __init__(self, path: Path) -> None:
        import threading

        self.path, self.data = Path(path), bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while not self.path.exists():
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.01)
        with open(self.path, "rb", buffering=0) as f:
            while not self._stop.is_set() and (chunk := f.read(65536)):
                self.data.extend(chunk)

    def stop(self, timeout: float = 30) -> bytes:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the reader of {self.path} did not stop within {timeout} s"
        return bytes(self.data)
