#!/usr/bin/env bash
# Sets up, builds, and runs the side-by-side benchmark: agentcast (paced and unpaced) against
# gst-launch videotestsrc ! x264enc and ffmpeg lavfi + libx264, runs alternated. Prints the markdown
# table and writes bench-results/{bench.md,bench.json,latency.png}. Arguments go to scripts/bench.py
# (--runs, --frames, --configs WxH@FPS,..., --out DIR). About 10 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
exec python3 scripts/bench.py --bin target/release/agentcast "$@"
