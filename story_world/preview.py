"""A grid of samples from story-world weights: ``python -m story_world.preview --out grid.png``.

Rows: the scenes; columns: single-subject layouts for both kinds, then the two-subject
prompts. Every image has its own noise (one batch per row, seed = row).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

COLUMNS = [(("creature",), ""), (("creature",), "left"), (("robot",), "right"), (("creature",), "jumping"),
           (("robot",), "distance"), (("creature",), "close"), (("robot",), ""), (("creature", "robot"), "")]


def grid(model, clip, steps: int = 20, cfg: float = 4.0, scale: int = 3) -> np.ndarray:
    """(rows * 64 * scale, columns * 64 * scale, 3) uint8 grid of samples."""
    from .sampling import sample_images
    from .world import SCENES, make_prompt
    rows = []
    for i, scene in enumerate(SCENES):
        prompts = [make_prompt(kinds, layout, scene) for kinds, layout in COLUMNS]
        images = sample_images(model, clip, prompts, seed=i, steps=steps, cfg=cfg).numpy()
        rows.append(np.concatenate(list(images), axis=1))
    out = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    return out.repeat(scale, 0).repeat(scale, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is safe on a busy machine)")
    args = p.parse_args(argv)
    out = args.out.expanduser().resolve()
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:
        sys.path.append(repo)
    import torch
    from consistory_run.host import Host
    from PIL import Image
    from .model import WEIGHTS, load_story_world
    weights = (args.weights or WEIGHTS).expanduser().resolve()
    Host.start()
    torch.set_num_threads(args.threads)
    model, clip = load_story_world(weights)
    Image.fromarray(grid(model, clip, args.steps, args.cfg)).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
