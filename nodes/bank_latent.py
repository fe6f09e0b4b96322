"""ConsiStory Bank Latent: the empty latent for new prompts reused with a bank (paper §4.4),
at the bank's size and with the noise each new image would get in one batch after the anchors."""
from __future__ import annotations

import torch

from .sockets import BANK, Bank, Subject, io, schema


class BankLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryBankLatent", display_name="ConsiStory Bank Latent", category=BANK,
            description=("The latent for Use Anchors' new prompts: no Empty Latent + Latent From Batch arithmetic to "
                         "keep in step with the bank by hand."),
            search_aliases=["empty latent for anchor bank"],
            inputs=[
                Bank.Input("bank", tooltip="The bank Use Anchors reuses (its size is the latent's)."),
                Subject.Input("subject", tooltip="The new prompts, from ConsiStory Story Prompts: one image each."),
                io.Int.Input("first", default=0, min=0, max=100000, optional=True, tooltip=
                             "How many of the story's new images come before these (a long story rendered in "
                             "parts, e.g. on several servers): each image gets the noise of its place in the "
                             "whole story."),
            ],
            outputs=[io.Latent.Output(tooltip="Empty latents at the bank's size, one per new prompt, numbered after "
                                      "the anchors so the sampler gives each the noise it would have in one batch "
                                      "with them.")])

    @classmethod
    def execute(cls, bank, subject, first=0):
        k, n = bank.anchors + first, subject.images
        channels, (h, w) = bank.inputs.shape[2], bank.latent_hw
        return io.NodeOutput({"samples": torch.zeros(n, channels, h, w), "batch_index": list(range(k, k + n))})
