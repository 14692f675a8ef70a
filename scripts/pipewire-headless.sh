#!/usr/bin/env bash
# Headless PipeWire, as a user runs it in a container: no systemd, no desktop. Starts a private
# D-Bus session bus, `pipewire` and `wireplumber` (the session manager that links streams to
# nodes) with their own XDG_RUNTIME_DIR, waits until they answer, and stops them cleanly.
#
#   scripts/pipewire-headless.sh start [DIR]   start (or find running) daemons; prints `env`'s lines
#   scripts/pipewire-headless.sh env [DIR]     export lines for a shell: eval "$(... env)"
#   scripts/pipewire-headless.sh status [DIR]  exit 0 when both daemons answer
#   scripts/pipewire-headless.sh stop [DIR]    stop them and wait until no process is left
#
# DIR (or $AGENTCAST_PIPEWIRE_DIR) is the runtime directory; the default is
# ${TMPDIR:-/tmp}/agentcast-pipewire-$UID. It holds the sockets (pipewire-0, bus), the pid files
# and the daemons' logs (*.log). AGENTCAST_PIPEWIRE_NO_SESSION_MANAGER=1 starts PipeWire alone
# (to see what a client does without WirePlumber).
# Debian packages: pipewire pipewire-bin wireplumber dbus (scripts/setup.sh installs them).
set -euo pipefail

cmd=${1:-}
dir=${2:-${AGENTCAST_PIPEWIRE_DIR:-${TMPDIR:-/tmp}/agentcast-pipewire-$(id -u)}}
daemons=(wireplumber pipewire dbus)
# How long a daemon may take to answer, and to exit after SIGTERM.
START_TIMEOUT=${AGENTCAST_PIPEWIRE_START_TIMEOUT:-15}
STOP_TIMEOUT=5

say() { echo "pipewire-headless: $*" >&2; }

env_lines() {
    echo "export XDG_RUNTIME_DIR=$dir"
    echo "export PIPEWIRE_RUNTIME_DIR=$dir"
    echo "export DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/bus"
}

use_env() {
    export XDG_RUNTIME_DIR=$dir PIPEWIRE_RUNTIME_DIR=$dir DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/bus
    unset PIPEWIRE_REMOTE
}

alive() { # NAME: its pid file names a live process (not a zombie)
    local pid
    pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
    [[ -r /proc/$pid/stat ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}

# Starts NAME in its own session, detached from our stdio (a caller that reads our output must not
# wait for the daemons), and records its pid.
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

# Runs a probe until it succeeds, failing when NAME dies or START_TIMEOUT passes.
wait_for() {
    local name=$1 what=$2
    shift 2
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ! alive "$name"; then
            say "$name exited while starting; its log ($dir/$name.log):"
            tail -n 20 "$dir/$name.log" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            say "$name did not $what within ${START_TIMEOUT}s; see $dir/$name.log"
            return 1
        fi
        sleep 0.1
    done
}

pipewire_answers() { timeout 3 pw-cli info 0 | grep -q 'type: PipeWire:Interface:Core'; }
# WirePlumber is ready once its policy published the "default" metadata.
wireplumber_answers() { timeout 3 pw-cli ls Metadata | grep -q 'metadata.name = "default"'; }

start() {
    for tool in pipewire wireplumber pw-cli dbus-daemon setsid; do
        command -v "$tool" >/dev/null || {
            say "$tool not found; install pipewire pipewire-bin wireplumber dbus (scripts/setup.sh)"
            exit 69
        }
    done
    mkdir -p "$dir"
    chmod 700 "$dir"
    use_env
    if ! alive dbus; then
        rm -f "$dir/bus"
        launch dbus dbus-daemon --session --nofork --nopidfile --address="unix:path=$dir/bus"
        wait_for dbus "open its socket" test -S "$dir/bus"
    fi
    if ! alive pipewire; then
        rm -f "$dir/pipewire-0" "$dir/pipewire-0.lock"
        launch pipewire pipewire
        wait_for pipewire "answer" pipewire_answers
    fi
    if [[ ${AGENTCAST_PIPEWIRE_NO_SESSION_MANAGER:-} == 1 ]]; then
        say "PipeWire running without a session manager in $dir"
    elif ! alive wireplumber; then
        launch wireplumber wireplumber
        wait_for wireplumber "publish its default metadata" wireplumber_answers
    fi
    say "running in $dir (pids: $(cat "$dir"/*.pid 2>/dev/null | tr '\n' ' '))"
    env_lines
}

stop() {
    local name pid deadline
    for name in "${daemons[@]}"; do
        pid=$(cat "$dir/$name.pid" 2>/dev/null) || continue
        if alive "$name"; then
            kill -TERM "$pid" 2>/dev/null || true
            deadline=$((SECONDS + STOP_TIMEOUT))
            while alive "$name" && ((SECONDS < deadline)); do sleep 0.05; done
            if alive "$name"; then
                say "$name ($pid) ignored SIGTERM for ${STOP_TIMEOUT}s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                while alive "$name"; do sleep 0.05; done
            fi
        fi
        rm -f "$dir/$name.pid"
    done
    rm -f "$dir/pipewire-0" "$dir/pipewire-0.lock" "$dir/bus"
    say "stopped (logs stay in $dir)"
}

status() {
    use_env
    local ok=0
    if alive pipewire && pipewire_answers; then say "pipewire answers"; else say "pipewire is not running"; ok=1; fi
    if alive wireplumber && wireplumber_answers; then say "wireplumber answers"; else say "wireplumber is not running"; ok=1; fi
    return $ok
}

case $cmd in
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    status) status ;;
    *)
        sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
