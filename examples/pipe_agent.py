#!/usr/bin/env python3
"""The smallest agent that streams its own frames: it pipes raw RGB frames into agentcast, which
keeps a FIFO that go2rtc reads on demand (go2rtc.yaml: `agent_01: exec:cat /tmp/agent_01.h264`).

    python3 examples/pipe_agent.py            # then open http://127.0.0.1:1984/stream.html?src=agent_01

Replace `render(t)` with your environment's `env.render()` (an H x W x 3 uint8 array).
"""
import subprocess
import time

import numpy as np

W, H = 640, 360


def render(t):
    """A stand-in for env.render(): a bright square moving over a dark gradient."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, :, 2] = np.linspace(0, 160, W, dtype=np.uint8)
    x = (t * 4) % (W - 80)
    frame[140:220, x:x + 80] = (255, 200, 40)
    return frame


cast = subprocess.Popen(["agentcast", "--source", "raw:-", "--width", str(W), "--height", str(H),
                         "--output", "fifo:/tmp/agent_01.h264"], stdin=subprocess.PIPE)
for t in range(10**9):
    cast.stdin.write(render(t).tobytes())  # never blocks on the encoder: the newest frame wins
    time.sleep(1 / 30)  # your env.step(): agentcast repeats or drops frames to keep --fps
