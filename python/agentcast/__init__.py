"""agentcast for Python: stream an agent's frames as go2rtc-ready low-latency H.264.

    import agentcast, numpy as np
    with agentcast.Stream(640, 480, output="fifo:/tmp/agent.h264") as stream:
        for frame in frames:              # (480, 640, 3) uint8 arrays
            stream.push(frame)            # never waits for the encoder: the newest frame wins

Every keyword is the ``agentcast`` command's flag of the same name (``max_lag=250`` is
``--max-lag 250``, ``no_stamp=True`` is ``--no-stamp``), read by the flag's own parser onto the
library's settings and validated by the same code, so defaults, checks and error messages are
the CLI's. ``agentcast.gym.StreamWrapper`` streams a Gymnasium env; ``python -m agentcast`` is the
CLI itself.
"""

from __future__ import annotations

import atexit
import json
import sys
import weakref
from typing import Any

from . import _agentcast
from .errors import (
    CantCreateError,
    ClosedError,
    DataError,
    Error,
    IOError,  # noqa: A004 - agentcast.IOError (exit code 74)
    NoInputError,
    SoftwareError,
    TemporaryError,
    UnavailableError,
    UsageError,
)

__all__ = [
    "Stream",
    "Error",
    "UsageError",
    "DataError",
    "NoInputError",
    "UnavailableError",
    "SoftwareError",
    "CantCreateError",
    "IOError",
    "TemporaryError",
    "ClosedError",
    "cli_argv",
]

# Streams not closed yet, closed (drained) at interpreter exit.
_open: weakref.WeakSet[Stream] = weakref.WeakSet()


