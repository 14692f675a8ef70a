#!/usr/bin/env bash
# Soak: paced 1280x720@30 producers, one per output, for --minutes N (default 2), sampled every 10 s.
#   stdout -> a reader that drains it for the whole run;
#   fifo:PATH -> readers (`cat`) that attach for 3 s and leave for 2 s, over and over;
#   tcp:127.0.0.1:PORT -> readers (bash /dev/tcp) that do the same.
# Every 10 s it reads each producer's RSS (VmRSS) and the frames written (its --stats-file); its open
# fds (/proc/PID/fd) and threads (/proc/PID/status) are polled every half second and each row keeps the
# fewest seen since the row before, so a row counts the producer with no reader attached (a reader
# leaves for 2 s of every 5; one read per 10 s would alias with that cycle and see a reader in every
# row of one part of the run and in none of another). It prints one table, and a verdict:
#   RSS grows less than 5% from the first sample at or after 60 s to the last one, plus one RGBA
#   frame (3.5 MiB at 720p): CI runs showed one-time steps of that size (3.5-3.6 MiB, in one output
#   at a time, then flat; not traced, a buffer pool taking one more frame fits), while a leak keeps
#   growing;
#   fds and threads stay flat: the fewest seen in the last third of the run is no more than the most
#   seen in the first minute (readers came and went then; a reader's fd or a short-lived thread
#   caught by one sample is not a leak, a count that never comes back down is);
#   every producer is still running at the end.
# Exit 0 when every verdict holds, 1 otherwise.
#   scripts/soak.sh [--minutes N] [--bin PATH] [--interval S]
# --bin defaults to target/release/agentcast (built if missing). The producers run with
# --stall-timeout 30 so a starved, shared machine is not mistaken for a hang.
set -uo pipefail
cd "$(dirname "$0")/.."

