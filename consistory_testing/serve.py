"""python -m consistory_testing.serve [main.py arguments]: the host's main.py, with the
torchvision placeholder of consistory_run.host installed first (see there)."""
from __future__ import annotations

import os
import runpy
import sys

from consistory_run.host import PACK_DIR, _torchvision_placeholder, comfyui_path


class RepositoryBlocker:
    """A sys.meta_path finder that refuses the repository's own top-level packages (the test
    environment installs them; a user's ComfyUI has only the pack's archive)."""
    PACKAGES = {"consistory_run", "consistory_core", "consistory_patches", "consistory_testing", "story_world",
                "evaluation", "benchmarks"}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r} (only the pack's archive is installed)", name=name)
        return None


def main() -> None:
    host = str(comfyui_path())
    repo = str(PACK_DIR)
    # the host first: this repo's nodes/ package must not shadow the host's nodes.py
    sys.path[:] = [host] + [p for p in sys.path if p not in ("", repo, os.getcwd())] + [repo]
    os.chdir(host)
    _torchvision_placeholder()
    if os.environ.get("CONSISTORY_SERVE_BARE"):  # as a user's ComfyUI: nothing of the repository importable
        sys.path[:] = [p for p in sys.path if p != repo]
        sys.meta_path.insert(0, RepositoryBlocker())  # not even through the test venv's editable install
    sys.argv = [os.path.join(host, "main.py")] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
