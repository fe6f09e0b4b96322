"""Whether a bank's reuse can give what one batch gives at a size (§4.4): the initial noise.

ComfyUI's samplers draw a batch's noise from ``torch.manual_seed(seed)`` in one ``randn`` of
the whole batch, but image by image when the latent numbers its images (``batch_index``, as
Bank Latent's does, so that image j gets the j-th draw). torch's CPU generator fills a tensor
in blocks of 16 values and draws the last 16 again where the size is not a multiple of 16,
so an image's noise depends on the batch around it unless an image holds a multiple of 16
values (an SDXL latent: height x width a multiple of 4, i.e. both sides multiples of 16 px).
Elsewhere (a 7 x 9 latent, 125 x 125 at 1000 px) neither the new images' noise nor the
anchors' (drawn in their own batch) is what one batch of the whole story draws.
"""
from __future__ import annotations

import torch


def noise_is_batch_independent(shape: tuple) -> bool:
    """Whether images of ``shape`` (C, H, W) get the same noise from a seed drawn one by one
    as in one batch, and the first of them as in a longer batch (checked by drawing, seed 0)."""
    draw = lambda images: torch.randn((images, *shape), generator=torch.Generator().manual_seed(0))
    alone = torch.Generator().manual_seed(0)
    one_by_one = torch.cat([torch.randn((1, *shape), generator=alone) for _ in range(3)])
    return torch.equal(draw(3), one_by_one) and torch.equal(draw(2), draw(3)[:2])
