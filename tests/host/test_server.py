"""The pack inside the host's own running server: /object_info, /prompt, /history, files on disk."""
import json
import time
from pathlib import Path

import pytest

from consistory_run.example_workflows import shrunk
from consistory_testing.server import get_json, post_json, running_server

REPO = Path(__file__).resolve().parents[2]
PACK_NODES = ["ConsiStoryStoryPrompts", "ConsiStorySubjectMasks", "ConsiStorySDSA", "ConsiStoryMaskPreview",
              "ConsiStoryQueryBlend", "ConsiStoryFeatureInjection", "ConsiStoryCollectFeatures",
              "ConsiStoryAnchorBank", "ConsiStorySaveAnchorBank", "ConsiStoryLoadAnchorBank", "ConsiStoryUseAnchors",
              "ConsiStoryBankLatent", "ConsiStorySubjectFromImage"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    with running_server(base) as url:
        yield url, base


def test_object_info_lists_every_consistory_node_with_tooltips(server):
    url, _ = server
    info = get_json(url + "/object_info")
    for name in PACK_NODES:
        assert name in info, name
        node = info[name]
        assert node["category"] in ("ConsiStory/story", "ConsiStory/refine", "ConsiStory/bank"), node["category"]
        assert node["display_name"].startswith("ConsiStory")
        for section in ("required", "optional"):
            for input_name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_a_story_posted_to_prompt_runs_and_writes_its_images(server):
    url, base = server
    api = shrunk(json.loads((REPO / "workflows" / "api" / "consistory_story.json").read_text()))
    answer = post_json(url + "/prompt", {"prompt": api, "client_id": "consistory-test"})
    assert not answer.get("node_errors"), answer
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 300
    while prompt_id not in (history := get_json(f"{url}/history/{prompt_id}")):
        assert time.monotonic() < deadline, "the prompt did not finish in 300 s"
        time.sleep(1)
    status = history[prompt_id]["status"]
    assert status["status_str"] == "success", status
    saved = [img["filename"] for out in history[prompt_id]["outputs"].values() for img in out.get("images", [])
             if img.get("type") == "output"]
    assert len(saved) == 8  # four images and four mask overlays
    assert all((base / "output" / name).is_file() for name in saved)


def test_the_workflows_appear_in_the_template_browser(server):
    """Today's ComfyUI lists a pack's `workflows/` (or `example_workflows/`) JSON files in its
    template browser (Workflow > Browse Templates) and serves them; the API-format copies in
    `workflows/api/` are not listed."""
    from consistory_testing.server import PACK_NAME
    url, _ = server
    templates = get_json(url + "/workflow_templates")
    ours = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert sorted(templates[PACK_NAME]) == ours
    served = get_json(f"{url}/api/workflow_templates/{PACK_NAME}/consistory_story.json")
    assert served == json.loads((REPO / "workflows" / "consistory_story.json").read_text())
