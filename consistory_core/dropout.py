"""Attention dropout on the shared subject patches (paper §4.2).

Each step, every subject patch of every image is dropped from what *other* images may
see with probability p. The draw depends only on (seed, step, grid size, image index),
so it is the same for all layers and both CFG halves, the same whether the host runs the
halves in one call or two, and the same for an image whatever the batch around it.
A private ``torch.Generator`` is used; the global RNG is never touched.
"""
from __future__ import annotations

import torch

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads nearby seeds apart
_MASK = (1 << 63) - 1


def step_seed(seed: int, step: int, tokens: int, image: int) -> int:
    """A 63-bit seed for one draw, a fixed function of its inputs."""
    h = seed & _MASK
    for part in (step, tokens, image):
        h = ((h ^ (part & _MASK)) * _MIX + 1) & _MASK
    return h


def keep_draw(seed: int, step: int, images: int, tokens: int, probability: float,
              offset: int = 0) -> torch.Tensor:
    """bool (images, tokens): True where a patch survives the dropout of this step.

    ``offset`` numbers the images from that index (image i of the draw is image
    offset+i of the story), so a sub-batch gets the same draws as the full batch.
    """
    keep = torch.ones(images, tokens, dtype=torch.bool)
    if probability <= 0:
        return keep
    for i in range(images):
        gen = torch.Generator().manual_seed(step_seed(seed, step, tokens, offset + i))
        keep[i] = torch.rand(tokens, generator=gen) >= probability
    return keep
