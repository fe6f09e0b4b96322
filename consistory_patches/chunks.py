"""The row layout of a UNet call's batch: the sampler's cond/uncond chunks, and the anchors
that reuse from a bank puts in front of each chunk.

The host concatenates one chunk per conditioning (``cond_or_uncond``: 0 = cond, 1 =
uncond; usually [1, 0]), each holding every image of the latent batch; it never splits
the latent batch. With replayed anchors each chunk is [k anchors ; m images].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

COND, UNCOND = 0, 1
CHUNK_NAMES = {COND: "cond", UNCOND: "uncond"}


@dataclass(frozen=True)
class Chunks:
    """order: cond_or_uncond of the call; images: rows per chunk; anchors: how many of
    each chunk's leading rows are anchors replayed from a bank."""
    order: tuple
    images: int
    anchors: int = 0

    @classmethod
    def of(cls, rows: int, order, anchors: int = 0) -> "Chunks":
        """The layout of a call with ``rows`` rows in all."""
        return cls(tuple(order), rows // len(order), anchors)

    def __len__(self) -> int:
        return len(self.order)

    def rows(self, c: int) -> slice:
        """Rows of chunk c."""
        return slice(c * self.images, (c + 1) * self.images)

    def head(self, c: int, k: int) -> slice:
        """The first k rows of chunk c."""
        return slice(c * self.images, c * self.images + k)

    @property
    def cond(self) -> int | None:
        """Index of the (first) cond chunk, or None when the call has none (CFG's uncond-only call)."""
        return self.order.index(COND) if COND in self.order else None

    @property
    def cond_rows(self) -> slice | None:
        return None if self.cond is None else self.rows(self.cond)

    def with_anchors(self, k: int) -> "Chunks":
        """The layout once k anchors are put in front of each chunk (self has none)."""
        return Chunks(self.order, self.images + k, k)

    def join(self, anchor_rows, x: torch.Tensor) -> torch.Tensor:
        """[anchor_rows(c) ; x's rows of chunk c] for every chunk: x (len * m, ...) laid out
        without anchors -> (len * (k + m), ...); anchor_rows(c) gives (k, ...). A layout of
        the anchors alone (m = 0) takes nothing of x."""
        m = self.images - self.anchors
        return torch.cat([t for c in range(len(self)) for t in (anchor_rows(c), x[c * m:(c + 1) * m])])

    def drop_anchors(self, out: torch.Tensor) -> torch.Tensor:
        """out (len * (k + m), ...) -> its image rows (len * m, ...)."""
        return torch.cat([out[c * self.images + self.anchors:(c + 1) * self.images] for c in range(len(self))])
