#!/usr/bin/env bash
# The checks that need an NVIDIA GPU: the zero-copy path's hardware legs (issue 6). Prints what ran,
# on which GPU and driver. Without an NVIDIA GPU it says so and runs what is left (the hardware tests
# then skip with a message). Needs what scripts/setup.sh installs, and the NVIDIA driver's
# libcuda.so.1 and EGL vendor library. Run it from a checkout: `scripts/gpu-check.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."
B=target/release/agentcast
step() { printf '\n== %s\n' "$*"; }

step "GPU and driver"
if nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version --format=csv,noheader 2>/dev/null; then
  gpu=yes
else
  gpu=no
  echo "no NVIDIA GPU answers nvidia-smi: the hardware legs below will skip or refuse"
fi

step "build (release)"
cargo build --release --locked -q || exit 1

step "agentcast doctor (the path auto would take, and why)"
$B doctor 2>/dev/null | grep -E -A1 '^[a-z]+ +(egl|gl|cuda|nvenc|path|encoder) '

step "EGL device selection and the path chosen (30 frames at 1080p, --log-level info)"
$B --width 1920 --height 1080 --frames 30 --no-pace --log-level info 2>&1 >/dev/null |
  grep -E 'egl|EGL|GL_RENDERER|cuda|CUDA|path:|convert:|encoder:' | sed 's/^\[[^]]*\] //'

step "hardware tests: GL -> CUDA pixel-exact copy; CUDA memory through cudadownload ! x264enc, stamp for stamp"
cargo test --release --locked -q zero_copy -- --nocapture --test-threads=1 2>&1 |
  grep -E 'skip|test result|panicked|FAILED|zero_copy' || true

step "1080p per path: fps, CPU per frame, host bytes per frame (3 rounds beside videotestsrc ! x264enc)"
scripts/bench-paths.sh
echo
echo "gpu-check: done (NVIDIA GPU: $gpu)"
