"""The example workflows in workflows/: current with their builder, and runnable on the host."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAMES = ["consistory_story", "consistory_story_exact_injection", "consistory_make_subject",
         "consistory_reuse_subject"]


@pytest.fixture(scope="module")
def rendered(host):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_workflows", REPO / "scripts" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(host)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_files_are_current(rendered, name):
    ui, api = rendered[name]
    assert (REPO / "workflows" / f"{name}.json").read_text() == ui, "run scripts/make_workflows.py"
    assert (REPO / "workflows" / "api" / f"{name}.json").read_text() == api, "run scripts/make_workflows.py"


def shrunk(api: dict) -> dict:
    """The API twin with the tiny model for the checkpoint, 128 px and 10 steps."""
    for node in api.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node.update(class_type="ConsiStoryTinySDXLCheckpoint", inputs={"weight_seed": 0})
        elif node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=128, height=128)
        elif node["class_type"] == "KSampler":
            node["inputs"].update(steps=10)
    return api


def run_workflow(host, name):
    """Runs a workflow's API twin (shrunk); returns {SaveImage prefix: expected image count}."""
    api = shrunk(json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text()))
    host.run(api)
    scenes = next(n["inputs"]["scenes"] for n in api.values() if n["class_type"] == "ConsiStoryStoryPrompts")
    return {n["inputs"]["filename_prefix"]: len(scenes.splitlines())
            for n in api.values() if n["class_type"] == "SaveImage"}


@pytest.mark.parametrize("names", [NAMES[:1], NAMES[1:2], NAMES[2:4]],
                         ids=["story", "exact injection", "make then reuse a subject"])
def test_workflow_runs_on_the_host(host, names, tmp_path, monkeypatch):
    import folder_paths
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path))
    for name in names:
        for prefix, count in run_workflow(host, name).items():
            assert len(list(tmp_path.glob(f"{prefix}_0*.png"))) == count, prefix
