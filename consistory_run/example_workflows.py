"""The example workflows shipped in example_workflows/: each built as an API graph from the same
builder the tests use, with the settings of the paper at SDXL's size.

A workflow's name is its file name, and ComfyUI's template browser (Workflow > Browse
Templates) shows a custom node pack's template by its file name only: the name is the card's
title (one line, cut beyond the card's width) and, with `-` and `_` turned into spaces, its
description. So each name is a short phrase, without `-` or `_`.
"""
from __future__ import annotations

from .graphs import (FLUX_FILES, make_subject_graph, photo_subject_graph, reuse_subject_graph, story_graph,
                     with_controlnet, with_flux_loaders, with_paper_extras, with_plain_branch, with_saved_images)

STORY = "One subject in four scenes"
STORY_PAPER = "Four scenes with paper settings"
MULTI_SUBJECT = "Two subjects in four scenes"
CONTROLNET_STORY = "Four scenes with depth ControlNet"
MAKE_SUBJECT = "Make a subject and save it"
REUSE_SUBJECT = "Reuse a saved subject"
SUBJECT_FROM_PHOTO = "A subject from a photo"
STORY_SD15 = "Four scenes on SD 1.5"
STORY_FLUX = "Four scenes on Flux.1 dev"
TRY_ON_CPU = "Plain vs ConsiStory on a CPU"

CHECKPOINT = "sd_xl_base_1.0.safetensors"
SCENES = ["walking in a park", "reading a book in a library", "cooking in a kitchen",
          "sitting on a bench by the sea"]
PAPER = dict(ckpt=CHECKPOINT, width=1024, height=1024, steps=50, cfg=5.0, sampler="ddim",
             scheduler="ddim_uniform", seed=40, scenes=SCENES, negative="blurry, deformed, low quality", anchors=2)
TEST_ONLY = {"ConsiStoryLatentCapture", "ConsiStoryMaskCapture", "ConsiStoryChunkRecorder"}


def _clean(graph: dict) -> dict:
    return {k: v for k, v in graph.items() if v["class_type"] not in TEST_ONLY}


