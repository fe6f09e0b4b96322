"""Tests for consistory_core.grid (token grids of the UNet attention layers)."""
import math

import pytest

from consistory_core.grid import downscale_of, token_grid


def naive_grids(h, w, levels=4):
    """(factor, (gh, gw)) for each level, halving with ceil one stride-2 step at a time."""
    out = []
    gh, gw, f = h, w, 1
    for _ in range(levels):
        out.append((f, (gh, gw)))
        gh, gw, f = math.ceil(gh / 2), math.ceil(gw / 2), f * 2
    return out


@pytest.mark.parametrize("latent", [(128, 128), (96, 160), (160, 96), (13, 20), (20, 13), (75, 33)])
def test_token_grid_and_downscale_match_successive_halving(latent):
    """Every level's token count maps back to its ceil-halved grid and its factor."""
    for f, grid in naive_grids(*latent):
        tokens = grid[0] * grid[1]
        assert token_grid(latent, tokens) == grid
        assert downscale_of(latent, tokens) == f


def test_known_values():
    """Spot values written out by hand, including odd sizes."""
    assert token_grid((128, 128), 4096) == (64, 64)
    assert token_grid((96, 160), 24 * 40) == (24, 40)
    assert token_grid((13, 20), 70) == (7, 10)
    assert token_grid((13, 20), 20) == (4, 5)
    assert downscale_of((13, 20), 20) == 4
    assert token_grid((13, 20), 6) == (2, 3)
    assert downscale_of((13, 20), 6) == 8


@pytest.mark.parametrize("latent,tokens", [((128, 128), 1000), ((96, 160), 96 * 80),
                                           ((13, 20), 65), ((13, 20), 6 * 10)])
def test_non_grid_token_count_raises(latent, tokens):
    """A token count that is no level's grid is an error."""
    with pytest.raises(ValueError, match="do not form a grid"):
        token_grid(latent, tokens)
    with pytest.raises(ValueError):
        downscale_of(latent, tokens)


def test_downscale_of_when_latent_height_collapses():
    """Regression: when ceil(h/f) is the same for two factors (latent height <= 2) the
    factor must still come from the whole grid. Latent (2, 20) at f=4 has a 1x5 grid;
    a height-only search returned 2 (whose grid is 1x10)."""
    latent = (2, 20)
    assert token_grid(latent, 5) == (1, 5)
    f = downscale_of(latent, 5)
    assert (math.ceil(2 / f), math.ceil(20 / f)) == (1, 5), f"downscale_of returned {f}, expected 4"
    assert f == 4
    assert token_grid((1, 40), 10) == (1, 10) and downscale_of((1, 40), 10) == 4
