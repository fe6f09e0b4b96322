"""Generate a consistent story headless: python -m consistory_run --out DIR [options].

Runs the pack's nodes through a real ComfyUI host in this process and writes the images
and the subject-mask overlays as PNG files. With --ckpt it loads a checkpoint with the
stock loader (from COMFYUI_PATH's models/checkpoints, or a file path). Without it, the
story-world model trained in this repository (a small creature or robot in 8 scenes;
64 x 64 images) draws the story, and the same story sampled plainly is written beside it,
so the subject's change from image to image and its consistency with ConsiStory can be
compared on any machine; --tiny uses a random-weight SDXL-shaped model instead (a pipeline
check at any size).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from .example_workflows import WORLD
from .graphs import story_graph, with_saved_images


def plain_graph(scenes, settings: dict) -> dict:
    """The same prompts, seed and sampler without ConsiStory, saved as plain_*.png."""
    g = story_graph(scenes, **dict(settings, sdsa=False, blend=False, inject=None))
    del g["capture"]
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}}
    g["save_plain"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "plain"}}
    return g


class _Help(argparse.HelpFormatter):
    """Each option's default after its help, where it has one and the help does not say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, argparse.SUPPRESS, True, False) and "default" not in text:
            text += " (default: %(default)s)"
        return text


SCENES = ["walking in a park", "reading a book in a library", "cooking in a kitchen", "sitting on a bench by the sea"]
SUBJECT = "an old man with a hat"
WORLD_SCENES = WORLD["scenes"]  # the story-world story: the same as its template's
WORLD_SUBJECT = WORLD["subject"]
WORLD_SIZE = WORLD["width"]  # the story-world model's training size in the host's terms: 32 x 32 latents
WORLD_PIXELS = 64  # what its latent map decodes those latents to: the images it writes are 64 x 64
# CPU threads for torch when neither --threads nor OMP_NUM_THREADS says (0: torch's own
# choice, one per core). The small models get one: on a shared 2-core machine their runs took
# 3 to 5 times as long with torch's choice, as their many small operations wait for each
# other's threads, while on an idle one a second thread saved a fifth of the run
# (benchmarks/cli_threads.py, README "Headless runs"). A full-size checkpoint keeps torch's
# choice: its large matrix products are what more cores speed up (not measured here: no such
# weights), and the CPU hint names --threads 1 for a shared machine.
DEFAULT_THREADS = {"world": 1, "tiny": 1, "ckpt": 0}
# per model: (width/height, steps, cfg, negative)
DEFAULTS = {"ckpt": (1024, 50, 5.0, "blurry, deformed"),
            "world": (WORLD_SIZE, WORLD["steps"], WORLD["cfg"], WORLD["negative"]),  # its template's
            "tiny": (256, 8, 5.0, "blurry, deformed")}


class _Parser(argparse.ArgumentParser):
    """A bad value is one line of error (the usage block only with --help)."""

    def error(self, message):
        self.exit(2, f"error: {message} (--help lists the options)\n")


