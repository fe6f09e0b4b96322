"""ConsiStory SDSA: subject-driven shared self-attention as a patch on a model clone
(paper §4.1, dropout §4.2, anchors §4.4)."""
from __future__ import annotations

import torch

from .story_run import RUN_KEY, StoryRun
from .story_types import MASK_SETTINGS_TYPE, SUBJECT_TYPE, MaskSettings
from .unet_layers import BLOCK_GROUPS, attention_positions, first_upsampled_block

DIFT_TIMESTEP = 261  # of 1000: where the paper takes its DIFT features (§4.3)


def existing_attn1_replace(model_options: dict, position: tuple):
    """The attn1 replace another node already put at a position, if any."""
    table = model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    return table.get(position) or table.get(position[:2])


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
        if start_percent > end_percent:
            raise ValueError(f"ConsiStory SDSA: start_percent {start_percent} is after end_percent {end_percent}")
        m = model.clone()
        sampling = m.model.model_sampling
        diffusion_model = m.model.diffusion_model
        run = StoryRun(subject, mask_settings or MaskSettings(), diffusion_model, dropout,
                       dropout_seed, anchors,
                       (sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)),
                       dift_block=first_upsampled_block(diffusion_model),
                       dift_sigma=float(sampling.sigma(torch.tensor(float(DIFT_TIMESTEP)))))
        m.model_options.setdefault("transformer_options", {})[RUN_KEY] = run

        def record(n, context, value, extra):
            return run.record(n, context, value, extra)

        def capture(h, hsp, extra):
            return run.capture_features(h, hsp, extra)

        m.set_model_attn2_patch(record)
        m.set_model_output_block_patch(capture)
        for position in attention_positions(diffusion_model, BLOCK_GROUPS[blocks]):
            previous = existing_attn1_replace(m.model_options, position)

            def attend(q, k, v, extra, previous=previous):
                return run.attend(q, k, v, extra, previous)

            m.set_model_attn1_replace(attend, *position)
        return (m,)
