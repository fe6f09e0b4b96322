"""The example workflows shipped in workflows/: each built as an API graph from the same
builder the tests use, with the settings of the paper at SDXL's size."""
from __future__ import annotations

from .graphs import make_subject_graph, reuse_subject_graph, story_graph, with_saved_images

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


BANK = "old_man"
SUBJECT_SCENES = ["standing in front of a house", "sitting in an armchair"]
NEW_SCENES = ["fishing on a lake", "playing chess in a park", "walking in the snow"]


def make_subject() -> tuple[dict, dict, list]:
    kw = dict(PAPER, scenes=SUBJECT_SCENES)
    g = _clean(with_saved_images(make_subject_graph(anchors=2, prefix=BANK, blend=True, inject="fast", **kw),
                                 prefix="consistory_anchors"))
    titles = {"sdsa": "ConsiStory SDSA (anchors = 2)", "bank": "ConsiStory Anchor Bank",
              "save_bank": "Save Anchor Bank (output/consistory_banks/)"}
    groups = [("1. The subject, shown in two anchor scenes", ["ckpt", "story", "neg", "latent"]),
              ("2. Anchors share with each other", ["sdsa", "blend", "inject", "sampler"]),
              ("3. Keep the subject as a bank file", ["bank", "save_bank", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


def reuse_subject() -> tuple[dict, dict, list]:
    kw = dict(PAPER, scenes=NEW_SCENES)
    g = _clean(with_saved_images(reuse_subject_graph(bank_name=f"output/{BANK}_00001.safetensors", anchors=2,
                                                     blend=True, inject="fast", **kw), prefix="consistory_reuse"))
    titles = {"sdsa": "ConsiStory Use Anchors", "load_bank": "Load Anchor Bank",
              "new_rows": "New images' noise: rows 2.. (after the 2 anchors)"}
    groups = [("1. New scenes with the saved subject (same words, size, sampler, steps)",
               ["ckpt", "story", "neg", "latent", "load_bank", "new_rows"]),
              ("2. Reuse: new images see the anchors", ["sdsa", "blend", "inject", "sampler"]),
              ("3. Images and masks", ["decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


WORKFLOWS = {"consistory_story": story, "consistory_story_exact_injection": story_exact,
             "consistory_make_subject": make_subject, "consistory_reuse_subject": reuse_subject}
