#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs into one self-contained archive, for an NVIDIA machine that
# has the driver (libcuda, the EGL vendor library, NVML) but none of this project's build or runtime
# packages: no Rust toolchain, no GStreamer. Built on the Debian 12 machine that scripts/setup.sh set
# up, it holds
#   - the release binary and the two test binaries (the library's unit tests and tests/tests.rs),
#     stripped;
#   - GStreamer's tools (gst-inspect-1.0, gst-launch-1.0, gst-plugin-scanner) and the plugins that
#     agentcast and gpu-check use: core, app, videoconvertscale, videotestsrc, videoparsersbad,
#     x264, openh264 (its decoder stands in for libav's, whose libraries are ten times larger),
#     nvcodec (cudadownload, NVENC where there is one), mpegtsmux, typefind;
#   - every library those need except glibc's and the C++ runtime (the machine's own are newer),
#     and glvnd's libEGL/libGLESv2 (the driver ships the vendor library, not the dispatcher);
#   - wrappers in bin/ that point the dynamic linker and GStreamer at the bundle.
# ffmpeg/ffprobe and libav are left out, so the tests that decode with them cannot run from the
# bundle: gpu-check --prebuilt runs only the hardware tests and doctor's machine facts.
#   scripts/gpu-bundle.sh [OUT]      (default: target/gpu-bundle.tar.xz)
# There: tar xf gpu-bundle.tar.xz && scripts/gpu-check.sh --prebuilt gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/gpu-bundle.tar.xz}
arch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
gstdir=/usr/lib/$arch/gstreamer-1.0
plugins=(coreelements app videoconvertscale videotestsrc videoparsersbad x264 openh264 nvcodec mpegtsmux
    typefindfunctions)
tools=(/usr/bin/gst-inspect-1.0 /usr/bin/gst-launch-1.0 "/usr/lib/$arch/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner")
dlopened=("/usr/lib/$arch/libEGL.so.1" "/usr/lib/$arch/libGLESv2.so.2")

echo "gpu-bundle: building the release binary and test binaries" >&2
cargo build --release --locked -q
tests=$(cargo test --release --locked --no-run --message-format=json -q 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        name = "lib-tests" if t["kind"] == ["lib"] else t["name"]
        print(name, m["executable"])')
[[ -n $tests ]] || { echo "gpu-bundle: cargo listed no test binaries" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/gpu-bundle
mkdir -p "$root"/{bin,real,lib,plugins}
cp target/release/agentcast "$root/real/"
while read -r name exe; do cp "$exe" "$root/real/$name"; done <<<"$tests"
cp "${tools[@]}" "$root/real/"
for p in "${plugins[@]}"; do cp "$gstdir/libgst$p.so" "$root/plugins/"; done
cp -L "${dlopened[@]}" "$root/lib/"
# Every library the binaries, tools, plugins and dlopened libraries load, but glibc and libstdc++.
for f in "$root"/real/* "$root"/plugins/* "${dlopened[@]}"; do ldd "$f" | awk '/=> \// {print $3}'; done | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so' |
    while read -r lib; do cp -Ln "$lib" "$root/lib/"; done
strip --strip-unneeded "$root"/real/* "$root"/lib/* "$root"/plugins/* 2>/dev/null || true

# The test binaries run the binary at the path cargo built it at, and read files beside the manifest.
echo "$PWD/target/release/agentcast" >"$root/cargo-bin-exe"
echo "$PWD" >"$root/manifest-dir"
cat >"$root/env.sh" <<'EOF'
# Sourced by the wrappers: the bundle's libraries and plugins, and the driver's where it keeps them.
b=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
drv=
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu/nvidia; do
    [[ -d $d ]] && drv+=":$d"
done
export LD_LIBRARY_PATH="$b/lib$drv${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GST_PLUGIN_SYSTEM_PATH="$b/plugins" GST_PLUGIN_PATH= GST_PLUGIN_SCANNER="$b/real/gst-plugin-scanner"
export GST_REGISTRY="${TMPDIR:-/tmp}/gpu-bundle-registry.bin"
if [[ -z ${__EGL_VENDOR_LIBRARY_FILENAMES:-} && ! -d /usr/share/glvnd/egl_vendor.d ]]; then
    for j in /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json /etc/glvnd/egl_vendor.d/10_nvidia.json; do
        [[ -f $j ]] && export __EGL_VENDOR_LIBRARY_FILENAMES=$j && break
    done
fi
EOF
for f in "$root"/real/*; do
    n=$(basename "$f")
    printf '#!/usr/bin/env bash\nsource "$(dirname "$(readlink -f "$0")")/../env.sh"\nexec "$b/real/%s" "$@"\n' "$n" \
        >"$root/bin/$n"
    chmod +x "$root/bin/$n"
done
mkdir -p "$(dirname "$out")"
tar -C "$stage" -cJf "$out" gpu-bundle
echo "gpu-bundle: $out ($(du -h "$out" | cut -f1); $(ls "$root/lib" | wc -l) libraries, ${#plugins[@]} plugins)" >&2
