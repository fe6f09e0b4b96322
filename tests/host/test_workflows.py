"""The example workflows in example_workflows/: current with their builder, valid against the
host's node definitions, and runnable on the host."""
import json
from pathlib import Path

import pytest

from consistory_run import example_workflows as ex
from consistory_run.example_workflows import shrunk
from consistory_run.workflow_format import input_specs

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "example_workflows"
NAMES = sorted(p.stem for p in FOLDER.glob("*.json"))


def load(name, api=False):
    return json.loads((FOLDER / ("api" if api else "") / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def rendered(host):
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_workflows", REPO / "scripts" / "make_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(host)


def test_every_workflow_is_shipped_in_both_formats(rendered):
    """Every workflow the builder makes is shipped."""
    assert set(rendered) == set(NAMES) and len(NAMES) >= 9
    assert sorted(p.stem for p in (FOLDER / "api").glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_workflow_files_are_current(rendered, name):
    """The API twins match their builder on any host. The UI files record the sockets of the
    host they are generated on (the default, ComfyUI 0.3.75; other versions may add optional
    inputs), so they are compared byte for byte on that host; on others,
    test_workflow_matches_the_hosts_node_definitions checks them."""
    from consistory_run.host import DEFAULT_HOST, host_name
    ui, api = rendered[name]
    assert (FOLDER / "api" / f"{name}.json").read_text() == api, "run scripts/make_workflows.py"
    if host_name() == DEFAULT_HOST:
        assert (FOLDER / f"{name}.json").read_text() == ui, "run scripts/make_workflows.py"


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """Empty stand-ins for the files the workflows name, so the file lists contain them."""
    import folder_paths
    from PIL import Image
    from consistory_run.graphs import FLUX_FILES
    flux = [("diffusion_models", FLUX_FILES["unet"]), ("text_encoders", FLUX_FILES["clip_l"]),
            ("text_encoders", FLUX_FILES["t5"]), ("vae", FLUX_FILES["vae"])]
    for folder, name in [("checkpoints", "sd_xl_base_1.0.safetensors"), ("checkpoints", "v1-5-pruned-emaonly.safetensors"),
                         ("controlnet", "diffusers_xl_depth_full.safetensors")] + flux:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(b"")
        monkeypatch.setitem(folder_paths.folder_names_and_paths, folder, ([str(tmp_path / folder)], {".safetensors"}))
    if hasattr(folder_paths, "filename_list_cache"):
        monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    (tmp_path / "input").mkdir()
    for image in (ex.DEPTH_IMAGE, ex.PHOTO):
        Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "input" / image)
    (tmp_path / "output" / "consistory_banks").mkdir(parents=True)
    (tmp_path / "output" / "consistory_banks" / "old_man_00001.safetensors").write_bytes(b"")
    monkeypatch.setattr(folder_paths, "input_directory", str(tmp_path / "input"))
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path / "output"))
    return tmp_path


def widget_problems(value, kind, options):
    if isinstance(kind, (list, tuple)):
        return [] if value in kind else [f"{value!r} is not one of {list(kind)[:8]}"]
    if kind == "INT":
        ok = isinstance(value, int) and not isinstance(value, bool) and \
            options.get("min", -2**63) <= value <= options.get("max", 2**64)
    elif kind == "FLOAT":
        ok = isinstance(value, (int, float)) and options.get("min", -1e308) <= value <= options.get("max", 1e308)
    elif kind == "STRING":
        ok = isinstance(value, str)
    elif kind == "BOOLEAN":
        ok = isinstance(value, bool)
    else:
        return [f"{kind} is not a widget type"]
    return [] if ok else [f"{value!r} does not fit {kind} {options.get('min')}..{options.get('max')}"]


