#!/usr/bin/env bash
# Builds docker/Dockerfile and runs the image, without a Docker engine: buildah with chroot
# isolation (podman cannot start containers on these machines). Run as root on Debian 12; .ci/run
# runs it after scripts/test.sh. It
#   1. installs what it needs (buildah, debootstrap by apt-get; the compose validator by npm);
#   2. makes sure the Dockerfile's three base images exist under their own names. Where the
#      registry cannot be reached it builds stand-ins and says so: debian:bookworm-slim from
#      `debootstrap --variant=minbase bookworm` (this machine's Debian mirror), rust:1.95-bookworm
#      from that plus this machine's Rust toolchain, and alexxit/go2rtc:1.9.14 holding
#      ../shared/bin/go2rtc. They are kept in buildah's storage and reused while their inputs match;
#   3. builds the image (`buildah bud --isolation chroot --layers`);
#   4. checks the image's user (uid 10001, also from `id -u` inside it), runs go2rtc through the
#      image's own entrypoint with docker/go2rtc.exec.yaml bound to loopback on free ports, runs the
#      healthcheck command from the image (it must fail before go2rtc is up and pass after), plays
#      agent_01 from the host through the image's go2rtc as MP4 (frames counted by ffprobe), and
#      counts the frames of the MPEG-TS the stream's own exec command writes, and checks the raw
#      bytes of the same command without --mux mpegts with `agentcast check`;
#   5. validates docker/*.yml against the Compose Specification's schema (dclint, offline), and
#      resolves each compose file with docker-compose 1.29 (`config -q`, extends included);
#   6. reports the image's size and the build time.
# Every step has a deadline; processes and containers it starts are removed on exit. Exit 0 when
# every check passes, 1 with a `container-check: FAIL ...` line when one does not.
#   CONTAINER_CHECK_STATE (default /var/tmp/agentcast-container-check): stand-in sources, npm
#   packages, the cargo registry shared by builds, logs.
set -euo pipefail
cd "$(dirname "$0")/.."

state=${CONTAINER_CHECK_STATE:-/var/tmp/agentcast-container-check}
image=localhost/agentcast:check
dclint_version=3.1.0
export BUILDAH_ISOLATION=chroot
export DEBIAN_FRONTEND=noninteractive

say() { printf 'container-check: %s\n' "$*" >&2; }
fail() {
    say "FAIL $*"
    exit 1
}
step_start=$SECONDS
step() {
    say "== $* ($((SECONDS - step_start)) s so far)"
}
# Prints the last lines of a log and fails.
fail_log() {
    local log=$1
    shift
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    fail "$* (whole log: $log)"
}

[[ $(id -u) -eq 0 ]] || fail "needs root (apt-get, buildah storage, chroot)"
mkdir -p "$state/logs"
# One run at a time: runs share the stand-ins, the build cache and the image's tag.
exec 9>"$state/lock"
flock -w 3600 9 || fail "another container-check holds $state/lock"
work=$(mktemp -d /tmp/container-check.XXXXXX)

