"""A VAE stand-in for the host's VAEDecode / VAEEncode nodes: the fixed latent map.

The host's nodes call ``vae.decode(samples)`` -> (B, H, W, 3) in [0, 1] and
``vae.encode(pixels)`` -> latents; LATENT samples are model-space latents divided by the
SDXL scale factor (the KSampler multiplies by it on the way in and divides on the way out).
"""
from __future__ import annotations

import torch

from . import latent_map


class LatentMapVAE:
    """Duck-typed ``comfy.sd.VAE``: decode (B, 4, h, w) -> (B, 2h, 2w, 3), encode back."""

    latent_channels = 4
    downscale_ratio = upscale_ratio = latent_map.PATCH

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return latent_map.decode(samples.float() * latent_map.HOST_SCALE)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return latent_map.encode(pixels[..., :3]) / latent_map.HOST_SCALE

    def decode_tiled(self, samples, *args, **kwargs):
        return self.decode(samples)

    def encode_tiled(self, pixels, *args, **kwargs):
        return self.encode(pixels)

    def spacial_compression_decode(self) -> int:
        return latent_map.PATCH

    def spacial_compression_encode(self) -> int:
        return latent_map.PATCH