def parse(argv=None):
    p = _Parser(prog="python -m consistory_run", description=__doc__.splitlines()[0], formatter_class=_Help)
    p.add_argument("--out", type=Path, default=Path("outputs/story"), help="folder for the PNG files")
    p.add_argument("--subject", action="append", dest="subjects",
                   help="the subject every image shows; repeat for several subjects "
                        f"(default: '{SUBJECT}'; '{WORLD_SUBJECT}' with the story-world model)")
    p.add_argument("--words", action="append",
                   help="comma-separated subject words, one --words per --subject "
                        "(default: automatic, the head nouns: 'an old man with a hat' -> man, hat)")
    p.add_argument("--scene", action="append", dest="scenes",
                   help=f"a scene, repeat for each image (default: {SCENES}; with the story-world model "
                        f"{WORLD_SCENES})")
    p.add_argument("--style", default="a photo of", help="text put before the subject in every prompt")
    p.add_argument("--negative", default=None, help="negative prompt; 'blurry, deformed', empty with the story-world model")
    p.add_argument("--seed", type=int, default=40, help="noise seed")
    p.add_argument("--width", type=int, default=None, help="image width in pixels; 1024 with --ckpt, 256 with --tiny; "
                                                            f"the story-world model draws {WORLD_PIXELS} only")
    p.add_argument("--height", type=int, default=None, help="image height in pixels; 1024 with --ckpt, 256 with "
                                                             f"--tiny; the story-world model draws {WORLD_PIXELS} only")
    p.add_argument("--steps", type=int, default=None, help="sampler steps; 50 with --ckpt, 20 with the story-world "
                                                             "model, 8 with --tiny")
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale; 5, 4 with the "
                                                            "story-world model")
    p.add_argument("--sampler", default="ddim", help="a ComfyUI sampler name")
    p.add_argument("--scheduler", default="ddim_uniform", help="a ComfyUI scheduler name")
    p.add_argument("--dropout", type=float, default=0.5, help="SDSA dropout of other images' subject patches")
    p.add_argument("--anchors", type=int, default=None,
                   help="the first N images are the anchors the others see; 0 = every image shares "
                        "(default: the paper's 2 with more than 2 scenes, else 0)")
    p.add_argument("--no-blend", dest="blend", action="store_false", help="without ConsiStory Query Blend")
    p.add_argument("--no-inject", dest="inject", action="store_false",
                   help="without ConsiStory Feature Injection (one pass)")
    p.add_argument("--ckpt", default=None, help="checkpoint: a name in ComfyUI's models/checkpoints or a file path "
                                                "(default: the story-world model trained in this repository)")
    p.add_argument("--tiny", action="store_true", help="a tiny random-weight SDXL-shaped model instead of the "
                                                       "story-world model: checks the pipeline at any size")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch; 0 = torch's own choice, one per core (default: OMP_NUM_THREADS "
                        "if set, else 1 for the story-world model and --tiny, where one thread is fastest, "
                        "and 0 with --ckpt)")
    a = p.parse_args(argv)
    if a.ckpt is not None and a.tiny:
        p.error("give --ckpt or --tiny, not both")
    a.model = "ckpt" if a.ckpt is not None else "tiny" if a.tiny else "world"
    world = a.model == "world"
    size, steps, cfg, negative = DEFAULTS[a.model]
    a.subjects = a.subjects or [WORLD_SUBJECT if world else SUBJECT]
    a.scenes = a.scenes or (WORLD_SCENES if world else SCENES)
    a.steps = a.steps if a.steps is not None else steps
    a.cfg = a.cfg if a.cfg is not None else cfg
    a.negative = a.negative if a.negative is not None else negative
    problem = check(a)
    if a.anchors is None:
        a.anchors = 2 if len(a.scenes) > 2 else 0
    if world:  # its one size, given as the images' pixels (64) or the host's latent size (256)
        a.width = a.height = WORLD_SIZE
    a.width, a.height = a.width or size, a.height or size
    if problem:
        p.error(problem)
    return a


def check(a) -> str | None:
    """What is wrong with the options, in one line, before the host starts (None if nothing)."""
    if a.words and len(a.words) != len(a.subjects):
        return f"{len(a.subjects)} --subject but {len(a.words)} --words: give one --words per --subject, or none"
    if not 0 <= a.dropout <= 1:
        return f"--dropout {a.dropout} is outside 0..1"
    if a.anchors is not None and (a.anchors < 0 or a.anchors > len(a.scenes)):
        return f"--anchors {a.anchors} but {len(a.scenes)} scenes: use 0 (all share) up to the number of scenes"
    for name in ("width", "height"):
        value = getattr(a, name)
        if value is not None and (value < 64 or value % 8):
            return f"--{name} {value} must be a multiple of 8, at least 64"
    if a.model == "world" and {a.width, a.height} - {None, WORLD_PIXELS, WORLD_SIZE}:
        return (f"the story-world model draws {WORLD_PIXELS}x{WORLD_PIXELS} images only (its training size); "
                "leave out --width/--height, or pass --ckpt or --tiny for other sizes")
    if a.steps < 1:
        return f"--steps {a.steps} must be at least 1"
    if a.cfg < 0:
        return f"--cfg {a.cfg} must not be negative"
    if a.threads is not None and a.threads < 0:
        return f"--threads {a.threads} must be 0 (torch's own choice) or more"
    return None


def pixel_size(a) -> tuple:
    """(width, height) of the images the run writes."""
    return (WORLD_PIXELS, WORLD_PIXELS) if a.model == "world" else (a.width, a.height)


def thread_count(flag, model: str, environ=os.environ) -> tuple:
    """(threads, where the number comes from): --threads, else OMP_NUM_THREADS, else the
    model's DEFAULT_THREADS."""
    if flag is not None:
        return flag, "--threads"
    value = environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value), "OMP_NUM_THREADS"
    return DEFAULT_THREADS[model], "the default" if DEFAULT_THREADS[model] else "torch's choice, the default"