def ui_problems(workflow, classes):
    """Everything in a UI workflow that does not match the host's node definitions."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        src_cls, dst_node = classes[nodes[src]["type"]], nodes[dst]
        if src_cls.RETURN_TYPES[src_slot] != kind:
            problems.append(f"link {link_id}: {nodes[src]['type']} output {src_slot} is "
                            f"{src_cls.RETURN_TYPES[src_slot]}, not {kind}")
        entry = dst_node["inputs"][dst_slot]
        spec = {name: kind for name, kind, _ in input_specs(classes[dst_node["type"]])}[entry["name"]]
        if entry["link"] != link_id or (isinstance(spec, str) and spec != kind):
            problems.append(f"link {link_id}: {dst_node['type']}.{entry['name']} takes {spec}, gets {kind}")
        if link_id not in nodes[src]["outputs"][src_slot]["links"]:
            problems.append(f"link {link_id} is missing from its source's outputs")
    for node in workflow["nodes"]:
        if node["type"] == "Note":  # the frontend's own node: text only
            problems += [] if isinstance(node["widgets_values"][0], str) else [f"node {node['id']}: Note without text"]
            continue
        cls = classes.get(node["type"])
        if cls is None:
            problems.append(f"node {node['id']}: unknown type {node['type']}")
            continue
        values = list(node["widgets_values"])
        for name, kind, options in input_specs(cls):
            if not (isinstance(kind, (list, tuple)) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")):
                continue
            if not values:
                problems.append(f"{node['type']}: no value for {name}")
                continue
            problems += [f"{node['type']}.{name}: {p}" for p in widget_problems(values.pop(0), kind, options)]
            if name in ("seed", "noise_seed") and values.pop(0) not in ("fixed", "increment", "decrement", "randomize"):
                problems.append(f"{node['type']}.{name}: bad control_after_generate value")
        if values:
            problems.append(f"{node['type']}: {len(values)} widget values too many")
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_workflow_matches_the_hosts_node_definitions(host, user_files, name):
    assert ui_problems(load(name), host.nodes.NODE_CLASS_MAPPINGS) == []
    ok, error, _, node_errors = host.validate(load(name, api=True))
    assert ok, (error, node_errors)


def test_the_validator_catches_what_it_should(host, user_files):
    """A wrong widget value, an unknown node and a mistyped link are all reported."""
    bad = load(ex.STORY)
    sdsa = next(n for n in bad["nodes"] if n["type"] == "ConsiStorySDSA")
    sdsa["widgets_values"][0] = 1.5  # dropout above its max
    bad["links"][0][5] = "LATENT"
    bad["nodes"].append({"id": 99, "type": "NoSuchNode", "inputs": [], "outputs": [], "widgets_values": []})
    problems = "\n".join(ui_problems(bad, host.nodes.NODE_CLASS_MAPPINGS))
    assert "dropout: 1.5 does not fit FLOAT 0.0..1.0" in problems
    assert "unknown type NoSuchNode" in problems
    assert "not LATENT" in problems


def run_workflow(host, name):
    """Runs a workflow's API twin (shrunk); returns {SaveImage prefix: expected image count}."""
    api = shrunk(load(name, api=True))
    host.run(api)
    scenes = next(n["inputs"]["scenes"] for n in api.values() if n["class_type"] == "ConsiStoryStoryPrompts")
    return {n["inputs"]["filename_prefix"]: len(scenes.splitlines())
            for n in api.values() if n["class_type"] == "SaveImage"}


@pytest.mark.parametrize("names", [[ex.STORY], [ex.MULTI_SUBJECT], [ex.CONTROLNET_STORY], [ex.STORY_PAPER],
                                   [ex.STORY_SD15], [ex.STORY_FLUX], [ex.MAKE_SUBJECT, ex.REUSE_SUBJECT]],
                         ids=lambda names: " then ".join(names))
def test_workflow_runs_on_the_host(host, names, tmp_path, monkeypatch):
    import folder_paths
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path))
    for name in names:
        for prefix, count in run_workflow(host, name).items():
            assert len(list(tmp_path.glob(f"{prefix}_0*.png"))) == count, prefix


