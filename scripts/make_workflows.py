"""Writes workflows/NAME.json (UI format, for drag-and-drop) and workflows/api/NAME.json
(API format, for /prompt) from consistory_run.example_workflows, each on the host its UI file
records (example_workflows.GENERATED_ON: the 2024 snapshot, or today's ComfyUI for the Flux
workflow, whose nodes the 2024 snapshot lacks):

    .venv/bin/python scripts/make_workflows.py                            # the 2024 snapshot's
    CONSISTORY_HOST=0.3.75 .venv/bin/python scripts/make_workflows.py     # today's (Flux)
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))


def render(host) -> dict:
    """name -> (ui json text, api json text) of every workflow whose nodes the host has (runs_on)."""
    from consistory_run.example_workflows import NOTES, WORKFLOWS, runs_on
    from consistory_run.host import host_name
    from consistory_run.workflow_format import api_to_ui
    out = {}
    for name, build in WORKFLOWS.items():
        if not runs_on(name, host_name()):
            continue
        graph, titles, groups = build()
        ui, api = api_to_ui(graph, host.nodes.NODE_CLASS_MAPPINGS, titles, groups, NOTES[name])
        out[name] = (json.dumps(ui, indent=1) + "\n", json.dumps(api, indent=1) + "\n")
    return out


def main() -> None:
    from consistory_run.example_workflows import GENERATED_ON
    from consistory_run.host import DEFAULT_HOST, Host, host_name
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    (REPO / "workflows" / "api").mkdir(parents=True, exist_ok=True)
    for name, (ui, api) in render(host).items():
        if GENERATED_ON.get(name, DEFAULT_HOST) != host_name():
            continue
        (REPO / "workflows" / f"{name}.json").write_text(ui)
        (REPO / "workflows" / "api" / f"{name}.json").write_text(api)
        print(f"workflows/{name}.json, workflows/api/{name}.json")


if __name__ == "__main__":
    main()
