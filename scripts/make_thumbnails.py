"""Makes example_workflows/NAME.jpg, the thumbnail ComfyUI's template browser (Workflow > Browse
Templates) shows on each example workflow's card, at most 256 px tall there:

    .venv/bin/python scripts/make_thumbnails.py                       # every workflow
    .venv/bin/python scripts/make_thumbnails.py "Reuse a saved subject"   # some (by name)

Two kinds, SIZE px square JPEGs:

- **render**: the workflow's own API graph (example_workflows/api/NAME.json), run on the default
  host in this process with the story-world model (story_world/, trained in this repository;
  64 x 64 images, 20 steps) in place of the SDXL checkpoint and the story world's subject and
  scenes in its prompts: every other node and setting is the workflow's. The images its Save
  Image nodes write make the picture. About a minute on a CPU for the six.
- **graph**: for what cannot be rendered here (SD 1.5 and Flux.1 weights, a real depth
  ControlNet): the nodes that set that workflow apart, as ComfyUI's own page draws them (the
  host's server and its web page in headless Chromium, as tests/host/test_browser.py drives
  it); the workflow is loaded, every other node is taken out and the kept ones are stacked so
  that their text stays readable at the card's size.

Reuse a saved subject is rendered with the bank that Make a subject and save it saved, so both
are made together.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))

from consistory_run import example_workflows as ex  # noqa: E402

FOLDER = REPO / "example_workflows"
SIZE = 384  # the card shows it at most 256 px tall: 1.5x for sharp screens
QUALITY = 85

# render: the story world's subject(s), subject words and scenes in place of the workflow's
CREATURE = dict(subject="a small creature", words="creature")
# scenes the 64 px model draws recognisably (it casts the beach, the sea and the desert into grey streets)
STORY_SCENES = ["on the left in a snowy field", "jumping in a forest", "on a city street", "in a meadow with flowers"]
NEW_SCENES = ["on a city street", "in a meadow with flowers", "on the right in a snowy field"]
RENDERED = {
    ex.TRY_ON_CPU: dict(subject=ex.WORLD["subject"], words=ex.WORLD["words"], scenes=ex.WORLD_SCENES),
    ex.STORY: dict(CREATURE, scenes=STORY_SCENES),
    ex.STORY_PAPER: dict(CREATURE, scenes=STORY_SCENES),
    ex.MULTI_SUBJECT: dict(subject="a small creature\na little robot", words="creature\nrobot",
                           scenes=["in a meadow with flowers", "jumping in a forest", "on a city street",
                                   "in a snowy field"]),
    ex.MAKE_SUBJECT: dict(CREATURE, scenes=STORY_SCENES[:2]),
    ex.REUSE_SUBJECT: dict(CREATURE, scenes=NEW_SCENES),
    ex.SUBJECT_FROM_PHOTO: dict(CREATURE, scenes=NEW_SCENES, photo_scene="forest"),
}
# graph: (the titles of the nodes kept, top to bottom; their width): as few as tell the workflow
# apart, so that their text stays readable on the card
GRAPH_NODES = {
    ex.STORY_SD15: (["Load Checkpoint (SD 1.5)", "Empty Latent Image"], 300),
    ex.STORY_FLUX: (["Load Diffusion Model (Flux.1 dev)", "DualCLIPLoader (CLIP-L + T5, flux)"], 300),
    ex.CONTROLNET_STORY: (["Depth image (same layout for every scene)"], 340),
}
WORLD_STEPS, WORLD_CFG, WORLD_SIZE = 20, 4.0, 256  # the story-world model's (its training size)


def font(size: int):
    return ImageFont.load_default(size=size)


def save_jpeg(image: Image.Image, name: str) -> Path:
    path = FOLDER / f"{name}.jpg"
    image.convert("RGB").save(path, "JPEG", quality=QUALITY, optimize=True, progressive=True)
    print(f"example_workflows/{name}.jpg: {image.size[0]}x{image.size[1]}, {path.stat().st_size // 1024} KB",
          flush=True)
    return path


# ---------------------------------------------------------------- render: the story-world model

def world_twin(api: dict, subject: str, words: str, scenes: list, prefix: str, photo: str | None = None,
               photo_caption: str = "", bank: str | None = None) -> dict:
    """The workflow's API graph with the story-world model and prompts; its Save Image nodes
    write under ``prefix``."""
    g = copy.deepcopy(api)
    for node in g.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            node.update(class_type="ConsiStoryStoryWorldCheckpoint", inputs={})
        elif kind == "EmptyLatentImage":
            inputs.update(width=WORLD_SIZE, height=WORLD_SIZE)
        elif kind == "KSampler":
            inputs.update(steps=WORLD_STEPS, cfg=WORLD_CFG)
        elif kind == "CLIPTextEncode":  # the negative: the world's is the empty prompt
            inputs.update(text="")
        elif kind == "ConsiStoryStoryPrompts":
            inputs.update(subject=subject, subject_words=words, scenes="\n".join(scenes), style_prefix="a photo of")
        elif kind == "ConsiStorySubjectFromImage":
            inputs.update(subject=subject, subject_words=words, captions=photo_caption, style_prefix="a photo of",
                          negative="", width=WORLD_SIZE, height=WORLD_SIZE, steps=WORLD_STEPS, cfg=WORLD_CFG)
        elif kind == "LoadImage":
            inputs.update(image=photo)
        elif kind == "ConsiStoryLoadAnchorBank":
            inputs.update(bank_name=bank)
        elif kind in ("ConsiStorySaveAnchorBank", "SaveImage"):
            inputs.update(filename_prefix=f"{prefix}_{inputs['filename_prefix']}")
        elif kind in ("CheckpointLoader", "UNETLoader", "ControlNetLoader"):
            raise ValueError(f"{kind}: no story-world stand-in")
    return g


def saved(folder: Path, prefix: str, count: int) -> list:
    """The ``count`` images a Save Image node wrote under ``prefix``, in order."""
    images = [Image.open(p).convert("RGB") for p in sorted(folder.glob(f"{prefix}_0*.png"))]
    if len(images) != count:
        raise RuntimeError(f"{len(images)} images saved under {prefix}, not {count}")
    return images


def cell(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.NEAREST)


def grid(cells: list, labels: dict | None = None) -> Image.Image:
    """Four images in two rows, SIZE px square; labels: {index: text} drawn on a cell's top left.
    A tag in the corner says which model drew them."""
    half = SIZE // 2
    sheet = Image.new("RGB", (SIZE, SIZE), (24, 24, 24))
    for i, image in enumerate(cells):
        sheet.paste(image if image.size == (half, half) else cell(image, half), ((i % 2) * half, (i // 2) * half))
    draw = ImageDraw.Draw(sheet)
    draw.line([(half, 0), (half, SIZE)], fill=(24, 24, 24), width=4)
    draw.line([(0, half), (SIZE, half)], fill=(24, 24, 24), width=4)
    for i, text in (labels or {}).items():
        label(draw, ((i % 2) * half + 6, (i // 2) * half + 6), text)
    tag = "story-world test model, 64 px"
    width = draw.textlength(tag, font=font(13))
    label(draw, (SIZE - width - 7, SIZE - 20), tag, size=13)
    return sheet


def label(draw: ImageDraw.ImageDraw, at: tuple, text: str, size: int = 17) -> None:
    box = draw.textbbox(at, text, font=font(size))
    draw.rounded_rectangle((box[0] - 5, box[1] - 4, box[2] + 5, box[3] + 4), radius=4, fill=(20, 20, 20))
    draw.text(at, text, font=font(size), fill=(240, 240, 240))


def two_in_one(images: list) -> Image.Image:
    """Two images side by side in one cell (the anchors of a bank)."""
    half = SIZE // 2
    out = Image.new("RGB", (half, half), (24, 24, 24))
    quarter = half // 2 - 2
    for i, image in enumerate(images[:2]):
        out.paste(image.resize((quarter, quarter), Image.NEAREST), (i * (quarter + 4), half // 2 - quarter // 2 + 10))
    return out


def world_photo(scene: str, seed: int = 7) -> Image.Image:
    """A photo of a small creature: drawn exactly by the story world's renderer (not sampled)."""
    from story_world.render import render
    from story_world.world import random_identity, random_spec
    rng = np.random.default_rng(seed)
    image, _ = render(random_spec(rng, scene=scene, layout="", kinds=("creature",),
                                  identities=(random_identity(rng),)))
    return Image.fromarray((image * 255).round().astype(np.uint8))


