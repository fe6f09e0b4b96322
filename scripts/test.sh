#!/usr/bin/env bash
# Runs the whole suite: the host-free tests, then the host tests on each ComfyUI version CI
# covers (ComfyUI 0.3.75). Arguments go to every pytest run (e.g. -x, -k NAME). Ends with one "N passed, N failed" line; exits non-zero if any
# run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if ! $PY -c "import pytest, selenium" 2>/dev/null; then
  echo "the test tools are not installed: run bash scripts/setup.sh --test first" >&2
  exit 1
fi
# one BLAS/OpenMP thread: the tiny test models gain nothing from more, and two spinning
# threads per process slow everything down many times when the machine is shared
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0
summaries=$(mktemp)
run() {
  echo "== $1"; shift
  local log rc
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  grep -E " (passed|failed|error)" "$log" | tail -1 >> "$summaries"
  rm -f "$log"
  [ "$rc" = 0 ] || status=1
}
run "tests without a host (core, patches)" $PY -m pytest tests/core tests/patches -q "$@"
for host in 0.3.75; do
  run "host tests on ComfyUI $host" env CONSISTORY_HOST=$host $PY -m pytest tests/host tests/world -q "$@"
done
count() { grep -oE "[0-9]+ $1" "$summaries" | awk '{s += $1} END {print s + 0}'; }
echo "all runs: $(count passed) passed, $(( $(count failed) + $(count error) )) failed"
rm -f "$summaries"
exit $status
