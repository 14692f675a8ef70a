#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit tests, and the integration tests that run the
# real binary and check its bytes with ffmpeg/ffprobe. No GPU needed (Mesa llvmpipe renders).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The go2rtc end-to-end tests (tests/go2rtc_e2e.rs) run the real go2rtc: the one beside the project
# (../shared/bin/go2rtc) when it is there, else whatever go2rtc is on PATH; without one they say
# "skipped: no go2rtc", and under CI=true they fail instead.
if [[ -z "${AGENTCAST_TEST_GO2RTC:-}" && -x ../shared/bin/go2rtc ]]; then
    AGENTCAST_TEST_GO2RTC="$(cd ../shared/bin && pwd)/go2rtc"
    export AGENTCAST_TEST_GO2RTC
fi
# The integration tests each run a real encoder on every core; one at a time keeps them honest on
# small machines.
cargo test --locked -- --test-threads=1
# The Python package: pip-installed into a virtual environment (debug build, sharing target/debug)
# and tested with pytest against real decoders and a real Gymnasium env.
cargo clippy --locked -p agentcast-python -- -D warnings
scripts/python.sh
