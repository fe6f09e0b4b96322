"""Otsu's threshold in torch, batched over rows (paper §4.1: masks are thresholded with Otsu).

Same definition as the common histogram form (256 bins over [min, max], threshold at the
bin centre maximising the between-class variance, foreground = values > threshold), so
fp16/bf16 maps work: values are upcast to fp32 first.
"""
from __future__ import annotations

import torch


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """values (R, P) -> thresholds (R,) in fp32. A constant row gets its own value."""
    x = values.detach().float()
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    width = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    index = ((x - lo) / width * bins).long().clamp_(0, bins - 1)
    hist = torch.zeros(x.shape[0], bins, dtype=torch.float32, device=x.device)
    hist.scatter_add_(1, index, torch.ones_like(x))
    centres = lo + (torch.arange(bins, device=x.device, dtype=torch.float32) + 0.5) * width / bins
    weight_low = hist.cumsum(1)
    weight_high = hist.flip(1).cumsum(1).flip(1)
    mass = hist * centres
    mean_low = mass.cumsum(1) / weight_low.clamp_min(1e-12)
    mean_high = mass.flip(1).cumsum(1).flip(1) / weight_high.clamp_min(1e-12)
    between = weight_low[:, :-1] * weight_high[:, 1:] * (mean_low[:, :-1] - mean_high[:, 1:]) ** 2
    best = between.argmax(dim=1, keepdim=True)
    threshold = centres.gather(1, best).squeeze(1)
    constant = (hi - lo).squeeze(1) == 0
    return torch.where(constant, lo.squeeze(1), threshold)


def otsu_mask(values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """values (R, P) -> bool (R, P): values above ``scale`` times the row's Otsu threshold."""
    return values.float() > (otsu_threshold(values) * scale).unsqueeze(1)
