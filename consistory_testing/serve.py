"""python -m consistory_testing.serve [main.py arguments]: the host's main.py, with the
torchvision placeholder of consistory_run.host installed first (see there)."""
from __future__ import annotations

import os
import runpy
import sys

from consistory_run.host import PACK_DIR, _torchvision_placeholder, comfyui_path


def main() -> None:
    host = str(comfyui_path())
    repo = str(PACK_DIR)
    # the host first: this repo's nodes/ package must not shadow the host's nodes.py
    sys.path[:] = [host] + [p for p in sys.path if p not in ("", repo, os.getcwd())] + [repo]
    os.chdir(host)
    _torchvision_placeholder()
    sys.argv = [os.path.join(host, "main.py")] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
