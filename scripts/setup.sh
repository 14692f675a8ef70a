#!/usr/bin/env bash
# Installs what agentcast needs to build, run and test on Debian 12 (bookworm) or newer, and
# nothing that is already there. Safe to run again. Needs root or sudo for apt-get.
set -euo pipefail

packages=(
    # build
    pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    # run: GStreamer core elements, videoconvert/appsrc (base), h264parse + openh264enc (bad),
    # x264enc (ugly), gst-launch-1.0 for the baseline benchmark (tools)
    gstreamer1.0-plugins-base gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-tools
    # run: rtspclientsink for --output rtsp:// (publishing to go2rtc's {output}); build and run:
    # GStreamer's RTSP server library for --output rtsp-listen:
    gstreamer1.0-rtsp libgstrtspserver-1.0-dev
    # run: EGL loader, Mesa's EGL and llvmpipe for machines without an NVIDIA GPU, GLES entry points
    libegl1 libegl-mesa0 libgl1-mesa-dri libgles2
    # measuring: avdec_h264 for `agentcast latency`/`quality`; python3 + gnuplot for scripts/bench.py
    gstreamer1.0-libav python3 gnuplot-nox
    # the Python agents in examples/ (shm_writer.py among them) and the tests (numpy frames)
    python3-numpy
    # tests: real decoders; pgrep/kill for process checks; docker-compose validates the compose
    # files without a Docker engine
    ffmpeg procps docker-compose
    # PipeWire capture (--source pipewire:): pipewiresrc, and a headless daemon + session manager
    # for its tests (scripts/pipewire-headless.sh; pw-cli comes with pipewire-bin)
    gstreamer1.0-pipewire pipewire pipewire-bin wireplumber dbus
    # the Python package (python/): a virtual environment that scripts/python.sh builds it into
    python3-venv
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup: system packages already installed" >&2
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust 1.95 or newer with rustup (https://rustup.rs)" >&2
    exit 1
fi

# Debian's python3-numpy serves Debian's python3; a python3 of its own on PATH (pyenv, a venv)
# gets numpy from PyPI.
if ! python3 -c 'import numpy' 2>/dev/null; then
    echo "setup: installing numpy for $(command -v python3)" >&2
    python3 -m pip install --quiet --disable-pip-version-check numpy
fi
