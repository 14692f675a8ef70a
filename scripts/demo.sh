#!/usr/bin/env bash
# Sets up, builds, and streams 10 seconds of the built-in demo scene into demo.mp4 (playable in any
# browser or player). The raw go2rtc-ready stream is kept as demo.h264 and checked.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
bin=target/release/agentcast
"$bin" --duration 10 > demo.h264
"$bin" check demo.h264 | tail -n 1
ffmpeg -v error -y -framerate 30 -f h264 -i demo.h264 -c copy -movflags +faststart demo.mp4
echo "demo: wrote demo.mp4 ($(stat -c %s demo.mp4) bytes) and demo.h264" >&2
