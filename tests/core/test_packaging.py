"""What a Registry archive of the pack holds: the runtime and nothing it does not need, a
runtime that imports only what ships, a README that says which of the paths it names the
archive holds, and the Registry's metadata in pyproject.toml: complete but for the three
fields the first publication fills in, with no made-up addresses."""
import ast
import copy
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

from consistory_testing.archive import archive_files, is_ignored, repository_files

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("__init__.py", "server_routes.py", "sample_inputs.py", "nodes", "consistory_core", "consistory_patches", "story_world")


def test_the_archive_leaves_out_tests_and_tools_and_keeps_the_runtime():
    for path in ("tests/core/test_packaging.py", "consistory_testing/probes.py", "scripts/setup.sh",
                 "benchmarks/sdxl_cost.py", "consistory_run/host.py", "tests/fixtures/bank_format1.safetensors"):
        assert is_ignored(path), path
    for path in ("__init__.py", "server_routes.py", "sample_inputs.py", "nodes/story_prompts.py", "consistory_core/sdsa.py", "consistory_patches/story.py",
                 "example_workflows/One subject in four scenes.json", "example_workflows/One subject in four scenes.jpg",
                 "example_workflows/api/One subject in four scenes.json", "example_workflows/input/consistory_mug.png",
                 "example_workflows/input/consistory_depth.png",
                 "LICENSE", "README.md", "docs/icon.png", "nodes/story_world_checkpoint.py", "story_world/model.py",
                 "story_world/text_encoder.py", "story_world/configs/clip_l.json",
                 "story_world/weights/story_world.safetensors"):
        assert not is_ignored(path), path
    for path in ("story_world/train.py", "story_world/render.py", "story_world/weights/train.log"):
        assert is_ignored(path), path


def shipped_python() -> list[Path]:
    """Every Python file of the archive (the runtime: RUNTIME's files less what .comfyignore leaves out)."""
    files = [REPO / f for f in archive_files() if f.endswith(".py")]
    assert {str(f.relative_to(REPO)).split("/")[0] for f in files} <= set(RUNTIME), "a .py ships outside RUNTIME"
    return files


def test_the_runtime_imports_only_what_ships():
    """Every pack-internal import of a shipped module names a shipped module (a user's ComfyUI
    has only the archive, without the repository's tools on sys.path)."""
    for file in shipped_python():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                target = ("." * node.level) + node.module
                assert not any(name in target for name in ("consistory_run", "consistory_testing", "evaluation")), \
                    (file, target)
                if node.level:  # relative: the module file must ship
                    base = file.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    module = base.joinpath(*node.module.split("."))
                    found = module.with_suffix(".py") if module.with_suffix(".py").is_file() else module / "__init__.py"
                    assert found.is_file() and not is_ignored(str(found.relative_to(REPO))), (file, target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] in ("story_world", "consistory_run", "consistory_testing", "evaluation")
                               for n in names), (file, names)


# Filled in at the first publication, all three at once; until then PublisherId is empty, which
# `comfy node publish` refuses ("Publisher ID is required", comfy-cli's registry/api.py), and the
# two addresses hold a <FILL IN: ...> placeholder (an empty one would not pass setuptools' check
# of [project.urls], which `pip install -e .` runs).
LEFT_TO_FILL_IN = ("PublisherId", "Repository", "Icon")


def registry_fields(meta: dict) -> dict:
    return {"PublisherId": meta.get("tool", {}).get("comfy", {}).get("PublisherId"),
            "Repository": meta.get("project", {}).get("urls", {}).get("Repository"),
            "Icon": meta.get("tool", {}).get("comfy", {}).get("Icon")}


def unfilled(value) -> bool:
    return value == "" or (isinstance(value, str) and value.startswith("<FILL IN"))


def is_https(value: str) -> bool:
    parts = urlparse(value)
    return parts.scheme == "https" and bool(parts.netloc) and not re.search(r"[<>\s]", value)


