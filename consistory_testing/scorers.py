"""Random-weight stand-ins for the evaluation's scoring models (tests only)."""
from __future__ import annotations

import torch


class TinyDreamSim(torch.nn.Module):
    """What the evaluation asks of DreamSim: ``embed(pixels (N, 3, 224, 224) in [0, 1]) -> (N, D)``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.GELU(),
                                       torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(128, 16))

    @torch.no_grad()
    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        assert pixels.shape[1:] == (3, 224, 224) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
        return self.net(pixels)


def tiny_dreamsim(device="cpu") -> TinyDreamSim:
    return TinyDreamSim().to(device).eval()
