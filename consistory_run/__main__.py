"""Generate a consistent story headless: python -m consistory_run --out DIR [options].

Runs the pack's nodes through a real ComfyUI host in this process and writes the images
and the subject-mask overlays as PNG files. With --ckpt it loads a checkpoint with
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


class _Help(argparse.HelpFormatter):
    """Each option's default after its help, where it has one and the help does not say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, argparse.SUPPRESS, True, False) and "default" not in text:
            text += " (default: %(default)s)"
        return text


SCENES = ["walking in a park", "reading a book in a library", "cooking in a kitchen", "sitting on a bench by the sea"]


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m consistory_run", description=__doc__.splitlines()[0],
                                formatter_class=_Help)
    p.add_argument("--out", type=Path, default=Path("outputs/story"), help="folder for the PNG files")
    p.add_argument("--subject", action="append", dest="subjects",
                   help="the subject every image shows; repeat for several subjects "
                        "(default: 'an old man with a hat')")
    p.add_argument("--words", action="append",
                   help="comma-separated subject words, one --words per --subject "
                        "(default: automatic, the head nouns: 'an old man with a hat' -> man, hat)")
    p.add_argument("--scene", action="append", dest="scenes", help=f"a scene, repeat for each image (default: {SCENES})")
    p.add_argument("--style", default="a photo of", help="text put before the subject in every prompt")
    p.add_argument("--negative", default="blurry, deformed", help="negative prompt")
    p.add_argument("--seed", type=int, default=40, help="noise seed")
    p.add_argument("--width", type=int, default=None, help="image width; 1024 with --ckpt, 256 without")
    p.add_argument("--height", type=int, default=None, help="image height; 1024 with --ckpt, 256 without")
    p.add_argument("--steps", type=int, default=None, help="sampler steps; 50 with --ckpt, 8 without")
    p.add_argument("--cfg", type=float, default=5.0, help="classifier-free guidance scale")
    p.add_argument("--sampler", default="ddim", help="a ComfyUI sampler name")
    p.add_argument("--scheduler", default="ddim_uniform", help="a ComfyUI scheduler name")
    p.add_argument("--dropout", type=float, default=0.5, help="SDSA dropout of other images' subject patches")
    p.add_argument("--anchors", type=int, default=2,
                   help="the paper's 2: the first 2 images are the anchors the others see; 0 = every image shares")
    p.add_argument("--no-blend", dest="blend", action="store_false", help="without ConsiStory Query Blend")
    p.add_argument("--no-inject", dest="inject", action="store_false",
                   help="without ConsiStory Feature Injection (one pass)")
    p.add_argument("--ckpt", default=None, help="checkpoint: a name in ComfyUI's models/checkpoints or a file path "
                                                "(default: a tiny random-weight model)")
    a = p.parse_args(argv)
    a.subjects = a.subjects or ["an old man with a hat"]
    a.scenes = a.scenes or SCENES
    problem = check(a)
    if problem:
        p.error(problem)
    return a


def check(a) -> str | None:
    """What is wrong with the options, in one line, before the host starts (None if nothing)."""
    if a.words and len(a.words) != len(a.subjects):
        return f"{len(a.subjects)} --subject but {len(a.words)} --words: give one --words per --subject, or none"
    if not 0 <= a.dropout <= 1:
        return f"--dropout {a.dropout} is outside 0..1"
    if a.anchors < 0 or a.anchors > len(a.scenes):
        return f"--anchors {a.anchors} but {len(a.scenes)} scenes: use 0 (all share) up to the number of scenes"
    for name in ("width", "height"):
        value = getattr(a, name)
        if value is not None and (value < 64 or value % 8):
            return f"--{name} {value} must be a multiple of 8, at least 64"
    if a.steps is not None and a.steps < 1:
        return f"--steps {a.steps} must be at least 1"
    if a.cfg < 0:
        return f"--cfg {a.cfg} must not be negative"
    return None


def new_run_folder(out: Path) -> Path:
    """out/run_001, run_002, ...: the first that does not exist yet (each run its own folder)."""
    out.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[4:]) for p in out.glob("run_*") if p.name[4:].isdigit()]
    folder = out / f"run_{max(taken, default=0) + 1:03d}"
    folder.mkdir()
    return folder


def slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:48]


def name_by_scene(folder: Path, scenes: list) -> list:
    """Renames the SaveImage files of a run folder to NN_scene.png and NN_scene_mask.png."""
    names = []
    for prefix, suffix in (("story_masks_", "_mask"), ("story_", "")):
        for i, path in enumerate(sorted(folder.glob(f"{prefix}0*.png"))):
            name = f"{i + 1:02d}_{slug(scenes[i])}{suffix}.png"
            path.rename(folder / name)
            names.append(name)
    return sorted(names)


def main(argv=None) -> int:
    a = parse(argv)
    from .host import absolute_if_file, comfyui_path
    a.ckpt = absolute_if_file(a.ckpt)  # before the host changes directory
    if a.ckpt is not None and not Path(a.ckpt).is_file():
        looked = comfyui_path() / "models" / "checkpoints"
        if not (looked / a.ckpt).is_file():
            print(f"error: checkpoint not found: {a.ckpt}; looked in {Path.cwd()} and {looked}; pass a path "
                  "or set COMFYUI_PATH to the ComfyUI that has it", file=sys.stderr)
            return 2
    scenes = a.scenes
    real = a.ckpt is not None
    width, height = a.width or (1024 if real else 256), a.height or (1024 if real else 256)
    steps = a.steps or (50 if real else 8)
    out = new_run_folder(a.out.resolve())

    print("[1/3] starting the ComfyUI host ...", flush=True)
    from .host import GraphError, Host
    from .quiet import host_output_summary, quiet_fds
    with quiet_fds() as captured:
        try:
            host = Host.start()
            host.load_pack(Path(tempfile.mkdtemp(prefix="consistory-nodes-")))  # no link in the user's folders
            failure = None
        except Exception as e:
            failure = e
        said = captured.read()
    if failure is not None:
        print(said, file=sys.stderr)
        raise failure
    import comfy.model_management
    print(f"      {host_output_summary(said, str(comfy.model_management.get_torch_device()))}", flush=True)
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
        subject="\n".join(a.subjects), words="\n".join(a.words or []), cfg=a.cfg, ckpt=ckpt,
        sampler=a.sampler, scheduler=a.scheduler, dropout=a.dropout, style=a.style, negative=a.negative,
        blend=a.blend, inject="fast" if a.inject else None))
    del graph["capture"]
    print(f"[2/3] sampling {len(scenes)} images, {width}x{height}, {steps} steps "
          f"({a.sampler}/{a.scheduler}, cfg {a.cfg}) ...", flush=True)
    start = time.perf_counter()
    try:
        host.run(graph)
    except GraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    files = name_by_scene(out, scenes)
    print(f"[3/3] done in {time.perf_counter() - start:.1f} s: {len(files)} files in {out}", flush=True)
    for name in files:
        print(f"      {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
