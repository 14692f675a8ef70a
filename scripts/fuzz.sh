#!/usr/bin/env bash
# Runs the property tests of the byte-stream code (tests/fuzz.rs: the Annex-B splitter, access
# units, slice headers, the normaliser, `check`) with many more cases than CI's default 256.
#   scripts/fuzz.sh [CASES]      (default 100000 per property; release build for speed)
# A failure prints proptest's minimal input: save it under tests/data/crash-*.h264 and add it to
# CRASHES in tests/fuzz.rs, then fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-100000}
echo "fuzz: $cases cases per property" >&2
PROPTEST_CASES=$cases cargo test --release --locked --test tests fuzz:: -- --test-threads=2
