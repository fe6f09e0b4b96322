"""ConsiStory Use Anchors: new prompts that share the subject of a saved anchor bank
(paper §4.4; runtime: consistory_patches.anchor_replay)."""
from __future__ import annotations

import logging
import os

from ..consistory_core.noise import noise_is_batch_independent
from ..consistory_patches.anchor_cache import cache_for
from ..consistory_patches.anchor_replay import AnchorReplay, reuse_mapping, story_with_anchors
from ..consistory_patches.host_api import model_facts
from ..consistory_patches.story import STORY_KEY, patch_story
from .sockets import BANK, Bank, Subject, io, schema


CACHE_CHOICES = ("CPU memory", "device memory", "CPU memory + file beside the bank", "off")
CACHE_TOOLTIP = (
    "The first run computes the anchors alone and keeps what they give the new images: their shared attention "
    "inputs at the subject patches, masks and injection sources, per step. Every run then samples the new images "
    "alone with those, so later runs with the same model and settings skip the anchors (new scenes cost what "
    "plain sampling costs) and give the same images to the bit. CPU memory: kept in RAM, sent to the GPU step by "
    "step; device memory: kept on the GPU (fastest, uses VRAM); + file: written beside a loaded bank file "
    "(NAME.anchor_cache) step by step and read from it step by step (little RAM; later sessions use it too); "
    "off: the anchors are recomputed at every step. The size is logged once known (at 1024x1024, 50 steps, "
    "2 anchors, a subject on 30% of the image, dropout 0.5: about 3.1 GB). A cache that does not fit "
    "cache_budget_gb is not kept (the log says so; the images are the same, only slower). Flux models are cached "
    "the same way (their shared keys and values per attention block). Banks with two-pass injection are always "
    "recomputed.")
BUDGET_TOOLTIP = (
    "How many GB the anchor caches kept in memory (CPU or device) may hold together; the least recently used "
    "go first. 0: half of the memory free when a cache is recorded, plus what the caches hold already.")
PLACE = {CACHE_CHOICES[0]: "cpu", CACHE_CHOICES[1]: "device", CACHE_CHOICES[2]: "file"}


def cache_file_of(bank) -> str:
    """Where the anchor cache of a bank loaded from a file is kept: beside it, NAME.anchor_cache
    (not .safetensors, so Load Anchor Bank does not list it)."""
    if bank.source is None:
        raise ValueError("ConsiStory Use Anchors: anchor_cache 'CPU memory + file beside the bank' needs a bank "
                         "from ConsiStory Load Anchor Bank (this one has no file); pick 'CPU memory'")
    return os.path.splitext(bank.source)[0] + ".anchor_cache"


class UseAnchors(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryUseAnchors", display_name="ConsiStory Use Anchors", category=BANK,
            description=("Generates any batch of new prompts with the subject of a saved anchor bank. Sample "
                         "with the bank's checkpoint and LoRAs, size, sampler, scheduler and steps, and the same "
                         "Query Blend / Feature Injection settings; the new prompts' noise is independent of the "
                         "anchors. Exactly one batch with the anchors for deterministic samplers (euler, heun, "
                         "dpmpp_2m, uni_pc, ddim); ancestral and SDE samplers draw step noise per batch, so "
                         "their images differ from one batch (the subject still comes from the anchors)."),
            search_aliases=["reuse subject", "reuse consistent character", "anchor bank"],
            inputs=[
                io.Model.Input("model", tooltip="The model the bank was made with (not patched by SDSA)."),
                Bank.Input("bank", tooltip="From ConsiStory Load Anchor Bank (or Anchor Bank)."),
                Subject.Input("subject", tooltip="The new prompts, from ConsiStory Story Prompts, with the "
                              "bank's subject words."),
                io.Boolean.Input("share_new", default=False, tooltip="Also share the subject among the new "
                                 "images (the paper: off; each new image sees itself and the anchors)."),
                io.Combo.Input("anchor_cache", options=list(CACHE_CHOICES), default=CACHE_CHOICES[0], optional=True,
                               tooltip=CACHE_TOOLTIP),
                io.Float.Input("cache_budget_gb", default=0.0, min=0.0, max=4096.0, step=0.5, optional=True,
                               tooltip=BUDGET_TOOLTIP),
            ],
            outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, model, bank, subject, share_new, anchor_cache=CACHE_CHOICES[0], cache_budget_gb=0.0):
        if anchor_cache not in CACHE_CHOICES:
            raise ValueError(f"ConsiStory Use Anchors: anchor_cache {anchor_cache!r} is not one of {list(CACHE_CHOICES)}")
        if not cache_budget_gb >= 0:
            raise ValueError(f"ConsiStory Use Anchors: cache_budget_gb {cache_budget_gb!r} must be 0 (half the free "
                             "memory) or more")
        if STORY_KEY in model.model_options.get("transformer_options", {}):
            raise ValueError("ConsiStory Use Anchors: the model is already patched by ConsiStory (SDSA or Use "
                             "Anchors); connect the checkpoint's model: Use Anchors adds the shared attention itself")
        bank.check_model(**model_facts(model))
        story = story_with_anchors(bank, subject)
        if not noise_is_batch_independent((bank.inputs.shape[2], *bank.latent_hw)):
            h, w = bank.latent_hw
            logging.warning(f"ConsiStory Use Anchors: at {w * 8}x{h * 8} px the new images will not be exactly what "
                            "one batch with the anchors gives (the subject still comes from the anchors): torch draws "
                            "an image's noise differently alone and in a batch unless its latent holds a multiple "
                            "of 16 values; sizes whose sides are multiples of 16 px have no such difference")
        cache_file = cache_file_of(bank) if anchor_cache == CACHE_CHOICES[2] else None
        cache = None if anchor_cache == "off" or bank.passes is not None else \
            cache_for(bank, PLACE[anchor_cache], cache_budget_gb)
        m, _ = patch_story(model, story, bank.description.sharing,
                           reuse_mapping(bank.anchors, subject.images, share_new), replayed=bank.anchors,
                           given_masks=bank.subject_masks,
                           replay=AnchorReplay(bank, cache, cache_file, model.model, cache_budget_gb))
        return io.NodeOutput(m)
