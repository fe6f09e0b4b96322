#!/usr/bin/env bash
# Creates .venv with the CPU torch wheel, the test/host dependencies and the ComfyUI host
# the tests run on (0.3.75, cached under ~/.cache/consistory-host). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The browser test drives Debian's chromium + chromium-driver (no browser download at run time).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: install chromium and chromium-driver (Debian packages) for tests/host/test_browser.py" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
# torch==2.13.0 rides along so no dependency can swap it for a CUDA build
.venv/bin/python -m pip install -q torch==2.13.0 -r requirements-test.txt 2>&1 | grep -v "is ignored" || true
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
