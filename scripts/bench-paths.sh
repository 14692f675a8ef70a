#!/bin/bash
# 1080p, 300 frames, unpaced, output to /dev/null; CPU ms/frame (user+sys); 3 alternating rounds.
# Needs a release build (cargo build --release) and gstreamer1.0-tools; see docs/PERFORMANCE.md.
# Where there is CUDA (nvidia-smi answers) it adds the zero-copy path ("zc"): into NVENC where one
# opens, else through cudadownload into x264 (the --debug-cuda-download testing aid), as on H100.
# AGENTCAST_BIN overrides the binary (gpu-check --prebuilt sets it). CPU time is the children's
# rusage, read by python3 (no /usr/bin/time needed).
B=${AGENTCAST_BIN:-"$(cd "$(dirname "$0")/.." && pwd)/target/release/agentcast"}
configs="cpu gpu base"
if nvidia-smi -L >/dev/null 2>&1; then configs="cpu gpu zc base"; fi
for r in 1 2 3; do
  for c in $configs; do
    ours=($B --width 1920 --height 1080 --frames 300 --no-pace --stats-file /tmp/st_$c.json)
    case $c in
      zc) cmd=("${ours[@]}" --path zero-copy --debug-cuda-download) ;;
      base) cmd=(gst-launch-1.0 -q videotestsrc num-buffers=300 pattern=smpte ! video/x-raw,width=1920,height=1080,framerate=30/1,format=NV12 ! x264enc tune=zerolatency speed-preset=veryfast bitrate=4000 key-int-max=30 bframes=0 threads=1 ! h264parse ! fakesink) ;;
      *) cmd=("${ours[@]}" --convert $c --path readback) ;;
    esac
    s=$(date +%s.%N)
    python3 -c 'import resource, subprocess, sys
subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "w"))
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(u.ru_utime, u.ru_stime)' /tmp/err_$c.txt "${cmd[@]}" >/tmp/t.txt
    e=$(date +%s.%N)
    read u sy < /tmp/t.txt
    hb=$( [ $c = base ] && echo - || python3 -c "import json;d=json.load(open('/tmp/st_$c.json'));print(d['path'],d['host_bytes_per_frame'],d['backend'])" 2>/dev/null || echo "failed: $(tail -1 /tmp/err_$c.txt)")
    python3 -c "w=$e-$s;print('$r $c fps=%.1f cpu_ms_per_frame=%.1f host=%s' % (300/w, ($u+$sy)*1000/300, '$hb'))"
  done
done
