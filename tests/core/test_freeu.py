"""FreeU by up block (consistory_core.freeu), as the reference applies it, against slow references."""
import cmath
import math

import pytest
import torch

from consistory_core.freeu import fourier_filter, scale_backbone, up_block_of


def slow_fourier_filter(x, threshold, scale):
    """Per image and channel: the 2-D DFT by its definition, the (2t)^2 frequencies around
    the centre of the shifted spectrum (offsets -t .. t-1 from H//2, W//2) scaled, inverse DFT,
    real part."""
    _, _, h, w = x.shape
    out = torch.zeros(x.shape, dtype=torch.float64)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            img = x[b, c].double().tolist()
            spec = [[sum(img[m][n] * cmath.exp(-2j * math.pi * (u * m / h + v * n / w))
                         for m in range(h) for n in range(w)) for v in range(w)] for u in range(h)]
            for su in range(h // 2 - threshold, h // 2 + threshold):
                for sv in range(w // 2 - threshold, w // 2 + threshold):
                    u, v = (su - h // 2) % h, (sv - w // 2) % w  # shifted index -> frequency index
                    spec[u][v] *= scale
            for m in range(h):
                for n in range(w):
                    out[b, c, m, n] = sum(spec[u][v] * cmath.exp(2j * math.pi * (u * m / h + v * n / w))
                                          for u in range(h) for v in range(w)).real / (h * w)
    return out


@pytest.mark.parametrize("shape", [(1, 2, 4, 4), (2, 1, 6, 5), (1, 1, 3, 8)])
def test_fourier_filter_matches_the_dft_by_definition(shape):
    """Even and odd sizes: the lowest frequencies scaled (s 0.6), the rest kept."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    got = fourier_filter(x, threshold=1, scale=0.6)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got.double(), slow_fourier_filter(x, 1, 0.6), rtol=1e-5, atol=1e-5)


def test_fourier_filter_scale_one_is_identity_and_a_constant_is_scaled():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fourier_filter(x, 1, 1.0), x, rtol=1e-5, atol=1e-5)
    flat = torch.full((1, 1, 8, 8), 2.0)
    torch.testing.assert_close(fourier_filter(flat, 1, 0.4), flat * 0.4, rtol=1e-5, atol=1e-5)


def test_fourier_filter_keeps_half_precision():
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(2)).half()
    got = fourier_filter(x, 1, 0.6)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), fourier_filter(x.float(), 1, 0.6), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("blocks,expected", [
    ([2, 2, 2], [0, 0, 0, 1, 1, 1, 2, 2, 2]),           # SDXL: 9 output blocks, 3 per up block
    ([2, 2, 2, 2], [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]),  # SD 1.x / 2.x
    ([1, 2, 3], [0, 0, 0, 0, 1, 1, 1, 2, 2]),           # levels of their own depth, deepest first
])
def test_output_blocks_belong_to_up_blocks_by_index(blocks, expected):
    assert [up_block_of(i, blocks) for i in range(len(expected))] == expected
    with pytest.raises(ValueError, match="output blocks"):
        up_block_of(len(expected), blocks)


def test_scale_backbone_scales_the_first_half_of_the_channels_in_place():
    h = torch.randn(2, 6, 3, 3, generator=torch.Generator().manual_seed(3))
    view, before = h[1], h.clone()
    out = scale_backbone(h, 1.2)
    assert out is h
    torch.testing.assert_close(h[:, :3], before[:, :3] * 1.2)
    assert torch.equal(h[:, 3:], before[:, 3:])
    assert torch.equal(view, h[1])  # a view taken before sees the scaling, as the reference's DIFT features do
