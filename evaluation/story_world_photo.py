"""Does a subject from a photo work? The paper's training-free personalization (§1, §6) on
the story world's trained model, where the photo's subject is known exactly:

    python -m evaluation.story_world_photo --out docs/story_world_eval/photo

For each single-subject prompt set of ``evaluation.story_world`` and each seed, a creature
or robot of a random look is drawn by the world's renderer ("the photo") in the two scenes
that the set does not use, on the ground at its usual size. ConsiStory Subject From Image
makes a bank of the two photos (captions: their world prompts), then Use Anchors samples
the set's four scenes with it. Per batch:

- to photo: mean identity distance of each new image's subject to the photo's true look
  (0 = the photo's look; 1 = colour, pattern, accessory and its colour all differ); for the
  generated-anchors reference, to the look read from its two generated anchors;
- consistency: mean identity distance over the new images' pairs (as the main table);
- alignment (scene and layout read back as the prompt asked), layout diversity, mask IoU.

Configurations: plain sampling (vanilla; the new images get the noise they get in the reuse
runs, numbered after two anchors), the photo bank with SDSA alone and with the full
method (Query Blend + one-pass Feature Injection, the default), the full method with the
photos' true subject masks given (the node's MASK input), and, as the reference, the full
method reusing a bank of two *generated* anchors of the photos' two scene prompts. Writes
results.json, results.md and grid.png (one set, one seed: the photos, then each
configuration's four images).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from evaluation.story_world import (FULL, LOADER, SAMPLING, SEEDS, SINGLE_SETS, _captured,  # noqa: E402
                                    _story_kwargs, image_grid, measure, newest_output, prompts_of,
                                    scene_lines, start_host, summarise, table_markdown)

PHOTO_CONFIGS = {
    "vanilla": dict(end_percent=0.0),
    "photo bank, SDSA": dict(photo=True),
    "photo bank, full method": dict(FULL, photo=True),
    "photo bank + true mask, full method": dict(FULL, photo=True, mask=True),
    "generated anchors (reference)": dict(FULL, reuse=True),
}
# Added after the numbers above were seen: the photo's patches never hidden (dropout 0).
DIAGNOSTIC = {
    "photo bank + true mask, full method, dropout 0": dict(FULL, photo=True, mask=True, dropout=0.0),
    "photo bank, full method, dropout 0": dict(FULL, photo=True, dropout=0.0),
}
METRICS = ("to_photo", "consistency", "alignment", "scene", "layout", "diversity", "mask_iou", "found")
HEADS = {"to_photo": "identity distance to the subject ↓", "consistency": "among new images ↓",
         "layout": "layout read back ↑", "scene": "scene read back ↑", "diversity": "layout diversity",
         "mask_iou": "mask IoU ↑"}


def photo_scenes(scenes) -> list[str]:
    """The two scenes a set does not use (in the world's order)."""
    from story_world.world import SCENES
    used = {scene for _, scene in scenes}
    return [s for s in SCENES if s not in used][:2]


def draw_photos(kind: str, scenes: list[str], seed: int, index: int):
    """(identity, images (2, 64, 64, 3), masks (2, 64, 64)): one random look in both scenes."""
    from story_world.render import render
    from story_world.world import random_identity, random_spec
    rng = np.random.default_rng(10_000 * seed + index)
    identity = random_identity(rng)
    drawn = [render(random_spec(rng, scene=s, layout="", kinds=(kind,), identities=(identity,))) for s in scenes]
    return identity, np.stack([d[0] for d in drawn]), np.stack([d[1][0] for d in drawn])


def write_inputs(images, masks, name: str) -> list[str]:
    """PNGs in the host's input folder for LoadImage / LoadImageMask; returns the image names."""
    import folder_paths
    from PIL import Image
    folder = Path(folder_paths.get_input_directory())
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{name}_{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / f"{name}_{i}_mask.png")
        names.append(f"{name}_{i}")
    return names


def photo_nodes(names: list[str], with_mask: bool) -> dict:
    """LoadImage x 2 -> ImageBatch (and the masks: LoadImageMask -> image -> batch -> mask)."""
    g = {f"photo_{i}": {"class_type": "LoadImage", "inputs": {"image": f"{name}.png"}} for i, name in enumerate(names)}
    g["photos"] = {"class_type": "ImageBatch", "inputs": {"image1": ["photo_0", 0], "image2": ["photo_1", 0]}}
    if with_mask:
        for i, name in enumerate(names):
            g[f"mask_{i}"] = {"class_type": "LoadImageMask", "inputs": {"image": f"{name}_mask.png", "channel": "red"}}
            g[f"mask_image_{i}"] = {"class_type": "MaskToImage", "inputs": {"mask": [f"mask_{i}", 0]}}
        g["mask_images"] = {"class_type": "ImageBatch", "inputs": {"image1": ["mask_image_0", 0],
                                                                    "image2": ["mask_image_1", 0]}}
        g["photo_masks"] = {"class_type": "ImageToMask", "inputs": {"image": ["mask_images", 0], "channel": "red"}}
    return g


def photo_reuse_graph(lines: list[str], photo_lines: list[str], names: list[str], kw: dict, with_mask: bool):
    """Subject From Image on the photos -> Use Anchors (and Bank Latent) -> the new scenes."""
    from consistory_run.graphs import photo_subject_graph
    g = _captured(photo_subject_graph(lines, ["photos", 0], captions="\n".join(photo_lines),
                                      mask=["photo_masks", 0] if with_mask else None, **kw))
    g.update(photo_nodes(names, with_mask))
    return g


def identity_distances(images, prompts, truth) -> list[float]:
    """Per image where the subject was read: its identity distance to ``truth``."""
    from story_world.measure import read_batch
    return [r[0].identity.distance(truth) for r in read_batch(images, prompts) if r]


def run_batch(host, kinds, scenes, seed: int, index: int, settings: dict):
    """(new images, masks, their distances to the subject they should show, photos) of one set, seed, config."""
    from consistory_run.graphs import make_subject_graph, reuse_subject_graph, story_graph
    from consistory_testing.probes import LatentCapture
    from story_world.measure import read_batch
    store = LatentCapture.store
    kw = _story_kwargs(kinds, seed, {k: v for k, v in settings.items() if k not in ("photo", "mask")})
    lines = scene_lines(scenes)
    prompts = prompts_of(kinds, scenes)
    places = photo_scenes(scenes)
    photo_lines = scene_lines([("", s) for s in places])
    identity, photos, masks = draw_photos(kinds[0], places, seed, index)
    if settings.get("photo"):
        given = 1 - masks if settings.get("mask") == "inverted" else masks  # a broken variant for tests
        names = write_inputs(photos, given, f"photo_{index}_{seed}")
        host.run(photo_reuse_graph(lines, photo_lines, names, kw, bool(settings.get("mask"))))
    elif settings.get("reuse"):
        prefix = f"photo_reference_{index}_{seed}"
        host.run(_captured(make_subject_graph(photo_lines, prefix=prefix, **kw)))
        anchor_prompts = prompts_of(kinds, [("", s) for s in places])
        anchors = [r[0].identity for r in read_batch(store["images"], anchor_prompts) if r]
        host.run(_captured(reuse_subject_graph(lines, newest_output(host, prefix), **kw)))
        images = store["images"]
        distances = [d for a in anchors for d in identity_distances(images, prompts, a)]
        return images, store["masks"], distances, photos
    else:  # the new images' noise as in the reuse runs: numbered after two anchors
        host.run(_captured(story_graph(photo_lines + lines, **kw)))
        images, masks = store["images"][2:], store["masks"][2:]
        return images, masks, identity_distances(images, prompts, identity), photos
    return store["images"], store["masks"], identity_distances(store["images"], prompts, identity), photos


def evaluate(host, sets, configs: dict, seeds, log=print):
    """(rows, first images per configuration, the first batch's photos)."""
    rows, first, first_photos = [], {}, None
    for config, settings in configs.items():
        for index, (kinds, scenes) in enumerate(sets):
            for seed in seeds:
                images, masks, distances, photos = run_batch(host, kinds, scenes, seed, index, settings)
                rows.append({"config": config, "set": index, "kinds": list(kinds), "seed": seed,
                             "to_photo": float(np.mean(distances)) if distances else float("nan"),
                             **measure(images, masks, prompts_of(kinds, scenes))})
                first.setdefault(config, images)
                first_photos = photos if first_photos is None else first_photos
        mine = [r for r in rows if r["config"] == config]
        log(f"{config}: " + ", ".join(f"{m} {np.nanmean([r[m] for r in mine]):.3f}" for m in METRICS))
    return rows, first, first_photos


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("story_world_eval_photo"))
    p.add_argument("--sets", type=int, default=len(SINGLE_SETS), help="the first N single-subject prompt sets")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help="the first N seeds")
    p.add_argument("--configs", default="", help="configuration names separated by ';' (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="only combine the results of earlier "
                   "runs (e.g. configurations run in parallel; the grid is the first run's)")
    a = p.parse_args(argv)
    out = a.out.expanduser().resolve()  # the host changes directory
    if a.merge:
        runs = [json.loads((m / "results.json").read_text()) for m in a.merge]
        order = list(PHOTO_CONFIGS) + list(DIAGNOSTIC)
        rows = sorted((r for run in runs for r in run["rows"]), key=lambda r: order.index(r["config"]))
        print(write_results(out, rows, sorted({s for run in runs for s in run["seeds"]})))
        import shutil
        if (a.merge[0] / "grid.png").resolve() != (out / "grid.png"):
            shutil.copy(a.merge[0] / "grid.png", out / "grid.png")
        return 0
    import tempfile
    import torch
    torch.set_num_threads(a.threads)
    host = start_host()
    import folder_paths
    folder_paths.set_input_directory(tempfile.mkdtemp(prefix="consistory-photos-"))
    chosen = [c.strip() for c in a.configs.split(";") if c.strip()]
    configs = {k: v for k, v in {**PHOTO_CONFIGS, **DIAGNOSTIC}.items()
               if (not chosen and k in PHOTO_CONFIGS) or k in chosen}
    rows, first, photos = evaluate(host, SINGLE_SETS[:a.sets], configs, SEEDS[:a.seeds])
    print(write_results(out, rows, list(SEEDS[:a.seeds])))
    image_grid({"the photos (drawn)": photos, **first}, out / "grid.png")
    print(f"wrote {out}")
    return 0


def write_results(out: Path, rows: list, seeds: list) -> str:
    """results.json and results.md; returns the table."""
    summary = summarise(rows, METRICS)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"sampling": SAMPLING, "seeds": seeds, "rows": rows,
                                                  "summary": summary}, indent=1) + "\n")
    table = table_markdown(summary, HEADS)
    (out / "results.md").write_text(table)
    return table


if __name__ == "__main__":
    sys.exit(main())
