"""Moving keys to other positions after RoPE has been applied (DiT sharing, issue "Flux").

A DiT such as Flux rotates each query and key by its position (RoPE, per pair of channels,
on several axes) before attention, so another image's keys carry *their* positions: a
query attends most to the shared keys at its own position, which copies the other image's
layout. Rotations compose, R(p + delta) = R(delta) R(p), so a key already at p is moved to
p + delta by one more rotation of delta. AlignedGen (arXiv 2509.17088) names the failure of
naive attention sharing on DiTs "positional collision" (a query attends to the other image's
token at its own coordinates whatever its content: content leakage, duplicated objects) and
shifts the shared image's positions from (i, j) to (i, j + w), beside the generated image
(ShiftPE); "Untwisting RoPE" traces the copying to RoPE's high-frequency bands. CharaConsist
(ICCV 2025, arXiv 2507.11533) reports the same locality bias and re-rotates shared keys to
tracked points instead.
"""
from __future__ import annotations

import torch


def rotate_pairs(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """x (..., d) rotated pair by pair: rotation (d/2, 2, 2) (the 2x2 matrix of each pair of
    channels (x[2i], x[2i+1]), as the host's RoPE embedder gives it for one position).
    Computed in the rotation's dtype (fp32), returned in x's."""
    pairs = x.to(rotation.dtype).reshape(*x.shape[:-1], -1, 2)
    return torch.einsum("kij,...kj->...ki", rotation, pairs).reshape(x.shape).to(x.dtype)
