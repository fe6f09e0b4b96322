"""ConsiStory Use Anchors: new prompts that share the subject of a saved anchor bank
(paper §4.4; runtime: consistory_patches.anchor_replay)."""
from __future__ import annotations

from ..consistory_patches.anchor_replay import AnchorReplay, reuse_mapping, story_with_anchors
from ..consistory_patches.host_api import model_facts
from ..consistory_patches.story import STORY_KEY, patch_story
from .sockets import BANK, BANK_TYPE, SUBJECT_TYPE


class UseAnchors:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model the bank was made with (not patched by SDSA)."}),
            "bank": (BANK_TYPE, {"tooltip": "From ConsiStory Load Anchor Bank (or Anchor Bank)."}),
            "subject": (SUBJECT_TYPE, {"tooltip": "The new prompts, from ConsiStory Story Prompts, with the "
                        "bank's subject words."}),
            "share_new": ("BOOLEAN", {"default": False, "tooltip": "Also share the subject among the new "
                          "images (the paper: off; each new image sees itself and the anchors)."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = BANK
    DESCRIPTION = ("Generates any batch of new prompts with the subject of a saved anchor bank. Sample "
                   "with the bank's checkpoint and LoRAs, size, sampler, scheduler and steps, and the same "
                   "Query Blend / Feature Injection settings; the new prompts' noise is independent of the "
                   "anchors. Exactly one batch with the anchors for deterministic samplers (euler, heun, "
                   "dpmpp_2m, uni_pc, ddim); ancestral and SDE samplers draw step noise per batch, so "
                   "their images differ from one batch (the subject still comes from the anchors).")

    def patch(self, model, bank, subject, share_new):
        if STORY_KEY in model.model_options.get("transformer_options", {}):
            raise ValueError("ConsiStory Use Anchors: the model is already patched by ConsiStory (SDSA or Use "
                             "Anchors); connect the checkpoint's model: Use Anchors adds the shared attention itself")
        bank.check_model(**model_facts(model))
        story = story_with_anchors(bank, subject)
        m, _ = patch_story(model, story, bank.description.sharing,
                           reuse_mapping(bank.anchors, subject.images, share_new),
                           replayed=bank.anchors, given_masks=bank.subject_masks, replay=AnchorReplay(bank))
        return (m,)
