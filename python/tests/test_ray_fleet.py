"""examples/ray_fleet.py on a local Ray cluster (2 CPUs, no dashboard, no usage stats, a small
object store) under a real go2rtc with no streams in its config: 2 Ray actors x 2 CartPole envs, each
env registered as PREFIX-wWORKER-vVECTOR. Two envs (one per actor) are watched through go2rtc's
/api/stream.mp4 and ffprobe decodes what the viewer got; the two nobody watched rendered no frame
(the actors' own counts of env.render() calls, and the streams' frames.received). Every env stepped,
and when the script ends every name has left go2rtc. Also: the command the KubeRay manifest shows
is one the script accepts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import DEADLINE, ROOT
from fleet_util import Go2rtc, mp4_frames

SCRIPT = ROOT / "examples/ray_fleet.py"
FPS = 15
WATCH_S = 3
RUN_S = 12


def need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed (scripts/python.sh installs it)")
        pytest.skip("ray is not installed (scripts/python.sh installs it)")


def load_script():
    spec = importlib.util.spec_from_file_location("ray_fleet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ray_fleet_streams_watched_envs_and_renders_nothing_for_the_rest(tmp_path: Path, go2rtc: str) -> None:
    need_ray()
    prefix = f"t{os.getpid()}"
    names = [f"{prefix}-w{w}-v{v}" for w in (1, 2) for v in (0, 1)]
    watched = [names[0], names[3]]  # one env of each actor
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    err_path = tmp_path / "ray_fleet.stderr"
    started = time.monotonic()
    with Go2rtc(go2rtc, tmp_path) as g, open(err_path, "wb") as err:
        # Its own session, so that Ray's processes (GCS, raylet, workers) can be killed as a group.
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--go2rtc", g.url, "--address", "local", "--num-cpus", "2",
             "--object-store-mb", "100", "--workers", "2", "--envs-per-worker", "2", "--cpus-per-worker", "1",
             "--listen", "127.0.0.1", "--prefix", prefix, "--fps", str(FPS), "--seconds", str(RUN_S),
             "--report", str(RUN_S), "--json"],
            stdout=subprocess.PIPE, stderr=err, env=env, cwd=tmp_path, start_new_session=True)

        def kill_group() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        killer = threading.Timer(DEADLINE, kill_group)
        killer.daemon = True
        killer.start()
        try:
            line = proc.stdout.readline()
            log = lambda: err_path.read_text(errors="replace")[-4000:]  # noqa: E731
            assert line, f"ray_fleet.py ended (or ran past {DEADLINE} s) before its envs were ready:\n{log()}"
            ready_s = time.monotonic() - started
            assert json.loads(line) == {"ready": names}
            for n in names:
                assert re.fullmatch(rf"rtsp://127\.0\.0\.1:\d+/{n}", g.source_of(n) or ""), (n, g.streams())

            got: dict[str, bytes] = {}
            viewers = [threading.Thread(target=lambda n=n: got.__setitem__(n, g.watch_mp4(n, WATCH_S)))
                       for n in watched]
            for v in viewers:
                v.start()
            for v in viewers:
                v.join(60)
            out, _ = proc.communicate(timeout=DEADLINE)
            assert proc.returncode == 0, f"ray_fleet.py exit {proc.returncode}:\n{log()}"
        finally:
            killer.cancel()
            if proc.poll() is None:
                kill_group()
                proc.wait(10)
        took = time.monotonic() - started
        final = {e["name"]: e for e in map(json.loads, out.decode().splitlines())}
        assert sorted(final) == sorted(names), out.decode()
        for n in names:
            g.wait_listed(n, False, limit=3)  # closed streams removed their names

    for n in watched:
        mp4 = tmp_path / f"{n}.mp4"
        mp4.write_bytes(got.get(n, b""))
        assert got.get(n), f"go2rtc served nothing for {n}:\n{g.log()}"
        frames = mp4_frames(mp4)
        e = final[n]
        sys.stderr.write(f"{n}: watched {WATCH_S} s -> {frames} frames decoded; rendered {e['rendered']}, "
                         f"{e['steps']} steps\n")
        assert frames >= 10, (n, frames)
        # Rendered only for the viewer, paced at --fps: not once per step.
        assert frames <= e["rendered"] <= FPS * (WATCH_S + 3), e
        assert e["received"] == e["rendered"], e
    for n in names:
        e = final[n]
        assert e["steps"] > 1000 and e["episodes"] > 10, e
        assert e["register"]["state"] == "registered", e
        if n not in watched:
            sys.stderr.write(f"{n}: unwatched: rendered {e['rendered']}, {e['steps']} steps\n")
            assert e["rendered"] == 0 and e["received"] == 0, f"an unwatched env rendered: {e}"
    sys.stderr.write(f"ray_fleet: ready after {ready_s:.1f} s, whole run {took:.1f} s (--seconds {RUN_S})\n")


def test_the_kuberay_manifest_runs_the_script_with_flags_it_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker/kubernetes/raycluster.yaml says how to start the fleet on the head; those flags parse,
    and go2rtc's address comes from the head's GO2RTC_URL."""
    need_ray()
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "docker/kubernetes/raycluster.yaml").read_text()
    commands = re.findall(r"python /opt/agentcast/examples/ray_fleet\.py([^\n]*)", text)
    assert commands, "the manifest no longer says how to run examples/ray_fleet.py"
    head = yaml.safe_load(text)["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head_env = {e["name"]: e.get("value") for e in head.get("env", [])}
    module = load_script()
    monkeypatch.setenv("GO2RTC_URL", head_env["GO2RTC_URL"])
    for args in commands:
        parsed = module.parse_args(args.split())
        assert parsed.go2rtc == "http://go2rtc:1984"
        assert parsed.listen == "0.0.0.0"  # go2rtc dials the worker pods
    # Without GO2RTC_URL and --go2rtc, the script says what it needs (argparse: exit 2).
    monkeypatch.delenv("GO2RTC_URL")
    with pytest.raises(SystemExit) as e:
        module.parse_args([])
    assert e.value.code == 2
