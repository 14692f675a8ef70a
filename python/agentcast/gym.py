"""``agentcast.gym.StreamWrapper``: stream a Gymnasium env's frames live while it runs.

    env = agentcast.gym.StreamWrapper(gymnasium.make("CartPole-v1", render_mode="rgb_array"),
                                      output="fifo:/tmp/cartpole.h264")

After every ``reset()`` and ``step()`` the wrapper renders the env and pushes the frame; it never
changes what the env returns, and ``render()`` still returns the env's own frame. The stream starts
with the first frame (its size and channels give ``width``, ``height`` and ``pix_fmt`` unless
they are given; ``fps`` defaults to the env's ``metadata["render_fps"]``) and closes with the env.
Pushing never waits for the encoder, so a fast training loop is not slowed to the stream's rate:
frames in between are dropped (counted as superseded).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from . import Stream

_PIX_FMT_BY_CHANNELS = {3: "rgb24", 4: "rgba"}


class StreamWrapper(gymnasium.Wrapper):
    """Streams every frame of a ``render_mode="rgb_array"`` env; ``stream_settings`` are
    :class:`agentcast.Stream`'s keywords."""

    def __init__(self, env: gymnasium.Env, **stream_settings: Any) -> None:
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"agentcast.gym.StreamWrapper needs an env made with render_mode='rgb_array' "
                f"(this one has render_mode={env.render_mode!r})"
            )
        self._settings = dict(stream_settings)
        self._stream: Stream | None = None

    @property
    def stream(self) -> Stream | None:
        """The :class:`agentcast.Stream`, once the first frame has started it."""
        return self._stream

    def _push_frame(self) -> None:
        frame = self.env.render()
        if frame is None:
            return
        # Envs often return a transposed view (pygame surfaces are column-major); one copy then.
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._stream is None:
            self._stream = self._open(frame)
        self._stream.push(frame)

    def _open(self, frame: np.ndarray) -> Stream:
        if frame.ndim != 3 or frame.shape[2] not in _PIX_FMT_BY_CHANNELS:
            raise ValueError(
                f"agentcast.gym.StreamWrapper expects rgb_array frames of shape (H, W, 3) or "
                f"(H, W, 4); the env rendered shape {frame.shape}"
            )
        settings = dict(self._settings)
        settings.setdefault("width", frame.shape[1])
        settings.setdefault("height", frame.shape[0])
        settings.setdefault("pix_fmt", _PIX_FMT_BY_CHANNELS[frame.shape[2]])
        render_fps = self.env.metadata.get("render_fps")
        if render_fps:
            settings.setdefault("fps", int(round(render_fps)))
        return Stream(**settings)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = self.env.reset(**kwargs)
        self._push_frame()
        return result

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        self._push_frame()
        return result

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        finally:
            super().close()
