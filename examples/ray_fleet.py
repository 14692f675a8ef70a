#!/usr/bin/env python3
"""A training fleet on Ray, streamed live: every env is a camera that go2rtc pulls only while
someone watches it.

    python examples/ray_fleet.py --go2rtc http://go2rtc:1984 --workers 2 --envs-per-worker 2
    # open http://go2rtc:1984/ : fleet-w1-v0, fleet-w1-v1, fleet-w2-v0, fleet-w2-v1

`--workers` Ray actors ("env runners", spread over the cluster's nodes) each step
`--envs-per-worker` Gymnasium envs (CartPole-v1, render_mode="rgb_array") with random actions, as
fast as they can. Each env has its own ``agentcast.Stream`` serving RTSP on a free port of its node
(``output="rtsp-listen:0.0.0.0:0/NAME"``) and registering with one go2rtc (``register=URL``) under
``{prefix}-w{worker}-v{vector}``: the worker index (1, 2, ...) and the env's index in its worker
(0, 1, ...), as RLlib's ``EnvContext.worker_index`` and ``vector_index`` name them. The env renders
only when ``stream.wants_frame()`` is true, i.e. someone watches and a frame is due at ``--fps``:
an unwatched env renders nothing and costs next to nothing. Closing a stream removes its name from
go2rtc.

Plain Ray actors, not RLlib: RLlib (ray[rllib]: torch and friends, gigabytes) is too heavy for this
project's CI machine, and what streaming needs is the same. In RLlib, wrap the env in its creator
(not run here):

    def make_env(ctx):  # ctx: RLlib's EnvContext
        name = f"run7-w{ctx.worker_index}-v{ctx.vector_index}"
        env = gymnasium.make("CartPole-v1", render_mode="rgb_array")
        return agentcast.gym.StreamWrapper(env, output=f"rtsp-listen:0.0.0.0:0/{name}",
                                           register="http://go2rtc:1984", name=name)

The wrapper does what ``Env`` below does, plus a render budget; it renders one frame at the first
reset to learn the frame size, where ``Env`` asks the env for its size and renders nothing unwatched.

Ray: ``--address`` (default: ``RAY_ADDRESS``, or the cluster ``ray start`` began on this node, else
a new local one; ``local`` always starts a local one, with ``--num-cpus``). On Kubernetes
(docker/kubernetes/raycluster.yaml) run it on the head: ``--go2rtc`` defaults to ``$GO2RTC_URL`` and
each env advertises its pod's ``$POD_IP`` to go2rtc. Every ``--report`` seconds it prints one line
per env (steps, renders, viewers); ``--seconds N`` stops after N seconds (0: at Ctrl-C), then the
streams close, and with ``--json`` every env's final stats follow as JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import gymnasium
import ray

import agentcast


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--go2rtc", default=os.environ.get("GO2RTC_URL"),
                   help="go2rtc's API, e.g. http://go2rtc:1984 (default: $GO2RTC_URL)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors, each stepping its own envs (default 2)")
    p.add_argument("--envs-per-worker", type=int, default=2, help="envs per actor (default 2)")
    p.add_argument("--cpus-per-worker", type=float, default=1, help="Ray CPUs each actor asks for (default 1)")
    p.add_argument("--env", default="CartPole-v1", help="a Gymnasium env id with rgb_array rendering")
    p.add_argument("--prefix", default="fleet", help="names are PREFIX-wWORKER-vVECTOR (default fleet)")
    p.add_argument("--listen", default="0.0.0.0", help="where each env's RTSP server listens (default 0.0.0.0)")
    p.add_argument("--advertise", default=None,
                   help="the host go2rtc dials (default: the actor's $POD_IP if set, else agentcast's: "
                        "the address on the route to go2rtc)")
    p.add_argument("--fps", type=int, default=15, help="the most frames a second each stream renders (default 15)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (default 0: at Ctrl-C)")
    p.add_argument("--report", type=float, default=10, help="seconds between progress lines (default 10)")
    p.add_argument("--json", action="store_true", help="print every env's final stats as JSON lines on stdout")
    p.add_argument("--address", default=None, help="the Ray cluster (default: auto; 'local' starts one)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray cluster started here")
    p.add_argument("--object-store-mb", type=int, default=None,
                   help="object store size of a local Ray cluster started here (Ray's default otherwise)")
    args = p.parse_args(argv)
    if not args.go2rtc:
        p.error("--go2rtc URL is needed (or set GO2RTC_URL)")
    if args.workers < 1 or args.envs_per_worker < 1:
        p.error("--workers and --envs-per-worker must be at least 1")
    return args


def env_name(prefix: str, worker: int, vector: int) -> str:
    return f"{prefix}-w{worker}-v{vector}"


def render_size(env: gymnasium.Env) -> tuple[int, int] | None:
    """The rgb_array frame size without rendering, where the env says it (classic-control's
    screen_width/screen_height, MuJoCo's width/height)."""
    u = env.unwrapped
    for w, h in (("screen_width", "screen_height"), ("width", "height")):
        if isinstance(getattr(u, w, None), int) and isinstance(getattr(u, h, None), int):
            return getattr(u, w), getattr(u, h)
    return None


class Env:
    """One env and its stream; it renders only for frames someone will see."""

    def __init__(self, env_id: str, name: str, settings: dict[str, Any], seed: int) -> None:
        self.name = name
        self.env = gymnasium.make(env_id, render_mode="rgb_array")
        self.env.reset(seed=seed)
        self.steps = self.episodes = self.rendered = 0
        size = render_size(self.env)
        first = None
        if size is None:  # ask the env itself: one render
            first = self._render()
            size = (first.shape[1], first.shape[0])
        self.stream = agentcast.Stream(size[0], size[1], output=f"rtsp-listen:{settings.pop('listen')}:0/{name}",
                                       name=name, **settings)
        if first is not None:
            self.stream.push(first)

    def _render(self) -> Any:
        self.rendered += 1
        return self.env.render()

    def step(self) -> None:
        _, _, terminated, truncated, _ = self.env.step(self.env.action_space.sample())
        self.steps += 1
        if terminated or truncated:
            self.env.reset()
            self.episodes += 1
        # Only when someone watches and a frame is due: at most --fps renders a second. (A CartPole
        # episode lasts a few ms here, so rendering every episode's first frame would cost more.)
        if self.stream.wants_frame():
            self.stream.push(self._render())

    def stats(self) -> dict[str, Any]:
        s = self.stream.stats()
        return {
            "name": self.name, "steps": self.steps, "episodes": self.episodes, "rendered": self.rendered,
            "received": s["frames"]["received"], "clients": (s.get("listen") or {}).get("clients"),
            "listen": (s.get("listen") or {}).get("url"), "register": s.get("register"),
        }


@ray.remote
class EnvRunner:
    """A Ray actor stepping `envs` envs in turn, each streaming under PREFIX-wWORKER-vVECTOR."""

    def __init__(self, worker: int, envs: int, a: dict[str, Any]) -> None:
        advertise = a["advertise"] or os.environ.get("POD_IP")
        settings = {"listen": a["listen"], "register": a["go2rtc"], "fps": a["fps"], "advertise": advertise,
                    "stats_interval": 0}
        self.envs = [Env(a["env"], env_name(a["prefix"], worker, v), dict(settings), seed=1000 * worker + v)
                     for v in range(envs)]

    def run(self, seconds: float) -> list[dict[str, Any]]:
        """Steps every env in turn for `seconds`; returns their stats."""
        end = time.monotonic() + seconds
        envs = self.envs
        while time.monotonic() < end:
            for _ in range(64):
                for e in envs:
                    e.step()
        return self.stats()

    def stats(self) -> list[dict[str, Any]]:
        return [e.stats() for e in self.envs]

    def close(self) -> list[dict[str, Any]]:
        """Closes every stream (each removes its name from go2rtc); returns the final stats."""
        for e in self.envs:
            e.stream.close()
        out = self.stats()
        for e in self.envs:
            e.env.close()
        return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    init: dict[str, Any] = {"include_dashboard": False}
    if args.address:
        init["address"] = args.address
    if args.num_cpus is not None:
        init["num_cpus"] = args.num_cpus
    if args.object_store_mb is not None:
        init["object_store_memory"] = args.object_store_mb * 1024 * 1024
    ray.init(**init)
    runners: list[Any] = []
    try:
        a = vars(args)
        runners = [EnvRunner.options(num_cpus=args.cpus_per_worker, scheduling_strategy="SPREAD")
                   .remote(w, args.envs_per_worker, a) for w in range(1, args.workers + 1)]
        ready = [e for envs in ray.get([r.stats.remote() for r in runners], timeout=120) for e in envs]
        for e in ready:
            print(f"ray_fleet: {e['name']} serves {e['listen']}, registered as {e['register']['src']}",
                  file=sys.stderr, flush=True)
        print(json.dumps({"ready": [e["name"] for e in ready]}), flush=True)
        start = time.monotonic()
        while True:
            left = args.seconds - (time.monotonic() - start) if args.seconds else args.report
            if left <= 0:
                break
            chunk = min(args.report, left)
            for envs in ray.get([r.run.remote(chunk) for r in runners], timeout=chunk + 60):
                for e in envs:
                    print(f"ray_fleet: {e['name']}: {e['steps']} steps, {e['episodes']} episodes, "
                          f"{e['rendered']} rendered, {e['clients']} RTSP clients", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        final = []
        for r in runners:
            try:
                final += ray.get(r.close.remote(), timeout=30)
            except Exception as e:  # an actor that died: its names stay until go2rtc's takeover
                print(f"ray_fleet: closing an env runner failed: {e}", file=sys.stderr, flush=True)
        ray.shutdown()
    if args.json:
        for e in final:
            print(json.dumps(e), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
