"""Run an API-format graph in a fresh process: python -m consistory_testing.run_graph GRAPH.json
[--latents OUT.safetensors] [--output-dir DIR]. The tiny model and the probe nodes are
registered; what LatentCapture nodes captured is written to OUT."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def run_fresh(graph: dict, folder: Path) -> dict:
    """Runs a graph in a new Python process (its output folder ``folder``); returns what its
    LatentCapture nodes captured."""
    import subprocess
    import sys
    from safetensors.torch import load_file
    path, latents = folder / "graph.json", folder / "latents.safetensors"
    path.write_text(json.dumps(graph))
    proc = subprocess.run([sys.executable, "-m", "consistory_testing.run_graph", str(path), "--latents", str(latents),
                           "--output-dir", str(folder)], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the graph failed in a fresh process:\n{proc.stderr[-3000:]}")
    return load_file(str(latents))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("graph", type=Path)
    p.add_argument("--latents", type=Path)
    p.add_argument("--output-dir", type=Path)
    a = p.parse_args(argv)
    graph = json.loads(a.graph.read_text())
    from . import probes, tiny_models
    from consistory_run.host import Host
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    host.register(tiny_models.NODE_CLASS_MAPPINGS)
    host.register(probes.NODE_CLASS_MAPPINGS)
    if a.output_dir:
        import folder_paths
        folder_paths.set_output_directory(str(a.output_dir))
    host.run(graph)
    if a.latents:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in probes.LatentCapture.store.items()}, str(a.latents))


if __name__ == "__main__":
    main()
