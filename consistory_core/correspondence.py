"""DIFT correspondence and feature injection (paper §4.3).

DIFT features (the output of the UNet's first up block at a mid-late timestep, cond half,
Gaussian smoothed) match every patch of a target image with its nearest *subject* patch
in the images mapped to it (cosine distance). Target patches inside the target's subject
mask whose best distance is under the Otsu threshold of those distances take
``alpha * out_source[nn] + (1 - alpha) * out_target`` as their self-attention output.

Unlike the reference, all targets read the sources' outputs from before injection, so
the result does not depend on the order of the images.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dropout import step_seed
from .otsu import otsu_threshold

DIFT_NOISE_STREAM = 261  # separates these draws from the dropout draws of the same seed


def gaussian_smooth(features: torch.Tensor, kernel: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """features (N, C, h, w) -> the same, blurred per channel (reflect padding)."""
    x = torch.arange(kernel, dtype=torch.float32, device=features.device) - (kernel - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    weight = (g[:, None] * g[None, :]).to(features.dtype)
    c = features.shape[1]
    pad = kernel // 2
    padded = F.pad(features, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, weight.expand(c, 1, kernel, kernel).contiguous(), groups=c)


def image_noise(seed: int, shape: tuple, images: int, offset: int = 0) -> torch.Tensor:
    """Gaussian noise (images, *shape) for re-noising to the DIFT timestep. Image i's noise
    depends only on (seed, offset + i), so an image gets the same noise in any batch."""
    out = torch.empty(images, *shape)
    for i in range(images):
        gen = torch.Generator().manual_seed(step_seed(seed, DIFT_NOISE_STREAM, 0, offset + i))
        out[i] = torch.randn(shape, generator=gen)
    return out


@dataclass
class InjectionPlan:
    """For each target image i and patch p: inject from (source[i, p], index[i, p]) if keep[i, p].

    keep (N, P) bool, source (N, P) long, index (N, P) long, distance (N, P) float.
    """
    keep: torch.Tensor
    source: torch.Tensor
    index: torch.Tensor
    distance: torch.Tensor

    @property
    def empty(self) -> bool:
        return not bool(self.keep.any())


def nearest_subject_patches(features: torch.Tensor, subject: torch.Tensor, share: torch.Tensor):
    """Best source patch of every target patch among the subject patches it may see.

    features (N, C, P) (smoothed DIFT features, flattened grid); subject (N, P) bool;
    share (N, N) bool (share[i, j]: target i may take from source j; diagonal ignored).
    Returns (source (N, P) long, index (N, P) long, distance (N, P) float, cosine distance,
    inf where a target has no source patch at all).
    """
    n, _, p = features.shape
    unit = F.normalize(features.float(), dim=1)
    distance = torch.full((n, p), float("inf"), device=features.device)
    source = torch.zeros(n, p, dtype=torch.long, device=features.device)
    index = torch.zeros(n, p, dtype=torch.long, device=features.device)
    for i in range(n):
        for j in range(n):
            if i == j or not bool(share[i, j]) or not bool(subject[j].any()):
                continue
            d = 1 - unit[i].transpose(0, 1) @ unit[j]  # (P target, P source)
            d = d.masked_fill(~subject[j][None, :], float("inf"))
            best, arg = d.min(dim=1)
            better = best < distance[i]
            distance[i] = torch.where(better, best, distance[i])
            source[i] = torch.where(better, torch.full_like(arg, j), source[i])
            index[i] = torch.where(better, arg, index[i])
    return source, index, distance


def plan_injection(features: torch.Tensor, subject: torch.Tensor, share: torch.Tensor) -> InjectionPlan:
    """features (N, C, P), subject (N, P) bool, share (N, N) -> which patches get injected.

    The reference's rule (§4.3): the Otsu threshold of the best distances of *all* of a
    target's patches (background included: their best source is still a subject patch),
    then kept are the target's patches inside its subject mask whose distance is at most
    that threshold. Subject patches that match well fall below it; background patches,
    which match badly, raise it.
    """
    source, index, distance = nearest_subject_patches(features, subject, share)
    keep = torch.zeros_like(subject)
    for i in range(subject.shape[0]):
        matched = torch.isfinite(distance[i])
        if matched.sum() < 2:
            keep[i] = subject[i] & matched
            continue
        threshold = otsu_threshold(distance[i][matched][None])[0]
        keep[i] = subject[i] & matched & (distance[i] <= threshold)
    return InjectionPlan(keep, source, index, distance)


def inject(out: torch.Tensor, plan: InjectionPlan, alpha: float) -> torch.Tensor:
    """out (N, P, C) attention outputs of one CFG chunk -> the injected outputs.

    A new tensor; ``out`` itself when nothing is injected (alpha 0 or an empty plan).
    """
    if alpha == 0 or plan.empty:
        return out
    n, p, _ = out.shape
    flat = out.reshape(n * p, -1)
    taken = flat.index_select(0, (plan.source * p + plan.index).reshape(-1).to(out.device)).reshape(out.shape)
    keep = plan.keep.to(out.device)[..., None]
    return torch.where(keep, alpha * taken + (1 - alpha) * out, out)
