#!/usr/bin/env python3
"""Latency a viewer of go2rtc sees: render start -> picture decoded by an RTSP viewer of go2rtc's
re-stream, per output mode, for one or two agentcast binaries side by side.

For every configuration and round it starts one go2rtc (loopback only) whose streams run the
producers, and for each (binary, mode) it runs `agentcast latency --via rtsp://.../NAME --frame-log
LOG --frames N --json` with the measuring binary (--viewer-bin, default the last --bin); the
producer writes LOG and its final stats (stage times) to files. Binaries alternate within each
mode so drift on a shared machine hits them alike. Modes:

  stdout  exec:BIN ...                      (raw H.264 on stdout; go2rtc times it by arrival)
  mpegts  exec:BIN --mux mpegts ...         (MPEG-TS on stdout; timed by PTS)
  rtsp    exec:BIN --output {output} ...    (publishes to go2rtc's RTSP server; needs --output rtsp)
  fifo    BIN --output fifo:PATH  + exec:cat PATH
  tcp     BIN --output tcp:127.0.0.1:PORT + tcp://127.0.0.1:PORT
  pull    BIN --output rtsp-listen:127.0.0.1:0/NAME --register http://go2rtc (no stream in go2rtc's
          config: the producer registers itself, and go2rtc pulls RTSP from it)

The first second of every run (the producer's start-up) is left out of the figures.

  python3 scripts/bench-viewer.py --bin before=/tmp/base/agentcast --bin after=target/release/agentcast
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MODES = ["stdout", "mpegts", "rtsp", "fifo", "tcp", "pull"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]


def wait_for(path, limit=5.0):
    deadline = time.time() + limit
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)


def supports_rtsp(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    return "rtsp://" in out


def go2rtc_binary():
    env = os.environ.get("AGENTCAST_TEST_GO2RTC")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bin", "go2rtc")
    if os.path.isfile(here):
        return os.path.abspath(here)
    found = shutil.which("go2rtc")
    if not found:
        sys.exit("bench-viewer: no go2rtc (set AGENTCAST_TEST_GO2RTC or put it on PATH)")
    return found


def supports_listen(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    return "rtsp-listen:" in out


def wait_registered(api, name, limit=15.0):
    import urllib.request
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/streams", timeout=2) as r:
                if name in json.load(r):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not register with go2rtc")


def run_one(args, work, label, binary, mode, w, h, fps):
    """One measured run; returns a dict of figures, or None when the mode does not apply."""
    if mode == "rtsp" and not supports_rtsp(binary):
        return None
    if mode == "pull" and not supports_listen(binary):
        return None
    tag = f"{label}_{mode}"
    log = os.path.join(work, f"{tag}.frames")
    stats = os.path.join(work, f"{tag}.stats.json")
    for p in (log, stats):
        if os.path.exists(p):
            os.remove(p)
    common = ["--width", str(w), "--height", str(h), "--fps", str(fps), "--frame-log", log,
              "--stats-file", stats, "--stats-interval", "0", "--stream", tag]
    api, rtsp, webrtc = free_port(), free_port(), free_port()
    producer = None
    if mode == "stdout":
        source = "exec:" + " ".join([binary] + common) + "#killsignal=15#killtimeout=5"
    elif mode == "mpegts":
        source = "exec:" + " ".join([binary, "--mux", "mpegts"] + common) + "#killsignal=15#killtimeout=5"
    elif mode == "rtsp":
        source = "exec:" + " ".join([binary, "--output", "{output}"] + common) + "#killsignal=15#killtimeout=5"
    elif mode == "fifo":
        fifo = os.path.join(work, f"{tag}.h264")
        producer = subprocess.Popen([binary, "--output", f"fifo:{fifo}"] + common,
                                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{tag}.log"), "w"))
        source = f"exec:/usr/bin/cat {fifo}#killsignal=15#killtimeout=2"
    elif mode == "pull":
        source = None  # the producer registers itself once go2rtc is up
    else:
        port = free_port()
        producer = subprocess.Popen([binary, "--output", f"tcp:127.0.0.1:{port}"] + common,
                                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{tag}.log"), "w"))
        source = f"tcp://127.0.0.1:{port}"
    config = os.path.join(work, f"{tag}.yaml")
    with open(config, "w") as f:
        f.write(f'api:\n  listen: "127.0.0.1:{api}"\nrtsp:\n  listen: "127.0.0.1:{rtsp}"\n'
                f'webrtc:\n  listen: "127.0.0.1:{webrtc}"\n  ice_servers: []\n'
                f'rtmp:\n  listen: ""\nsrtp:\n  listen: ""\nstreams:\n')
        if source is not None:
            f.write(f'  {tag}: "{source}"\n')
    g = subprocess.Popen([args.go2rtc, "-config", config], cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", api), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("go2rtc did not start")
                time.sleep(0.05)
        if mode == "pull":
            producer = subprocess.Popen([binary, "--output", f"rtsp-listen:127.0.0.1:0/{tag}", "--register",
                                         f"http://127.0.0.1:{api}"] + common, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(work, f"{tag}.log"), "w"))
            wait_registered(api, tag)
        if producer is not None:
            time.sleep(1.5)  # the producer's start-up, before go2rtc attaches
        frames = args.frames + fps  # one second more, left out below
        out = subprocess.run([args.viewer_bin, "latency", "--via", f"rtsp://127.0.0.1:{rtsp}/{tag}",
                              "--frame-log", log, "--frames", str(frames), "--json"],
                             capture_output=True, text=True, timeout=frames / fps + 60)
        if out.returncode != 0:
            print(f"bench-viewer: {tag}: {out.stderr.strip()}", file=sys.stderr)
            return {"error": out.stderr.strip().splitlines()[-1:]}
        r = json.loads(out.stdout)
        if producer is None:
            wait_for(stats)  # go2rtc stops an exec producer when the viewer leaves; it writes its stats then
    finally:
        g.send_signal(signal.SIGTERM)
        try:
            g.wait(timeout=5)
        except subprocess.TimeoutExpired:
            g.kill()
        if producer is not None:
            producer.send_signal(signal.SIGTERM)
            try:
                producer.wait(timeout=5)
            except subprocess.TimeoutExpired:
                producer.kill()
    per = r["per_frame"]
    steady = [ms for frame, ms in per if per and frame >= per[0][0] + fps]
    wait_for(stats)
    stages = {}
    try:
        with open(stats) as f:
            s = json.load(f)
        stages = {k: (v or {}).get("p50") for k, v in s.get("latency_ms", {}).items()}
    except (OSError, ValueError):
        pass
    return {
        "p50": pct(steady, 50), "p99": pct(steady, 99), "max": max(steady) if steady else None,
        "n": len(steady), "misreads": r["frames"]["misreads"], "decoded": r["frames"]["decoded"],
        "stages_p50": stages,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", action="append", required=True, metavar="LABEL=PATH")
    ap.add_argument("--viewer-bin", help="agentcast with `latency --via` (default: the last --bin)")
    ap.add_argument("--configs", default="1280x720@30")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--frames", type=int, default=300, help="frames measured per run (after the first second)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", help="write the JSON results here")
    args = ap.parse_args()
    bins = [b.split("=", 1) for b in args.bin]
    args.viewer_bin = args.viewer_bin or bins[-1][1]
    args.go2rtc = go2rtc_binary()
    results = []
    work = tempfile.mkdtemp(prefix="bench-viewer-")
    try:
        for config in args.configs.split(","):
            size, fps = config.split("@")
            w, h = (int(x) for x in size.split("x"))
            for rnd in range(args.rounds):
                for mode in args.modes.split(","):
                    for label, binary in bins:
                        r = run_one(args, work, label, os.path.abspath(binary), mode, w, h, int(fps))
                        if r is None:
                            continue
                        r.update({"config": config, "round": rnd, "mode": mode, "bin": label})
                        results.append(r)
                        print(json.dumps(r), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    print("| config | mode | binary | render -> viewer decoded p50 ms | p99 ms | max ms | frames | misreads "
          "| producer p50 ms: render / readback / encode / write / render->write |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['config']} | {r['mode']} | {r['bin']} | failed: {r['error']} | | | | | |")
            continue
        s = r["stages_p50"]
        stages = " / ".join(fmt(s.get(k)) for k in ["render", "readback", "encode", "write", "render_to_write"])
        print(f"| {r['config']} | {r['mode']} | {r['bin']} | {fmt(r['p50'])} | {fmt(r['p99'])} | {fmt(r['max'])} "
              f"| {r['n']} | {r['misreads']} | {stages} |")


if __name__ == "__main__":
    main()
