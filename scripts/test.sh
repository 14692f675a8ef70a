#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit tests, and the integration tests that run the
# real binary and check its bytes with ffmpeg/ffprobe. No GPU needed (Mesa llvmpipe renders).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The integration tests each run a real encoder on every core; one at a time keeps them honest on
# small machines.
cargo test --locked -- --test-threads=1
# The Python package: pip-installed into a virtual environment (debug build, sharing target/debug)
# and tested with pytest against real decoders and a real Gymnasium env.
cargo clippy --locked -p agentcast-python -- -D warnings
scripts/python.sh
