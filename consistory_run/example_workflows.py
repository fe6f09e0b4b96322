"""The example workflows shipped in workflows/: each built as an API graph from the same
builder the tests use, with the settings of the paper at SDXL's size."""
from __future__ import annotations

from .graphs import story_graph, with_saved_images

CHECKPOINT = "sd_xl_base_1.0.safetensors"
SCENES = ["walking in a park", "reading a book in a library", "cooking in a kitchen",
          "sitting on a bench by the sea"]
PAPER = dict(ckpt=CHECKPOINT, width=1024, height=1024, steps=50, cfg=5.0, sampler="ddim",
             scheduler="ddim_uniform", seed=40, scenes=SCENES, negative="blurry, deformed, low quality")
TEST_ONLY = {"ConsiStoryLatentCapture", "ConsiStoryMaskCapture", "ConsiStoryChunkRecorder"}


def _clean(graph: dict) -> dict:
    return {k: v for k, v in graph.items() if v["class_type"] not in TEST_ONLY}


def story() -> tuple[dict, dict, list]:
    g = _clean(with_saved_images(story_graph(blend=True, inject="fast", **PAPER), prefix="consistory"))
    titles = {"sdsa": "ConsiStory SDSA", "blend": "ConsiStory Query Blend", "inject": "ConsiStory Feature Injection (one pass)"}
    groups = [("1. Story: subject + one scene per line", ["ckpt", "story", "neg", "latent"]),
              ("2. ConsiStory patches (SDSA → query blend → injection)", ["sdsa", "blend", "inject"]),
              ("3. Sample, decode, masks", ["sampler", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


def story_exact() -> tuple[dict, dict, list]:
    g = _clean(with_saved_images(story_graph(blend=True, inject="exact", **PAPER), prefix="consistory_exact"))
    titles = {"pass1": "Pass 1 (records DIFT features)", "sampler": "Pass 2 (same seed, injects)",
              "inject": "ConsiStory Feature Injection (exact)"}
    groups = [("1. Story", ["ckpt", "story", "neg", "latent"]),
              ("2. Pass 1: SDSA + query blend, features collected after it", ["sdsa", "blend", "pass1", "collect"]),
              ("3. Pass 2: same seed + feature injection", ["inject", "sampler", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


WORKFLOWS = {"consistory_story": story, "consistory_story_exact_injection": story_exact}
