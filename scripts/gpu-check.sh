#!/usr/bin/env bash
# The checks that need an NVIDIA GPU: the zero-copy path's hardware legs (issue 6), the tests that
# are #[ignore = "needs ..."] in a plain `cargo test`, every test whose expectation depends on the
# machine, the GPU memory reading (issue 17) and the DMA-BUF import (issue 15). Prints what ran, on which GPU and driver. Without an
# NVIDIA GPU it says so and runs what is left (the hardware tests then fail, saying what is missing). Needs what scripts/setup.sh installs, and the NVIDIA driver's
# libcuda.so.1 and EGL vendor library. Run it from a checkout: `scripts/gpu-check.sh`.
# On a machine with the driver but without the build tools and packages, run it with
# `--prebuilt DIR`, DIR being scripts/gpu-bundle.sh's archive unpacked: it builds nothing, takes the
# binaries and GStreamer from DIR, and runs the machine tests that need no ffmpeg (the bundle has none).
set -uo pipefail
cd "$(dirname "$0")/.."
B=target/release/agentcast
prebuilt=
case ${1:-} in
  --prebuilt) prebuilt=$(cd "${2:?--prebuilt DIR}" && pwd) ;;
  "") ;;
  *) echo "gpu-check: unknown argument $1 (only --prebuilt DIR)" >&2; exit 2 ;;
esac
step() { printf '\n== %s\n' "$*"; }

step "GPU and driver"
if nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version --format=csv,noheader 2>/dev/null; then
  gpu=yes
else
  gpu=no
  echo "no NVIDIA GPU answers nvidia-smi: the hardware legs below will skip or refuse"
fi

if [[ -n $prebuilt ]]; then
  step "prebuilt binaries from $prebuilt (no build)"
  B=$prebuilt/bin/agentcast
  export PATH="$prebuilt/bin:$PATH" AGENTCAST_BIN=$B
  # The test binaries run the binary, and read files, where cargo built them.
  exe=$(cat "$prebuilt/cargo-bin-exe") manifest=$(cat "$prebuilt/manifest-dir")
  [[ -e $manifest ]] || { mkdir -p "$(dirname "$manifest")" && ln -s "$PWD" "$manifest"; }
  [[ -x $exe ]] || { mkdir -p "$(dirname "$exe")" && ln -sf "$B" "$exe"; }
  echo "agentcast $($B --version 2>&1 | head -n 1); test binaries run $exe -> $(readlink -f "$exe")"
else
  step "build (release)"
  cargo build --release --locked -q || exit 1
fi

step "agentcast doctor (the path auto would take, and why)"
$B doctor 2>/dev/null | grep -E -A1 '^[a-z]+ +(egl|gl|dmabuf|cuda|nvml|nvenc|path|encoder) '

step "EGL device selection and the path chosen (30 frames at 1080p, --log-level info)"
$B --width 1920 --height 1080 --frames 30 --no-pace --log-level info 2>&1 >/dev/null |
  grep -E 'egl|EGL|GL_RENDERER|cuda|CUDA|path:|convert:|encoder:' | sed 's/^\[[^]]*\] //'

step "hardware tests (#[ignore]d elsewhere, run here with --include-ignored) and every test whose expectation depends on the machine (doctor --json facts)"
# GL -> CUDA pixel-exact copy (lib); CUDA memory through cudadownload ! x264enc, stamp for stamp;
# doctor, stats, encoders, --gpu and --path as this machine predicts them.
machine_tests=(zero_copy deploy::doctor deploy::stats deploy::gpu encoders_lists nvenc_without auto_logs
    a_forced_encoder gpu_and_cpu_conversion an_injected_encoder_stall an_encoder_that_fails latency_reads_every_stamp
    start_up_failures)
if [[ -n $prebuilt ]]; then
  # No ffmpeg/ffprobe in the bundle: leave out the machine tests that decode with them.
  machine_tests=(zero_copy deploy::doctor deploy::stats deploy::gpu encoders_lists nvenc_without auto_logs
      start_up_failures)
  lib_tests=("$prebuilt/bin/lib-tests") int_tests=("$prebuilt/bin/tests")
else
  lib_tests=(cargo test --release --locked -q --lib --) int_tests=(cargo test --release --locked -q --test tests --)
