"""Does ConsiStory make the subject consistent? The paper's measurements (§5: subject
consistency against prompt alignment, plus layout diversity and mask quality) on the story
world's model, trained on this CPU (``story_world/``), where every quantity can be read
back from the images exactly:

    python -m evaluation.story_world --out story_world_eval

Every configuration samples the same prompt sets with the same seeds through the real
ComfyUI host and the pack's nodes (the graphs of ``consistory_run.graphs``). Per batch of
one set and one seed (4 images, one per scene):

- consistency: mean identity distance of the subject over the batch's pairs of images
  (0 = all alike; 1 = colour, pattern, accessory and its colour all differ); for two
  subjects, the mean over both;
- alignment: share of images whose scene and layout read back as the prompt asked;
- diversity: mean distance between two images' subject (x, y, size);
- mask IoU: the pack's subject masks (Mask Preview) against the subject region read.

Writes results.json (every batch), results.md (the table: per configuration the median
over seeds of the mean over sets, and the seeds' min..max), scatter.png (consistency
against alignment) and grid_<config>.png (one set's images per configuration).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

SEEDS = (1, 2, 3)

# (kinds, [(layout, scene) per image]). Fixed before any ConsiStory number was seen.
_SINGLE_SCENES = (
    [("", "snow"), ("left", "beach"), ("jumping", "forest"), ("right", "desert")],
    [("middle", "city"), ("", "sea"), ("close", "meadow"), ("distance", "moon")],
    [("right", "forest"), ("", "moon"), ("left", "meadow"), ("jumping", "snow")],
    [("distance", "desert"), ("middle", "beach"), ("", "city"), ("close", "sea")],
)
SINGLE_SETS = [((kind,), scenes) for kind in ("creature", "robot") for scenes in _SINGLE_SCENES]
PAIR_SETS = [(("creature", "robot"), [("", "snow"), ("jumping", "forest"), ("", "city"), ("jumping", "moon")]),
             (("robot", "creature"), [("", "beach"), ("jumping", "desert"), ("", "meadow"), ("jumping", "sea")])]

FULL = dict(blend=True, inject="fast")
CONFIGS = {  # name -> story_graph settings (anchors 2 unless given)
    "vanilla": dict(end_percent=0.0),
    "SDSA, dropout 0": dict(dropout=0.0),
    "SDSA, dropout 0.5": dict(dropout=0.5),
    "+ Query Blend": dict(blend=True),
    "+ injection, one pass": FULL,
    "+ injection, two passes": dict(blend=True, inject="exact"),
    "full, everyone shares (anchors 0)": dict(FULL, anchors=0),
    "full, reused from a saved bank": dict(FULL, reuse=True),
}
# Added after the numbers above were seen, to find why SDSA did little: masks from the
# latent/2 cross-attention layers (16 x 16 here) instead of the paper's latent/4 (8 x 8 here).
DIAGNOSTIC = {
    "diagnostic: SDSA, dropout 0, latent/2 masks": dict(dropout=0.0, mask_resolution="high (latent/2)"),
    "diagnostic: full, latent/2 masks": dict(FULL, mask_resolution="high (latent/2)"),
}
PAIR_CONFIGS = {"two subjects: vanilla": CONFIGS["vanilla"], "two subjects: full": FULL}
SAMPLING = dict(steps=20, cfg=4.0, sampler="euler", scheduler="normal", width=256, height=256,
                style="a photo of", negative="")
LOADER = {"class_type": "ConsiStoryStoryWorldCheckpoint", "inputs": {}}


def scene_lines(scenes) -> list[str]:
    """The Story Prompts scene lines ("on the left in a snowy field") of (layout, scene) pairs."""
    from story_world.world import LAYOUTS, SCENES
    return [" ".join(w for w in (LAYOUTS[layout], SCENES[scene]) if w) for layout, scene in scenes]


def prompts_of(kinds, scenes) -> list[str]:
    from story_world.world import make_prompt
    return [make_prompt(kinds, layout, scene) for layout, scene in scenes]


def _story_kwargs(kinds, seed: int, settings: dict) -> dict:
    from story_world.world import KINDS
    return dict(SAMPLING, subject="\n".join(KINDS[k] for k in kinds), words="\n".join(kinds), seed=seed,
                loader=LOADER, **{"anchors": 2, **{k: v for k, v in settings.items() if k != "reuse"}})


def _captured(g):
    """Replaces the graph's latent capture with image and mask captures."""
    from consistory_run.graphs import with_preview
    g = with_preview(g)
    for name in ("capture", "show", "pass1_capture"):
        g.pop(name, None)
    g["images"] = {"class_type": "ConsiStoryImageCapture", "inputs": {"image": ["decode", 0], "key": "images"}}
    g["subject_masks"] = {"class_type": "ConsiStoryMaskCapture", "inputs": {"mask": ["masks", 0], "key": "masks"}}
    return g


