"""ConsiStory Bank Latent: the empty latent for new prompts reused with a bank (paper §4.4),
at the bank's size and with the noise each new image would get in one batch after the anchors."""
from __future__ import annotations

import torch

from .sockets import BANK, BANK_TYPE, SUBJECT_TYPE


class BankLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "bank": (BANK_TYPE, {"tooltip": "The bank Use Anchors reuses (its size is the latent's)."}),
            "subject": (SUBJECT_TYPE, {"tooltip": "The new prompts, from ConsiStory Story Prompts: one image each."}),
        }, "optional": {
            "first": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "How many of the story's new images "
                      "come before these (a long story rendered in parts, e.g. on several servers): each image "
                      "gets the noise of its place in the whole story."}),
        }}

    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Empty latents at the bank's size, one per new prompt, numbered after the anchors so the "
                       "sampler gives each the noise it would have in one batch with them.",)
    FUNCTION = "latent"
    CATEGORY = BANK
    DESCRIPTION = ("The latent for Use Anchors' new prompts: no Empty Latent + Latent From Batch arithmetic to keep "
                   "in step with the bank by hand.")

    def latent(self, bank, subject, first=0):
        k, n = bank.anchors + first, subject.images
        channels, (h, w) = bank.inputs.shape[2], bank.latent_hw
        return ({"samples": torch.zeros(n, channels, h, w), "batch_index": list(range(k, k + n))},)
