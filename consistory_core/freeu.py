"""FreeU (Si et al., CVPR 2024) as the reference implementation applies it: by up block.

The paper's look has FreeU on (SPEC §2: b1 1.1, b2 1.2, s1 0.6, s2 0.4). In the reference's
UNet, FreeU acts in the first two up blocks only, chosen by their index: wherever an up
block concatenates its input with a skip connection, the first half of the input's channels
is scaled by b (b1 in up block 0, b2 in up block 1), in place, and the skip connection's
lowest frequencies by s (a Fourier filter). ComfyUI's own FreeU node chooses by channel count
instead, which differs at the first block of each following level (README, "Agreement with
the reference implementation").
"""
from __future__ import annotations

import torch


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """x (B, C, H, W) -> the same with the centred (2*threshold)^2 lowest spatial frequencies
    scaled by ``scale`` (FFT in float32, back to x's dtype)."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    h, w = freq.shape[-2:]
    mask = torch.ones(h, w, device=x.device)
    mask[h // 2 - threshold:h // 2 + threshold, w // 2 - threshold:w // 2 + threshold] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(x.dtype)


def up_block_of(output_block: int, num_res_blocks: list) -> int:
    """Which up block (0 = the lowest resolution) a UNet output block belongs to; each up
    block has ``num_res_blocks[level] + 1`` output blocks, levels from the deepest."""
    first = 0
    for up, level in enumerate(reversed(range(len(num_res_blocks)))):
        first += num_res_blocks[level] + 1
        if output_block < first:
            return up
    raise ValueError(f"output block {output_block}: the UNet has {first} output blocks")


def scale_backbone(h: torch.Tensor, b: float) -> torch.Tensor:
    """h (B, C, H, W), an up block's input: its first C // 2 channels scaled by ``b``, in place
    (so a view of h kept before, as the reference's DIFT features are, sees the scaling)."""
    half = h.shape[1] // 2
    h[:, :half] = h[:, :half] * b
    return h
