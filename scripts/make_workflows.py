"""Writes example_workflows/NAME.json (UI format: ComfyUI's template browser lists these, and
they load by drag-and-drop) and example_workflows/api/NAME.json (API format, for /prompt) from
consistory_run.example_workflows, on the default host (ComfyUI 0.3.75: the UI files record its
sockets), and removes the .json files there that no workflow makes any more (a renamed one):

    .venv/bin/python scripts/make_workflows.py

Their thumbnails (NAME.jpg) are scripts/make_thumbnails.py's.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))


def render(host) -> dict:
    """name -> (ui json text, api json text) of every workflow."""
    from consistory_run.example_workflows import NOTES, WORKFLOWS
    from consistory_run.workflow_format import api_to_ui
    out = {}
    for name, build in WORKFLOWS.items():
        graph, titles, groups = build()
        ui, api = api_to_ui(graph, host.nodes.NODE_CLASS_MAPPINGS, titles, groups, NOTES[name],
                            host.nodes.NODE_DISPLAY_NAME_MAPPINGS)
        out[name] = (json.dumps(ui, indent=1) + "\n", json.dumps(api, indent=1) + "\n")
    return out


def main() -> None:
    from consistory_run.host import DEFAULT_HOST, Host, host_name
    if host_name() != DEFAULT_HOST:
        raise SystemExit(f"the UI files are written on the default host ({DEFAULT_HOST}); unset CONSISTORY_HOST "
                         "and COMFYUI_PATH")
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    folder = REPO / "example_workflows"
    (folder / "api").mkdir(parents=True, exist_ok=True)
    workflows = render(host)
    for name, (ui, api) in workflows.items():
        (folder / f"{name}.json").write_text(ui)
        (folder / "api" / f"{name}.json").write_text(api)
        print(f"example_workflows/{name}.json, example_workflows/api/{name}.json")
    for stale in [*folder.glob("*.json"), *(folder / "api").glob("*.json")]:
        if stale.name[:-len(".json")] not in workflows:
            stale.unlink()
            print(f"removed {stale.relative_to(REPO)}")


if __name__ == "__main__":
    main()
