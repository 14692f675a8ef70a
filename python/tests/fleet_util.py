"""A real go2rtc for the fleet tests (test_register.py, test_ray_fleet.py): on loopback, with no
streams in its config, so whatever it lists was registered by the agents; and a viewer of its
/api/stream.mp4 whose bytes ffprobe decodes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import DEADLINE, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Go2rtc:
    """go2rtc with an empty `streams:` on 127.0.0.1 (API only; RTSP, WebRTC, RTMP and SRTP off: it
    pulls the agents' RTSP as a client), killed at `deadline` seconds if still running then, and on
    :meth:`stop`. Its log goes to `dir/go2rtc.log`."""

    def __init__(self, binary: str, dir: Path, deadline: float = DEADLINE) -> None:
        self.api = free_port()
        self.url = f"http://127.0.0.1:{self.api}"
        self.log_path = Path(dir) / "go2rtc.log"
        config = Path(dir) / "go2rtc.yaml"
        config.write_text(
            f"api: {{listen: '127.0.0.1:{self.api}'}}\nrtsp: {{listen: ''}}\nrtmp: {{listen: ''}}\n"
            "srtp: {listen: ''}\nwebrtc: {listen: '', ice_servers: []}\n"
            "log: {level: info, streams: debug}\nstreams: {}\n"
        )
        # Producers would inherit go2rtc's environment: keep the test runner's AGENTCAST_* out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCAST_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([binary, "-config", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=dir)
        self._killer = threading.Timer(deadline, self.proc.kill)
        self._killer.daemon = True
        self._killer.start()
        limit = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.api), timeout=1):
                    break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < limit, \
                    f"go2rtc's API did not come up:\n{self.log()}"
                time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self._killer.cancel()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> Go2rtc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def streams(self) -> dict[str, Any]:
        """`GET /api/streams` as a dict: name -> {producers: [{url}], consumers}."""
        with urllib.request.urlopen(f"{self.url}/api/streams", timeout=5) as r:
            return json.loads(r.read() or b"{}") or {}

    def source_of(self, name: str) -> str | None:
        """The source go2rtc pulls `name` from, if it lists it."""
        stream = self.streams().get(name)
        if not stream:
            return None
        producers = stream.get("producers") or []
        return producers[0].get("url") if producers else None

    def wait_listed(self, name: str, listed: bool = True, limit: float = 15) -> float:
        """Waits until go2rtc lists `name` (or no longer does); returns the seconds it took."""
        start = time.monotonic()
        while (self.source_of(name) is not None) != listed:
            assert time.monotonic() - start < limit, (
                f"{name!r} {'not in' if listed else 'still in'} go2rtc's list after {limit} s: "
                f"{self.streams()}\n{self.log()}")
            time.sleep(0.05)
        return time.monotonic() - start

    def watch_mp4(self, name: str, seconds: float, timeout: float = 45) -> bytes:
        """What a viewer of `/api/stream.mp4?src=NAME&duration=SECONDS` gets (go2rtc pulls the
        agent for that long, then ends the response)."""
        url = f"{self.url}/api/stream.mp4?src={name}&duration={seconds:g}"
        got = bytearray()
        end = time.monotonic() + timeout
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                while time.monotonic() < end and (chunk := r.read(65536)):
                    got.extend(chunk)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"GET {url}: {e}\n{self.log()}") from e
        return bytes(got)


def mp4_frames(path: Path) -> int:
    """The video frames ffprobe decodes from an MP4 (fragmented, as go2rtc serves it)."""
    out = run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
               "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", str(path)])
    assert out.returncode == 0, f"ffprobe {path}: {out.stderr.decode()}"
    streams = json.loads(out.stdout)["streams"]
    assert streams and streams[0]["codec_name"] == "h264", streams
    return int(streams[0]["nb_read_frames"])
