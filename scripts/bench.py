#!/usr/bin/env python3
"""agentcast's side-by-side benchmark: one command, every contender, runs alternated.

For each configuration (default 1280x720@30, 1920x1080@30 and 1280x720@60) and each round, it runs
every contender once, in turn, so the machine's drift hits all of them alike:

  agentcast-paced     agentcast at --fps (what go2rtc runs)
  agentcast-unpaced   agentcast --no-pace (its maximum frame rate)
  gst-x264            encode-only baseline: gst-launch-1.0 videotestsrc ! x264enc, agentcast's settings
  ffmpeg-paced        what a user would write instead: ffmpeg -re lavfi testsrc2 + libx264 to stdout
  ffmpeg-unpaced      the same without -re

and measures, per run: fps; CPU seconds per frame (user+sys of the process and all its threads, from
wait4); peak RSS (wait4's ru_maxrss); spawn -> the first 256 bytes holding SPS+PPS (a viewer's
join); and reader leaves (BrokenPipe) -> exit. It also runs `agentcast latency` once per round for
agentcast's true end-to-end latency (render -> arrival, by frame stamp).

Every figure is reported as median with min..max over the rounds. Output: a markdown table on
stdout, and in --out (default bench-results/): bench.md, bench.json, latency.png (gnuplot; the
per-frame latency distributions and the join times) and the data behind the plot.

Usage: scripts/bench.py [--runs 3] [--frames 300] [--configs 1280x720@30,1920x1080@30,1280x720@60]
                        [--bin target/release/agentcast] [--out bench-results] [--external]
Without --bin it builds the release binary first (cargo build --release --locked).

--external benchmarks an agent's own frames instead: ffmpeg's testsrc2 is written once to a raw rgb24
file, and the same bytes go, alternated per round, into

  agentcast-raw       agentcast --source raw:- --no-pace (default settings)
  ffmpeg-rawvideo     what a user would write: ffmpeg -f rawvideo -i - + libx264 with agentcast's settings

measuring fps, CPU per frame and peak RSS, whether go2rtc accepts the bytes, and agentcast's latency
from a frame's last byte entering the pipe to its access unit leaving (`agentcast latency` with
--stamp, frames fed through a FIFO at --fps). Its table goes to bench-external.md/.json.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

BITRATE = 4000  # kbit/s, agentcast's default
QP_MAX = 34  # agentcast's default --qp-max
VBV_FRAMES = 2  # agentcast's VBV, in frames (src/encode/settings.rs)
CONTENDERS = ["agentcast-paced", "agentcast-unpaced", "gst-x264", "ffmpeg-paced", "ffmpeg-unpaced"]
PACED = {"agentcast-paced", "ffmpeg-paced"}


def x264_gst(fps):
    """agentcast's x264enc settings table (src/encode/settings.rs), as gst-launch properties."""
    vbv_ms = -(-VBV_FRAMES * 1000 // fps)
    return [
        "pass=cbr", f"bitrate={BITRATE}", f"vbv-buf-capacity={vbv_ms}", f"key-int-max={fps}", "bframes=0",
        "b-adapt=false", "speed-preset=superfast", "tune=zerolatency", "sliced-threads=false", "threads=1",
        f"qp-max={QP_MAX}", "byte-stream=true",
        "option-string=sliced-threads=0:slices=1:nal-hrd=cbr:filler=1:scenecut=0",
    ]


def x264_ffmpeg(fps):
    """The same settings for ffmpeg's libx264."""
    vbv_kbit = -(-BITRATE * VBV_FRAMES // fps)
    return [
        "-c:v", "libx264", "-preset", "superfast", "-tune", "zerolatency", "-profile:v", "high",
        "-pix_fmt", "yuv420p", "-b:v", f"{BITRATE}k", "-minrate", f"{BITRATE}k", "-maxrate", f"{BITRATE}k",
        "-bufsize", f"{vbv_kbit}k", "-g", str(fps), "-bf", "0", "-threads", "1",
        "-x264-params", f"nal-hrd=cbr:filler=1:scenecut=0:sliced-threads=0:slices=1:qpmax={QP_MAX}",
        "-f", "h264",
    ]


def command(name, binary, w, h, fps, frames):
    """The contender's command line; frames=None runs until the reader leaves."""
    if name.startswith("agentcast"):
        cmd = [binary, "--width", str(w), "--height", str(h), "--fps", str(fps), "--log-level", "error"]
        if frames:
            cmd += ["--frames", str(frames)]
        return cmd + (["--no-pace"] if name == "agentcast-unpaced" else [])
    if name == "gst-x264":
        live = [] if frames else ["is-live=true"]  # a live source when a viewer joins
        return (
            ["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={frames or -1}", "pattern=smpte"] + live
            + ["!", f"video/x-raw,format=I420,width={w},height={h},framerate={fps}/1", "!", "x264enc"]
            + x264_gst(fps)
            + ["!", "video/x-h264,profile=high", "!", "h264parse", "config-interval=-1", "!",
               "video/x-h264,stream-format=byte-stream,alignment=au", "!", "fdsink", "fd=1"]
        )
    if name.startswith("ffmpeg"):
        re_ = ["-re"] if name == "ffmpeg-paced" else []
        limit = ["-frames:v", str(frames)] if frames else []
        return (
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"] + re_
            + ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}"] + limit + x264_ffmpeg(fps) + ["-"]
        )
    raise ValueError(name)


def measure(cmd, frames, stdin=subprocess.DEVNULL, keep=None):
    """Runs to completion, reading its stdout: fps between the first and the last byte (start-up
    excluded, the same for every contender), CPU ms per frame (start-up included), peak RSS MiB.
    `keep`: a path to save the output in."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=stdin)
    first = last = None
    saved = open(keep, "wb") if keep else None
    while True:
        chunk = os.read(p.stdout.fileno(), 1 << 20)
        if not chunk:
            break
        if saved:
            saved.write(chunk)
        last = time.monotonic()
        first = first or last
    if saved:
        saved.close()
    _, status, ru = os.wait4(p.pid, 0)
    p.stdout.close()
    if status != 0 or first is None or last <= first:
        sys.exit(f"bench: {' '.join(cmd)} failed (wait status {status})")
    return {
        "fps": (frames - 1) / (last - first),
        "cpu_ms_per_frame": (ru.ru_utime + ru.ru_stime) * 1000.0 / frames,
        "peak_rss_mib": ru.ru_maxrss / 1024.0,
    }


def sps_pps_in_first_256(buf):
    """Whether the first 256 bytes hold a complete SPS (0x67) and PPS (0x68) behind 4-byte start codes."""
    head = buf[:256]
    if len(head) < 256:
        return False
    sps, pps = head.find(b"\x00\x00\x00\x01\x67"), head.find(b"\x00\x00\x00\x01\x68")
    if sps < 0 or pps < 0:
        return False
    # The PPS is complete when another start code follows it inside the 256 bytes.
    return head.find(b"\x00\x00\x01", pps + 5) > 0


def join_and_exit(cmd):
    """Spawn -> first 256 bytes with SPS+PPS, and reader closes -> process exit (ms), exit status."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    buf, join = b"", None
    while join is None:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            p.wait()
            sys.exit(f"bench: {cmd[0]} ended before SPS+PPS (status {p.returncode})")
        buf += chunk
        if sps_pps_in_first_256(buf):
            join = (time.monotonic() - start) * 1000.0
        elif len(buf) >= 256:
            p.kill()
            p.wait()
            return None, None, "no SPS+PPS in the first 256 bytes"
    deadline = time.monotonic() + 0.5  # keep reading a moment, like a viewer would
    while time.monotonic() < deadline:
        os.read(p.stdout.fileno(), 1 << 20)
    p.stdout.close()
    gone = time.monotonic()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return join, None, "did not exit within 10 s"
    status = p.returncode
    how = f"signal {signal.Signals(-status).name}" if status < 0 else f"exit {status}"
    return join, (time.monotonic() - gone) * 1000.0, how


def go2rtc_check(binary, name, w, h, fps, out):
    """Captures 60 frames of the contender's stdout and runs `agentcast check` on them: does go2rtc's
    raw H.264 reader accept these bytes? Returns (ok, first violation)."""
    path = os.path.join(out, f"sample-{name}-{w}x{h}@{fps}.h264")
    with open(path, "wb") as f:
        subprocess.run(command(name, binary, w, h, fps, 60), stdout=f, stderr=subprocess.DEVNULL, check=True)
    r = subprocess.run([binary, "check", path], capture_output=True, text=True)
    problems = [" ".join(l.split()[2:]) for l in r.stdout.splitlines() if l.startswith("byte")]
    return r.returncode == 0, (problems[0] if problems else "")


def latency(binary, w, h, fps, frames):
    out = subprocess.run(
        [binary, "latency", "--json", "--frames", str(frames), "--",
         "--width", str(w), "--height", str(h), "--fps", str(fps), "--log-level", "error"],
        capture_output=True, stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        sys.exit(f"bench: agentcast latency failed: {out.stderr.decode(errors='replace').strip()[-500:]}")
    return json.loads(out.stdout)


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "runs": [round(v, 2) for v in values],
    }


def cell(s, digits=1):
    if s["median"] is None:
        return "-"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}..{s['max']:.{digits}f})"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), model)
    except OSError:
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            return None

    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "gstreamer": version(["gst-launch-1.0", "--version"]),
        "ffmpeg": version(["ffmpeg", "-version"]),
        "gpu": "none (Mesa llvmpipe renders on the CPU)" if not os.path.exists("/dev/nvidia0") else "NVIDIA",
    }


