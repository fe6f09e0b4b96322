"""Patching a model clone for a story: the shared-attention, mask and DIFT patches of one
StoryRun, on the host's ModelPatcher API. Used by ConsiStory SDSA and Use Anchors."""
from __future__ import annotations

import torch

from .story_run import RUN_KEY, StoryRun
from .story_types import MaskSettings, StorySubject
from .unet_layers import BLOCK_GROUPS, attention_positions, first_upsampled_block

DIFT_TIMESTEP = 261  # of 1000: where the paper takes its DIFT features (§4.3)


def existing_attn1_replace(model_options: dict, position: tuple):
    """The attn1 replace another node already put at a position, if any."""
    table = model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})
    return table.get(position) or table.get(position[:2])


def story_model(model, subject: StorySubject, settings: MaskSettings, *, dropout: float,
                dropout_seed: int, share: torch.Tensor, start_percent: float, end_percent: float,
                blocks: str, replayed: int = 0):
    """(patched clone, its StoryRun). ``replayed``: how many leading images of ``subject``
    are anchors replayed from a bank rather than images of the sampler's batch."""
    if start_percent > end_percent:
        raise ValueError(f"ConsiStory: start_percent {start_percent} is after end_percent {end_percent}")
    m = model.clone()
    sampling = m.model.model_sampling
    diffusion_model = m.model.diffusion_model
    run = StoryRun(subject, settings, diffusion_model, dropout, dropout_seed, share,
                   (sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)),
                   dift_block=first_upsampled_block(diffusion_model),
                   dift_sigma=float(sampling.sigma(torch.tensor(float(DIFT_TIMESTEP)))),
                   replayed=replayed)
    run.config = {"dropout": dropout, "dropout_seed": dropout_seed, "start_percent": start_percent,
                  "end_percent": end_percent, "blocks": blocks, "window": settings.window,
                  "resolution": settings.resolution, "threshold_scale": settings.threshold_scale}
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
    return m, run