def generate(host, kinds, scenes, seed: int, settings: dict):
    """(images (4, 64, 64, 3), masks (4, h, w)) of one set, one seed, one configuration."""
    from consistory_run.graphs import make_subject_graph, reuse_subject_graph, story_graph
    from consistory_testing.probes import LatentCapture
    kw = _story_kwargs(kinds, seed, settings)
    lines = scene_lines(scenes)
    store = LatentCapture.store
    if not settings.get("reuse"):
        host.run(_captured(story_graph(lines, **kw)))
        return store["images"], store["masks"]
    anchors = kw["anchors"]
    prefix = f"story_world_eval_{'_'.join(kinds)}_{seed}"
    host.run(_captured(make_subject_graph(lines[:anchors], prefix=prefix, **kw)))
    images, masks = [store["images"]], [store["masks"]]
    bank = newest_output(host, prefix)
    host.run(_captured(reuse_subject_graph(lines[anchors:], bank, **kw)))
    import torch
    return torch.cat(images + [store["images"]]), torch.cat(masks + [store["masks"]])


def newest_output(host, prefix: str) -> str:
    """The Load Anchor Bank name ("output/<file>") of the newest bank saved under ``prefix``."""
    import folder_paths
    folder = Path(folder_paths.get_output_directory()) / "consistory_banks"
    newest = max(folder.glob(f"{prefix}_*.safetensors"), key=lambda p: p.stat().st_mtime)
    return f"output/{newest.name}"


def measure(images, masks, prompts: list[str]) -> dict:
    """The four measurements of one batch (see the module docstring)."""
    from story_world.measure import layout_diversity, mask_iou, prompt_alignment, subject_consistency
    from story_world.world import parse_prompt
    slots = range(len(parse_prompt(prompts[0])[0]))
    consistency = [subject_consistency(images, prompts, slot) for slot in slots]
    alignment = prompt_alignment(images, prompts)
    return {"consistency": float(np.nanmean([c["distance"] for c in consistency])),
            "found": float(np.mean([c["found"] for c in consistency])),
            "alignment": alignment["both"], "scene": alignment["scene"], "layout": alignment["layout"],
            "diversity": float(np.nanmean([layout_diversity(images, prompts, s)["pairwise"] for s in slots])),
            "mask_iou": float(mask_iou(masks, images, prompts).mean())}


METRICS = ("consistency", "alignment", "scene", "layout", "diversity", "mask_iou", "found")


def summarise(rows: list[dict], metrics=METRICS) -> dict:
    """config -> metric -> (median over seeds, min, max) of the per-seed mean over sets."""
    out = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        per_seed = {m: [float(np.nanmean([r[m] for r in mine if r["seed"] == s]))
                        for s in sorted({r["seed"] for r in mine})] for m in metrics}
        out[config] = {m: (statistics.median(v), min(v), max(v)) for m, v in per_seed.items()}
    return out


HEADS = {"consistency": "identity distance ↓", "alignment": "alignment ↑ (scene ∧ layout)",
         "layout": "layout read back ↑", "diversity": "layout diversity", "mask_iou": "mask IoU ↑"}


def medians(rows: list[dict], metrics=METRICS) -> dict:
    """config -> metric -> median over seeds of the per-seed mean over sets."""
    return {config: {metric: values[0] for metric, values in summary.items()}
            for config, summary in summarise(rows, metrics).items()}


