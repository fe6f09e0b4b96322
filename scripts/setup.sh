#!/usr/bin/env bash
# Creates .venv for the headless runner: the CPU torch wheel, what the runner and the ComfyUI
# host import (requirements-run.txt), the runner as a command, and the host itself (0.3.75,
# fetched once into ~/.cache/consistory-host). Nothing outside .venv and that cache is touched.
#   bash scripts/setup.sh          what `python -m consistory_run` needs
#   bash scripts/setup.sh --test   that, plus the test tools (requirements-test.txt) and, when
#                                  run as root, Debian's chromium + chromium-driver for the
#                                  browser test
# Safe to run again; --test on an existing .venv adds only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") requirements=requirements-run.txt; tests=0 ;;
  --test) requirements=requirements-test.txt; tests=1 ;;
  *) echo "usage: bash scripts/setup.sh [--test]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
# The browser test drives Debian's chromium + chromium-driver (no browser download at run time).
if [ "$tests" = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: install chromium and chromium-driver (Debian packages) for tests/host/test_browser.py" >&2
  fi
fi
# pip install -q, less the index's "is ignored" notes; stops the setup when pip fails
pip_install() {
  local said rc=0
  said=$(.venv/bin/python -m pip install -q "$@" 2>&1) || rc=$?
  grep -v -e "is ignored" -e "^$" <<<"$said" || true
  return $rc
}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install --upgrade pip
pip_install torch==2.13.0
# torch==2.13.0 rides along so no dependency can swap it for a CUDA build
pip_install torch==2.13.0 -r "$requirements"
# the headless runner as a command (consistory-run) that works from any folder
built=$(.venv/bin/python -m pip install -q --no-deps -e . 2>&1) || { echo "$built"; exit 1; }
.venv/bin/python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"torch was replaced: {torch.__version__}"
from consistory_run.host import SNAPSHOTS, snapshot_host
print(f"torch {torch.__version__}")
for name in SNAPSHOTS:
    print(f"ComfyUI {name} at {snapshot_host(name)}")
PY