def story() -> tuple[dict, dict, list]:
    g = _clean(with_saved_images(story_graph(blend=True, inject="fast", **PAPER), prefix="consistory"))
    titles = {"sdsa": "ConsiStory SDSA", "blend": "ConsiStory Query Blend", "inject": "ConsiStory Feature Injection (one pass)"}
    groups = [("1. Story: subject, scenes", ["ckpt", "story", "neg", "latent"]),
              ("2. ConsiStory patches", ["sdsa", "blend", "inject"]),
              ("3. Sample, decode, masks", ["sampler", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


# the story-world model (story_world/, shipped with the pack): its one size and its story (the CLI's too)
WORLD_LOADER = {"class_type": "ConsiStoryStoryWorldCheckpoint", "inputs": {}}
WORLD_SCENES = ["on the left in a snowy field", "jumping in a forest", "on a city street",
                "small in the distance on the moon"]
WORLD = dict(loader=WORLD_LOADER, width=256, height=256, steps=20, cfg=4.0, sampler="ddim", scheduler="ddim_uniform",
             seed=40, scenes=WORLD_SCENES, subject="a small creature", words="", negative="", anchors=2)


def try_on_cpu() -> tuple[dict, dict, list]:
    """The story on the story-world model, and the same story sampled plainly beside it."""
    g = _clean(with_plain_branch(with_saved_images(story_graph(blend=True, inject="fast", **WORLD),
                                                   prefix="consistory_world"), prefix="plain_world"))
    titles = {"ckpt": "Story world model (ships with the pack)", "sampler": "Sampler with ConsiStory",
              "plain_sampler": "Plain sampler (same seed)", "save_images": "ConsiStory: the anchors' creature",
              "save_plain": "Plain: each image its own creature"}
    groups = [("1. The story-world model and a story", ["ckpt", "story", "neg", "latent"]),
              ("2. ConsiStory", ["sdsa", "blend", "inject", "sampler", "decode", "masks", "save_images", "save_masks"]),
              ("3. Plain sampling, same seed", ["plain_sampler", "plain_decode", "save_plain"])]
    return g, titles, groups


def story_paper() -> tuple[dict, dict, list]:
    """The paper's pipeline: exact two-pass injection, FreeU and a zero negative."""
    g = _clean(with_saved_images(with_paper_extras(story_graph(blend=True, inject="exact", **PAPER)),
                                 prefix="consistory_paper"))
    titles = {"pass1": "Pass 1 (records DIFT features)", "sampler": "Pass 2 (same seed, injects)",
              "inject": "ConsiStory Feature Injection (exact)", "freeu": "ConsiStory FreeU (the paper's 1.1 / 1.2 / 0.6 / 0.4)",
              "zero_neg": "Empty negative as zeros (the paper's)"}
    groups = [("1. Story, FreeU, zero negative", ["ckpt", "freeu", "story", "neg", "zero_neg", "latent"]),
              ("2. Pass 1: collects features", ["sdsa", "blend", "pass1", "collect"]),
              ("3. Pass 2: same seed, injects", ["inject", "sampler", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


BANK = "old_man"
SUBJECT_SCENES = ["standing in front of a house", "sitting in an armchair"]
NEW_SCENES = ["fishing on a lake", "playing chess in a park", "walking in the snow"]


def make_subject() -> tuple[dict, dict, list]:
    kw = dict(PAPER, scenes=SUBJECT_SCENES)
    g = _clean(with_saved_images(make_subject_graph(prefix=BANK, blend=True, inject="fast", **kw),
                                 prefix="consistory_anchors"))
    titles = {"sdsa": "ConsiStory SDSA (anchors = 2)", "bank": "ConsiStory Anchor Bank",
              "save_bank": "Save Anchor Bank (output/consistory_banks/)"}
    groups = [("1. The subject, two anchors", ["ckpt", "story", "neg", "latent"]),
              ("2. Anchors share with each other", ["sdsa", "blend", "inject", "sampler"]),
              ("3. Keep the subject as a bank file", ["bank", "save_bank", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


def reuse_subject() -> tuple[dict, dict, list]:
    kw = dict(PAPER, scenes=NEW_SCENES)
    g = _clean(with_saved_images(reuse_subject_graph(bank_name=f"output/{BANK}_00001.safetensors",
                                                     blend=True, inject="fast", **kw), prefix="consistory_reuse"))
    titles = {"sdsa": "ConsiStory Use Anchors", "load_bank": "Load Anchor Bank",
              "latent": "ConsiStory Bank Latent (the bank's size, the noise after its anchors)"}
    groups = [("1. New scenes, the saved subject",
               ["ckpt", "story", "neg", "load_bank", "latent"]),
              ("2. Reuse the anchors", ["sdsa", "blend", "inject", "sampler"]),
              ("3. Images and masks", ["decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


PHOTO = "consistory_mug.png"  # example_workflows/input/, put into ComfyUI/input by the pack (sample_inputs.py)
PHOTO_SCENES = ["on a desk next to a laptop", "on a picnic blanket in a park", "on a snowy window sill"]


def subject_from_photo() -> tuple[dict, dict, list]:
    """New scenes with the subject of a photo (the paper's training-free personalization)."""
    kw = dict(PAPER, scenes=PHOTO_SCENES, subject="a red mug", words="mug")
    g = photo_subject_graph(image=["photo", 0], prefix="mug", blend=True, inject="fast", **kw)
    g["photo"] = {"class_type": "LoadImage", "inputs": {"image": PHOTO}}
    g["overlay"] = {"class_type": "PreviewImage", "inputs": {"images": ["load_bank", 2]}}
    g = _clean(with_saved_images(g, prefix="consistory_photo"))
    titles = {"photo": "Load Image: the subject's photo", "load_bank": "ConsiStory Subject From Image",
              "save_bank": "Save Anchor Bank (reuse it later with Load Anchor Bank)",
              "overlay": "Where the subject was found in the photo",
              "sdsa": "ConsiStory Use Anchors", "latent": "ConsiStory Bank Latent"}
    groups = [("1. The photo becomes the anchors",
               ["ckpt", "photo", "load_bank", "overlay", "save_bank"]),
              ("2. New scenes see the photo's subject", ["story", "neg", "latent", "sdsa", "blend", "inject", "sampler"]),
              ("3. Images and masks", ["decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


SD15_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"


def story_sd15() -> tuple[dict, dict, list]:
    """The story on SD 1.5 at its own size (512²); every other setting as the SDXL story."""
    kw = dict(PAPER, ckpt=SD15_CHECKPOINT, width=512, height=512)
    g = _clean(with_saved_images(story_graph(blend=True, inject="fast", **kw), prefix="consistory_sd15"))
    titles = {"ckpt": "Load Checkpoint (SD 1.5)", "sdsa": "ConsiStory SDSA", "blend": "ConsiStory Query Blend",
              "inject": "ConsiStory Feature Injection (one pass)"}
    groups = [("1. Story on SD 1.5 (512 px)", ["ckpt", "story", "neg", "latent"]),
              ("2. ConsiStory patches", ["sdsa", "blend", "inject"]),
              ("3. Sample, decode, masks", ["sampler", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


def story_flux() -> tuple[dict, dict, list]:
    """The story on Flux.1 dev (today's ComfyUI): Flux's usual settings (1024², 28 euler steps, the
    simple schedule, cfg 1 with FluxGuidance 3.5); the method's nodes and settings as on SDXL."""
    kw = dict(PAPER, ckpt=CHECKPOINT, steps=28, cfg=1.0, sampler="euler", scheduler="simple", negative="")
    g = _clean(with_saved_images(story_graph(blend=True, inject="fast", **kw), prefix="consistory_flux"))
    g = with_flux_loaders(g)
    titles = {"unet": "Load Diffusion Model (Flux.1 dev)", "clip": "DualCLIPLoader (CLIP-L + T5, flux)",
              "guidance": "FluxGuidance", "neg": "Negative (unused at cfg 1)", "latent": "Empty Latent (Flux: 16 channels)",
              "sdsa": "ConsiStory SDSA",
              "blend": "ConsiStory Query Blend", "inject": "ConsiStory Feature Injection (one pass)"}
    groups = [("1. Flux.1: model, CLIP, VAE", ["unet", "clip", "vae"]),
              ("2. Story: subject, scenes", ["story", "guidance", "neg", "latent"]),
              ("3. ConsiStory patches", ["sdsa", "blend", "inject"]),
              ("4. Sample, decode, masks", ["sampler", "decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


CONTROLNET = "diffusers_xl_depth_full.safetensors"
DEPTH_IMAGE = "consistory_depth.png"


def multi_subject() -> tuple[dict, dict, list]:
    kw = dict(PAPER, scenes=["having a picnic in a park", "sitting by a fireplace", "on a boat at sunset",
                             "in a snowy garden"])
    g = _clean(with_saved_images(story_graph(subject="an old man with a hat\na small ginger cat",
                                             words="man, hat\ncat", blend=True, inject="fast", **kw),
                                 prefix="consistory_two_subjects"))
    titles = {"story": "Story Prompts: one subject per line, one line of words per subject"}
    groups = [("1. Two subjects, one line each", ["ckpt", "story", "neg", "latent"]),
              ("2. Each subject gets its own mask; images share their union", ["sdsa", "blend", "inject", "sampler"]),
              ("3. Images, masks per subject", ["decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


def controlnet() -> tuple[dict, dict, list]:
    kw = dict(PAPER, scenes=SCENES)
    g = _clean(with_saved_images(with_controlnet(story_graph(blend=True, inject="fast", **kw), CONTROLNET,
                                                 DEPTH_IMAGE, strength=0.6), prefix="consistory_controlnet"))
    titles = {"cn": "ControlNet (SDXL depth)", "hint": "Depth image (same layout for every scene)"}
    groups = [("1. Story", ["ckpt", "story", "neg", "latent"]),
              ("2. Stock ControlNet (depth)", ["cn", "hint", "apply"]),
              ("3. ConsiStory patches the model; ControlNet guides the layout", ["sdsa", "blend", "inject", "sampler"]),
              ("4. Images and masks", ["decode", "masks", "save_images", "save_masks"])]
    return g, titles, groups


_SDXL = (f"Load Checkpoint: an SDXL checkpoint ({CHECKPOINT} or any SDXL fine-tune) from "
         "ComfyUI/models/checkpoints.")
_STORY = ("Edit in Story Prompts: the subject (one line), its words (empty: its nouns) and one scene per "
          "line; each scene is one image (the latent's batch size follows). Keep 3 or more scenes: the "
          "first 2 are the anchors the others copy the subject from.")
_OUT = "Queue: the images and the subject-mask overlays go to ComfyUI/output."
_TEMPLATE = "the template '{}' (Workflow > Browse Templates > comfyui-consistory)"
_SAMPLE = "the pack puts its sample {} there when ComfyUI starts"
NOTES = {
    TRY_ON_CPU: "\n".join([
        "Try ConsiStory on a CPU in seconds, without SDXL weights: the story-world model ships with the pack (a "
        "small model trained on a synthetic world: a creature or a robot in 8 scenes, 64 x 64 images).", "",
        "Queue: the same four scenes are sampled twice with the same seed, with ConsiStory (top: the creature of "
        "the first two images, the anchors, in every scene) and plainly (bottom: each image draws its own). "
        "The model draws one size: keep Empty Latent Image at 256 x 256.",
        "Edit in Story Prompts: the subject ('a small creature' or 'a little robot') and one scene per line, "
        "from what the model knows: in a snowy field, on a beach at night, in a forest, in a desert, on a city "
        "street, under the sea, in a meadow with flowers, on the moon; before it 'on the left', 'on the right', "
        "'in the middle', 'jumping', 'small in the distance' or 'close up' if you like."]),
    STORY: "\n".join([
        "ConsiStory story (fast): SDSA + Query Blend + one-pass Feature Injection.", "", _SDXL, _STORY, _OUT]),
    STORY_PAPER: "\n".join([
        "ConsiStory story with the paper's settings: FreeU as the reference applies it (ConsiStory FreeU, by up "
        "block), an empty negative as zeros, and exact two-pass "
        "injection (pass 1 collects DIFT features, pass 2 with the same seed injects: about twice the time of "
        f"{_TEMPLATE.format(STORY)}).", "", _SDXL, _STORY, _OUT]),
    MULTI_SUBJECT: "\n".join([
        "Two subjects in every image.", "", _SDXL,
        "Edit in Story Prompts: one subject per line, and one line of subject words per subject (same order); "
        "one scene per line.", _OUT]),
    CONTROLNET_STORY: "\n".join([
        "ConsiStory beside a stock ControlNet (depth).", "", _SDXL,
        f"ControlNet loader: an SDXL depth ControlNet ({CONTROLNET}) from ComfyUI/models/controlnet.",
        f"Load Image: a depth map in ComfyUI/input; {_SAMPLE.format(DEPTH_IMAGE)} (or pick your own).", _STORY, _OUT]),
    MAKE_SUBJECT: "\n".join([
        "Make a subject to reuse: 2 anchor scenes, saved as a bank file.", "", _SDXL,
        "Edit in Story Prompts: the subject, its words and the 2 anchor scenes.",
        "Queue: the bank goes to ComfyUI/output/consistory_banks/ (old_man_00001.safetensors); then open "
        f"{_TEMPLATE.format(REUSE_SUBJECT)}."]),
    REUSE_SUBJECT: "\n".join([
        "Reuse a saved subject for new scenes (any number, any time later).", "", _SDXL,
        f"Load Anchor Bank: the bank saved by {_TEMPLATE.format(MAKE_SUBJECT)} (output/old_man_00001.safetensors), "
        "or a file in ComfyUI/models/consistory_banks.",
        "Edit in Story Prompts: the same subject words as the bank, and the new scenes. Keep the bank's "
        "checkpoint, size, sampler, scheduler and steps (Use Anchors names any difference). Bank Latent sets "
        "the size and each new image's noise.", _OUT]),
    SUBJECT_FROM_PHOTO: "\n".join([
        "A subject from a photo: the photo becomes the anchors (edit-friendly DDPM inversion), and every new scene "
        "shows that subject. Best for common objects and animals; the photo's style carries over.", "", _SDXL,
        f"Load Image: your photo of the subject in ComfyUI/input ({_SAMPLE.format(PHOTO)}). One photo or a batch "
        "of a few views; cropped to the size.",
        "Edit in Subject From Image: the subject as the new prompts name it and its words; optionally a caption per "
        "photo. Connect a MASK of the subject if the overlay shows the wrong region.",
        "Edit in Story Prompts: the same subject and words, one new scene per line. Keep the same size, sampler, "
        "scheduler and steps in both nodes.",
        "Queue: the images and masks go to ComfyUI/output, the bank to ComfyUI/output/consistory_banks/ "
        "(mug_00001.safetensors) for later reuse."]),
    STORY_FLUX: "\n".join([
        "ConsiStory on Flux.1 dev (ComfyUI 0.3.60 or later): the same nodes as for SDXL, through ComfyUI's "
        "attention override.", "",
        f"Load Diffusion Model: {FLUX_FILES['unet']} (or schnell: then 4 steps) from ComfyUI/models/diffusion_models. "
        f"DualCLIPLoader: {FLUX_FILES['clip_l']} and {FLUX_FILES['t5']} from ComfyUI/models/text_encoders, type flux. "
        f"Load VAE: {FLUX_FILES['vae']} from ComfyUI/models/vae.", _STORY,
        "Flux shares in its single-stream blocks (SDSA's 'output'), reads the subject masks in its double-stream "
        "blocks from the T5 tokens of the subject words, and moves the shared keys beside each image "
        "(dit_positions: shifted).", _OUT]),
    STORY_SD15: "\n".join([
        "ConsiStory on SD 1.5 (512 px): the same nodes as for SDXL.", "",
        f"Load Checkpoint: an SD 1.5 checkpoint ({SD15_CHECKPOINT} or a fine-tune) from "
        "ComfyUI/models/checkpoints.", _STORY, _OUT]),
}

WORKFLOWS = {TRY_ON_CPU: try_on_cpu, STORY: story, MULTI_SUBJECT: multi_subject, CONTROLNET_STORY: controlnet, STORY_PAPER: story_paper,
             MAKE_SUBJECT: make_subject, REUSE_SUBJECT: reuse_subject, SUBJECT_FROM_PHOTO: subject_from_photo,
             STORY_SD15: story_sd15, STORY_FLUX: story_flux}


def shrunk(api: dict) -> dict:
    """The API twin with tiny models for the checkpoint (SDXL, SD 1.5 or Flux's three loaders) and
    ControlNet, 128 px and 10 steps (the story-world model keeps its one size)."""
    on_world = any(node["class_type"] == WORLD_LOADER["class_type"] for node in api.values())
    for node in api.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "UNETLoader":  # Flux: one tiny loader stands for the three
            node.update(class_type="ConsiStoryTinyFluxCheckpoint", inputs={"weight_seed": 0, "version": "dev"})
        elif kind == "DualCLIPLoader":
            node.update(class_type="ConsiStoryTinyFluxCLIP", inputs={"weight_seed": 0})
        elif kind == "VAELoader":
            node.update(class_type="ConsiStoryTinyFluxVAE", inputs={"weight_seed": 0})
        elif kind == "CheckpointLoaderSimple" and inputs["ckpt_name"] == SD15_CHECKPOINT:
            node.update(class_type="ConsiStoryTinySD1Checkpoint", inputs={"weight_seed": 0, "version": "1.5"})
        elif kind == "CheckpointLoaderSimple":
            node.update(class_type="ConsiStoryTinySDXLCheckpoint", inputs={"weight_seed": 0})
        elif kind == "ControlNetLoader":
            node.update(class_type="ConsiStoryTinyControlNet", inputs={"weight_seed": 0})
        elif kind == "LoadImage":
            node.update(class_type="EmptyImage", inputs={"width": 128, "height": 128, "batch_size": 1, "color": 0})
        elif kind in ("EmptyLatentImage", "EmptySD3LatentImage") and not on_world:  # the story world: one size
            inputs.update(width=128, height=128)
        elif kind == "KSampler":
            inputs.update(steps=10)
        elif kind == "ConsiStorySubjectFromImage":
            inputs.update(width=128, height=128, steps=10)
    return api