def use_threads(threads: int) -> int:
    """Makes torch compute with ``threads`` CPU threads (0: torch's own choice, one per core);
    returns the number it uses. Called before torch is imported, so its OpenMP pool starts
    with that number too."""
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    else:
        os.environ.pop("OMP_NUM_THREADS", None)
    import torch
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def faster_hint(a, threads: int) -> str:
    """What makes a long CPU run faster, naming only values the chosen model accepts."""
    options = []
    if a.model != "world" and a.width * a.height > 512 * 512:
        options.append("--width 512 --height 512")
    fewer = 20 if a.model == "ckpt" else 10
    if a.steps > fewer:
        options.append(f"--steps {fewer}")
    ideas = ["a GPU"] + ([" ".join(options)] if options else [])
    if a.model != "ckpt" and threads != 1:
        ideas.append("--threads 1")  # the small models' fastest (benchmarks/cli_threads.py)
    elif a.model == "ckpt" and threads == 1 and cores() > 1:
        ideas.append(f"--threads {cores()} where nothing else runs")
    elif a.model == "ckpt" and threads > 1:
        ideas.append("--threads 1 where other work shares the CPU")
    return f" (on the CPU: {', or '.join(ideas)}, is faster)"


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be what the runner loads, read from its header alone; None
    where it may be one (only safetensors files are read here; others are left to the loader).
    The runner needs a whole checkpoint: the diffusion model (the host loads it from keys under
    model.diffusion_model.), its text encoder(s) and its VAE, in one file."""
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return None
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:
        return (f"{' '.join(str(e).split())} (the file has {path.stat().st_size} bytes: not safetensors, or a "
                "download that did not finish)")
    if sum(key.startswith("model.diffusion_model.") for key in keys) <= 5:
        return (f"it holds {len(keys)} tensors but no diffusion model (no keys under model.diffusion_model.): a LoRA, "
                "VAE, text encoder, diffusion-model-only file or anchor bank is no checkpoint")
    return None


def loader_problem(e, links: dict) -> str:
    """The stock loader's failure, as the reason a file is no checkpoint (the host's temporary
    link to the file replaced by the file's own path)."""
    message = e.exception_message or str(e)
    for link, path in links.items():
        message = message.replace(link, path)
    if e.exception_type and e.exception_type.endswith("KeyError"):
        return f"the loader found no tensor {message} in it"
    return f"{e.exception_type or 'error'}: {message}"


WHAT_A_CHECKPOINT_IS = "; give a whole checkpoint (model, text encoder and VAE in one file, e.g. sd_xl_base_1.0.safetensors)"


def new_run_folder(out: Path) -> tuple:
    """out/run_001, run_002, ...: the first that does not exist yet (each run its own folder);
    and the folders made for it, innermost first."""
    made = [parent for parent in [out, *out.parents] if not parent.exists()]
    out.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[4:]) for p in out.glob("run_*") if p.name[4:].isdigit()]
    folder = out / f"run_{max(taken, default=0) + 1:03d}"
    folder.mkdir()
    return folder, [folder, *made]


def slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:48]


def name_by_scene(folder: Path, scenes: list) -> list:
    """Renames the SaveImage files of a run folder to NN_scene.png, NN_scene_mask.png and
    (plain sampling) NN_scene_plain.png."""
    names = []
    for prefix, suffix in (("story_masks_", "_mask"), ("story_", ""), ("plain_", "_plain")):
        for i, path in enumerate(sorted(folder.glob(f"{prefix}0*.png"))):
            name = f"{i + 1:02d}_{slug(scenes[i])}{suffix}.png"
            path.rename(folder / name)
            names.append(name)
    return sorted(names)


