"""Otsu's threshold in torch, batched over rows (paper §4.1: masks are thresholded with Otsu;
§4.3: so are the correspondence distances).

The arithmetic is the reference implementation's, operation for operation, so that a
near-tie between two bins (between-class variances a few 1e-7 apart, which happens at real
steps) is decided the same way: scikit-image's ``threshold_otsu`` on a float32 array, with
NumPy's histogram under it.

- 256 equal bins over [min, max]; the edges are computed in float64 (``k * ((max - min) /
  256) + min``, the last edge ``max`` itself) and rounded to float32; a value's bin is
  ``int(((v - min) / (max - min)) * 256)`` in float32, then moved by one where that
  disagrees with the float32 edges (a value on an edge belongs to the bin above it; ``max``
  to the last bin).
- Bin centres ``(left + right) / 2`` in float32; counts as float32.
- Class weights and class means from running sums taken one bin after the other in
  float32 (from the low end for the lower class, from the high end for the upper one; not
  a pairwise or double-precision cumulative sum), the between-class variance of the split
  after bin t ``w_low * w_high * (mean_low - mean_high)^2`` in float32, the first maximum.
- The threshold is that bin's centre; foreground is strictly above it. A constant row's
  threshold is its value.

fp16/bf16 maps are upcast to float32 first. The rows are processed on the CPU (a few
hundred values each; the running sums are a loop over the bins).
"""
from __future__ import annotations

import torch


def _running_sum(x: torch.Tensor) -> torch.Tensor:
    """x (R, B) float32 -> (R, B): the sums x[:, 0] + ... + x[:, b], added one at a time in
    float32 (torch's own CPU cumsum accumulates in float64)."""
    out = torch.empty_like(x)
    total = torch.zeros_like(x[:, 0])
    for b in range(x.shape[1]):
        total = total + x[:, b]
        out[:, b] = total
    return out


def histogram_bins(x: torch.Tensor, bins: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """x (R, P) float32 on the CPU, no constant row -> (bin index (R, P) long, edges (R, bins + 1)
    float32): equal bins over each row's [min, max], as NumPy's ``histogram`` assigns them."""
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    step = (hi.double() - lo.double()) / bins
    edges = (torch.arange(bins + 1, dtype=torch.float64)[None] * step + lo.double()).float()
    edges[:, -1:] = hi
    index = (((x - lo) / (hi - lo)) * bins).long()
    index[index == bins] -= 1
    index -= (x < edges.gather(1, index)).long()
    index += ((x >= edges.gather(1, index + 1)) & (index != bins - 1)).long()
    return index, edges


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """values (R, P) -> thresholds (R,) in fp32, on the values' device."""
    x = values.detach().float().cpu()
    lo = x.min(dim=1).values
    constant = lo == x.max(dim=1).values
    work = torch.where(constant[:, None], torch.arange(x.shape[1], dtype=x.dtype)[None], x)  # any non-constant row
    index, edges = histogram_bins(work, bins)
    counts = torch.zeros(x.shape[0], bins, dtype=torch.float32)
    counts.scatter_add_(1, index, torch.ones_like(work))
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    mass = counts * centres
    weight_low = _running_sum(counts)
    weight_high = _running_sum(counts.flip(1)).flip(1)
    mean_low = _running_sum(mass) / weight_low
    mean_high = (_running_sum(mass.flip(1)) / weight_high.flip(1)).flip(1)
    gap = mean_low[:, :-1] - mean_high[:, 1:]
    between = weight_low[:, :-1] * weight_high[:, 1:] * (gap * gap)
    best = between.argmax(dim=1, keepdim=True)
    threshold = centres.gather(1, best).squeeze(1)
    return torch.where(constant, lo, threshold).to(values.device)


def otsu_mask(values: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """values (R, P) -> bool (R, P): values above ``scale`` times the row's Otsu threshold."""
    return values.float() > (otsu_threshold(values) * scale).to(values.device).unsqueeze(1)