def registry_problems(meta: dict) -> list[str]:
    """What keeps pyproject.toml from the Registry's specification (docs.comfy.org/registry/
    specifications), apart from the fields left to fill in."""
    problems = []
    project, comfy = meta.get("project", {}), meta.get("tool", {}).get("comfy", {})
    name = project.get("name", "")
    if not (re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]{0,98}", name) and not re.search(r"[._-]{2}", name)
            and "comfyui" not in name.lower()):
        problems.append(f"name {name!r}: under 100 letters, digits, - _ . (no two in a row, no 'ComfyUI')")
    if not re.fullmatch(r"\d+\.\d+\.\d+", project.get("version", "")):
        problems.append(f"version {project.get('version')!r} is not X.Y.Z")
    if not (REPO / project.get("license", {}).get("file", "-")).is_file():
        problems.append("license = { file = ... } names no file")
    for key, value in (("description", project.get("description")), ("DisplayName", comfy.get("DisplayName")),
                       ("requires-comfyui", comfy.get("requires-comfyui"))):
        if not value:
            problems.append(f"{key} is empty")
    fields = registry_fields(meta)
    problems += [f"{key} is missing" for key, value in fields.items() if value is None]
    filled = {key for key, value in fields.items() if value is not None and not unfilled(value)}
    if filled and filled != set(fields):
        problems.append(f"{sorted(filled)} filled in but not {sorted(set(fields) - filled)}: all three at once")
    if "PublisherId" in filled and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", fields["PublisherId"]):
        problems.append(f"PublisherId {fields['PublisherId']!r}: lowercase letters, digits, - and _")
    if "Repository" in filled and not is_https(fields["Repository"]):
        problems.append(f"Repository {fields['Repository']!r} is not an https address")
    if "Icon" in filled:
        repository_path = urlparse(fields.get("Repository") or "").path.strip("/")
        if not (is_https(fields["Icon"]) and fields["Icon"].endswith("/docs/icon.png")
                and repository_path and repository_path in fields["Icon"]):
            problems.append(f"Icon {fields['Icon']!r} is not the https address of the repository's docs/icon.png")
    for value in [comfy.get("Icon", "")] + list(project.get("urls", {}).values()):
        if "comfyui-consistory/comfyui-consistory" in value:  # an address once made up here
            problems.append(f"made-up address {value}")
    return problems


def test_the_registry_metadata_lacks_only_the_three_fields_the_first_publication_fills_in():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert registry_problems(meta) == []
    left = [key for key, value in registry_fields(meta).items() if unfilled(value)]
    assert left in ([], list(LEFT_TO_FILL_IN)), left  # before publishing: exactly these three
    if left:  # nothing can be published before they are: comfy node publish refuses an empty id
        assert registry_fields(meta)["PublisherId"] == ""


def test_the_registry_check_refuses_what_the_registry_would_not_take():
    good = {"project": {"name": "consistory", "version": "0.1.0", "license": {"file": "LICENSE"},
                        "description": "x", "urls": {"Repository": "https://git.example/owner/pack"}},
            "tool": {"comfy": {"PublisherId": "someone", "DisplayName": "ConsiStory", "requires-comfyui": ">=0.3.75",
                               "Icon": "https://raw.example/owner/pack/main/docs/icon.png"}}}
    assert registry_problems(good) == []

    def changed(path, value):
        meta = copy.deepcopy(good)
        *parents, key = path
        node = meta
        for parent in parents:
            node = node[parent]
        if value is None:
            del node[key]
        else:
            node[key] = value
        return registry_problems(meta)

    assert changed(("project", "name"), "ComfyUI-consistory")
    assert changed(("project", "version"), "0.1")
    assert changed(("tool", "comfy", "PublisherId"), "")  # one of three filled in: refused
    assert changed(("tool", "comfy", "PublisherId"), "Some One")
    assert changed(("project", "urls", "Repository"), None)
    assert changed(("project", "urls", "Repository"), "<FILL IN: the address>")
    assert changed(("tool", "comfy", "Icon"), "https://raw.example/owner/pack/main/icon.png")
    assert changed(("tool", "comfy", "Icon"), "https://raw.example/other/pack/main/docs/icon.png")


