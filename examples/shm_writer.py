#!/usr/bin/env python3
"""Writes frames into an agentcast shared-memory frame ring (`agentcast --source shm:NAME`).

The layout is docs/SHM.md. Use it from an agent:

    from shm_writer import ShmRing
    with ShmRing("agent1", 1280, 720, "rgb24") as ring:   # /dev/shm/agent1
        while True:
            ring.write(env.render())                       # a (720, 1280, 3) uint8 array

and run `agentcast --source shm:agent1 --width 1280 --height 720 --pix-fmt rgb24`. The writer never
waits for agentcast: `write` copies the frame into the next slot and returns.

As a command, for tests and demos: flat-colour frames whose colour encodes the frame number
(`colour_of`), at a given rate:

    python3 examples/shm_writer.py agent1 --width 320 --height 240 --fps 30 --frames 300 --flat-colors

`--die-mid-frame K` writes half of frame K and then kills itself with SIGKILL, leaving that slot's
sequence odd, the way a crashed agent would; agentcast must never encode that half frame.

Needs numpy (python3-numpy).
"""

import argparse
import mmap
import os
import signal
import sys
import time

import numpy as np

MAGIC = b"AGCSHM01"
VERSION = 1
SLOT_TABLE = 256  # fixed fields end here; the slot table follows
SLOT_ENTRY = 64  # per slot: u64 sequence, u64 timestamp (ns), 48 reserved
ALIGN = 4096
FLAG_CLOSED = 1

# Field offsets (little-endian), as in docs/SHM.md.
OFF_VERSION, OFF_HEADER_SIZE, OFF_WIDTH, OFF_HEIGHT = 8, 12, 16, 20
OFF_PIX_FMT, OFF_PLANE_COUNT, OFF_PLANE_STRIDE, OFF_PLANE_OFFSET = 24, 28, 32, 48
OFF_FRAME_BYTES, OFF_SLOT_COUNT, OFF_FLAGS, OFF_SLOT_STRIDE = 64, 72, 76, 80
OFF_DRM_MODIFIER, OFF_DRM_FOURCC, OFF_WRITER_PID, OFF_LATEST = 88, 96, 100, 104

# name: (code in the header, bytes per pixel or per luma sample, planes)
PIX_FMTS = {
    "rgb24": (1, 3, 1),
    "bgr24": (2, 3, 1),
    "rgba": (3, 4, 1),
    "bgra": (4, 4, 1),
    "rgb0": (5, 4, 1),
    "bgr0": (6, 4, 1),
    "gray": (7, 1, 1),
    "nv12": (8, 1, 2),
    "i420": (9, 1, 3),
}


def round_up(n, to):
    return (n + to - 1) // to * to


def planes(pix_fmt, width, height):
    """[(offset, stride, rows)] of ffmpeg's rawvideo layout: planes back to back, rows packed."""
    code, bpp, count = PIX_FMTS[pix_fmt]
    cw, ch = (width + 1) // 2, (height + 1) // 2
    if pix_fmt == "nv12":
        return [(0, width, height), (width * height, cw * 2, ch)]
    if pix_fmt == "i420":
        return [(0, width, height), (width * height, cw, ch), (width * height + cw * ch, cw, ch)]
    return [(0, width * bpp, height)]


def ring_path(name):
    """`shm:NAME` is /dev/shm/NAME (what shm_open("/NAME") makes); an absolute path is kept."""
    return name if name.startswith("/") else os.path.join("/dev/shm", name)