def markdown(report):
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['gpu']}; {m['date']}.",
        f"{report['runs']} rounds of {report['frames']} frames, contenders alternated; median (min..max).",
        "",
        "Not like for like: the agentcast rows render the demo scene (on the CPU with llvmpipe where there is",
        "no GPU) and their CPU figures include that render; gst-x264 and ffmpeg only generate a test pattern.",
        "The same raw frames into agentcast and ffmpeg: `scripts/bench.py --external` (the headline of",
        "scripts/bench.sh).",
        "",
        "| config | contender | fps | CPU ms/frame | peak RSS MiB | join ms | BrokenPipe -> exit ms | exit on BrokenPipe | go2rtc accepts the bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["configs"]:
        for name in CONTENDERS:
            r = c["contenders"][name]
            label = f"{name} (incl. render)" if name.startswith("agentcast") else name
            lines.append(
                f"| {c['name']} | {label} | {cell(r['fps'])} | {cell(r['cpu_ms_per_frame'])} | "
                f"{cell(r['peak_rss_mib'], 0)} | {cell(r['join_ms'])} | {cell(r['exit_ms'])} | "
                f"{', '.join(sorted(set(r['exit_status'])))} | "
                f"{'yes' if r['go2rtc_ok'] else 'no: ' + r['go2rtc_problem']} |"
            )
    lines += [
        "",
        "agentcast end to end, by frame stamp (`agentcast latency`, paced; medians over rounds of each run's figure):",
        "",
        "| config | keeps up | stamps read / misreads | render -> arrival p50 / p99 / max ms | + go2rtc framing p50 ms | render -> go2rtc emits p50 / p99 ms | producer render / readback / encode / write p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["configs"]:
        l = c["latency"]
        keeps = c["keeps_up"]
        lines.append(
            f"| {c['name']} | {'yes' if keeps else 'no'} | {l['stamps_read']} / {l['misreads']} | "
            f"{l['render_to_arrival']['p50']} / {l['render_to_arrival']['p99']} / {l['render_to_arrival']['max']} | "
            f"{l['go2rtc_framing']['p50']} | {l['render_to_go2rtc']['p50']} / {l['render_to_go2rtc']['p99']} | "
            + " / ".join(str(l["producer"][s]) for s in ["render", "readback", "encode", "write"])
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(report, out):
    """latency.png: per-frame latency CDFs (left) and join times per contender (right), via gnuplot."""
    if not shutil.which("gnuplot"):
        print("bench: gnuplot not found (apt-get install gnuplot-nox); no latency.png", file=sys.stderr)
        return None
    series = []
    for i, c in enumerate(report["configs"]):
        for key, label in [("arrival", "render->arrival"), ("go2rtc", "render->go2rtc")]:
            values = sorted(c["latency"]["per_frame_ms"][key])
            if not values:
                continue
            path = os.path.join(out, f"latency-{i}-{key}.dat")
            with open(path, "w") as f:
                for n, v in enumerate(values):
                    f.write(f"{v} {(n + 1) / len(values)}\n")
            series.append((path, f"{c['name']} {label}"))
    joins = []
    for i, c in enumerate(report["configs"]):
        path = os.path.join(out, f"join-{i}.dat")
        with open(path, "w") as f:
            for j, name in enumerate(CONTENDERS):
                for v in c["contenders"][name]["join_ms"]["runs"]:
                    f.write(f"{j + i * 0.15} {v}\n")
        joins.append((path, c["name"]))
    png = os.path.join(out, "latency.png")
    xtics = ", ".join(f'"{n}" {j}' for j, n in enumerate(CONTENDERS))
    script = [
        "set terminal pngcairo noenhanced size 1400,560 font 'sans,10'",
        f"set output '{png}'",
        "set multiplot layout 1,2 title 'agentcast bench: " + report["machine"]["date"] + "'",
        "set title 'agentcast per-frame latency (by frame stamp)'",
        "set xlabel 'ms'", "set ylabel 'fraction of frames'", "set key bottom right", "set grid",
        "plot " + ", ".join(f"'{p}' using 1:2 with lines lw 2 title '{t}'" for p, t in series),
        "set title 'viewer join: spawn -> SPS+PPS in the first 256 bytes'",
        "set xlabel ''", "set ylabel 'ms'", f"set xtics ({xtics}) rotate by -20", "set xrange [-0.5:4.8]",
        "set key top right",
        "plot " + ", ".join(f"'{p}' using 1:2 with points pt 7 ps 1.2 title '{t}'" for p, t in joins),
        "unset multiplot",
    ]
    r = subprocess.run(["gnuplot"], input="\n".join(script), text=True, capture_output=True)
    if r.returncode != 0:
        print(f"bench: gnuplot failed: {r.stderr.strip()}", file=sys.stderr)
        return None
    return png


EXTERNAL = ["agentcast-raw", "ffmpeg-rawvideo"]


def external_command(name, binary, w, h, fps):
    """The contenders for an agent's own frames: raw rgb24 frames on stdin, H.264 on stdout."""
    if name == "agentcast-raw":
        return [binary, "--source", "raw:-", "--width", str(w), "--height", str(h), "--fps", str(fps),
                "--pix-fmt", "rgb24", "--no-pace", "--log-level", "error", "--stats-interval", "0"]
    return (["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
             "-i", "-"] + x264_ffmpeg(fps) + ["-"])


def external_latency(binary, src, w, h, fps, frames, out):
    """agentcast latency over frames fed into a FIFO at `fps` by a writer (the agent)."""
    fifo = os.path.join(out, f"frames-{w}x{h}.fifo")
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo)
    frame_bytes = w * h * 3
    writer = subprocess.Popen([sys.executable, "-c", """
import sys, time
src, fifo, n, fps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
size = int(sys.argv[5])
with open(src, "rb") as f, open(fifo, "wb", buffering=0) as out:
    start = time.monotonic()
    for i in range(n):
        frame = f.read(size) or (f.seek(0) or f.read(size))
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
        try:
            out.write(frame)
        except BrokenPipeError:
            break
""", src, fifo, str(frames + 60), str(fps), str(frame_bytes)])
    try:
        r = subprocess.run(
            [binary, "latency", "--json", "--frames", str(frames), "--", "--source", f"raw:{fifo}", "--stamp",
             "--width", str(w), "--height", str(h), "--fps", str(fps), "--log-level", "error"],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
        )
    finally:
        writer.kill()
        writer.wait()
        os.unlink(fifo)
    if r.returncode != 0:
        sys.exit(f"bench: agentcast latency (external) failed: {r.stderr.decode(errors='replace').strip()[-500:]}")
    return json.loads(r.stdout)


def external(a, binary, configs):
    """The external-frames benchmark (--external)."""
    results = {c: {n: [] for n in EXTERNAL} for c in configs}
    lat = {c: [] for c in configs}
    checks = {}
    sources = {}
    for w, h, fps in configs:
        src = os.path.join(a.out, f"testsrc2-{w}x{h}.rgb")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}",
                        "-frames:v", str(a.frames), "-f", "rawvideo", "-pix_fmt", "rgb24", src], check=True)
        sources[(w, h, fps)] = src
    for round_ in range(a.runs):
        for w, h, fps in configs:
            key = (w, h, fps)
            print(f"bench: external round {round_ + 1}/{a.runs}, {w}x{h}@{fps}", file=sys.stderr)
            for name in EXTERNAL:
                keep = os.path.join(a.out, f"external-{name}-{w}x{h}.h264") if round_ == 0 else None
                with open(sources[key], "rb") as stdin:
                    results[key][name].append(measure(external_command(name, binary, w, h, fps), a.frames, stdin, keep))
                if keep:
                    r = subprocess.run([binary, "check", keep], capture_output=True, text=True)
                    problems = [" ".join(l.split()[2:]) for l in r.stdout.splitlines() if l.startswith("byte")]
                    checks[(key, name)] = (r.returncode == 0, problems[0] if problems else "")
            lat[key].append(external_latency(binary, sources[key], w, h, fps, min(a.frames, 150), a.out))
    lines = [
        f"External frames (raw rgb24 from one ffmpeg testsrc2 file, the same bytes to each contender); "
        f"{a.runs} rounds of {a.frames} frames, alternated; median (min..max).",
        "",
        "| config | contender | fps (unpaced) | CPU ms/frame | peak RSS MiB | CPU vs ffmpeg | RSS vs ffmpeg | go2rtc accepts the bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    report = {"machine": machine(), "runs": a.runs, "frames": a.frames, "configs": []}
    for w, h, fps in configs:
        key = (w, h, fps)
        rows = {n: {k: spread([r[k] for r in results[key][n]]) for k in ["fps", "cpu_ms_per_frame", "peak_rss_mib"]}
                for n in EXTERNAL}
        base = rows["ffmpeg-rawvideo"]
        for name in EXTERNAL:
            r = rows[name]
            ok, problem = checks[(key, name)]
            ratio = lambda k: (f"{r[k]['median'] / base[k]['median']:.2f}x" if base[k]["median"] else "-")
            lines.append(
                f"| {w}x{h}@{fps} | {name} | {cell(r['fps'])} | {cell(r['cpu_ms_per_frame'])} | "
                f"{cell(r['peak_rss_mib'], 0)} | {ratio('cpu_ms_per_frame')} | {ratio('peak_rss_mib')} | "
                f"{'yes' if ok else 'no: ' + problem} |"
            )
        ls = lat[key]
        med = lambda path: round(statistics.median(
            [v for v in (l.get("latency_ms", {}).get(path[0], {}).get(path[1]) for l in ls) if v is not None] or [0]), 2)
        stage = lambda s: round(statistics.median(
            [l["producer_ms"][s]["p50"] for l in ls if l.get("producer_ms", {}).get(s, {}).get("p50") is not None] or [0]), 2)
        report["configs"].append({"name": f"{w}x{h}@{fps}", "contenders": rows, "latency": ls,
                                  "arrival_p50": med(["render_to_arrival", "p50"]), "encode_p50": stage("encode")})
    lines += [
        "",
        "agentcast, paced, frames written into a FIFO at --fps by an agent; by frame stamp (`--stamp`):",
        "",
        "| config | stamps read / misreads | pipe -> AU out p50 / p99 / max ms | producer: in slot / hand-over / encode / write p50 ms |",
        "|---|---|---|---|",
    ]
    for c, (w, h, fps) in zip(report["configs"], configs):
        ls = lat[(w, h, fps)]
        q = lambda k: round(statistics.median([l["latency_ms"]["render_to_arrival"][k] for l in ls]), 2)
        st = lambda s: round(statistics.median([l["producer_ms"][s]["p50"] or 0 for l in ls]), 2)
        lines.append(
            f"| {c['name']} | {sum(l['frames']['stamps_read'] for l in ls)} / {sum(l['frames']['misreads'] for l in ls)} | "
            f"{q('p50')} / {q('p99')} / {q('max')} | {st('render')} / {st('readback')} / {st('encode')} / {st('write')} |"
        )
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "bench-external.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(a.out, "bench-external.md"), "w") as f:
        f.write(md)
    for src in sources.values():
        os.unlink(src)
    print(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds (every contender runs once per round)")
    ap.add_argument("--frames", type=int, default=300, help="frames per run")
    ap.add_argument("--configs", default="1280x720@30,1920x1080@30,1280x720@60", help="WxH@FPS,...")
    ap.add_argument("--bin", help="agentcast binary (default: build target/release/agentcast)")
    ap.add_argument("--out", default="bench-results", help="directory for bench.md, bench.json, latency.png")
    ap.add_argument("--external", action="store_true", help="benchmark an agent's own raw frames instead")
    a = ap.parse_args()
    if a.runs < 1 or a.frames < 2:
        sys.exit("bench: --runs must be >= 1 and --frames >= 2")
    configs = []
    for spec in a.configs.split(","):
        try:
            size, fps = spec.split("@")
            w, h = (int(v) for v in size.split("x"))
            configs.append((w, h, int(fps)))
        except ValueError:
            sys.exit(f"bench: --configs: {spec!r} is not WxH@FPS")
    binary = a.bin
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], check=True)
        binary = "target/release/agentcast"
    for tool in ["gst-launch-1.0", "ffmpeg", binary]:
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"bench: {tool} not found (scripts/setup.sh installs it)")
    os.makedirs(a.out, exist_ok=True)
    if a.external:
        external(a, binary, configs)
        return

    results = {(w, h, f): {n: [] for n in CONTENDERS} for w, h, f in configs}
    joins = {(w, h, f): {n: [] for n in CONTENDERS} for w, h, f in configs}
    lat = {(w, h, f): [] for w, h, f in configs}
    checks = {(w, h, f): {n: go2rtc_check(binary, n, w, h, f, a.out) for n in CONTENDERS} for w, h, f in configs}
    for round_ in range(a.runs):
        for w, h, fps in configs:
            print(f"bench: round {round_ + 1}/{a.runs}, {w}x{h}@{fps}", file=sys.stderr)
            for name in CONTENDERS:
                results[(w, h, fps)][name].append(measure(command(name, binary, w, h, fps, a.frames), a.frames))
                joins[(w, h, fps)][name].append(join_and_exit(command(name, binary, w, h, fps, None)))
            lat[(w, h, fps)].append(latency(binary, w, h, fps, a.frames))

    report = {"machine": machine(), "runs": a.runs, "frames": a.frames, "bitrate_kbps": BITRATE,
              "qp_max": QP_MAX, "configs": []}
    for w, h, fps in configs:
        key = (w, h, fps)
        contenders = {}
        for name in CONTENDERS:
            rs, js = results[key][name], joins[key][name]
            contenders[name] = {
                "command": command(name, binary, w, h, fps, a.frames),
                "paced": name in PACED,
                "fps": spread([r["fps"] for r in rs]),
                "cpu_ms_per_frame": spread([r["cpu_ms_per_frame"] for r in rs]),
                "peak_rss_mib": spread([r["peak_rss_mib"] for r in rs]),
                "join_ms": spread([j[0] for j in js]),
                "exit_ms": spread([j[1] for j in js]),
                "exit_status": [j[2] for j in js],
                "go2rtc_ok": checks[key][name][0],
                "go2rtc_problem": checks[key][name][1],
            }
        ls = lat[key]

        def med(path, ls=ls):
            vals = []
            for l in ls:
                v = l
                for p in path:
                    v = v.get(p) if isinstance(v, dict) else None
                if v is not None:
                    vals.append(v)
            return round(statistics.median(vals), 2) if vals else None

        latency_summary = {
            k: {q: med(["latency_ms", k, q]) for q in ["p50", "p99", "max"]}
            for k in ["render_to_arrival", "go2rtc_framing", "render_to_go2rtc"]
        }
        latency_summary["producer"] = {s: med(["producer_ms", s, "p50"]) for s in ["render", "readback", "encode", "write"]}
        latency_summary["stamps_read"] = sum(l["frames"]["stamps_read"] for l in ls)
        latency_summary["misreads"] = sum(l["frames"]["misreads"] for l in ls)
        latency_summary["per_frame_ms"] = {
            "arrival": [p[1] for l in ls for p in l["per_frame"]],
            "go2rtc": [p[2] for l in ls for p in l["per_frame"] if p[2] is not None],
        }
        paced_fps = contenders["agentcast-paced"]["fps"]["median"]
        report["configs"].append({
            "name": f"{w}x{h}@{fps}", "width": w, "height": h, "fps": fps,
            "keeps_up": paced_fps is not None and paced_fps >= 0.97 * fps,
            "contenders": contenders,
            "latency": latency_summary,
        })
    md = markdown(report)
    report["plot"] = plot(report, a.out)
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"bench: wrote {a.out}/bench.md, {a.out}/bench.json" + (f", {report['plot']}" if report["plot"] else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
