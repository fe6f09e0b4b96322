"""The fixed image <-> latent map of the story world (it takes the place of a learned VAE).

Each 2x2 pixel patch (12 values) is mapped linearly onto 4 latent channels:

    c0, c1, c2 = (mean R, mean G, mean B of the patch - 0.5) / 0.15
    c3         = (grey of the top row - grey of the bottom row) / 0.1     (grey = (R+G+B)/3)

The four rows of this 4x12 map are orthogonal, so the decoder is its pseudo-inverse: each
patch gets its mean colour, and the grey detail is added to its top row and taken from its
bottom row. ``encode(decode(z)) == z`` exactly wherever decoding needs no clamping to
[0, 1]; ``decode(encode(x))`` is x with each patch reduced to its mean colour plus a
vertical grey gradient. The scales give a standard deviation of about 2 on world images
(measured: colour std 0.28-0.32, detail std 0.09), twice SDXL's unit latents: the world's
flat colours then stand out of the sampler's noise at every level, which a small model
trained briefly needs (with unit latents it left colour casts from the noisiest steps and
grain from the cleanest ones).

Shapes: images (N, H, W, 3) in [0, 1] (ComfyUI's IMAGE layout), latents (N, 4, H/2, W/2).
These latents are what the UNet sees ("model space"); ComfyUI's LATENT holds them divided
by the SDXL latent scale factor (``HOST_SCALE``), as the host's KSampler multiplies by it.
"""
from __future__ import annotations

import torch

PATCH = 2
OFFSET = torch.tensor([0.5, 0.5, 0.5, 0.0])
SCALE = torch.tensor([0.15, 0.15, 0.15, 0.1])
HOST_SCALE = 0.13025  # comfy.latent_formats.SDXL.scale_factor


def _patches(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) -> (N, H/2, W/2, 2, 2, 3): [n, y, x, row in patch, column in patch, rgb]."""
    n, h, w, c = images.shape
    if h % PATCH or w % PATCH:
        raise ValueError(f"image size {h}x{w} is not a multiple of {PATCH}")
    return images.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH, c).permute(0, 1, 3, 2, 4, 5)


def encode(images) -> torch.Tensor:
    """(N, H, W, 3) images in [0, 1] -> (N, 4, H/2, W/2) float32 latents."""
    p = _patches(torch.as_tensor(images, dtype=torch.float32))
    colour = p.mean(dim=(3, 4))  # (N, h, w, 3)
    grey = p.mean(dim=5)  # (N, h, w, 2, 2)
    detail = grey[..., 0, :].mean(-1) - grey[..., 1, :].mean(-1)  # (N, h, w)
    z = torch.cat([colour, detail[..., None]], dim=-1)
    return ((z - OFFSET) / SCALE).permute(0, 3, 1, 2).contiguous()


def decode(latents: torch.Tensor) -> torch.Tensor:
    """(N, 4, h, w) latents -> (N, 2h, 2w, 3) float32 images, clamped to [0, 1]."""
    z = latents.float().permute(0, 2, 3, 1) * SCALE.to(latents.device) + OFFSET.to(latents.device)
    colour, detail = z[..., :3], z[..., 3]
    n, h, w, _ = colour.shape
    sign = torch.tensor([0.5, -0.5], device=z.device)  # top row +d/2, bottom row -d/2
    patch = colour[:, :, :, None, None, :] + (detail[..., None] * sign)[:, :, :, :, None, None]
    patch = patch.expand(n, h, w, PATCH, PATCH, 3)
    return patch.permute(0, 1, 3, 2, 4, 5).reshape(n, h * PATCH, w * PATCH, 3).clamp(0, 1)
