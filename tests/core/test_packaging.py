"""What a Registry archive of the pack holds: the runtime and nothing it does not need, no
made-up addresses in pyproject.toml, and a runtime that imports only what ships."""
import ast
import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("__init__.py", "server_routes.py", "nodes", "consistory_core", "consistory_patches")


def ignored_patterns() -> list[str]:
    lines = (REPO / ".comfyignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(relative: str) -> bool:
    for pattern in ignored_patterns():
        if pattern.endswith("/") and (relative + "/").startswith(pattern):
            return True
        if fnmatch.fnmatch(Path(relative).name, pattern):
            return True
    return False


def test_the_archive_leaves_out_tests_and_tools_and_keeps_the_runtime():
    for path in ("tests/core/test_packaging.py", "consistory_testing/probes.py", "scripts/setup.sh",
                 "benchmarks/sdxl_cost.py", "consistory_run/host.py", "tests/fixtures/bank_format1.safetensors"):
        assert is_ignored(path), path
    for path in ("__init__.py", "server_routes.py", "nodes/story_prompts.py", "consistory_core/sdsa.py", "consistory_patches/story.py",
                 "example_workflows/One subject in four scenes.json", "example_workflows/One subject in four scenes.jpg",
                 "example_workflows/api/One subject in four scenes.json", "example_workflows/input/mug.png",
                 "LICENSE", "README.md", "docs/icon.png"):
        assert not is_ignored(path), path


def test_the_runtime_imports_only_what_ships():
    for top in RUNTIME:
        files = [REPO / top] if top.endswith(".py") else sorted((REPO / top).rglob("*.py"))
        for file in files:
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    target = ("." * node.level) + node.module
                    assert not any(name in target for name in ("consistory_run", "consistory_testing",
                                                                 "story_world", "evaluation")), (file, target)


def test_pyproject_names_no_made_up_address_and_its_icon_exists():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["requires-comfyui"] and comfy["DisplayName"] == "ConsiStory"
    for value in [comfy.get("Icon", "")] + list(meta["project"].get("urls", {}).values()):
        assert "comfyui-consistory/comfyui-consistory" not in value, value
    assert (REPO / "docs" / "icon.png").is_file()
