"""ConsiStory SDSA: subject-driven shared self-attention as a patch on a model clone
(paper §4.1, dropout §4.2, anchors §4.4)."""
from __future__ import annotations

from ..consistory_core import anchor_mapping
from .anchor_bank import record_anchors
from .story_patch import story_model
from .story_types import MASK_SETTINGS_TYPE, SUBJECT_TYPE, MaskSettings
from .unet_layers import BLOCK_GROUPS


class SubjectDrivenSelfAttention:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SDXL model; it is cloned, not changed."}),
            "subject": (SUBJECT_TYPE, {"tooltip": "From ConsiStory Story Prompts."}),
            "dropout": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                        "Chance that a subject patch of another image is hidden at a step. Lower: "
                        "more consistent, less pose variety."}),
            "dropout_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip":
                             "Seed of the dropout draws (its own generator; the sampler's noise is untouched)."}),
            "anchors": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip":
                        "0: every image shares with every other. k: the first k images share with "
                        "each other and the others see only them."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Where in the schedule sharing starts (it needs one step of masks first)."}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                            "tooltip": "Where in the schedule sharing ends."}),
            "blocks": (list(BLOCK_GROUPS), {"default": "output (paper)", "tooltip":
                       "UNet blocks whose self-attention is shared; the paper uses the up (output) blocks."}),
        }, "optional": {
            "mask_settings": (MASK_SETTINGS_TYPE, {"tooltip": "From ConsiStory Subject Masks; defaults if absent."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "ConsiStory"
    DESCRIPTION = ("Shares the subject between the images of a batch: each image's self-attention "
                   "also sees the subject patches of the other images.")

    def patch(self, model, subject, dropout, dropout_seed, anchors, start_percent, end_percent,
              blocks, mask_settings=None):
        m, run = story_model(model, subject, mask_settings or MaskSettings(), dropout=dropout,
                             dropout_seed=dropout_seed, share=anchor_mapping(subject.images, anchors),
                             start_percent=start_percent, end_percent=end_percent, blocks=blocks)
        run.config["anchors"] = anchors
        if anchors > 0:  # keep what ConsiStory Anchor Bank needs to reuse the anchors later
            record_anchors(m, run, min(anchors, subject.images))
        return (m,)