def comparison_sheet(folder: Path, scenes: list, path: Path) -> None:
    """plain (top row) over ConsiStory (bottom row), enlarged to at least 256 pixels a side."""
    from PIL import Image, ImageDraw
    rows = [[Image.open(folder / f"{i + 1:02d}_{slug(s)}{suffix}.png").convert("RGB") for i, s in enumerate(scenes)]
            for suffix in ("_plain", "")]
    w, h = rows[0][0].size
    scale = max(1, 256 // min(w, h))
    w, h, label = w * scale, h * scale, 22
    sheet = Image.new("RGB", (w * len(scenes), 2 * (h + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, images) in enumerate(zip(("plain sampling: each image draws its own subject",
                                             "ConsiStory, same seed: the subject of the anchors shared"), rows)):
        top = r * (h + label)
        draw.text((6, top + 5), title, fill="black")
        for c, image in enumerate(images):
            sheet.paste(image.resize((w, h), Image.NEAREST), (c * w, top + label))
    sheet.save(path)


def main(argv=None) -> int:
    a = parse(argv)
    threads, source = thread_count(a.threads, a.model)
    threads = use_threads(threads)  # before the host imports torch's modules
    from .host import absolute_if_file, comfyui_path
    a.ckpt = absolute_if_file(a.ckpt)  # before the host changes directory
    if a.ckpt is not None:
        path = Path(a.ckpt) if Path(a.ckpt).is_file() else comfyui_path() / "models" / "checkpoints" / a.ckpt
        if not path.is_file():
            print(f"error: checkpoint not found: {a.ckpt}; looked in {Path.cwd()} and {path.parent}; pass a path "
                  "or set COMFYUI_PATH to the ComfyUI that has it", file=sys.stderr)
            return 2
        problem = checkpoint_problem(path)
        if problem:
            print(f"error: {a.ckpt} is not a checkpoint ComfyUI can read: {problem}{WHAT_A_CHECKPOINT_IS}",
                  file=sys.stderr)
            return 2
    if a.model == "world":
        from story_world.model import WEIGHTS
        if not WEIGHTS.is_file():
            print(f"error: the story-world weights are missing: {WEIGHTS}; restore them from git or train them "
                  "(python -m story_world.train --out ...), or pass --ckpt / --tiny", file=sys.stderr)
            return 2
    out, made = new_run_folder(a.out.resolve())
    failed = True
    try:
        code = run(a, out, threads, source)
        failed = code != 0
        return code
    finally:
        if failed:  # a run that wrote nothing leaves no folder behind
            for folder in made:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()


def run(a, out: Path, threads: int, source: str) -> int:
    scenes, width, height, steps = a.scenes, a.width, a.height, a.steps
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
    device = str(comfy.model_management.get_torch_device())
    print(f"      {host_output_summary(said, device)}", flush=True)
    print(f"      torch computes with {threads} CPU thread{'s' if threads != 1 else ''} ({source}; --threads N "
          "changes it)", flush=True)
    import folder_paths
    folder_paths.set_output_directory(str(out))
    ckpt = host.checkpoint(a.ckpt) if a.model == "ckpt" else None
    loader = None
    if a.model == "tiny":
        from consistory_testing import tiny_models
        host.register(tiny_models.NODE_CLASS_MAPPINGS)
        print("      --tiny: a tiny SDXL-shaped model with random weights; the images "
              "show that the pipeline runs, not what SDXL would draw", flush=True)
    elif a.model == "world":
        loader = {"class_type": "ConsiStoryStoryWorldCheckpoint", "inputs": {}}  # the pack's own loader node
        print("      no --ckpt: the story-world model trained in this repository (a small creature or a "
              "little robot in 8 scenes); the same story is also sampled plainly", flush=True)

    settings = dict(anchors=a.anchors, seed=a.seed, steps=steps, width=width, height=height,
                    subject="\n".join(a.subjects), words="\n".join(a.words or []), cfg=a.cfg, ckpt=ckpt,
                    loader=loader, sampler=a.sampler, scheduler=a.scheduler, dropout=a.dropout, style=a.style,
                    negative=a.negative, blend=a.blend, inject="fast" if a.inject else None)
    graph = with_saved_images(story_graph(scenes, **settings))
    del graph["capture"]
    plain = a.model == "world"
    pixels = "x".join(map(str, pixel_size(a)))
    print(f"[2/3] sampling {len(scenes)} images{' (and plainly)' if plain else ''} of {pixels} px, {steps} "
          f"steps ({a.sampler}/{a.scheduler}, cfg {a.cfg}) ...", flush=True)
    start = time.perf_counter()
    from .estimate import StepEstimate
    from .quiet import node_errors_once
    import comfy.utils
    on_cpu = device == "cpu"
    note = ""
    if a.model == "ckpt" and on_cpu and width * height * steps >= 1024 * 1024 * 20:
        note = (f"      note: a full-size checkpoint at {width}x{height} with {steps} steps on the CPU takes a long "
                "time (minutes per step); an estimate follows the second step")
    comfy.utils.set_progress_bar_global_hook(StepEstimate(
        more_steps=steps if plain else 0, hint=faster_hint(a, threads) if on_cpu else "", note=note))
    try:
        with node_errors_once():
            host.run(graph)
            if plain:
                host.run(plain_graph(scenes, settings))
    except GraphError as e:
        if a.model == "ckpt" and e.node_type == "CheckpointLoaderSimple":
            print(f"error: {a.ckpt} is not a checkpoint ComfyUI can read: {loader_problem(e, host.linked)}"
                  f"{WHAT_A_CHECKPOINT_IS}", file=sys.stderr)
        else:
            print(f"error: {e}", file=sys.stderr)
        return 1
    files = name_by_scene(out, scenes)
    if plain:
        comparison_sheet(out, scenes, out / "story_vs_plain.png")
        files.append("story_vs_plain.png")
    from PIL import Image
    written = "x".join(map(str, Image.open(out / files[0]).size))
    print(f"[3/3] done in {time.perf_counter() - start:.1f} s: {len(files)} files in {out} ({written} px images)",
          flush=True)
    for name in files:
        print(f"      {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