def render_thumbnails(names: list) -> None:
    from consistory_run.host import Host
    host = Host.start()
    import folder_paths
    from story_world.world import SCENES
    host.load_pack(Path(tempfile.mkdtemp(prefix="consistory-thumbnails-")) / "custom_nodes")
    work = Path(tempfile.mkdtemp(prefix="consistory-thumbnails-"))
    folder_paths.set_output_directory(str(work / "output"))
    folder_paths.set_input_directory(str(work / "input"))
    (work / "input").mkdir(parents=True)

    runs = itertools.count(1)

    def run(name: str, **extra) -> str:
        """Runs the workflow's world twin; returns its files' prefix."""
        spec = {k: v for k, v in RENDERED[name].items() if k != "photo_scene"}
        api = json.loads((FOLDER / "api" / f"{name}.json").read_text())
        prefix = f"run{next(runs)}"
        start = time.perf_counter()
        host.run(world_twin(api, prefix=prefix, **spec, **extra))
        print(f"  {name}: rendered in {time.perf_counter() - start:.0f} s", flush=True)
        return prefix

    out = work / "output"
    if ex.TRY_ON_CPU in names:  # the workflow itself (the story world): an anchor and a later scene, both ways
        prefix = run(ex.TRY_ON_CPU)
        plain, story = saved(out, f"{prefix}_plain_world", 4), saved(out, f"{prefix}_consistory_world", 4)
        save_jpeg(grid([plain[0], plain[2], story[0], story[2]], {0: "plain", 2: "ConsiStory"}), ex.TRY_ON_CPU)
    for name in [n for n in (ex.STORY, ex.STORY_PAPER, ex.MULTI_SUBJECT) if n in names]:
        prefix = run(name)
        save_jpeg(grid(saved(out, f"{prefix}_{saved_prefix(name)}", 4)), name)
    if ex.MAKE_SUBJECT in names or ex.REUSE_SUBJECT in names:
        prefix = run(ex.MAKE_SUBJECT)
        anchors = saved(out, f"{prefix}_{saved_prefix(ex.MAKE_SUBJECT)}", 2)
        masks = saved(out, f"{prefix}_{saved_prefix(ex.MAKE_SUBJECT)}_masks", 2)
        if ex.MAKE_SUBJECT in names:
            save_jpeg(grid(anchors + masks, {0: "anchor 1", 1: "anchor 2", 2: "subject mask", 3: "subject mask"}),
                      ex.MAKE_SUBJECT)
        if ex.REUSE_SUBJECT in names:
            bank = max((out / "consistory_banks").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
            prefix = run(ex.REUSE_SUBJECT, bank=f"output/{bank.name}")
            new = saved(out, f"{prefix}_{saved_prefix(ex.REUSE_SUBJECT)}", 3)
            save_jpeg(grid([two_in_one(anchors)] + new, {0: "saved subject", 1: "new"}), ex.REUSE_SUBJECT)
    if ex.SUBJECT_FROM_PHOTO in names:
        scene = RENDERED[ex.SUBJECT_FROM_PHOTO]["photo_scene"]
        photo = world_photo(scene)
        photo.save(work / "input" / "world_photo.png")
        prefix = run(ex.SUBJECT_FROM_PHOTO, photo="world_photo.png", photo_caption=SCENES[scene])
        new = saved(out, f"{prefix}_{saved_prefix(ex.SUBJECT_FROM_PHOTO)}", 3)
        save_jpeg(grid([photo] + new, {0: "photo", 1: "new"}), ex.SUBJECT_FROM_PHOTO)
    shutil.rmtree(work, ignore_errors=True)


def saved_prefix(name: str) -> str:
    """The filename_prefix of the workflow's Save Image node for its images (not the masks')."""
    api = json.loads((FOLDER / "api" / f"{name}.json").read_text())
    prefixes = [n["inputs"]["filename_prefix"] for n in api.values() if n["class_type"] == "SaveImage"]
    return min(prefixes, key=len)


# ---------------------------------------------------------------- graph: the real page

KEEP = """
const [titles, width, workflow] = arguments, done = arguments[arguments.length - 1];
const pause = ms => new Promise(r => setTimeout(r, ms));
Promise.resolve(app.loadGraphData(workflow)).then(async () => {
  const graph = app.graph;
  const kept = titles.map(t => graph._nodes.find(n => (n.title || n.type) === t));
  if (kept.some(n => !n)) return done({error: "missing " + titles.filter((t, i) => !kept[i])});
  for (const node of [...graph._nodes]) if (!kept.includes(node)) graph.remove(node);
  for (const group of [...(graph._groups || graph.groups || [])]) graph.remove(group);
  const ds = app.canvas.ds;
  const draw = async () => { app.canvas.setDirty(true, true); app.canvas.draw(true, true); await pause(700); };
  const bounds = () => kept.map(n => n.getBounding(new Float32Array(4)));
  const [gap, title] = [24, LiteGraph.NODE_TITLE_HEIGHT];
  await draw();
  await pause(1500);  // a Load Image node shows its picture
  await draw();
  let y = 0;  // each node at its smallest for its widgets (a picture's included), stacked
  for (const node of kept) {
    node.setSize([width, node.computeSize()[1]]);
    node.pos = [0, y + title];
    y += node.size[1] + title + gap;
  }
  y -= gap;
  ds.scale = 1.0;
  const canvas = app.canvas.canvas;
  ds.offset = [(canvas.clientWidth - width) / 2, (canvas.clientHeight - y) / 2];
  await draw();
  const boxes = bounds();
  const [x0, y0] = [Math.min(...boxes.map(b => b[0])), Math.min(...boxes.map(b => b[1]))];
  const [x1, y1] = [Math.max(...boxes.map(b => b[0] + b[2])), Math.max(...boxes.map(b => b[1] + b[3]))];
  const rect = app.canvas.canvas.getBoundingClientRect();
  const page = ([x, y]) => [rect.left + (x + ds.offset[0]) * ds.scale, rect.top + (y + ds.offset[1]) * ds.scale];
  const [[left, top], [right, bottom]] = [page([x0, y0]), page([x1, y1])];
  done({x: left, y: top, w: right - left, h: bottom - top, dpr: window.devicePixelRatio});
}).catch(e => done({error: String(e)}));
"""


def graph_thumbnails(names: list) -> None:
    from io import BytesIO
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from consistory_testing.server import running_server
    base = Path(tempfile.mkdtemp(prefix="consistory-thumbnails-page-"))
    (base / "input").mkdir(parents=True)
    for image in (FOLDER / "input").glob("*.png"):  # Load Image shows the sample depth map
        shutil.copyfile(image, base / "input" / image.name)
    with running_server(base, start_timeout=600) as url:
        for setting, value in (("Comfy.TutorialCompleted", b"true"), ("Comfy.Minimap.Visible", b"false")):
            request = urllib.request.Request(f"{url}/settings/{setting}", value, {"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=30).close()
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1100,1100", "--force-device-scale-factor=2", f"--user-data-dir={base / 'chromium'}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.set_script_timeout(60)
            driver.get(url)
            deadline = time.monotonic() + 300
            while not driver.execute_script("return !!(window.app && window.app.graph && window.LiteGraph)"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the ComfyUI page did not start")
                time.sleep(0.5)
            time.sleep(2)
            for name in names:
                workflow = json.loads((FOLDER / f"{name}.json").read_text())
                titles, width = GRAPH_NODES[name]
                box = driver.execute_async_script(KEEP, titles, width, workflow)
                if "error" in box:
                    raise RuntimeError(f"{name}: {box['error']}")
                time.sleep(1)
                shot = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
                save_jpeg(square_crop(shot, box), name)
        finally:
            driver.quit()
    shutil.rmtree(base, ignore_errors=True)


def square_crop(shot: Image.Image, box: dict, margin: int = 20) -> Image.Image:
    """The box (CSS pixels) with a margin, widened to a square of the canvas around it, SIZE px."""
    d = box["dpr"]
    x0, y0 = (box["x"] - margin) * d, (box["y"] - margin) * d
    x1, y1 = (box["x"] + box["w"] + margin) * d, (box["y"] + box["h"] + margin) * d
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    square = shot.crop(tuple(round(v) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)))
    return square.resize((SIZE, SIZE), Image.LANCZOS)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="workflow names (default: all)")
    a = p.parse_args(argv)
    names = a.names or list(ex.WORKFLOWS)
    unknown = [n for n in names if n not in ex.WORKFLOWS]
    if unknown:
        raise SystemExit(f"no such workflow: {unknown}; the names are {list(ex.WORKFLOWS)}")
    if set(RENDERED) | set(GRAPH_NODES) != set(ex.WORKFLOWS):
        raise SystemExit("every workflow needs a thumbnail kind (RENDERED or GRAPH_NODES)")
    from consistory_run.host import DEFAULT_HOST, host_name
    if host_name() != DEFAULT_HOST:
        raise SystemExit(f"thumbnails are made on the default host ({DEFAULT_HOST}); unset CONSISTORY_HOST "
                         "and COMFYUI_PATH")
    rendered = [n for n in names if n in RENDERED]
    if rendered:
        render_thumbnails(rendered)
    drawn = [n for n in names if n in GRAPH_NODES]
    if drawn:
        graph_thumbnails(drawn)


if __name__ == "__main__":
    main()
