"""Subject masks from cross-attention (paper §4.1; multi-subject §4.5).

Per denoising step, the cond-half cross-attention probabilities of the subject tokens
(softmax over the text tokens, mean over heads) are averaged over the recording layers.
The mask used at step i is built from the maps of the last ``window`` finished steps
(< i): mean, bilinear resize to the layer's grid, Otsu per image / word / resolution,
union over the words of a subject, and union over subjects for sharing.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from .otsu import otsu_mask


def token_weights(positions: Sequence[Sequence[Sequence[int]]], context_length: int,
                  dtype=torch.float32, device=None) -> torch.Tensor:
    """Weights that average each word's token columns: (N, L, K).

    positions[i][k]: token positions of word k in image i's context (already repeated to
    ``context_length`` if the host repeated the prompt). A word's map is the mean of its
    columns (BPE pieces and their repeats); positions beyond the context are an error.
    """
    n, k = len(positions), len(positions[0])
    w = torch.zeros(n, context_length, k, dtype=dtype, device=device)
    for i, words in enumerate(positions):
        if len(words) != k:
            raise ValueError("every image needs the same subject words")
        for j, pos in enumerate(words):
            if not pos:
                raise ValueError(f"word {j} has no tokens in image {i}")
            if max(pos) >= context_length:
                raise ValueError(f"token {max(pos)} outside a {context_length}-token context")
            w[i, list(pos), j] = 1.0
    copies = w.sum(1, keepdim=True)
    return w / copies.clamp_min(1)


def subject_token_maps(q: torch.Tensor, k: torch.Tensor, heads: int,
                       weights: torch.Tensor) -> torch.Tensor:
    """Head-mean cross-attention probabilities of the subject words.

    q (N, P, heads*d) image queries, k (N, L, heads*d) text keys, weights (N, L, K).
    Returns (N, K, P) in fp32.
    """
    return head_token_maps(rearrange(q, "n p (h d) -> n h p d", h=heads),
                           rearrange(k, "n l (h d) -> n h l d", h=heads), weights)


def head_token_maps(q: torch.Tensor, k: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``subject_token_maps`` of heads already apart: q (N, heads, P, d) image queries,
    k (N, heads, L, d) text keys (a DiT's joint attention: the image tokens' queries and the
    text tokens' keys, softmax over the text tokens as in a cross-attention), weights (N, L, K).
    Returns (N, K, P) in fp32."""
    q, k = q.float(), k.float()
    probs = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1).mean(1)  # (N, P, L)
    return (probs @ weights.float()).transpose(1, 2)


def masks_from_maps(maps: torch.Tensor, grid: tuple[int, int], word_subject: Sequence[int],
                    threshold_scale: float = 1.0) -> torch.Tensor:
    """maps (N, K, h0, w0) -> bool (N, S, h*w) per-subject masks at ``grid``.

    Bilinear resize to the grid, Otsu per image and word, union over each subject's words.
    """
    n, k = maps.shape[:2]
    if tuple(maps.shape[2:]) != tuple(grid):
        maps = F.interpolate(maps, size=grid, mode="bilinear", align_corners=False)
    words = otsu_mask(maps.reshape(n * k, -1), threshold_scale).reshape(n, k, -1)
    masks = torch.zeros(n, max(word_subject) + 1, words.shape[-1], dtype=torch.bool, device=words.device)
    for j, s in enumerate(word_subject):
        masks[:, s] |= words[:, j]
    return masks


def with_given_masks(masks: torch.Tensor, given: torch.Tensor | None, grid: tuple[int, int]) -> torch.Tensor:
    """masks (N, S, h*w) bool with the first k images' masks replaced by ``given`` (k, H, W)
    floats in [0, 1] (a user's mask of a photo anchor, any resolution): area-resized to
    ``grid``, a patch is the subject where at least half of it is; every subject of such an
    image gets the same mask."""
    if given is None:
        return masks
    k = given.shape[0]
    resized = F.interpolate(given[:, None].float().to(masks.device), size=grid, mode="area").flatten(1) >= 0.5
    out = masks.clone()
    out[:k] = resized[:, None, :].expand(k, masks.shape[1], -1)
    return out


class SubjectMaskTracker:
    """Accumulates per-step subject maps and turns a sliding window of them into masks.

    word_subject: for each of the K words, the index of its subject (0..S-1).
    given: (k, H, W) masks of the first k images that replace theirs (photo anchors with a
    user's mask), or None.
    Maps enter with ``add`` during a step; ``next_step`` closes the step. Masks are
    computed lazily per grid and cached until the next step closes.
    """

    def __init__(self, word_subject: Sequence[int], window: int = 20, threshold_scale: float = 1.0,
                 given: torch.Tensor | None = None):
        if window < 1:
            raise ValueError("window must be at least one step")
        self.word_subject = list(word_subject)
        self.subjects = max(self.word_subject) + 1
        self.threshold_scale = threshold_scale
        self.given = given
        self.window: deque[torch.Tensor] = deque(maxlen=window)
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def add(self, maps: torch.Tensor, grid: tuple[int, int]) -> None:
        """maps (N, K, h*w) of one recording layer at the current step."""
        n, k, _ = maps.shape
        maps = maps.reshape(n, k, *grid)
        if self._sum is None:
            self._sum = maps.clone()
        elif self._sum.shape != maps.shape:
            raise ValueError("recording layers of one step must share a grid")
        else:
            self._sum += maps
        self._count += 1

    def next_step(self) -> None:
        """Close the current step: its mean map enters the window."""
        if self._count:
            self.window.append(self._sum / self._count)
        self._sum, self._count = None, 0
        self._cache.clear()

    @property
    def ready(self) -> bool:
        return len(self.window) > 0

    def subject_masks(self, grid: tuple[int, int]) -> torch.Tensor:
        """Masks per subject at ``grid`` (h, w): bool (N, S, h*w). Needs ``ready``."""
        if grid not in self._cache:
            self._cache[grid] = self.masks_of(torch.stack(list(self.window)).mean(0), grid)
        return self._cache[grid]

    def masks_of(self, maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``masks_from_maps`` of maps (N, K, h0, w0) with this story's settings and given masks."""
        return with_given_masks(masks_from_maps(maps, grid, self.word_subject, self.threshold_scale),
                                self.given, grid)

    def union_mask(self, grid: tuple[int, int]) -> torch.Tensor:
        """Union over subjects: bool (N, h*w), the patches an image shares."""
        return self.subject_masks(grid).any(1)

    def finished(self) -> torch.Tensor | None:
        """The window's mean map of the finished steps only: (N, K, h0, w0), or None."""
        return torch.stack(list(self.window)).mean(0) if self.window else None

    def snapshot(self) -> torch.Tensor | None:
        """The window's mean map including the open step: (N, K, h0, w0), or None."""
        maps = list(self.window) + ([self._sum / self._count] if self._count else [])
        return torch.stack(maps[-self.window.maxlen:]).mean(0) if maps else None
