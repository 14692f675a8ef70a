#!/usr/bin/env bash
# Builds the Python package (python/, PyO3 + maturin) into a virtual environment and runs its
# pytest tests. The environment is kept in .venv (or $AGENTCAST_VENV) and pip's cache is used, so a
# second run only rebuilds what changed. The build is `pip install ./python` itself, with
# maturin's debug profile so it shares target/debug with `cargo test` (PROFILE=release for a
# release build, as `pip install ./python` makes by default). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(realpath -m "${AGENTCAST_VENV:-.venv}")
profile=${PROFILE:-dev}
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# kubernetes-validate checks docker/kubernetes/ offline (its schemas ship in the package). Ray runs
# examples/ray_fleet.py on a local cluster; the version docker/Dockerfile.ray and the RayCluster pin.
"${pip[@]}" install "maturin>=1.8,<2" numpy pytest "gymnasium[classic-control]>=1.0" "kubernetes-validate>=1.30" \
    "ray==2.40.0"
start=$(date +%s)
PATH="$venv/bin:$PATH" MATURIN_PEP517_ARGS="--profile $profile" "${pip[@]}" install --no-build-isolation --force-reinstall --no-deps ./python
echo "python: built and installed the agentcast package ($profile) in $(($(date +%s) - start)) s" >&2
# Run from python/tests so the checkout's python/agentcast (no extension module) does not shadow
# the installed package.
cd python/tests
exec "$venv/bin/python" -m pytest -ra -p no:cacheprovider "$@"