def table_markdown(summary: dict, heads: dict = HEADS) -> str:
    """The table of ``heads`` (metric -> column title): median over seeds, and min..max."""
    lines = ["| configuration | " + " | ".join(heads.values()) + " |", "|---|" + "---|" * len(heads)]
    for config, values in summary.items():
        cells = [f"{values[m][0]:.3f} ({values[m][1]:.3f}–{values[m][2]:.3f})" for m in heads]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], summary: dict, path: Path, x: str = "layout") -> None:
    """Consistency (1 - identity distance) against alignment (``x``: the layout read back as
    the prompt asked; the scene reading fails on this model's colour casts): a dot per batch,
    a star per configuration (the paper's Fig. 7 form)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5))
    colours = plt.get_cmap("tab10")
    for i, (config, values) in enumerate(summary.items()):
        mine = [r for r in rows if r["config"] == config]
        jitter = np.random.default_rng(i).uniform(-0.012, 0.012, (2, len(mine)))
        ax.scatter(np.array([r[x] for r in mine]) + jitter[0],
                   1 - np.array([r["consistency"] for r in mine]) + jitter[1], s=10, alpha=0.25, color=colours(i))
        ax.scatter([values[x][0]], [1 - values["consistency"][0]], s=170, marker="*",
                   color=colours(i), edgecolors="black", label=config, zorder=3)
    ax.set(xlabel="prompt alignment (layout read back as the prompt asked)",
           ylabel="subject consistency (1 - identity distance)", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05),
           title="Story world: every batch (dots) and the median over seeds (stars)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def image_grid(images_by_config: dict, path: Path, scale: int = 2) -> None:
    """One row per configuration (its name on the left), the batch's images side by side."""
    from PIL import Image, ImageDraw
    label_width, side = 200, 64 * scale
    rows = list(images_by_config.items())
    n = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (label_width + n * side, len(rows) * side), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (config, images) in enumerate(rows):
        draw.text((6, r * side + side // 2 - 6), config, fill="black")
        for c, image in enumerate(images):
            pixels = (np.asarray(image) * 255).round().clip(0, 255).astype(np.uint8)
            canvas.paste(Image.fromarray(pixels).resize((side, side), Image.NEAREST), (label_width + c * side, r * side))
    canvas.save(path)


def start_host(quiet: bool = True):
    """The host with the pack, the capture probes and the story-world loader; banks go to a
    temporary output folder; no progress bars."""
    import contextlib
    from consistory_run.host import Host
    from consistory_run.quiet import quiet_fds
    from consistory_testing import probes
    with quiet_fds() if quiet else contextlib.nullcontext():
        host = Host.start()
        if "ConsiStoryStoryPrompts" not in host.nodes.NODE_CLASS_MAPPINGS:
            host.load_pack(Path(tempfile.mkdtemp(prefix="consistory-nodes-")) / "custom_nodes")
    host.register(probes.NODE_CLASS_MAPPINGS)
    import comfy.utils
    comfy.utils.set_progress_bar_enabled(False)
    if quiet:
        import folder_paths
        folder_paths.set_output_directory(tempfile.mkdtemp(prefix="consistory-eval-"))
    return host


def evaluate(host, sets, configs: dict, seeds, log=print):
    """(rows: one dict per set, seed and configuration; images of the first set, first seed per
    configuration)."""
    rows, first = [], {}
    for config, settings in configs.items():
        for index, (kinds, scenes) in enumerate(sets):
            for seed in seeds:
                images, masks = generate(host, kinds, scenes, seed, settings)
                row = {"config": config, "set": index, "kinds": list(kinds), "seed": seed,
                       **measure(images, masks, prompts_of(kinds, scenes))}
                rows.append(row)
                first.setdefault(config, images)
        log(f"{config}: " + ", ".join(f"{m} {float(np.nanmean([r[m] for r in rows if r['config'] == config])):.3f}"
                                      for m in METRICS))
    return rows, first


def write_outputs(out: Path, rows: list, first: dict, pair_first: dict) -> str:
    """results.json, results.md, scatter.png, grids and first_images.npz; returns the table."""
    import numpy as np
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    (out / "results.json").write_text(json.dumps({"sampling": SAMPLING, "seeds": sorted({r["seed"] for r in rows}),
                                                  "rows": rows, "summary": summary}, indent=1) + "\n")
    table = table_markdown(summary)
    (out / "results.md").write_text(table)
    single = [c for c in summary if c in CONFIGS or c in DIAGNOSTIC]
    if single:
        plot([r for r in rows if r["config"] in single], {k: summary[k] for k in single}, out / "scatter.png")
    if first:
        image_grid(first, out / "grid_single.png")
    if pair_first:
        image_grid(pair_first, out / "grid_pairs.png")
    np.savez(out / "first_images.npz", **{f"single|{k}": np.asarray(v) for k, v in first.items()},
             **{f"pairs|{k}": np.asarray(v) for k, v in pair_first.items()})
    return table


def merge(parts: list, out: Path) -> str:
    """The outputs of several runs of this script (e.g. configurations split over processes)."""
    import numpy as np
    rows, first, pair_first = [], {}, {}
    for part in parts:
        rows += json.loads((part / "results.json").read_text())["rows"]
        with np.load(part / "first_images.npz") as images:
            for key in images.files:
                kind, config = key.split("|", 1)
                (first if kind == "single" else pair_first)[config] = images[key]
    order = list(CONFIGS) + list(DIAGNOSTIC) + list(PAIR_CONFIGS)
    rows.sort(key=lambda r: order.index(r["config"]))
    first = {k: first[k] for k in order if k in first}
    pair_first = {k: pair_first[k] for k in order if k in pair_first}
    return write_outputs(out, rows, first, pair_first)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("story_world_eval"))
    p.add_argument("--sets", type=int, default=len(SINGLE_SETS), help="the first N single-subject prompt sets")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="the first N seeds")
    p.add_argument("--configs", default="", help="configuration names separated by ';' (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--weights", type=Path, default=None, help="story-world weights (default: the committed ones)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="only combine the output folders of earlier runs (e.g. configurations run in parallel)")
    a = p.parse_args(argv)
    out = a.out.expanduser().resolve()  # the host changes directory
    if a.merge:
        print(merge([m.expanduser().resolve() for m in a.merge], out))
        return 0
    import torch
    from story_world import model as world_model
    if a.weights:
        world_model.WEIGHTS = a.weights.expanduser().resolve()
    torch.set_num_threads(a.threads)
    host = start_host()
    chosen = [c.strip() for c in a.configs.split(";") if c.strip()]
    configs = {k: v for k, v in {**CONFIGS, **DIAGNOSTIC}.items() if (not chosen and k in CONFIGS) or k in chosen}
    pair_configs = {k: v for k, v in PAIR_CONFIGS.items() if not chosen or k in chosen}
    seeds = SEEDS[:a.seeds]
    rows, first = evaluate(host, SINGLE_SETS[:a.sets], configs, seeds)
    pair_rows, pair_first = evaluate(host, PAIR_SETS, pair_configs, seeds)
    print(write_outputs(out, rows + pair_rows, first, pair_first))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
