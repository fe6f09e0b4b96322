"""Evaluate ConsiStory against vanilla SDXL on the same seeds (paper §5: subject consistency
vs prompt alignment), for GPU owners with an SDXL checkpoint.

    COMFYUI_PATH=/path/to/ComfyUI python -m evaluation.evaluate --ckpt sd_xl_base_1.0.safetensors \\
        --clip openai/clip-vit-large-patch14 --dino facebook/dinov2-base --out eval_out

Each prompt set is generated twice through the ComfyUI host with the same seed: vanilla
(the SDSA node with end_percent 0, which equals plain sampling exactly and still records the
subject masks) and ConsiStory (SDSA + Query Blend + Feature Injection, one pass). Writes the
images, results.json, results.md (a table) and results.png (consistency vs alignment).

The field's benchmark: ``--sets consistory+`` runs the 192 subjects / 1,100 prompts of
ConsiStory+ (1Prompt1Story, ICLR 2025) and, with ``--dreamsim dreamsim`` (pip install
dreamsim), reports CLIP-T, CLIP-I and DreamSim with the background removed, the columns of
that paper's Table 1 (ConsiStory .8769 / .8737 / .3188; vanilla SDXL .9074 / .8165 / .5292).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))

METHODS = {"vanilla SDXL": dict(end_percent=0.0), "ConsiStory": dict(blend=True, inject="fast")}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", help="SDXL checkpoint: a name in ComfyUI's models/checkpoints, or a path")
    p.add_argument("--tiny-model", action="store_true", help="the tiny random-weight model instead (tests)")
    p.add_argument("--clip", default="openai/clip-vit-large-patch14", help="CLIP for text-image scores and CLIP-I")
    p.add_argument("--dino", default="facebook/dinov2-base", help="DINOv2 for subject consistency ('' = none)")
    p.add_argument("--sets", default=str(REPO / "evaluation" / "prompt_sets.json"),
                   help="a prompt-set JSON file, or 'consistory+' for the ConsiStory+ benchmark")
    p.add_argument("--dreamsim", default=None, help="'dreamsim' (the DreamSim package) for the DreamSim column")
    p.add_argument("--limit", type=int, default=None, help="only the first N sets")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    p.add_argument("--seed", type=int, default=40)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--cfg", type=float, default=5.0)
    a = p.parse_args(argv)
    if not a.ckpt and not a.tiny_model:
        p.error("give --ckpt (or --tiny-model for a test run)")
    a.out = a.out.resolve()  # the host changes directory
    a.sets = a.sets if a.sets == "consistory+" else str(Path(a.sets).resolve())
    from consistory_run.host import absolute_if_file
    a.ckpt = absolute_if_file(a.ckpt)
    return a


def generate(host, prompt_set: dict, method: dict, a, ckpt) -> tuple:
    """(images (N, H, W, 3), masks (N, H, W)) of one set with one method."""
    from consistory_run.graphs import story_graph, with_preview
    from consistory_testing.probes import LatentCapture
    g = with_preview(story_graph(prompt_set["scenes"], subject=prompt_set["subject"], words=prompt_set["words"],
                                 style=prompt_set.get("style", "a photo of"), seed=a.seed, steps=a.steps,
                                 width=a.size, height=a.size, cfg=a.cfg, sampler="ddim", scheduler="ddim_uniform",
                                 negative="blurry, deformed, low quality", ckpt=ckpt, **method))
    del g["capture"], g["show"]
    g["images"] = {"class_type": "ConsiStoryImageCapture", "inputs": {"image": ["decode", 0], "key": "images"}}
    g["subject_masks"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "masks"}}
    LatentCapture.store.clear()
    host.run(g)
    return LatentCapture.store["images"], LatentCapture.store["masks"]


def save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image
    Image.fromarray((image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)


def main(argv=None) -> int:
    a = parse(argv)
    from consistory_testing import probes, tiny_models
    from consistory_run.host import Host
    from evaluation.metrics import Scorers
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp()) / "custom_nodes")
    host.register(probes.NODE_CLASS_MAPPINGS)
    ckpt = None if a.tiny_model else host.checkpoint(a.ckpt)
    if a.tiny_model:
        host.register(tiny_models.NODE_CLASS_MAPPINGS)
    story_prompt = sys.modules[host.nodes.NODE_CLASS_MAPPINGS["ConsiStoryStoryPrompts"].__module__].story_prompt
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorers = Scorers.load(a.clip, a.dino or None, device, a.dreamsim)
    sets = load_sets(a.sets)[:a.limit]
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in sets:
        prompts = [story_prompt(s.get("style", "a photo of"), s["subject"].splitlines(), scene) for scene in s["scenes"]]
        for method, settings in METHODS.items():
            print(f"{s['name']}: {method} ...", flush=True)
            images, masks = generate(host, s, settings, a, ckpt)
            folder = a.out / s["name"].replace(" ", "_")
            folder.mkdir(exist_ok=True)
            for i, (image, mask) in enumerate(zip(images, masks)):
                save_png(image, folder / f"{method.split()[0].lower()}_{i}.png")
                save_png(mask[..., None].expand(*mask.shape, 3), folder / f"{method.split()[0].lower()}_{i}_mask.png")
            rows.append({"set": s["name"], "method": method, "clip_score": scorers.clip_score(images, prompts),
                         **scorers.consistency(images, masks), **scorers.benchmark(images, masks, prompts)})
    summary = {m: {k: statistics.mean(r[k] for r in rows if r["method"] == m)
                   for k in rows[0] if k not in ("set", "method")} for m in METHODS}
    (a.out / "results.json").write_text(json.dumps({"settings": vars(a) | {"out": str(a.out)},
                                                    "rows": rows, "mean": summary}, indent=1, default=str) + "\n")
    table = table_markdown(rows, summary)
    (a.out / "results.md").write_text(table)
    print(table)
    plot(rows, summary, a.out / "results.png")
    return 0


def load_sets(sets: str) -> list[dict]:
    """The prompt sets of a JSON file, or of the ConsiStory+ benchmark ("consistory+")."""
    if sets == "consistory+":
        from evaluation.consistory_plus import prompt_sets
        return prompt_sets()
    return json.loads(Path(sets).read_text())["sets"]


def table_markdown(rows, summary) -> str:
    keys = [k for k in rows[0] if k not in ("set", "method")]
    lines = ["| set | method | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in rows + [{"set": "**mean**", "method": m, **v} for m, v in summary.items()]:
        lines.append(f"| {r['set']} | {r['method']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, summary, path: Path) -> None:
    """Subject consistency against prompt alignment, one point per set and method (the paper's form)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    y = "dino" if "dino" in rows[0] else "clip_i"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, colour in zip(summary, ("tab:grey", "tab:red")):
        mine = [r for r in rows if r["method"] == method]
        ax.scatter([r["clip_score"] for r in mine], [r[y] for r in mine], c=colour, alpha=0.45, label=f"{method} (sets)")
        ax.scatter([summary[method]["clip_score"]], [summary[method][y]], c=colour, s=160, marker="*",
                   edgecolors="black", label=f"{method} (mean)")
    ax.set(xlabel="prompt alignment (CLIP score)", ylabel=f"subject consistency ({'DINOv2' if y == 'dino' else 'CLIP-I'})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