def test_the_icon_is_a_small_square_image():
    from PIL import Image
    with Image.open(REPO / "docs" / "icon.png") as icon:  # the Registry: square, at most 400 px
        assert icon.format == "PNG" and icon.width == icon.height <= 400


# The archive's README (README.md ships): every repository path it names is in the archive or
# under a path its section "What a Registry install holds" lists as in the repository only.
README = REPO / "README.md"
ARCHIVE_SECTION = "### What a Registry install holds"


def tracked_paths() -> set[str]:
    """The repository's files (as git lists them) and their folders (as 'folder/' and 'folder')."""
    files = repository_files()
    paths = set(files)
    for file in files:
        for parent in Path(file).parents:
            if str(parent) != ".":
                paths |= {str(parent), str(parent) + "/"}
    return paths


def named_paths(text: str, tracked: set[str]) -> set[str]:
    """The repository paths a Markdown text names: in `code` (words; after -m a module) and as
    link targets."""
    spans = re.findall(r"`([^`\n]+)`", text)
    words = [w for span in spans for w in re.split(r"\s+", span)]
    words += [m.replace(".", "/") for span in spans for m in re.findall(r"-m\s+([\w.]+)", span)]
    words += re.findall(r"\]\(([^)\s#]+)", text)
    found = set()
    for word in words:
        word = word.strip(",;:()'\"").rstrip(".")  # a leading dot is part of a name (.ci/run)
        if word in tracked:
            found.add(word)
    return found


def archive_lists(text: str) -> tuple[set[str], set[str]]:
    """The paths the README's archive section says are in the archive, and in the repository only."""
    section = text.split(ARCHIVE_SECTION, 1)[1].split("\n#", 1)[0]
    shipped, repository_only = section.split("- **In the repository only**", 1)
    shipped = shipped.split("- **In the archive**", 1)[1]
    tracked = tracked_paths()
    return named_paths(shipped, tracked), named_paths(repository_only, tracked)


def readme_problems(text: str) -> list[str]:
    tracked = tracked_paths()
    shipped, repository_only = archive_lists(text)
    problems = [f"{p} is said to be in the archive but .comfyignore leaves it out" for p in sorted(shipped)
                if is_ignored(p.rstrip("/"))]
    problems += [f"{p} is said to be in the repository only but ships" for p in sorted(repository_only)
                 if not is_ignored(p.rstrip("/"))]
    for path in sorted(named_paths(text, tracked)):
        if is_ignored(path.rstrip("/")) and not any(path.rstrip("/") == r.rstrip("/") or path.startswith(r.rstrip("/") + "/")
                                                    for r in repository_only):
            problems.append(f"the README names {path}, which the archive leaves out, and does not say so")
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    problems += [f"no heading for the link #{a}" for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in headings]
    return problems


def test_every_path_the_archives_readme_names_is_in_the_archive_or_said_to_be_in_the_repository_only():
    text = README.read_text()
    shipped, repository_only = archive_lists(text)
    assert {"nodes/", "example_workflows/input/", "story_world/weights/story_world.safetensors"} <= shipped
    assert {"consistory_run/", "scripts/", "tests/", "benchmarks/", "evaluation/"} <= repository_only
    assert readme_problems(text) == []


def test_the_readme_check_finds_an_unsaid_left_out_path_and_a_wrong_claim():
    text = README.read_text()
    assert any("requirements-bench.txt" in p for p in readme_problems(text + "\nRun `pip install -r requirements-bench.txt`.\n"))
    unsaid = readme_problems(text.replace("`benchmarks/` ([Performance](#performance)), ", ""))
    assert any("benchmarks/sdxl_cost.py" in p for p in unsaid), unsaid
    wrong = text.replace("- **In the archive**: the node pack (", "- **In the archive**: `scripts/setup.sh`, the node pack (")
    assert any("scripts/setup.sh is said to be in the archive" in p for p in readme_problems(wrong))
    assert any("#no-such-part" in p for p in readme_problems(text + "\n[x](#no-such-part)\n"))
