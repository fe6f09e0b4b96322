"""Token grids of the UNet's attention layers for any latent size (square or not)."""
from __future__ import annotations


def _grid_and_factor(latent_hw: tuple[int, int], tokens: int) -> tuple[int, int, int]:
    h, w = latent_hw
    f = 1
    while f <= 2 * max(h, w):
        gh, gw = -(-h // f), -(-w // f)
        if gh * gw == tokens:
            return gh, gw, f
        f *= 2
    raise ValueError(f"{tokens} tokens do not form a grid of a {h}x{w} latent")


def token_grid(latent_hw: tuple[int, int], tokens: int) -> tuple[int, int]:
    """(h, w) of a layer with ``tokens`` patches, for a latent of size ``latent_hw``.

    SDXL halves the latent with stride-2 convolutions (rounding up), so a layer at
    downscale f has ceil(h/f) x ceil(w/f) tokens.
    """
    return _grid_and_factor(latent_hw, tokens)[:2]


def downscale_of(latent_hw: tuple[int, int], tokens: int) -> int:
    """Downscale factor f of a layer (1, 2, 4, ...) from its token count."""
    return _grid_and_factor(latent_hw, tokens)[2]
