#!/usr/bin/env bash
# MPEG-TS for go2rtc from any raw H.264 stdout producer, muxed by ffmpeg:
#
#   streams:
#     agent_01: exec:/path/to/scripts/go2rtc_exec_mpegts.sh --fps 30#killsignal=15#killtimeout=5
#
# Runs `$AGENTCAST_BIN ARGS | ffmpeg -f h264 -i - -c copy -f mpegts -` (AGENTCAST_BIN defaults to
# agentcast on PATH; any producer of raw H.264 on stdout works). agentcast can also do this itself
# with --mux mpegts, with no second process.
#
# go2rtc signals only its direct child, so this script:
# - passes SIGTERM/SIGINT/SIGHUP on to both processes;
# - exits as soon as either side exits (the viewer left, the producer failed), stopping the other;
# - starts both with a parent-death signal (setpriv --pdeathsig), so even a SIGKILL of this script
#   leaves no orphan behind.
# Exit status: the producer's (0 when the reader left), else ffmpeg's.
set -u

bin=${AGENTCAST_BIN:-agentcast}
command -v ffmpeg >/dev/null || { echo "go2rtc_exec_mpegts: ffmpeg is not installed" >&2; exit 69; }
command -v "$bin" >/dev/null || { echo "go2rtc_exec_mpegts: $bin not found (set AGENTCAST_BIN)" >&2; exit 69; }
deathsig=()
if command -v setpriv >/dev/null; then
    deathsig=(setpriv --pdeathsig TERM --)
fi

dir=$(mktemp -d) || exit 70
pipe="$dir/h264"
mkfifo -m 600 "$pipe" || exit 70

"${deathsig[@]}" "$bin" "$@" >"$pipe" &
producer=$!
"${deathsig[@]}" ffmpeg -hide_banner -nostdin -loglevel error -f h264 -i "$pipe" -c copy -f mpegts - 2>"$dir/ffmpeg.log" &
muxer=$!

stop() {
    kill -TERM "$producer" "$muxer" 2>/dev/null
}
trap 'stop' TERM INT HUP

# Wait until either side exits (wait -n returns early on a trapped signal too).
while kill -0 "$producer" 2>/dev/null && kill -0 "$muxer" 2>/dev/null; do
    wait -n "$producer" "$muxer" 2>/dev/null
done
if kill -0 "$muxer" 2>/dev/null; then
    # The producer ended (done, or failed): ffmpeg sees end of input, finishes the file and exits.
    wait "$producer"
    producer_status=$?
    wait "$muxer"
    muxer_status=$?
else
    # ffmpeg ended first (the reader left, or it failed): stop the producer.
    wait "$muxer"
    muxer_status=$?
    stop
    wait "$producer"
    producer_status=$?
fi
if grep -q "Broken pipe" "$dir/ffmpeg.log"; then
    muxer_status=0 # the reader left: a clean end, as for agentcast itself
else
    cat "$dir/ffmpeg.log" >&2
fi
rm -rf "$dir"
# 143: stopped by our SIGTERM after the other side ended.
if [[ $producer_status -ne 0 && $producer_status -ne 143 ]]; then
    exit "$producer_status"
fi
if [[ $muxer_status -eq 143 || $muxer_status -eq 255 ]]; then
    exit 0
fi
exit "$muxer_status"
