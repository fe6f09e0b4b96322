"""The pack inside the host's own running server: /object_info, /prompt, /history, the template
list (/workflow_templates), files on disk."""
import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from consistory_run.example_workflows import STORY, WORKFLOWS, shrunk
from consistory_testing.server import get_json, post_json, running_server

REPO = Path(__file__).resolve().parents[2]
PACK_NODES = ["ConsiStoryStoryPrompts", "ConsiStorySubjectMasks", "ConsiStorySDSA", "ConsiStoryMaskPreview",
              "ConsiStoryQueryBlend", "ConsiStoryFeatureInjection", "ConsiStoryCollectFeatures",
              "ConsiStoryAnchorBank", "ConsiStorySaveAnchorBank", "ConsiStoryLoadAnchorBank", "ConsiStoryUseAnchors",
              "ConsiStoryBankLatent", "ConsiStorySubjectFromImage", "ConsiStoryFreeU", "ConsiStoryStoryWorldCheckpoint"]
# /object_info of the pack's nodes as their V1 declarations gave it on ComfyUI 0.3.75, before they
# were declared with the V3 schema: the V3 nodes must show users and saved workflows the same nodes
V1_OBJECT_INFO = REPO / "tests" / "fixtures" / "object_info_v1_nodes.json"
# what the V3 declarations changed on purpose: fields that hold lines are multiline text boxes
NOW_MULTILINE = {("ConsiStoryStoryPrompts", "subject"), ("ConsiStoryStoryPrompts", "subject_words"),
                 ("ConsiStorySubjectFromImage", "subject"), ("ConsiStorySubjectFromImage", "subject_words")}


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
        assert node["category"] in ("ConsiStory/story", "ConsiStory/refine", "ConsiStory/bank", "ConsiStory/try it"), \
            node["category"]
        assert node["display_name"].startswith("ConsiStory")
        for section in ("required", "optional"):
            for input_name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


def as_v1_declared(info: dict) -> dict:
    """A node's /object_info entry with what only the V3 schema writes taken out: its flags when
    false, output tooltips when it has none, the hidden inputs an output node gets, combos as
    ("COMBO", {"options": ...}) and strings' multiline=False."""
    node = {k: v for k, v in info.items() if not (k in ("api_node", "deprecated", "experimental") and v is False)
            and not (k == "output_tooltips" and not any(v)) and k != "search_aliases"}
    inputs = {}
    for section, specs in node["input"].items():
        if section == "hidden":
            continue
        inputs[section] = {}
        for name, (kind, options) in specs.items():
            options = {k: v for k, v in options.items() if (k, v) not in (("multiline", False), ("multiselect", False))}
            if kind == "COMBO":
                kind, options = options.pop("options"), options
            inputs[section][name] = [kind, options]
    node["input_order"] = {k: v for k, v in node["input_order"].items() if k != "hidden"}
    return {**node, "input": inputs}


def test_the_v3_nodes_show_what_the_v1_nodes_showed(server):
    """Same ids, display names, categories, descriptions, inputs (names, order, types, defaults,
    ranges, tooltips), outputs and output names as before the V3 schema: saved workflows load and
    the README's node table holds; the only change is multiline text where a field holds lines."""
    url, _ = server
    info = get_json(url + "/object_info")
    before = json.loads(V1_OBJECT_INFO.read_text())
    assert set(before) <= set(PACK_NODES)  # every node there was is still there
    for name in before:
        now = as_v1_declared(info[name])
        for section in now["input"].values():
            for field, (_, options) in section.items():
                if (name, field) in NOW_MULTILINE:
                    assert options.pop("multiline") is True, f"{name}.{field}"
        assert now == before[name], name


def test_a_story_posted_to_prompt_runs_and_writes_its_images(server):
    url, base = server
    api = shrunk(json.loads((REPO / "example_workflows" / "api" / f"{STORY}.json").read_text()))
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


def test_the_template_route_lists_exactly_the_packs_workflows_and_serves_them_with_thumbnails(server):
    """ComfyUI lists a pack's `example_workflows/*.json` (the folder's own files only) in its
    template browser (Workflow > Browse Templates) by file name and serves each file and its
    thumbnail (NAME.jpg) under /api/workflow_templates/PACK/: the list is exactly the workflows
    the pack makes, once each (no leftover file, no second folder the host also reads); the
    API-format copies (`api/`) and the sample input images (`input/`) are not in it."""
    from consistory_testing.server import PACK_NAME
    url, _ = server
    folder = REPO / "example_workflows"
    ours = sorted(WORKFLOWS)
    assert len(ours) >= 9
    listed = get_json(url + "/workflow_templates")[PACK_NAME]
    assert sorted(listed) == ours
    for name in ours:
        base = f"{url}/api/workflow_templates/{PACK_NAME}/{quote(name)}"
        assert get_json(base + ".json") == json.loads((folder / f"{name}.json").read_text()), name
        with urllib.request.urlopen(base + ".jpg", timeout=30) as r:
            assert r.headers["Content-Type"] == "image/jpeg", name
            assert r.read() == (folder / f"{name}.jpg").read_bytes(), name


def test_search_aliases_reach_a_host_whose_schema_has_them(host, monkeypatch):
    """ComfyUI 0.38's io.Schema has search_aliases, 0.3.75's has not: the declarations give
    them where the host knows them and load on both."""
    import dataclasses
    from consistory_testing.pack import pack_module
    sockets = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "nodes.sockets")
    sdsa = host.nodes.NODE_CLASS_MAPPINGS["ConsiStorySDSA"]
    assert not hasattr(sdsa.define_schema(), "search_aliases")  # this host's Schema: no such field

    @dataclasses.dataclass
    class Schema038(sockets.io.Schema):  # the field as 0.38.1 declares it
        search_aliases: list = dataclasses.field(default_factory=list)

    monkeypatch.setattr(sockets.io, "Schema", Schema038)
    assert "consistent character" in sdsa.define_schema().search_aliases


def test_the_sample_images_are_in_a_fresh_input_folder_and_load_image_offers_them(tmp_path):
    """The photo and depth workflows load images that ship in example_workflows/input/: once the
    pack has loaded, ComfyUI's input folder holds them and Load Image lists and shows them,
    without any copying by hand; a different file already there under a sample's name is
    neither replaced nor changed."""
    from PIL import Image
    from consistory_run import example_workflows as ex_workflows
    from sample_inputs import SAMPLES
    base = tmp_path / "base"
    (base / "input").mkdir(parents=True)
    theirs = base / "input" / ex_workflows.DEPTH_IMAGE
    Image.new("RGB", (8, 8), (200, 30, 30)).save(theirs)
    before = theirs.read_bytes()
    with running_server(base) as url:
        spec = get_json(url + "/object_info/LoadImage")["LoadImage"]["input"]["required"]["image"]
        listed = spec[0] if isinstance(spec[0], list) else spec[1]["options"]  # V1 combo, or COMBO + options
        with urllib.request.urlopen(f"{url}/view?filename={quote(ex_workflows.PHOTO)}&type=input", timeout=30) as r:
            shown = r.read()
    for name in (ex_workflows.PHOTO, ex_workflows.DEPTH_IMAGE):
        assert name in listed, (name, listed)
    assert (base / "input" / ex_workflows.PHOTO).read_bytes() == (SAMPLES / ex_workflows.PHOTO).read_bytes() == shown
    assert theirs.read_bytes() == before  # the user's file, not the sample
    assert "kept the file(s) " + ex_workflows.DEPTH_IMAGE in (base / "server.log").read_text()
