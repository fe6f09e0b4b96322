"""Generate a consistent story headless: python -m consistory_run --out DIR [options].

Runs the pack's nodes through a real ComfyUI host in this process and writes the images
and the subject-mask overlays as PNG files. With --ckpt it loads an SDXL checkpoint with
the stock loader (from COMFYUI_PATH's models/checkpoints, or a file path); without it, a
tiny random-weight SDXL-shaped model, so the pipeline runs on any machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .graphs import story_graph, with_saved_images


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m consistory_run", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("outputs/story"), help="folder for the PNG files")
    p.add_argument("--subject", default="an old man with a hat")
    p.add_argument("--words", default="man, hat", help="comma-separated subject words ('' = automatic)")
    p.add_argument("--scene", action="append", dest="scenes", help="a scene (repeat for each image)")
    p.add_argument("--style", default="a photo of")
    p.add_argument("--negative", default="blurry, deformed")
    p.add_argument("--seed", type=int, default=40)
    p.add_argument("--width", type=int, default=None, help="default 1024 with --ckpt, 256 without")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="default 50 with --ckpt, 8 without")
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--scheduler", default="ddim_uniform")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--anchors", type=int, default=2,
                   help="the paper's 2: the first 2 images are the anchors the others see; 0 = every image shares")
    p.add_argument("--ckpt", default=None, help="SDXL checkpoint: a name in models/checkpoints or a path")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    from .host import absolute_if_file
    a.ckpt = absolute_if_file(a.ckpt)  # before the host changes directory
    scenes = a.scenes or ["walking in a park", "reading a book in a library",
                          "cooking in a kitchen", "sitting on a bench by the sea"]
    real = a.ckpt is not None
    width, height = a.width or (1024 if real else 256), a.height or (1024 if real else 256)
    steps = a.steps or (50 if real else 8)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    print("[1/3] starting the ComfyUI host ...", flush=True)
    from .host import GraphError, Host
    host = Host.start()
    host.load_pack(Path(tempfile.mkdtemp(prefix="consistory-nodes-")))  # no link inside the user's folders
    import folder_paths
    folder_paths.set_output_directory(str(out))
    ckpt = host.checkpoint(a.ckpt) if real else None
    if not real:
        from consistory_testing import tiny_models
        host.register(tiny_models.NODE_CLASS_MAPPINGS)
        print("      no --ckpt: using a tiny SDXL-shaped model with random weights; the images "
              "show that the pipeline runs, not what SDXL would draw", flush=True)

    graph = with_saved_images(story_graph(
        scenes, anchors=a.anchors, seed=a.seed, steps=steps, width=width, height=height,
        subject=a.subject, words=a.words, cfg=a.cfg, ckpt=ckpt, sampler=a.sampler,
        scheduler=a.scheduler, dropout=a.dropout, style=a.style, negative=a.negative))
    del graph["capture"]
    print(f"[2/3] sampling {len(scenes)} images, {width}x{height}, {steps} steps "
          f"({a.sampler}/{a.scheduler}, cfg {a.cfg}) ...", flush=True)
    start = time.perf_counter()
    try:
        host.run(graph)
    except GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    files = sorted(p.name for p in out.glob("story*.png"))
    print(f"[3/3] done in {time.perf_counter() - start:.1f} s: {len(files)} files in {out}", flush=True)
    for name in files:
        print(f"      {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
