#!/usr/bin/env bash
# py-spy record --native of a workload replay: Python frames with the C/C++ frames
# under them, as an SVG flame graph. Run profiling/build.sh first.
#
#   profiling/pyspy_flamegraph.sh peer --api per-call
#   profiling/pyspy_flamegraph.sh xc
#
# Environment: PROFILE_DIR, OUT, CPU, RATE (samples/s, default 1000).
# The workload is cached by run_workload.py (generate it once with a first run),
# so the profile is mostly the replay; py-spy cannot be told to start later.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${PROFILE_DIR:-/tmp/matchcore-profile}"
out="${OUT:-$here/out}"
rate="${RATE:-1000}"
cpu="${CPU:-$(($(nproc) - 1))}"
workload="${1:?usage: pyspy_flamegraph.sh xc|peer|scale [run_workload.py options]}"
shift
py="$dir/venv/bin/python"
[ -x "$py" ] || { echo "no profile build in $dir: run profiling/build.sh" >&2; exit 1; }
mkdir -p "$out"
name="$(echo "$workload $*" | tr -cs 'a-zA-Z0-9\n' '-' | sed 's/^-*//; s/-*$//')"
# First make sure the workload is cached, so the recording is mostly the replay.
"$py" "$here/run_workload.py" "$workload" "$@" --passes 0 >/dev/null
taskset -c "$cpu" "$dir/venv/bin/py-spy" record --native --rate "$rate" \
  --output "$out/pyspy-$name.svg" --format flamegraph -- \
  "$py" "$here/run_workload.py" "$workload" "$@"
echo "wrote $out/pyspy-$name.svg"