def layout_problems(workflow: dict) -> list:
    """Where a UI file's layout breaks its rules: the groups side by side, left to right in their
    order, none overlapping another; every node (its title bar included) inside exactly one group
    and over no other node, the note outside the groups; the whole graph small enough that the
    frontend's fit on load (a 1600 x 1000 window) zooms to where it draws text."""
    from consistory_run.workflow_format import READABLE_ZOOM, TITLE_H, fit_zoom
    problems = []

    def overlap(a, b):
        return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]

    def inside(a, b):
        return b[0] <= a[0] and a[0] + a[2] <= b[0] + b[2] and b[1] <= a[1] and a[1] + a[3] <= b[1] + b[3]

    groups = [(g["title"], g["bounding"]) for g in workflow["groups"]]
    for i, (title_a, box_a) in enumerate(groups):
        problems += [f"group {title_a} overlaps {title_b}" for title_b, box_b in groups[i + 1:]
                     if overlap(box_a, box_b)]
        if i and box_a[0] < groups[i - 1][1][0] + groups[i - 1][1][2]:
            problems.append(f"group {title_a} is not right of {groups[i - 1][0]}")
    nodes = [(f"{n.get('title', n['type'])} ({n['id']})", n["type"],
              [n["pos"][0], n["pos"][1] - TITLE_H, n["size"][0], n["size"][1] + TITLE_H]) for n in workflow["nodes"]]
    for i, (name, kind, box) in enumerate(nodes):
        holders = [title for title, group in groups if inside(box, group)]
        if kind == "Note":
            problems += [f"{name} overlaps group {title}" for title, group in groups if overlap(box, group)]
        elif len(holders) != 1:
            problems.append(f"{name} lies inside {len(holders)} groups")
        problems += [f"{name} overlaps {other}" for other, _, other_box in nodes[i + 1:] if overlap(box, other_box)]
    zoom = fit_zoom([box for _, _, box in nodes])
    if zoom < READABLE_ZOOM:
        problems.append(f"opens at {zoom:.0%} zoom, below the {READABLE_ZOOM:.0%} at which text is drawn")
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_no_group_overlaps_another_and_every_node_sits_in_its_group(name):
    """The groups side by side, data flowing left to right; each node in one group, over no other
    node; the graph opens at a zoom that draws text (tests/host/test_browser.py checks the page)."""
    assert layout_problems(load(name)) == []


def test_the_layout_check_catches_what_it_should():
    bad = load(ex.STORY)
    nodes = {n["type"]: n for n in bad["nodes"]}
    nodes["ConsiStoryQueryBlend"]["pos"] = list(nodes["ConsiStorySDSA"]["pos"])  # over SDSA
    nodes["CheckpointLoaderSimple"]["pos"][1] -= 60  # its title bar out of its group
    nodes["Note"]["pos"] = list(nodes["KSampler"]["pos"])  # in a group
    bad["groups"][1]["bounding"][0] = bad["groups"][0]["bounding"][0] + 10  # over the first group, not right of it
    first, second, third = (g["title"] for g in bad["groups"][:3])
    note, sampler = nodes["Note"]["id"], nodes["KSampler"]["id"]
    problems = "\n".join(layout_problems(bad))
    for expected in (f"ConsiStory SDSA ({nodes['ConsiStorySDSA']['id']}) overlaps ConsiStory Query Blend",
                     "CheckpointLoaderSimple (1) lies inside 0 groups", f"Read me ({note}) overlaps group {third}",
                     f"KSampler ({sampler}) overlaps Read me ({note})", f"group {first} overlaps {second}",
                     f"group {second} is not right of {first}"):
        assert expected in problems, (expected, problems)
    tall = load(ex.STORY)
    next(n for n in tall["nodes"] if n["type"] == "SaveImage")["size"][1] += 1500
    assert "zoom, below the 57% at which text is drawn" in "\n".join(layout_problems(tall))


@pytest.mark.parametrize("name", NAMES)
def test_every_workflow_has_a_note_saying_what_to_load_where_and_what_to_edit(name):
    workflow = load(name)
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1
    folders = {"CheckpointLoaderSimple": "checkpoints", "UNETLoader": "diffusion_models",
               "DualCLIPLoader": "text_encoders", "VAELoader": "vae"}
    loaders = {n["type"]: n["widgets_values"][0] for n in workflow["nodes"]
               if n["type"] in ("ControlNetLoader", "LoadImage", "ConsiStoryLoadAnchorBank", *folders)}
    for kind, value in loaders.items():  # each file the graph loads is named in the note, with its folder
        assert value.split("/")[-1].split("_0")[0] in notes[0], (kind, value)
        if kind in folders:
            assert f"ComfyUI/models/{folders[kind]}" in notes[0], kind
    shipped_model = any(n["type"] == "ConsiStoryStoryWorldCheckpoint" for n in workflow["nodes"])
    assert "Edit" in notes[0] and (any(kind in folders for kind in loaders) or shipped_model)
    if shipped_model:  # nothing to load: the note says the model comes with the pack
        assert "ships with the pack" in notes[0]
    if "LoadImage" in loaders:
        assert (FOLDER / "input" / loaders["LoadImage"]).is_file()  # the sample image ships
