"""Sampling the story-world model with the host's stock sampler (``comfy.sample.sample``)."""
from __future__ import annotations

import torch

from .model import encode_text
from .vae import LatentMapVAE


def conditioning(clip, prompts: list[str]):
    """A host CONDITIONING with one prompt per image: [[(B, 77, 64), {"pooled_output": (B, 32)}]]."""
    encoded = [encode_text(clip, p) for p in prompts]
    return [[torch.cat([c for c, _ in encoded]), {"pooled_output": torch.cat([q for _, q in encoded])}]]


def sample_images(model, clip, prompts: list[str], *, seed: int = 0, steps: int = 20, cfg: float = 4.0,
                  sampler: str = "euler", scheduler: str = "normal", negative: str = "") -> torch.Tensor:
    """(B, 64, 64, 3) images in [0, 1], one per prompt, as a stock KSampler graph would make
    them (32 x 32 latents, batch noise from ``seed``, the empty prompt as negative)."""
    import comfy.sample
    latent = torch.zeros(len(prompts), 4, 32, 32)
    noise = comfy.sample.prepare_noise(latent, seed)
    samples = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, conditioning(clip, prompts),
                                  conditioning(clip, [negative]), latent, disable_pbar=True, seed=seed)
    return LatentMapVAE().decode(samples)
