#!/usr/bin/env bash
# perf record (cpu-clock, frame-pointer call graphs) of a workload replay, as an SVG
# flame graph and a flat top-of-profile text. Run profiling/build.sh first.
#
#   profiling/perf_flamegraph.sh xc                   # XC, batch API
#   profiling/perf_flamegraph.sh peer --api per-call  # any run_workload.py arguments
#
# Environment: PROFILE_DIR (the build's venv, default /tmp/matchcore-profile),
# OUT (default profiling/out), CPU (pinned core, default the last one), FREQ
# (samples/s, default 4999), EVENT (default cpu-clock: this VM has no hardware
# counters; use cycles where `perf list hw` shows them), CALLGRAPH (fp, or dwarf
# to unwind through code built without frame pointers; much larger files).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${PROFILE_DIR:-/tmp/matchcore-profile}"
out="${OUT:-$here/out}"
event="${EVENT:-cpu-clock}"
freq="${FREQ:-4999}"
callgraph="${CALLGRAPH:-fp}"
cpu="${CPU:-$(($(nproc) - 1))}"
workload="${1:?usage: perf_flamegraph.sh xc|peer|scale [run_workload.py options]}"
shift
py="$dir/venv/bin/python"
[ -x "$py" ] || { echo "no profile build in $dir: run profiling/build.sh" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)" >&2; exit 1; }
mkdir -p "$out"
name="$(echo "$workload $*" | tr -cs 'a-zA-Z0-9\n' '-' | sed 's/^-*//; s/-*$//')"
data="$out/perf-$name.data"

# perf starts with the counters disabled (-D -1); run_workload.py enables them
# through the control fifo once the workload is loaded and warmed up.
ctl="$out/.perf-ctl.$$" ack="$out/.perf-ack.$$"
rm -f "$ctl" "$ack"
mkfifo "$ctl" "$ack"
trap 'rm -f "$ctl" "$ack"' EXIT
PERF_CTL_FIFO="$ctl" PERF_ACK_FIFO="$ack" \
  perf record -e "$event" -F "$freq" -g --call-graph "$callgraph" -D -1 \
  --control "fifo:$ctl,$ack" -o "$data" -- \
  taskset -c "$cpu" "$py" "$here/run_workload.py" "$workload" "$@"

# Flame graph: flamegraph-rs (inferno) reads the perf.data through `perf script`.
"$dir/venv/bin/flamegraph" --perfdata "$data" -o "$out/perf-$name.svg" \
  --title "perf $event: $workload $*" >/dev/null
# The flat profile: self time per symbol (shared object, symbol), 0.5% and up.
perf report -i "$data" --no-children --sort dso,symbol -g none --percent-limit 0.5 \
  --stdio 2>/dev/null | grep -v -e '^$' -e '^# *$' >"$out/perf-$name-top.txt"
echo "wrote $out/perf-$name.svg and $out/perf-$name-top.txt (data: $data)"
