"""Stream Gymnasium envs live while they train, at next to no cost to the step rate.

    env = agentcast.gym.StreamWrapper(gymnasium.make("CartPole-v1", render_mode="rgb_array"),
                                      output="fifo:/tmp/cartpole.h264")
    envs = gymnasium.make_vec("CartPole-v1", 8, vectorization_mode="sync", render_mode="rgb_array")
    envs = agentcast.gym.VectorStreamWrapper(envs, layout="grid", output="fifo:/tmp/cartpoles.h264")

The wrappers never change what the env returns, and ``render()`` still returns the env's own
frame. They render for the stream only when :meth:`agentcast.Stream.wants_frame` says a frame is
due and someone will see it: at most ``fps`` frames a second, and none while nobody watches (a
FIFO or TCP output with no reader). So an unwatched env steps at its own rate, and a watched one
renders ``fps`` times a second, not after every step.

**Render budget.** ``max_render_share`` (default 0.1) is the most of the agent's wall time that
rendering for the stream may take. The wrapper earns render time at that share of the wall time
that passes (up to one second's worth) and spends what each render took (not the first, which
opens the stream and often sets up the env's renderer). While it owes, due frames are skipped
(``skipped_budget`` counts their slots) and the stream repeats the last one: the wrapper calls
:meth:`agentcast.Stream.hold_frames` for as long as the debt lasts, so that asking meanwhile costs
what it costs unwatched. When ``env.render()`` is slow (a MuJoCo env on a software GL renderer
takes ~100 ms), the stream's frame rate drops, not the agent's step rate. ``None`` turns the budget
off.

**Stats.** ``stream.stats()`` (and the wrapper's :meth:`~StreamWrapper.stats`) carry a
``render`` section: ``rendered`` (frames rendered for the stream), ``skipped_budget`` (due frame
slots skipped to keep the budget), ``share`` (the share of wall time rendering took since the stream
opened), ``max_share``, and ``render_ms`` (an average of recent renders). It is added by the
wrapper in Python; the CLI's periodic stats line on stderr does not carry it.

**Episodes.** After ``reset()`` the new episode's first frame is rendered when someone watches,
due or not (within the budget): between two slots it waits for the next one, and takes it. At
most one such frame per slot, and none within half a slot of the last frame (which may still wait
to be taken), so that a run of short episodes does not render frames that replace each other. ``overlay=True`` writes the episode, step and return into the
top-left corner of the stream's frames (never into the frame ``render()`` returns) with a small
bitmap font: a few numpy operations per frame.

The stream opens with the first frame (its size and channels give ``width``, ``height`` and
``pix_fmt`` unless they are given; ``fps`` defaults to the env's ``metadata["render_fps"]``) and
closes with the env. The first ``reset()`` renders once to learn the frame size.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np

from . import Stream

_PIX_FMT_BY_CHANNELS = {3: "rgb24", 4: "rgba"}
# How much unspent render time may be saved up, in seconds of wall time.
_BUDGET_WINDOW = 1.0
# Weight of the newest render in the render-time average.
_EWMA = 0.2

__all__ = ["StreamWrapper", "VectorStreamWrapper", "RenderBudget", "draw_text"]


# ---------------------------------------------------------------------------------------------
# The overlay's font: 3x5 glyphs, drawn as a mask of the whole line in one numpy assignment.

_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    " ": "000000000000000", ":": "000010000010000", "E": "111100111100111", "P": "111101111100100",
    "S": "111100111001111", "T": "111010010010010", "R": "110101110101101", "N": "101111111111101",
    "U": "101101101101111", "X": "101101010101101", "?": "111001011000010",
}
_MASKS = {c: np.array([int(b) for b in bits], bool).reshape(5, 3) for c, bits in _GLYPHS.items()}
_SPACER = np.zeros((5, 1), bool)


def _text_mask(text: str, scale: int) -> np.ndarray:
    cols = []
    for c in text.upper():
        cols += [_MASKS.get(c, _MASKS["?"]), _SPACER]
    mask = np.concatenate(cols, axis=1)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


def draw_text(frame: np.ndarray, text: str, x: int = 4, y: int = 4, scale: int | None = None) -> None:
    """Writes `text` (digits, ``.-: `` and the letters of ``EP STEP RET``) into an (H, W, C) uint8
    `frame` in place: white glyphs on a black box, clipped to the frame. `scale` (pixels per
    font dot) defaults to about 1/120 of the frame's height, at least 1."""
    height, width = frame.shape[:2]
    scale = scale or max(1, height // 120)
    mask = _text_mask(text, scale)
    pad = scale
    h, w = min(mask.shape[0] + 2 * pad, height - y), min(mask.shape[1] + 2 * pad, width - x)
    if h <= 0 or w <= 0:
        return
    box = frame[y : y + h, x : x + w, :3]
    box[...] = 0
    inner = mask[: max(0, h - pad), : max(0, w - pad)]
    box[pad : pad + inner.shape[0], pad : pad + inner.shape[1]][inner] = 255


def _overlay_text(episode: int, step: int, ret: float) -> str:
    return f"EP {episode} STEP {step} RET {ret:.1f}"


# ---------------------------------------------------------------------------------------------


class RenderBudget:
    """The render budget: render time is earned at `max_share` of the wall time that passes (at
    most one second's worth saved up) and spent by each render; a render is allowed while nothing
    is owed. ``max_share=None`` allows every render."""

    def __init__(self, max_share: float | None) -> None:
        if max_share is not None and not 0 < max_share <= 1:
            raise ValueError(f"max_render_share must be in (0, 1] or None; got {max_share!r}")
        self.max_share = max_share
        self.rendered = 0
        self.skipped = 0
        self.render_s = 0.0
        self.avg_s = 0.0
        # The stream's frame rate, for counting the frame slots a hold skips.
        self.fps = 30.0
        now = time.perf_counter()
        self._opened = now
        self._last = now
        self._credit = 0.0

    def allows(self) -> float:
        """0.0 when a render may start now; else the seconds until one may (the skipped frame
        slots in between, at :attr:`fps`, are counted), for :meth:`agentcast.Stream.hold_frames`."""
        if self.max_share is None:
            return 0.0
        now = time.perf_counter()
        self._credit = min(self._credit + (now - self._last) * self.max_share, _BUDGET_WINDOW * self.max_share)
        self._last = now
        if self._credit >= 0:
            return 0.0
        wait = -self._credit / self.max_share
        self.skipped += max(1, round(wait * self.fps))
        return wait

    def spent(self, seconds: float, first: bool = False) -> None:
        """A render took `seconds`. The `first` one, which opens the stream (and often sets up
        the env's renderer: a GL context, shaders), is counted but not charged."""
        self.rendered += 1
        if first:
            return
        self.render_s += seconds
        self._credit -= seconds
        self.avg_s = seconds if self.avg_s == 0 else self.avg_s + _EWMA * (seconds - self.avg_s)

    def stats(self) -> dict[str, Any]:
        wall = max(time.perf_counter() - self._opened, 1e-9)
        return {
            "rendered": self.rendered,
            "skipped_budget": self.skipped,
            "share": round(self.render_s / wall, 4),
            "max_share": self.max_share,
            "render_ms": round(self.avg_s * 1000, 3),
        }


def _never() -> bool:
    return False


def _contiguous(frame: Any) -> np.ndarray:
    # Envs often return a transposed view (pygame surfaces are column-major); one copy then.
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _check_frame(frame: np.ndarray, who: str) -> None:
    if frame.ndim != 3 or frame.shape[2] not in _PIX_FMT_BY_CHANNELS:
        raise ValueError(
            f"agentcast.gym.{who} expects rgb_array frames of shape (H, W, 3) or (H, W, 4); the env "
            f"rendered shape {frame.shape}"
        )


def _open_stream(settings: dict[str, Any], width: int, height: int, channels: int, render_fps: Any) -> Stream:
    settings = dict(settings)
    settings.setdefault("width", width)
    settings.setdefault("height", height)
    settings.setdefault("pix_fmt", _PIX_FMT_BY_CHANNELS[channels])
    if render_fps:
        settings.setdefault("fps", int(round(render_fps)))
    return Stream(**settings)


class StreamWrapper(gymnasium.Wrapper):
    """Streams a ``render_mode="rgb_array"`` env's frames when someone watches, within the render
    budget (see the module doc). `stream_settings` are :class:`agentcast.Stream`'s keywords."""

    def __init__(
        self,
        env: gymnasium.Env,
        *,
        max_render_share: float | None = 0.1,
        overlay: bool = False,
        **stream_settings: Any,
    ) -> None:
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"agentcast.gym.StreamWrapper needs an env made with render_mode='rgb_array' "
                f"(this one has render_mode={env.render_mode!r})"
            )
        self._settings = dict(stream_settings)
        self._stream: Stream | None = None
        self._budget = RenderBudget(max_render_share)
        self._overlay = overlay
        # The extension's own method once the stream is open: the per-step question is one call.
        self._wants: Callable[[], bool] = _never
        if overlay:
            # The overlay counts steps and return; without it, step() does nothing else per step.
            self.step = self._step_counting  # type: ignore[method-assign]
        self._episode = 0
        self._step = 0
        self._return = 0.0
        # An episode's first frame was pushed between two slots and waits for the next one.
        self._reset_waiting = False
        self._last_push = 0.0
        self._half_interval = 0.0

    @property
    def stream(self) -> Stream | None:
        """The :class:`agentcast.Stream`, once the first frame has started it."""
        return self._stream

    def stats(self) -> dict[str, Any]:
        """``stream.stats()``, with its ``render`` section (empty before the stream opens)."""
        return self._stream.stats() if self._stream is not None else {"render": self._budget.stats()}

    def _push_frame(self, env_frame: Any) -> None:
        frame = _contiguous(env_frame)
        if self._stream is None:
            _check_frame(frame, "StreamWrapper")
            h, w, c = frame.shape
            self._stream = _open_stream(self._settings, w, h, c, self.env.metadata.get("render_fps"))
            self._stream.stats_sections["render"] = self._budget.stats
            self._budget.fps = self._stream.fps
            self._half_interval = 0.5 / self._stream.fps
            self._wants = self._stream._inner.wants_frame
        if self._overlay:
            if frame is env_frame:
                frame = frame.copy()  # the env may hand out a buffer it keeps: draw on a copy
            draw_text(frame, _overlay_text(self._episode, self._step, self._return))
        self._stream.push(frame)
        self._last_push = time.perf_counter()

    def _render_for_stream(self) -> None:
        wait = self._budget.allows()
        if wait:
            # Not asked again until the budget allows a render: a skip costs what unwatched does.
            if self._stream is not None:
                self._stream.hold_frames(wait)
            return
        start, first = time.perf_counter(), self._stream is None
        frame = self.env.render()
        if frame is not None:
            self._push_frame(frame)
        self._budget.spent(time.perf_counter() - start, first)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(**kwargs)
        if self._overlay:
            self._episode += 1
            self._step, self._return = 0, 0.0
        # The first frame opens the stream. After it, an episode's first frame is shown whenever
        # someone watches: when due, or else in the next slot, which it takes (a push moves the
        # next due frame on). One such frame per slot: with short episodes, resets between two
        # slots after the first would only replace each other's frames.
        # And not within half an interval of the last push: that frame may not have been taken
        # yet (a busy machine), and this one would replace it.
        if self._stream is None or self._wants():
            self._render_for_stream()
            self._reset_waiting = False
        elif (
            not self._reset_waiting
            and time.perf_counter() - self._last_push >= self._half_interval
            and self._stream.watched
        ):
            self._render_for_stream()
            self._reset_waiting = True
        return result

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        # Per step: the env's step and one question to the stream (an atomic and a clock read).
        result = self.env.step(action)
        if self._wants():
            self._render_for_stream()
            self._reset_waiting = False
        return result

    def _step_counting(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        self._step += 1
        self._return += float(result[1])
        if self._wants():
            self._render_for_stream()
            self._reset_waiting = False
        return result

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        finally:
            super().close()


# ---------------------------------------------------------------------------------------------


def _grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) for n tiles: as many rows as fit a square, columns for the rest (8: 4x2)."""
    rows = max(1, math.isqrt(n))
    return math.ceil(n / rows), rows


_TCP = re.compile(r"^(tcp:.*:)(\d+)$")
_URL_PATH = re.compile(r"^((?:rtsp|rtsps|rtsp-listen):(?://)?[^/]*)(/.*)?$")


def derive_output(output: str, i: int) -> str:
    """Sub-env `i`'s output for ``layout="each"``: ``{i}`` in `output` is replaced by i; otherwise a
    FIFO path gets ``-i`` before its extension (``fifo:/tmp/a.h264`` -> ``fifo:/tmp/a-3.h264``), a
    TCP port is increased by i, and an RTSP path gets ``-i``. stdout cannot be shared."""
    if "{i}" in output:
        return output.replace("{i}", str(i))
    if output.startswith("fifo:"):
        path = output[5:]
        slash = path.rfind("/")
        dot = path.rfind(".")
        if dot > slash + 1:
            return f"fifo:{path[:dot]}-{i}{path[dot:]}"
        return f"fifo:{path}-{i}"
    if m := _TCP.match(output):
        return f"{m.group(1)}{int(m.group(2)) + i}" if int(m.group(2)) else output
    if m := _URL_PATH.match(output):
        return f"{m.group(1)}{(m.group(2) or '/stream').rstrip('/')}-{i}"
    raise ValueError(
        f"agentcast.gym.VectorStreamWrapper(layout='each') needs one output per sub-env; cannot derive them "
        f"from output={output!r} (use fifo:, tcp:, rtsp://, or put {{i}} in it, or pass a list)"
    )


class VectorStreamWrapper(gymnasium.vector.VectorWrapper):
    """Streams a vector env's sub-envs (``SyncVectorEnv`` or ``AsyncVectorEnv`` made with
    ``render_mode="rgb_array"``) when someone watches, within the render budget.

    - ``layout="grid"``: one stream that tiles the sub-envs' frames (8 as 4 columns by 2 rows).
      Its size is ``width`` x ``height`` when given (tiles are scaled to fit), else the tiles keep
      a sub-env frame's aspect at 1/rows of its size.
    - ``layout="each"``: one stream per sub-env. ``output`` is a list with one per sub-env, or
      is derived for sub-env i by :func:`derive_output` (``fifo:/tmp/a.h264`` ->
      ``fifo:/tmp/a-i.h264``); a ``name`` setting becomes ``{name}-{i}``.

    Frames are rendered only when a stream wants one: ``SyncVectorEnv`` renders just the sub-envs
    whose streams want a frame; ``AsyncVectorEnv`` can only ask all its workers at once
    (``envs.call("render")``), so it renders all of them when any stream wants a frame.
    """

    def __init__(
        self,
        envs: gymnasium.vector.VectorEnv,
        layout: str = "grid",
        *,
        max_render_share: float | None = 0.1,
        overlay: bool = False,
        **stream_settings: Any,
    ) -> None:
        super().__init__(envs)
        if layout not in ("grid", "each"):
            raise ValueError(f"agentcast.gym.VectorStreamWrapper: layout must be 'grid' or 'each'; got {layout!r}")
        if envs.render_mode != "rgb_array":
            raise ValueError(
                f"agentcast.gym.VectorStreamWrapper needs a vector env made with render_mode='rgb_array' "
                f"(this one has render_mode={envs.render_mode!r})"
            )
        self.layout = layout
        self._settings = dict(stream_settings)
        self._budget = RenderBudget(max_render_share)
        self._overlay = overlay
        self._streams: list[Stream] = []
        n = self.num_envs
        if layout == "each":
            output = self._settings.get("output", "stdout")
            if isinstance(output, (list, tuple)):
                if len(output) != n:
                    raise ValueError(
                        f"agentcast.gym.VectorStreamWrapper: {len(output)} outputs for {n} sub-envs"
                    )
                self._outputs = list(output)
            else:
                self._outputs = [derive_output(output, i) for i in range(n)]
        # Sub-envs that render on their own (SyncVectorEnv keeps them in .envs).
        self._subenvs: Sequence[gymnasium.Env] | None = getattr(envs.unwrapped, "envs", None)
        self._tiles: tuple[np.ndarray, np.ndarray, int, int, int, int] | None = None
        self._canvas: np.ndarray | None = None
        self._episode = np.zeros(n, np.int64)
        self._step = np.zeros(n, np.int64)
        self._return = np.zeros(n, np.float64)
        self._ended = np.zeros(n, bool)

    @property
    def streams(self) -> list[Stream]:
        """The streams: one for ``grid``, one per sub-env for ``each`` (empty before the first
        frame opens them)."""
        return self._streams

    def stats(self) -> list[dict[str, Any]]:
        """Each stream's ``stats()``, each with the wrapper's ``render`` section."""
        return [s.stats() for s in self._streams]

    # -- rendering ------------------------------------------------------------------------------

    def _own(self, frame: Any) -> np.ndarray:
        """A sub-env's frame as a contiguous array that the overlay may draw on."""
        out = _contiguous(frame)
        return out.copy() if self._overlay and self.layout == "each" and out is frame else out

    def _render_all(self) -> list[np.ndarray]:
        return [self._own(f) for f in self.env.call("render")]

    def _render_some(self, wanted: list[int]) -> dict[int, np.ndarray]:
        if self._subenvs is not None:
            return {i: self._own(self._subenvs[i].render()) for i in wanted}
        frames = self._render_all()
        return {i: frames[i] for i in wanted}

    def _open(self, frames: list[np.ndarray]) -> None:
        for f in frames:
            _check_frame(f, "VectorStreamWrapper")
        h, w, c = frames[0].shape
        fps = self.env.metadata.get("render_fps")
        if fps is None and self._subenvs is not None:
            fps = self._subenvs[0].metadata.get("render_fps")
        if self.layout == "each":
            name = self._settings.get("name")
            for i, f in enumerate(frames):
                settings = dict(self._settings, output=self._outputs[i])
                if name is not None:
                    settings["name"] = f"{name}-{i}"
                self._streams.append(_open_stream(settings, f.shape[1], f.shape[0], f.shape[2], fps))
        else:
            cols, rows = _grid_shape(len(frames))
            width = int(self._settings.get("width") or (w * cols // rows))
            height = int(self._settings.get("height") or h)
            tile_w, tile_h = (width // cols) & ~1, (height // rows) & ~1
            width, height = (tile_w * cols), (tile_h * rows)
            settings = dict(self._settings, width=width, height=height)
            self._streams.append(_open_stream(settings, width, height, c, fps))
            # Nearest-neighbour scaling: the source rows and columns of every tile pixel.
            ys = (np.arange(tile_h) * h // tile_h).astype(np.intp)
            xs = (np.arange(tile_w) * w // tile_w).astype(np.intp)
            self._tiles = (ys, xs, tile_w, tile_h, cols, rows)
            self._canvas = np.zeros((height, width, c), np.uint8)
        for s in self._streams:
            s.stats_sections["render"] = self._budget.stats
        self._budget.fps = self._streams[0].fps

    def _label(self, frame: np.ndarray, i: int) -> None:
        if self._overlay:
            draw_text(frame, _overlay_text(int(self._episode[i]), int(self._step[i]), float(self._return[i])))

    def _push_grid(self, frames: list[np.ndarray]) -> None:
        assert self._tiles is not None and self._canvas is not None
        ys, xs, tw, th, cols, _rows = self._tiles
        canvas = self._canvas
        for i, f in enumerate(frames):
            if f.shape != frames[0].shape:
                raise ValueError(f"agentcast.gym.VectorStreamWrapper: sub-env {i} rendered {f.shape}, not {frames[0].shape}")
            r, c = divmod(i, cols)
            tile = canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
            tile[...] = f[ys[:, None], xs]
            self._label(tile, i)
        self._streams[0].push(canvas)

    def _render_for_streams(self, anyway: bool = False) -> None:
        """Renders what the streams want (`anyway`: every watched stream, due or not)."""
        if self._streams:
            ask = (lambda s: s.watched) if anyway else (lambda s: s._inner.wants_frame())
            wanted = [i for i, s in enumerate(self._streams) if ask(s)]
            if not wanted:
                return
            wait = self._budget.allows()
            if wait:
                for s in self._streams:
                    s.hold_frames(wait)
                return
        else:
            wanted = []
        start, first = time.perf_counter(), not self._streams
        if not self._streams:
            frames = self._render_all()
            self._open(frames)
            wanted = list(range(len(self._streams)))
            by_index = dict(enumerate(frames))
        elif self.layout == "grid":
            by_index = dict(enumerate(self._render_all()))
        else:
            by_index = self._render_some(wanted)
        if self.layout == "grid":
            self._push_grid([by_index[i] for i in range(self.num_envs)])
        else:
            for i in wanted:
                frame = by_index[i]
                self._label(frame, i)
                self._streams[i].push(frame)
        self._budget.spent(time.perf_counter() - start, first)

    # -- the vector env's API -------------------------------------------------------------------

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(**kwargs)
        if self._overlay:
            self._episode += 1
            self._step[:] = 0
            self._return[:] = 0.0
            self._ended[:] = False
        self._render_for_streams(anyway=True)
        return result

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        result = self.env.step(actions)
        if self._overlay:
            # Sub-envs that ended on the last step were reset by this one (autoreset, next step).
            restarted = self._ended
            self._episode[restarted] += 1
            self._step[restarted] = 0
            self._return[restarted] = 0.0
            self._step[~restarted] += 1
            self._return[~restarted] += np.asarray(result[1], np.float64)[~restarted]
            self._ended = np.logical_or(result[2], result[3])
        for s in self._streams:
            if s._inner.wants_frame():
                self._render_for_streams()
                break
        return result

    def close(self, **kwargs: Any) -> None:
        try:
            for s in self._streams:
                s.close()
        finally:
            super().close(**kwargs)