minutes=2
bin=target/release/agentcast
interval=10
while (($#)); do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --interval) interval=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $minutes =~ ^[0-9]+$ ]] && ((minutes >= 2)) || { echo "soak: --minutes must be a whole number >= 2" >&2; exit 2; }
if [[ ! -x $bin ]]; then
    echo "soak: building $bin" >&2
    cargo build --release --locked -q || exit 1
fi

dir=$(mktemp -d /tmp/agentcast-soak.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
common=(--width 1280 --height 720 --fps 30 --stall-timeout 30 --stats-interval "$interval")
outputs=(stdout fifo tcp)
declare -A pid

# stdout: the producer writes into a process substitution, so $! is agentcast itself.
"$bin" "${common[@]}" --stream soak-stdout --stats-file "$dir/stdout.json" \
    > >(cat >/dev/null) 2>"$dir/stdout.log" &
pid[stdout]=$!
pids+=("${pid[stdout]}")

"$bin" "${common[@]}" --stream soak-fifo --stats-file "$dir/fifo.json" --output "fifo:$dir/soak.h264" \
    2>"$dir/fifo.log" &
pid[fifo]=$!
pids+=("${pid[fifo]}")

"$bin" "${common[@]}" --stream soak-tcp --stats-file "$dir/tcp.json" --output "tcp:127.0.0.1:$port" \
    2>"$dir/tcp.log" &
pid[tcp]=$!
pids+=("${pid[tcp]}")

# Readers that attach for 3 s and leave for 2 s.
(while :; do
    [[ -p $dir/soak.h264 ]] && timeout 3 cat "$dir/soak.h264" >/dev/null 2>&1
    sleep 2
done) &
pids+=($!)
(while :; do
    timeout 3 bash -c "cat </dev/tcp/127.0.0.1/$port" >/dev/null 2>&1
    sleep 2
done) &
pids+=($!)

# The fewest fds and threads of each producer since its last row (reset after each row).
declare -A fd_min th_min
poll() {
    local o p fds thr
    for o in "${outputs[@]}"; do
        p=${pid[$o]}
        [[ -r /proc/$p/status ]] || continue
        fds=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        thr=$(awk '/^Threads:/ {print $2}' "/proc/$p/status")
        ((fds < ${fd_min[$o]:-999999})) && fd_min[$o]=$fds
        ((${thr:-999999} < ${th_min[$o]:-999999})) && th_min[$o]=$thr
    done
}

# One row of a producer: "RSS_KIB FDS THREADS WRITTEN" (fds and threads: the fewest polled since the
# last row), or "dead".
sample() {
    local p=$1 name=$2
    [[ -r /proc/$p/status ]] || { echo dead; return; }
    local rss written
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
    written=$(grep -o '"written":[0-9]*' "$dir/$name.json" 2>/dev/null | cut -d: -f2)
    echo "${rss:-0} ${fd_min[$name]:-0} ${th_min[$name]:-0} ${written:--}"
}

printf 'soak: %s min, 1280x720@30 paced, %s, samples every %s s (%s)\n' "$minutes" "$bin" "$interval" "$(date -u +%FT%TZ)"
samples=$((minutes * 60 / interval))
rows="$dir/rows"
: >"$rows"
start=$SECONDS
for ((i = 1; i <= samples; i++)); do
    # Rows on the wall clock's 10 s marks (sampling takes time too; the marks do not drift), with fds
    # and threads polled every half second until then.
    fd_min=() th_min=()
    poll
    while ((SECONDS < start + i * interval)); do
        sleep 0.5
        poll
    done
    line="$((SECONDS - start))"
    for o in "${outputs[@]}"; do line+=" $(sample "${pid[$o]}" "$o")"; done
    echo "$line" >>"$rows"
    echo "soak: $line" >&2
done

python3 - "$rows" "$minutes" "$interval" "${outputs[@]}" <<'EOF'
import sys
rows_path, minutes, interval, *outputs = sys.argv[1:]
rows = []
for line in open(rows_path):
    f = line.split()
    t, rest, per = int(f[0]), f[1:], {}
    for o in outputs:
        if rest and rest[0] == "dead":
            per[o] = None
            rest = rest[1:]
        else:
            rss, fds, thr, written = rest[:4]
            per[o] = (int(rss), int(fds), int(thr), written)
            rest = rest[4:]
    rows.append((t, per))

head = "| t s | " + " | ".join(f"{o} RSS MiB | {o} fds | {o} threads | {o} written" for o in outputs) + " |"
print()
print(head)
print("|" + "---|" * (1 + 4 * len(outputs)))
for t, per in rows:
    cells = []
    for o in outputs:
        v = per[o]
        cells += ["dead"] * 4 if v is None else [f"{v[0] / 1024:.1f}", str(v[1]), str(v[2]), v[3]]
    print(f"| {t} | " + " | ".join(cells) + " |")

ok = True
print()
print("| output | RSS MiB at 60 s | RSS MiB at end | growth | fds (fewest per row): max first min / min last third (max) | threads (likewise) | verdict |")
print("|---|---|---|---|---|---|---|")
for o in outputs:
    first = [per[o] for t, per in rows if t <= 60]
    later = [per[o] for t, per in rows if t >= 60]
    end = rows[-1][0]
    last_third = [per[o] for t, per in rows if t >= end * 2 / 3]
    if any(v is None for v in first + later) or not first or not later or not last_third:
        print(f"| {o} | - | - | - | - | - | FAIL: the producer died |")
        ok = False
        continue
    base, end_rss = later[0][0], later[-1][0]
    growth = (end_rss - base) / base * 100
    fd_first, fd_after, fd_max = max(v[1] for v in first), min(v[1] for v in last_third), max(v[1] for v in later)
    th_first, th_after, th_max = max(v[2] for v in first), min(v[2] for v in last_third), max(v[2] for v in later)
    bad = []
    one_frame_kib = 1280 * 720 * 4 / 1024
    if end_rss - base >= base * 0.05 + one_frame_kib:
        bad.append(f"RSS grew {growth:.1f}%")
    if fd_after > fd_first:
        bad.append("fds grew")
    if th_after > th_first:
        bad.append("threads grew")
    ok &= not bad
    verdict = "ok" if not bad else "FAIL: " + ", ".join(bad)
    print(f"| {o} | {base / 1024:.1f} | {end_rss / 1024:.1f} | {growth:+.1f}% | {fd_first} / {fd_after} ({fd_max}) "
          f"| {th_first} / {th_after} ({th_max}) | {verdict} |")
print()
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
EOF
status=$?
if ((status)); then
    for o in "${outputs[@]}"; do
        echo "--- $o stderr (last 5 lines)" >&2
        grep -v '^{' "$dir/$o.log" | tail -n 5 >&2
    done
fi
exit $status