# Cleanup: the step in progress and the go2rtc run (each in a process group of its own), then the
# working containers.
child=
go2rtc_pid=
containers=()
cleanup() {
    local rc=$?
    if [[ -n $child ]]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    if [[ -n $go2rtc_pid ]] && kill -0 "$go2rtc_pid" 2>/dev/null; then
        kill -TERM -- "-$go2rtc_pid" 2>/dev/null || true
        for _ in {1..50}; do kill -0 "$go2rtc_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$go2rtc_pid" 2>/dev/null || true
    fi
    for c in "${containers[@]}"; do
        buildah umount "$c" >/dev/null 2>&1 || true
        buildah rm "$c" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bounded SECONDS COMMAND...: COMMAND under a deadline, waited for in a way a signal interrupts (the
# cleanup then stops it: timeout gives it a process group of its own).
bounded() {
    local limit=$1 rc=0
    shift
    timeout "$limit" "$@" <&0 &
    child=$!
    wait "$child" || rc=$?
    child=
    return "$rc"
}
new_container() { # VAR IMAGE: a working container from IMAGE, its name in VAR
    local -n var=$1
    var=$(timeout 120 buildah from --pull-never "$2") || fail "buildah from $2"
    containers+=("$var")
}
run_in() { # CONTAINER ARGS... : buildah run with chroot isolation and a deadline
    local c=$1
    shift
    bounded 600 buildah run --isolation chroot "$c" -- "$@" </dev/null
}
label() { # IMAGE KEY -> the label's value, empty when there is no such image or label
    buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# --- 1. tools ------------------------------------------------------------------------------------
step "tools"
missing=()
for tool in buildah:buildah debootstrap:debootstrap ffprobe:ffmpeg curl:curl npm:npm docker-compose:docker-compose; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    bounded 300 apt-get update -qq || fail "apt-get update"
    bounded 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$state/logs/apt.log" 2>&1 ||
        fail_log "$state/logs/apt.log" "apt-get install ${missing[*]}"
fi
dclint=$state/npm/node_modules/.bin/dclint
if [[ ! -x $dclint ]] || [[ $("$dclint" --version 2>/dev/null) != "$dclint_version" ]]; then
    say "installing dclint $dclint_version (npm)"
    bounded 300 npm install --prefix "$state/npm" --no-audit --no-fund --loglevel=error "dclint@$dclint_version" \
        >"$state/logs/npm.log" 2>&1 || fail_log "$state/logs/npm.log" "npm install dclint@$dclint_version"
fi
say "$(buildah --version); dclint $("$dclint" --version); $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"

# --- 2. base images ------------------------------------------------------------------------------
# The names in docker/Dockerfile, as buildah resolves them.
debian_ref=docker.io/library/debian:bookworm-slim
rust_ref=docker.io/library/rust:1.95-bookworm
go2rtc_ref=docker.io/alexxit/go2rtc:1.9.14
for ref in "$debian_ref" "$rust_ref" "$go2rtc_ref"; do
    short=${ref#docker.io/}
    short=${short#library/}
    grep -q "^FROM $short\b" docker/Dockerfile || fail "docker/Dockerfile no longer starts a stage FROM $short; update this script"
done
standin_label=org.agentcast.stand-in
registry=unknown
bases=()

# Where the image is there already (pulled, or a stand-in whose inputs match KEY) it is used;
# else it is pulled; where the registry cannot be reached a stand-in is built by BUILD_FN.
ensure_base() { # REF KEY BUILD_FN
    local ref=$1 key=$2 build=$3 have
    if buildah inspect --type image "$ref" >/dev/null 2>&1; then
        have=$(label "$ref" "$standin_label")
        if [[ -z $have ]]; then
            bases+=("$ref: pulled earlier")
            return
        fi
        if [[ $have == "$key" ]]; then
            bases+=("$ref: stand-in (cached: $key)")
            return
        fi
        say "$ref: the stand-in's inputs changed; rebuilding it"
        buildah rmi "$ref" >/dev/null 2>&1 || true
    elif [[ $registry != unreachable ]]; then
        if bounded 600 buildah pull --quiet "$ref" >"$state/logs/pull.log" 2>&1; then
            registry=reachable
            bases+=("$ref: pulled")
            return
        fi
        registry=unreachable
        say "the registry cannot be reached ($(tail -n 1 "$state/logs/pull.log"))"
    fi
    say "building a STAND-IN for $ref: $key"
    local t0=$SECONDS
    "$build" "$ref" "$key"
    bases+=("$ref: stand-in, built in $((SECONDS - t0)) s ($key)")
}

# The Debian mirror this machine's apt uses.
mirror=
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
    mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list)
fi

build_debian() { # REF KEY
    [[ -n $mirror ]] || fail "no Debian mirror in /etc/apt/sources.list*; cannot debootstrap a stand-in"
    local rootfs=$state/debian-rootfs c mnt
    rm -rf "$rootfs"
    bounded 900 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state/logs/debootstrap.log" 2>&1 ||
        fail_log "$state/logs/debootstrap.log" "debootstrap --variant=minbase bookworm $mirror"
    # Like the official slim image: no documentation, no package lists, no package cache, and the
    # same apt sources as this machine (bookworm, -updates, -security where it has them).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
        rm -f "$rootfs/etc/apt/sources.list"
    fi
    c=$(timeout 60 buildah from scratch)
    containers+=("$c")
    mnt=$(buildah mount "$c")
    tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
    buildah umount "$c" >/dev/null
    buildah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "$standin_label=$2" "$c"
    bounded 600 buildah commit --quiet --format docker --rm "$c" "$1" >/dev/null || fail "buildah commit $1"
    rm -rf "$rootfs"
}

command -v rustc >/dev/null || fail "no rustc on PATH: the rust stand-in copies this machine's toolchain"
sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version)
[[ $rust_version == "rustc 1.95."* ]] || say "warning: this machine's rustc is $rust_version, the Dockerfile names 1.95"
host_ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $host_ca_bundle ]] || host_ca_bundle=/etc/ssl/certs/ca-certificates.crt
build_rust() { # REF KEY
    local c mnt
    new_container c "$debian_ref"
    # A subset of what the official image has (buildpack-deps: compilers, curl, git, certificates).
    run_in "$c" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates curl gcc git libc6-dev make >/dev/null && rm -rf /var/lib/apt/lists/*' \
        >"$state/logs/rust-standin.log" 2>&1 || fail_log "$state/logs/rust-standin.log" "rust stand-in: apt-get install"
    mnt=$(buildah mount "$c")
    mkdir -p "$mnt/usr/local/rust" "$mnt/usr/local/cargo/bin" "$mnt/usr/local/rustup"
    # The toolchain without its documentation (share/).
    tar -C "$sysroot" -cf - --exclude=./share . | tar -C "$mnt/usr/local/rust" -xf -
    # Certificate authorities this machine trusts beyond Debian's (a proxy in front of crates.io
    # may present its own): cargo inside the build must trust what cargo here trusts.
    local extra
    mkdir -p "$mnt/usr/local/share/ca-certificates"
    extra=$(python3 - "$host_ca_bundle" "$mnt/etc/ssl/certs/ca-certificates.crt" "$mnt/usr/local/share/ca-certificates" <<'PY'
import re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
host, image = (set(pem.findall(open(p).read())) for p in sys.argv[1:3])
out = sys.argv[3]
extra = sorted(host - image)
for i, cert in enumerate(extra):
    with open(f"{out}/agentcast-host-{i}.crt", "w") as f:
        f.write(cert + "\n")
print(len(extra))
PY
    ) || fail "rust stand-in: copying this machine's certificate authorities"
    buildah umount "$c" >/dev/null
    if ((extra > 0)); then
        say "rust stand-in: trusts $extra certificate authorities of this machine's beyond Debian's ($host_ca_bundle)"
        run_in "$c" update-ca-certificates >>"$state/logs/rust-standin.log" 2>&1 ||
            fail_log "$state/logs/rust-standin.log" "rust stand-in: update-ca-certificates"
    fi
    buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "$standin_label=$2" "$c"
    run_in "$c" cargo --version >/dev/null || fail "rust stand-in: cargo does not run"
    bounded 600 buildah commit --quiet --format docker "$c" "$1" >/dev/null || fail "buildah commit $1"
}

go2rtc_bin=${AGENTCAST_TEST_GO2RTC:-../shared/bin/go2rtc}
build_go2rtc() { # REF KEY
    [[ -x $go2rtc_bin ]] || fail "no go2rtc binary at $go2rtc_bin for the go2rtc stand-in"
    local c mnt
    c=$(timeout 60 buildah from scratch)
    containers+=("$c")
    mnt=$(buildah mount "$c")
    install -D -m 0755 "$go2rtc_bin" "$mnt/usr/local/bin/go2rtc"
    buildah umount "$c" >/dev/null
    buildah config --entrypoint '["/usr/local/bin/go2rtc"]' --label "$standin_label=$2" "$c"
    bounded 600 buildah commit --quiet --format docker "$c" "$1" >/dev/null || fail "buildah commit $1"
}

step "base images"
ensure_base "$debian_ref" "debootstrap --variant=minbase bookworm $mirror" build_debian
debian_id=$(buildah inspect --type image --format '{{.FromImageID}}' "$debian_ref")
ca_sum=$(sha256sum "$host_ca_bundle" | cut -c1-12)
ensure_base "$rust_ref" "debian ${debian_id:0:12} + $rust_version from $sysroot + CAs $ca_sum" build_rust
go2rtc_sum=
[[ -f $go2rtc_bin ]] && go2rtc_sum=$(sha256sum "$go2rtc_bin" | cut -c1-16)
ensure_base "$go2rtc_ref" "go2rtc sha256:$go2rtc_sum" build_go2rtc
for b in "${bases[@]}"; do say "  $b"; done

# --- 3. build ------------------------------------------------------------------------------------
step "build docker/Dockerfile"
mkdir -p "$state/cargo-registry"
build_log=$state/logs/build.log
build_t0=$SECONDS
set +e
# The cargo registry (downloaded crates) is shared between builds; nothing of it enters the image.
bounded 2400 buildah bud --isolation chroot --format docker --layers --force-rm --pull-never \
    -v "$state/cargo-registry:/usr/local/cargo/registry" \
    -f docker/Dockerfile -t "$image" . >"$build_log" 2>&1
build_rc=$?
set -e
build_s=$((SECONDS - build_t0))
grep -E 'STEP [0-9]+/[0-9]+:|Using cache' "$build_log" | sed 's/^/  /' >&2 || true
((build_rc == 0)) || fail_log "$build_log" "buildah bud exited $build_rc after $build_s s"
say "built $image in $build_s s"
# --layers keeps every step's result as an untagged image, the next build's cache. Keep this build's
# chain and drop older ones (a changed source leaves a chain of several GB behind).
mapfile -t keep < <(sed -nE 's/^--> ([0-9a-f]{11})$/\1/p' "$build_log")
pruned=0
# An image with children cannot go before them: a pass removes the chain's tips, the next the rest.
for _ in {1..40}; do
    before=$pruned
    while read -r id name; do
        [[ $name == '<none>' && " ${keep[*]} " != *" ${id:0:11} "* ]] || continue
        buildah rmi "$id" >/dev/null 2>&1 && pruned=$((pruned + 1))
    done < <(buildah images --all --noheading --no-trunc --format '{{.ID}} {{.Name}}' | sed 's/^sha256://')
    ((pruned > before)) || break
done
((pruned == 0)) || say "removed $pruned untagged images left by earlier builds"

# --- 4. run --------------------------------------------------------------------------------------
step "image config"
buildah inspect --type image "$image" >"$work/inspect.json" || fail "buildah inspect $image"
# field PATH...: the image's Docker config field as one line per list item (empty when absent).
field() {
    python3 - "$work/inspect.json" "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["Docker"]["config"]
for k in sys.argv[2:]:
    v = (v or {}).get(k) if isinstance(v, dict) else None
for item in v if isinstance(v, list) else [] if v is None else [v]:
    print(item)
PY
}
user=$(field User)
[[ $user == agentcast ]] || fail "the image's USER is '$user', expected agentcast"
mapfile -t entrypoint < <(field Entrypoint)
[[ ${entrypoint[0]:-} == /usr/local/bin/go2rtc ]] || fail "the entrypoint is '${entrypoint[*]}', expected go2rtc"
# HEALTHCHECK CMD <shell> is ["CMD-SHELL", "<shell>"].
mapfile -t health_test < <(field Healthcheck Test)
health=
[[ ${#health_test[@]} -eq 2 && ${health_test[0]} == CMD-SHELL ]] && health=${health_test[1]}
[[ -n $health ]] || fail "the image has no HEALTHCHECK CMD (got: ${health_test[*]})"
say "user $user, entrypoint ${entrypoint[*]}, healthcheck: $health"

ctr=
new_container ctr "$image"
uid=$(run_in "$ctr" id -u) || fail "buildah run id -u"
[[ $uid == 10001 ]] || fail "inside the image id -u is $uid, expected 10001"
say "id -u inside the image: $uid"

# docker/go2rtc.exec.yaml with every listener moved to loopback on free ports (chroot isolation
# shares this machine's network).
read -r api_port rtsp_port webrtc_port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
config=$work/go2rtc.yaml
sed -e "s/\"0\.0\.0\.0:1984\"/\"127.0.0.1:$api_port\"/" -e "s/\"0\.0\.0\.0:8554\"/\"127.0.0.1:$rtsp_port\"/" \
    -e "s/\"0\.0\.0\.0:8555\"/\"127.0.0.1:$webrtc_port\"/" docker/go2rtc.exec.yaml >"$config"
if grep -n '^[^#]*0\.0\.0\.0' "$config" >&2; then fail "docker/go2rtc.exec.yaml has a listener this script does not move to loopback"; fi
chmod 0644 "$config"
# The healthcheck names the API's port in the image (1984); here go2rtc's API is on api_port.
[[ $health == *127.0.0.1:1984/* ]] || fail "the healthcheck does not ask 127.0.0.1:1984, the API port of docker/go2rtc.exec.yaml"
health_here=${health//127.0.0.1:1984\//127.0.0.1:$api_port/}
api=http://127.0.0.1:$api_port

step "healthcheck before go2rtc runs (must fail)"
if run_in "$ctr" sh -c "$health_here" >/dev/null 2>&1; then
    fail "the healthcheck passes with no go2rtc running; it cannot tell"
fi

step "go2rtc from the image's entrypoint (API $api)"
go2rtc_log=$state/logs/go2rtc.log
setsid timeout 900 buildah run --isolation chroot -v "$config:/etc/go2rtc/go2rtc.yaml:ro" "$ctr" -- \
    "${entrypoint[@]}" </dev/null >"$go2rtc_log" 2>&1 &
go2rtc_pid=$!
for ((i = 0; ; i++)); do
    curl -fsS --max-time 2 "$api/api/streams" >/dev/null 2>&1 && break
    kill -0 "$go2rtc_pid" 2>/dev/null || fail_log "$go2rtc_log" "go2rtc exited before its API answered"
    ((i < 300)) || fail_log "$go2rtc_log" "go2rtc's API did not answer within 30 s"
    sleep 0.1
done
say "go2rtc answers"

step "healthcheck with go2rtc running (must pass)"
run_in "$ctr" sh -c "$health_here" || fail "the image's healthcheck failed against its running go2rtc: $health_here"
say "healthcheck passes: $health_here"

step "play agent_01 through the image's go2rtc as MP4"
mp4_seconds=6
mp4=$work/agent_01.mp4
curl -fsS --max-time 90 -o "$mp4" "$api/api/stream.mp4?src=agent_01&duration=$mp4_seconds" ||
    fail_log "$go2rtc_log" "GET /api/stream.mp4?src=agent_01"
probe=$(timeout 120 ffprobe -v error -count_frames -select_streams v:0 \
    -show_entries stream=codec_name,width,height,nb_read_frames -of default=noprint_wrappers=1 "$mp4") ||
    fail "ffprobe cannot read the MP4 ($(stat -c %s "$mp4") bytes)"
mp4_frames=$(sed -n 's/^nb_read_frames=//p' <<<"$probe")
mp4_size=$(sed -n 's/^width=//p' <<<"$probe")x$(sed -n 's/^height=//p' <<<"$probe")
mp4_codec=$(sed -n 's/^codec_name=//p' <<<"$probe")
say "MP4: $(stat -c %s "$mp4") bytes, $mp4_codec $mp4_size, $mp4_frames frames decoded in $mp4_seconds s"
[[ $mp4_codec == h264 ]] || fail "the MP4's video is $mp4_codec, expected h264"
# 30 fps for 6 s is 180 frames; a loaded 2-core machine rendering on llvmpipe may fall behind, but
# not below a third of that.
((mp4_frames >= 60)) || fail "only $mp4_frames frames in $mp4_seconds s of MP4 (expected at least 60)"

step "the stream's own exec command inside the image: its MPEG-TS, and raw H.264 for agentcast check"
# agent_01's exec command from the config, minus go2rtc's #options, for a fixed number of frames.
exec_cmd=$(sed -n 's/^  agent_01: "exec:\([^#"]*\).*$/\1/p' "$config")
[[ -n $exec_cmd ]] || fail "no agent_01 exec stream in docker/go2rtc.exec.yaml"
[[ $exec_cmd == *" --mux mpegts"* ]] || fail "agent_01's exec command does not ask for MPEG-TS (--mux mpegts): $exec_cmd"
raw_frames=60
ts=$work/agent_01.ts
# shellcheck disable=SC2086 # the command is split into words as go2rtc splits it
run_in "$ctr" $exec_cmd --frames "$raw_frames" >"$ts" 2>"$state/logs/exec-ts.log" ||
    fail_log "$state/logs/exec-ts.log" "$exec_cmd --frames $raw_frames exited non-zero inside the image"
ts_probe=$(timeout 120 ffprobe -v error -f mpegts -count_frames -select_streams v:0 \
    -show_entries stream=codec_name,nb_read_frames -of default=nw=1 "$ts") || fail "ffprobe cannot read the MPEG-TS"
# ffprobe lists a TS stream twice (under its program and on its own): the first is enough.
ts_codec=$(sed -n 's/^codec_name=//p' <<<"$ts_probe" | head -n 1)
ts_decoded=$(sed -n 's/^nb_read_frames=//p' <<<"$ts_probe" | head -n 1)
say "MPEG-TS: $(stat -c %s "$ts") bytes, $ts_codec, $ts_decoded of $raw_frames frames decoded"
[[ $ts_codec == h264 && $ts_decoded == "$raw_frames" ]] ||
    fail "the MPEG-TS holds $ts_decoded $ts_codec frames, expected $raw_frames h264"
# The same command with raw H.264 on stdout, for go2rtc's byte rules.
raw_cmd=${exec_cmd/ --mux mpegts/}
raw=$work/agent_01.h264
# shellcheck disable=SC2086 # the command is split into words as go2rtc splits it
run_in "$ctr" $raw_cmd --frames "$raw_frames" >"$raw" 2>"$state/logs/exec.log" ||
    fail_log "$state/logs/exec.log" "$raw_cmd --frames $raw_frames exited non-zero inside the image"
checker=(target/debug/agentcast check -)
checker_name="this checkout's target/debug/agentcast"
if [[ ! -x target/debug/agentcast ]]; then
    checker=(buildah run --isolation chroot "$ctr" -- /usr/local/bin/agentcast check -)
    checker_name="the image's agentcast"
fi
bounded 120 "${checker[@]}" <"$raw" >"$state/logs/check.log" 2>&1 || fail_log "$state/logs/check.log" "agentcast check rejects the raw stream"
raw_decoded=$(timeout 120 ffprobe -v error -f h264 -count_frames -select_streams v:0 \
    -show_entries stream=nb_read_frames -of csv=p=0 "$raw") || fail "ffprobe cannot read the raw stream"
say "raw: $(stat -c %s "$raw") bytes, agentcast check ($checker_name): pass, $raw_decoded of $raw_frames frames decoded"
((raw_decoded == raw_frames)) || fail "ffprobe decoded $raw_decoded frames of the $raw_frames written"

kill -TERM -- "-$go2rtc_pid" 2>/dev/null || true
wait "$go2rtc_pid" 2>/dev/null || true
go2rtc_pid=

# --- 5. compose files ----------------------------------------------------------------------------
step "compose files"
# dclint checks each file against the Compose Specification's JSON schema, which it ships (no
# network), plus its correctness rules; its style rules are off (docker/dclint.json).
bounded 120 "$dclint" --no-color -c docker/dclint.json --max-warnings 0 docker/*.yml >"$state/logs/dclint.log" 2>&1 ||
    fail_log "$state/logs/dclint.log" "dclint: docker/*.yml do not follow the Compose Specification"
# It can fail: a service with a key the specification does not have.
printf 'services:\n  go2rtc:\n    image: agentcast:check\n    no_such_key: 1\n' >"$work/bad.yml"
if bounded 120 "$dclint" --no-color -c docker/dclint.json "$work/bad.yml" >/dev/null 2>&1; then
    fail "dclint accepts a compose file with a key the specification does not have"
fi
# compose.base.yml is the fragment the others extend: resolve each of those as docker-compose would.
for f in docker/docker-compose.*.yml; do
    bounded 120 docker-compose -f "$f" config -q 2>"$state/logs/compose.log" || fail_log "$state/logs/compose.log" "docker-compose -f $f config"
done
say "dclint $dclint_version (schema + rules): $(echo docker/*.yml); docker-compose config: $(echo docker/docker-compose.*.yml)"

# --- 6. summary ----------------------------------------------------------------------------------
size=$(buildah images --format '{{.Size}}' "$image" | head -n 1)
echo
echo "== container-check summary"
for b in "${bases[@]}"; do echo "base: $b"; done
echo "image: $image, $size, built in $build_s s (buildah bud --isolation chroot --layers)"
echo "user: $user (uid $uid inside); healthcheck: fails without go2rtc, passes with it"
echo "mp4 through the image's go2rtc: $mp4_frames frames ($mp4_codec $mp4_size) in $mp4_seconds s"
echo "exec output: MPEG-TS $ts_decoded/$raw_frames frames decoded; raw: agentcast check pass, $raw_decoded/$raw_frames frames decoded"
echo "compose: dclint $dclint_version schema check and docker-compose config pass"
echo "container-check: PASS in $((SECONDS - step_start)) s"
