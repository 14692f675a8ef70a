#!/usr/bin/env bash
# Sets up, builds, and runs the side-by-side benchmarks, in the order a newcomer should read them:
#   1. like for like, the headline: the same raw frames (one ffmpeg testsrc2 file) piped into
#      agentcast (`--source raw:-`) and into ffmpeg + libx264 with agentcast's settings
#      (scripts/bench.py --external);
#   2. the drawn scene: agentcast rendering its demo scene (on llvmpipe where there is no GPU, so its
#      CPU figures include the render) beside gst-launch videotestsrc ! x264enc and ffmpeg lavfi +
#      libx264, which only generate a test pattern (scripts/bench.py).
# Runs are alternated inside each round. Prints both markdown tables, headline first, and writes
# bench-results/{summary.md,bench-external.md,bench-external.json,bench.md,bench.json,latency.png}.
# Arguments go to both scripts/bench.py runs (--runs, --frames, --configs WxH@FPS,..., --out DIR).
# About 15 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
out=bench-results
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --out) out=${args[i + 1]} ;;
        --out=*) out=${args[i]#--out=} ;;
    esac
done
python3 scripts/bench.py --bin target/release/agentcast --external "$@" >/dev/null
python3 scripts/bench.py --bin target/release/agentcast "$@" >/dev/null
{
    echo "## Like for like: the same raw frames into agentcast and into ffmpeg"
    echo
    cat "$out/bench-external.md"
    echo
    echo "## The drawn scene: agentcast's rows include rendering it"
    echo
    cat "$out/bench.md"
} >"$out/summary.md"
cat "$out/summary.md"
echo "bench: wrote $out/summary.md (both tables), bench-external.{md,json}, bench.{md,json}" >&2
