"""The pack as a Comfy Registry archive installs it (the files .comfyignore keeps, copied into a
fresh ComfyUI's custom_nodes, nothing of this repository importable): a user with only that
and a CPU queues the story-world template and gets plain and ConsiStory images."""
import json
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from consistory_run.example_workflows import TRY_ON_CPU
from consistory_testing.server import PACK_NAME, get_json, post_json, running_server

REPO = Path(__file__).resolve().parents[2]


def test_with_only_the_archive_the_story_world_template_runs_and_shows_plain_and_consistory(tmp_path):
    base = tmp_path / "comfy"
    base.mkdir()
    with running_server(base, archive=True) as url:
        pack = base / "custom_nodes" / PACK_NAME
        assert not pack.is_symlink() and not (pack / "consistory_testing").exists() and not (pack / "tests").exists()
        assert (pack / "story_world" / "weights" / "story_world.safetensors").is_file()
        assert TRY_ON_CPU in get_json(url + "/workflow_templates")[PACK_NAME]
        served = get_json(f"{url}/api/workflow_templates/{PACK_NAME}/{quote(TRY_ON_CPU)}.json")
        assert served == json.loads((REPO / "example_workflows" / f"{TRY_ON_CPU}.json").read_text())
        api = json.loads((REPO / "example_workflows" / "api" / f"{TRY_ON_CPU}.json").read_text())  # its API twin
        answer = post_json(url + "/prompt", {"prompt": api, "client_id": "consistory-archive-test"})
        assert not answer.get("node_errors"), answer
        prompt_id, deadline = answer["prompt_id"], time.monotonic() + 600
        while prompt_id not in (history := get_json(f"{url}/history/{prompt_id}")):
            assert time.monotonic() < deadline, "the story-world workflow did not finish in 600 s"
            time.sleep(1)
        assert history[prompt_id]["status"]["status_str"] == "success", history[prompt_id]["status"]
    saved = lambda prefix: [np.asarray(Image.open(p), dtype=np.float32) / 255
                            for p in sorted((base / "output").glob(f"{prefix}_0*.png"))]
    story, plain = saved("consistory_world"), saved("plain_world")
    assert len(story) == len(plain) == 4 and len(saved("consistory_world_masks")) == 4
    assert story[0].shape == (64, 64, 3)  # the model's 64 x 64 images
    # the anchors (the first two) barely change; a later scene takes their subject: it changes most
    change = [float(np.abs(s - p).mean()) for s, p in zip(story, plain)]
    assert change[2] > 0.01 and change[2] > change[0], change