class ShmRing:
    """A latest-frame ring that one writer fills and agentcast reads.

    Creates the ring file (or takes over an existing one with the same name, which agentcast
    follows as a restarted writer), sized for `slots` frames of `width` x `height` `pix_fmt`.
    """

    def __init__(self, name, width, height, pix_fmt="rgb24", slots=3, mode=0o600, unlink_on_close=True):
        if pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt {pix_fmt!r}: one of {', '.join(PIX_FMTS)}")
        if not 1 <= slots <= 255:
            raise ValueError("slots: 1..255")
        self.path = ring_path(name)
        self.width, self.height, self.pix_fmt, self.slots = width, height, pix_fmt, slots
        self.unlink_on_close = unlink_on_close
        layout = planes(pix_fmt, width, height)
        self.frame_bytes = sum(stride * rows for _, stride, rows in layout)
        self.slot_stride = round_up(self.frame_bytes, ALIGN)
        self.header_size = round_up(SLOT_TABLE + SLOT_ENTRY * slots, ALIGN)
        size = self.header_size + slots * self.slot_stride

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, mode)
        os.ftruncate(self._fd, size)
        self._mm = mmap.mmap(self._fd, size)
        buf = np.frombuffer(self._mm, dtype=np.uint8)
        # Aligned 8-byte words: a numpy element store is one 8-byte store, never torn.
        self._u64 = np.frombuffer(self._mm, dtype="<u8", count=SLOT_TABLE // 8 + slots * SLOT_ENTRY // 8)
        self._u32 = np.frombuffer(self._mm, dtype="<u4", count=SLOT_TABLE // 4)
        self._slots = [
            buf[self.header_size + i * self.slot_stride : self.header_size + i * self.slot_stride + self.frame_bytes]
            for i in range(slots)
        ]

        # Every field but the magic, then the slot table and `latest`, then the magic last, so a
        # reader never sees a valid magic over a half-written header of a new ring.
        code, _, count = PIX_FMTS[pix_fmt]
        u32 = self._u32
        u32[OFF_VERSION // 4] = VERSION
        u32[OFF_HEADER_SIZE // 4] = self.header_size
        u32[OFF_WIDTH // 4], u32[OFF_HEIGHT // 4] = width, height
        u32[OFF_PIX_FMT // 4], u32[OFF_PLANE_COUNT // 4] = code, count
        for i in range(4):
            offset, stride, _ = layout[i] if i < count else (0, 0, 0)
            u32[OFF_PLANE_STRIDE // 4 + i], u32[OFF_PLANE_OFFSET // 4 + i] = stride, offset
        self._u64[OFF_FRAME_BYTES // 8] = self.frame_bytes
        u32[OFF_SLOT_COUNT // 4] = slots
        u32[OFF_FLAGS // 4] = 0
        self._u64[OFF_SLOT_STRIDE // 8] = self.slot_stride
        self._u64[OFF_DRM_MODIFIER // 8] = 0
        u32[OFF_DRM_FOURCC // 4] = 0
        u32[OFF_WRITER_PID // 4] = os.getpid()
        self._u64[SLOT_TABLE // 8 :] = 0
        self._u64[OFF_LATEST // 8] = 0
        buf[: len(MAGIC)] = np.frombuffer(MAGIC, dtype=np.uint8)
        self.frames = 0

    def _seq_index(self, slot):
        return (SLOT_TABLE + SLOT_ENTRY * slot) // 8

    def begin(self):
        """Starts frame n in the next slot: its sequence goes odd. Returns (n, the slot's bytes)."""
        n = self.frames + 1
        slot = (n - 1) % self.slots
        self._u64[self._seq_index(slot)] = 2 * n - 1
        return n, self._slots[slot]

    def publish(self, n):
        """Completes frame n: timestamp, sequence even, then `latest` names it."""
        slot = (n - 1) % self.slots
        i = self._seq_index(slot)
        self._u64[i + 1] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self._u64[i] = 2 * n
        self._u64[OFF_LATEST // 8] = (n << 8) | slot
        self.frames = n

    def write(self, frame):
        """Copies one frame (a uint8 array of the frame's size, any shape, or bytes-like) in."""
        data = np.frombuffer(frame, dtype=np.uint8) if not isinstance(frame, np.ndarray) else frame
        if data.nbytes != self.frame_bytes:
            raise ValueError(
                f"a {self.width}x{self.height} {self.pix_fmt} frame is {self.frame_bytes} bytes, got {data.nbytes}"
            )
        n, dest = self.begin()
        dest[:] = data.reshape(-1).view(np.uint8)
        self.publish(n)
        return n

    def close(self):
        """Marks the ring closed (agentcast ends the stream cleanly) and releases it."""
        if self._mm is None:
            return
        self._u32[OFF_FLAGS // 4] = FLAG_CLOSED
        del self._u64, self._u32, self._slots
        self._mm.close()
        self._mm = None
        os.close(self._fd)
        if self.unlink_on_close:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


LEVELS = (0, 51, 102, 153, 204, 255)


def colour_of(n):
    """The flat colour of frame n: its number in base 6, one digit per channel (216 colours)."""
    return (LEVELS[n % 6], LEVELS[n // 6 % 6], LEVELS[n // 36 % 6])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="ring name (/dev/shm/NAME) or absolute path")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--pix-fmt", default="rgb24", choices=PIX_FMTS)
    ap.add_argument("--slots", type=int, default=3)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--flat-colors", action="store_true", help="each frame one colour, colour_of(frame number)")
    ap.add_argument("--die-mid-frame", type=int, metavar="K", help="write half of frame K, then SIGKILL itself")
    ap.add_argument("--keep", action="store_true", help="leave the ring file in place at the end")
    args = ap.parse_args()
    if args.pix_fmt not in ("rgb24", "bgr24") and args.flat_colors:
        ap.error("--flat-colors needs --pix-fmt rgb24 or bgr24")

    ring = ShmRing(args.name, args.width, args.height, args.pix_fmt, args.slots, unlink_on_close=not args.keep)
    shape = (args.height, args.width, 3)
    rng = np.random.default_rng(1)
    period = 1.0 / args.fps
    start = time.monotonic()
    for i in range(args.frames):
        n = ring.frames + 1
        if args.flat_colors:
            frame = np.empty(shape, np.uint8)
            frame[:] = colour_of(n)
        else:
            frame = rng.integers(0, 256, ring.frame_bytes, dtype=np.uint8)
        if n == args.die_mid_frame:
            _, dest = ring.begin()
            half = ring.frame_bytes // 2
            dest[:half] = frame.reshape(-1)[:half]
            print(f"shm_writer: killed mid-frame {n}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        ring.write(frame)
        wait = start + (i + 1) * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    ring.close()
    print(f"shm_writer: wrote {args.frames} frames", file=sys.stderr)


if __name__ == "__main__":
    main()