def _flag_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _settings(**settings: Any) -> dict[str, bool | list[str]]:
    """The keywords as their flags' values: ``True`` for a bare flag, else the text of each value
    (a list or tuple gives one per item, a dict one ``NAME=VALUE`` per item); ``False``, ``None``
    and empty lists are left out. The extension module reads these onto the library's settings."""
    given: dict[str, bool | list[str]] = {}
    for key, value in settings.items():
        values: bool | list[str]
        if value is None or value is True or value is False:
            values = bool(value)
        elif isinstance(value, dict):
            values = [f"{k}={_flag_value(v)}" for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            values = [_flag_value(v) for v in value]
        else:
            values = [_flag_value(value)]
        if values:
            given[key] = values
    return given


def _argv(settings: dict[str, bool | list[str]]) -> list[str]:
    argv = ["agentcast"]
    for key, values in settings.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if values is True else [f"{flag}={v}" for v in values]
    return argv


def cli_argv(**settings: Any) -> list[str]:
    """The ``agentcast`` command line for these settings: ``foo_bar=V`` becomes ``--foo-bar=V``,
    ``True`` a bare ``--foo-bar``, ``False``/``None`` nothing, a list or tuple one flag per item,
    and a dict (``encoder_opt={"speed-preset": "fast"}``) one ``NAME=VALUE`` per item."""
    return _argv(_settings(**settings))


class Stream:
    """One live H.264 stream fed with frames from Python.

    The settings are the CLI's (see the module doc); the stream starts at once (the encoder is
    chosen and opened, the output created) and raises an :class:`Error` subclass when it cannot.
    Use it as a context manager, or call :meth:`close`: closing drains the encoder, so every
    frame it accepted is written. A stream that is garbage-collected or still open at interpreter
    exit is closed the same way.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: int = _agentcast.DEFAULT_FPS,
        output: str = "stdout",
        bitrate: int = _agentcast.DEFAULT_BITRATE,
        encoder: str = "auto",
        pix_fmt: str = "rgb24",
        **more: Any,
    ) -> None:
        # The agent holds this stream, so its silence is not a dead source (the CLI's
        # --source-timeout is for pipes and sockets): no timeout unless one is given.
        more.setdefault("source_timeout", 0)
        settings = _settings(
            width=width,
            height=height,
            fps=fps,
            output=output,
            bitrate=bitrate,
            encoder=encoder,
            pix_fmt=pix_fmt,
            **more,
        )
        # The equivalent command line, for logs and reproducing a stream with the CLI.
        self.argv = _argv(settings)
        self._inner = _agentcast._Stream(settings)
        self.width: int = self._inner.width
        self.height: int = self._inner.height
        self.fps: int = self._inner.fps
        self.pix_fmt: str = self._inner.pix_fmt
        self.frame_shape: tuple[int, ...] = tuple(self._inner.frame_shape)
        # Sections that :meth:`stats` adds to the stream's own (agentcast.gym adds "render"):
        # name -> a function returning the section's dict.
        self.stats_sections: dict[str, Any] = {}
        _open.add(self)

    def wants_frame(self) -> bool:
        """Whether a frame pushed now would be seen: someone reads the stream (a FIFO or TCP reader
        is attached, or the output always sends: stdout, RTSP publishing) and the next frame is due
        at ``fps``. An agent that renders its frames only for the stream asks this first and
        renders only when it is true: then it renders at most ``fps`` frames a second, and none
        while nobody watches. After a :meth:`push` it is false until the next frame slot. False
        once the stream is closed or has ended. It costs an atomic load and a clock read (well
        under a microsecond); it never waits for the stream."""
        return self._inner.wants_frame()

    def push(self, frame: Any) -> None:
        """Hands one frame to the stream: a C-contiguous uint8 numpy array (or any buffer) of
        :attr:`frame_shape`, or a flat buffer of the frame's size in bytes, in the rawvideo layout
        of ``pix_fmt``. The bytes are copied (without the GIL) and the call returns at once: a
        frame that comes before the previous one was encoded replaces it (counted as
        ``dropped.superseded`` in :meth:`stats`); when no new frame comes in time, the last one
        is repeated. Raises TypeError (not uint8), ValueError (wrong shape or size, not
        C-contiguous), :class:`ClosedError`, or the error that stopped the stream."""
        self._inner.push(frame)

    def request_keyframe(self) -> None:
        """Makes the next encoded frame an IDR with SPS and PPS before it."""
        self._inner.request_keyframe()

    def stats(self) -> dict[str, Any]:
        """The stats as a dict: the JSON of the CLI's stats line (``frames``, ``dropped``, ``fps``,
        ``bitrate_kbps``, ``latency_ms``, ...). After :meth:`close`, the final counts. Sections in
        :attr:`stats_sections` are added (``agentcast.gym`` adds ``render``: what the agent rendered
        for the stream and what it skipped); the CLI's stats line on stderr does not carry them."""
        stats = json.loads(self._inner.stats_json())
        if isinstance(stats, dict):
            for name, section in self.stats_sections.items():
                stats[name] = section()
        return stats

    def close(self) -> None:
        """Stops the stream: the encoder drains and every accepted frame is written. Raises the
        stream's error if it failed while running. Closing again does nothing."""
        _open.discard(self)
        self._inner.close()

    @property
    def closed(self) -> bool:
        """:meth:`close` was called (or the stream's end was reported)."""
        return self._inner.closed

    def hold_frames(self, seconds: float) -> None:
        """No frame is wanted for the next `seconds`: :meth:`wants_frame` is False until then (a
        viewer sees the last frame repeated). For an agent that cannot afford to render now
        (``agentcast.gym``'s render budget), so that asking costs no more than when unwatched. A
        later call replaces the hold; 0 ends it. Raises ValueError for a negative or NaN span."""
        self._inner.hold_frames(seconds)

    @property
    def watched(self) -> bool:
        """Whether someone would see a frame pushed now, due or not: a reader is attached, or the
        output always sends. For a frame that should be shown even between slots (an episode's
        first): it waits for the next slot, unless a newer frame replaces it first."""
        return self._inner.watched

    @property
    def running(self) -> bool:
        """The stream still runs: it ends by itself at ``frames=``/``duration=``, on an error, or
        when the reader of a stdout stream leaves."""
        return self._inner.running

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<agentcast.Stream {self.width}x{self.height} {self.pix_fmt} {state}>"


@atexit.register
def _close_open_streams() -> None:
    for stream in list(_open):
        try:
            stream.close()
        except Error as e:
            sys.stderr.write(f"agentcast: {e}\n")
