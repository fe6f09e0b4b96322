"""ConsiStory FreeU's output block patch: which blocks get which factors (by up block, as the
reference's diffusers UNet applies them; ComfyUI's FreeU node chooses by channel count)."""
import pytest
import torch

from consistory_testing.pack import runtime

freeu = runtime("consistory_patches.freeu")
core = runtime("consistory_core.freeu")


FIRST, SECOND = (1.1, 0.6), (1.2, 0.4)


@pytest.mark.parametrize("blocks,expected", [
    ([2, 2, 2], [FIRST] * 3 + [SECOND] * 3 + [None] * 3),      # SDXL
    ([2, 2, 2, 2], [FIRST] * 3 + [SECOND] * 3 + [None] * 6),   # SD 1.x / 2.x
    ([1, 3, 2], [FIRST] * 3 + [SECOND] * 4 + [None] * 2),      # levels of their own depth, deepest first
])
def test_the_first_two_up_blocks_get_their_factors_and_no_other_block_is_touched(blocks, expected):
    patch = freeu.BlockFreeU(blocks, b1=1.1, b2=1.2, s1=0.6, s2=0.4)
    g = torch.Generator().manual_seed(0)
    for block, factors in enumerate(expected):
        h, hsp = torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
        h_before, hsp_before = h.clone(), hsp.clone()
        out_h, out_hsp = patch(h, hsp, {"block": ("output", block)})
        if factors is None:
            assert torch.equal(out_h, h_before) and torch.equal(out_hsp, hsp_before), block
            continue
        b, s = factors
        assert out_h is h  # in place, as the reference (a view kept before sees it)
        torch.testing.assert_close(out_h[:, :4], h_before[:, :4] * b)
        assert torch.equal(out_h[:, 4:], h_before[:, 4:])
        torch.testing.assert_close(out_hsp, core.fourier_filter(hsp_before, 1, s))


def test_block_three_of_sdxl_gets_b2_where_comfyuis_freeu_would_give_b1():
    """SDXL's output block 3 starts the second up block but its input still has the first up
    block's 1280 channels: by channel count (ComfyUI's FreeU) it would be scaled by b1; by up
    block (the reference) by b2. Output block 6 (640 channels in) is not touched at all."""
    patch = freeu.BlockFreeU([2, 2, 2], b1=1.1, b2=1.2, s1=0.6, s2=0.4)
    h = torch.ones(1, 1280, 2, 2)
    out, _ = patch(h, torch.zeros(1, 640, 2, 2), {"block": ("output", 3)})
    assert float(out[0, 0, 0, 0]) == pytest.approx(1.2)
    h6 = torch.ones(1, 640, 2, 2)
    out6, _ = patch(h6.clone(), torch.zeros(1, 320, 2, 2), {"block": ("output", 6)})
    assert torch.equal(out6, h6)
