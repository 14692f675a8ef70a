#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit tests, the integration tests that run the
# real binary and check its bytes with ffmpeg/ffprobe, the property tests (tests/fuzz.rs, 256 cases
# each), the Python package (scripts/python.sh), and a 2-minute soak (scripts/soak.sh). No GPU needed
# (Mesa llvmpipe renders). Ends with the pass/fail/ignored counts and every ignored test with its
# reason (they need hardware; see scripts/gpu-check.sh).
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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The integration tests each run a real encoder on every core; one at a time keeps them honest on
# small machines. Every process they start has a deadline (tests/util.rs), so none can hang this.
set +e
cargo test --locked -- --test-threads=1 2>&1 | tee "$log"
tests=${PIPESTATUS[0]}
set -e
# The Python package: pip-installed into a virtual environment (debug build, sharing target/debug)
# and tested with pytest against real decoders and a real Gymnasium env.
python=0
{ cargo clippy --locked -p agentcast-python -- -D warnings && scripts/python.sh; } || python=$?
soak=0
scripts/soak.sh --minutes 2 --bin target/debug/agentcast || soak=$?

echo
echo "== summary"
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) g += $i
        }
     }
     END { printf "cargo tests: %d passed, %d failed, %d ignored\n", p, f, g }' "$log"
if grep -q '\.\.\. ignored' "$log"; then
    echo "ignored (run them with scripts/gpu-check.sh on a machine that has what they need):"
    sed -n 's/^test \(.*\) \.\.\. ignored, \(.*\)$/  \1: \2/p; s/^test \(.*\) \.\.\. ignored$/  \1: (no reason given)/p' "$log"
fi
grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^/failed: /' || true
echo "python package (pytest, above): $([[ $python == 0 ]] && echo PASS || echo FAIL)"
echo "soak (2 min): $([[ $soak == 0 ]] && echo PASS || echo FAIL)"
((tests == 0 && python == 0 && soak == 0))
