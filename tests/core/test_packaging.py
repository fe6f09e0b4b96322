"""What a Registry archive of the pack holds: the runtime and nothing it does not need, no
made-up addresses in pyproject.toml, and a runtime that imports only what ships."""
import ast
import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("__init__.py", "server_routes.py", "sample_inputs.py", "nodes", "consistory_core", "consistory_patches", "story_world")


def ignored_patterns() -> list[str]:
    lines = (REPO / ".comfyignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(relative: str) -> bool:
    for pattern in ignored_patterns():
        if pattern.endswith("/") and (relative + "/").startswith(pattern):
            return True
        if "/" in pattern.rstrip("/") and fnmatch.fnmatch(relative, pattern):  # a path from the root (gitignore)
            return True
        if "/" not in pattern and fnmatch.fnmatch(Path(relative).name, pattern):
            return True
    return False


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
    files = [REPO / top if top.endswith(".py") else None for top in RUNTIME]
    files = [f for f in files if f] + [f for top in RUNTIME if not top.endswith(".py")
                                       for f in sorted((REPO / top).rglob("*.py"))]
    return [f for f in files if not is_ignored(str(f.relative_to(REPO)))]


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


def test_pyproject_names_no_made_up_address_and_its_icon_exists():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["requires-comfyui"] and comfy["DisplayName"] == "ConsiStory"
    for value in [comfy.get("Icon", "")] + list(meta["project"].get("urls", {}).values()):
        assert "comfyui-consistory/comfyui-consistory" not in value, value
    assert (REPO / "docs" / "icon.png").is_file()
