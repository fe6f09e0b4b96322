"""DIFT correspondence and feature injection (paper §4.3).

DIFT features (the output of the UNet's first up block at a mid-late timestep, cond half,
Gaussian smoothed) match every patch of a target image with its nearest *subject* patch
in the images mapped to it (cosine distance). Target patches inside the target's subject
mask whose best distance is below the Otsu threshold of those distances take
``alpha * out_source[nn] + (1 - alpha) * out_target`` as their self-attention output.

As in the reference implementation, the targets are injected one after another in batch
order, each in place: a target that takes from an image before it in the batch takes that
image's already injected output (so images after the anchors take the anchors' injected
outputs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dropout import step_seed
from .otsu import otsu_threshold

DIFT_NOISE_STREAM = 261  # separates these draws from the dropout draws of the same seed


def gaussian_smooth(features: torch.Tensor, kernel: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """features (N, C, h, w) -> the same, blurred per channel (§4.3: k 3, sigma 1).

    The 2-D Gaussian weights are computed in float64 and normalised to sum 1, then cast to
    the features' dtype; the border is padded with zeros (the reference's convolution), so
    border patches lose the weight that falls outside the grid."""
    x = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    weight = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    weight = (weight / weight.sum()).to(features.device, features.dtype)
    c = features.shape[1]
    return F.conv2d(features, weight.expand(c, 1, kernel, kernel).contiguous(), padding=kernel // 2, groups=c)


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
    then kept are the target's patches inside its subject mask whose distance is strictly
    below that threshold. Subject patches that match well fall below it; background
    patches, which match badly, raise it.
    """
    source, index, distance = nearest_subject_patches(features, subject, share)
    keep = torch.zeros_like(subject)
    for i in range(subject.shape[0]):
        matched = torch.isfinite(distance[i])
        if matched.sum() < 2:
            keep[i] = subject[i] & matched
            continue
        threshold = otsu_threshold(distance[i][matched][None])[0]
        keep[i] = subject[i] & matched & (distance[i] < threshold)
    return InjectionPlan(keep, source, index, distance)


def inject(out: torch.Tensor, plan: InjectionPlan, alpha: float, first: int = 0) -> torch.Tensor:
    """out (N, P, C) attention outputs of one CFG chunk -> the injected outputs (§4.3).

    Targets ``first``, ``first + 1``, ... are injected in that order, each in place: target i
    takes ``alpha * out[source, index] + (1 - alpha) * out[i]`` at its kept patches, where
    ``out`` already holds the injected outputs of the targets before i (the rows before
    ``first`` are taken as they are: already injected, e.g. anchors from an anchor cache).
    A new tensor; ``out`` itself when nothing is injected (alpha 0 or an empty plan).
    """
    if alpha == 0 or plan.empty:
        return out
    out = out.clone()
    keep = plan.keep.to(out.device)[..., None]
    source, index = plan.source.to(out.device), plan.index.to(out.device)
    for i in range(first, out.shape[0]):
        taken = out[source[i], index[i]]  # (P, C): row i's matches, as injected so far
        out[i] = torch.where(keep[i], alpha * taken + (1 - alpha) * out[i], out[i])
    return out