fi
{
    "${lib_tests[@]}" --include-ignored --test-threads=1 zero_copy
    # DMA-BUF export -> EGL import (lib), with the exported fourcc, modifier and strides printed.
    "${lib_tests[@]}" --include-ignored --test-threads=1 --nocapture dmabuf
    "${int_tests[@]}" --include-ignored --test-threads=1 "${machine_tests[@]}"
} 2>&1 | grep -v -E '^(running [0-9]+ tests?|)$' || true

step "GPU memory in the stats (NVML): gpu_memory_mib of 1080p runs, beside nvidia-smi's figure for the same process"
for path in auto zero-copy; do
  extra=(); [[ $path == zero-copy ]] && extra=(--debug-cuda-download --encoder x264)
  $B --width 1920 --height 1080 --frames 150 --stats-interval 1 --path $path "${extra[@]}" \
      >/dev/null 2>/tmp/gpu-check-nvml.log &
  p=$!
  sleep 3
  smi=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null | grep "^$p," ||
      nvidia-smi 2>/dev/null | grep -E "^\|.* $p .*MiB" || echo "(no row for pid $p)")
  wait $p
  grep '^{' /tmp/gpu-check-nvml.log | tail -n 1 | SMI="$smi" python3 -c 'import json, os, sys
s = json.loads(sys.stdin.read() or "{}")
print("--path %s: gpu_memory_mib %s, path %s; nvidia-smi: %s" % (sys.argv[1], s.get("gpu_memory_mib"), s.get("path"), os.environ["SMI"]))' $path
done
$B doctor --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("doctor nvml:", d["facts"].get("nvml"), [c["detail"] for c in d["checks"] if c["check"] == "nvml"])'

step "zero-copy against readback: the same 60 frames at 1080p through both paths, decoded and compared"
# Both into x264 (the zero-copy frames through cudadownload), the scene without the stamp, so the
# pictures depend on the frame index alone: a faithful handoff decodes to the readback's pictures.
cmp_dir=$(mktemp -d)
same=(--width 1920 --height 1080 --frames 60 --no-pace --no-stamp --scene demo --encoder x264)
$B "${same[@]}" --path zero-copy --debug-cuda-download >"$cmp_dir/zc.h264" 2>"$cmp_dir/zc.log" ||
  echo "zero-copy run failed: $(grep '^agentcast:' "$cmp_dir/zc.log")"
$B "${same[@]}" --path readback >"$cmp_dir/rb.h264" 2>"$cmp_dir/rb.log" || echo "readback run failed"
$B check "$cmp_dir/zc.h264" 2>&1 | tail -n 1
if command -v ffmpeg >/dev/null; then
  ffmpeg -v info -i "$cmp_dir/zc.h264" -i "$cmp_dir/rb.h264" -lavfi psnr -f null - 2>&1 | grep -o 'PSNR.*' ||
    echo "ffmpeg could not compare them"
else
  # No ffmpeg (the bundle): OpenCV's FFmpeg decoder, where python3 has cv2 and numpy.
  python3 - "$cmp_dir/zc.h264" "$cmp_dir/rb.h264" <<'PY' || echo "neither ffmpeg nor python3's cv2 is here to compare them"
import sys, cv2, numpy as np
def frames(p):
    c, out = cv2.VideoCapture(p, cv2.CAP_FFMPEG), []
    while True:
        ok, f = c.read()
        if not ok:
            return out
        out.append(f.astype(np.float64))
a, b = frames(sys.argv[1]), frames(sys.argv[2])
mse = [((x - y) ** 2).mean() for x, y in zip(a, b)]
worst = 10 * np.log10(255**2 / max(max(mse), 1e-10)) if mse else float("nan")
print("decoded by OpenCV: zero-copy %d, readback %d pictures; identical %d; worst PSNR %.1f dB"
      % (len(a), len(b), sum(m == 0 for m in mse), worst))
PY
fi
rm -rf "$cmp_dir"

step "1080p per path: fps, CPU per frame, host bytes per frame (3 rounds beside videotestsrc ! x264enc)"
scripts/bench-paths.sh
echo
echo "gpu-check: done (NVIDIA GPU: $gpu)"
